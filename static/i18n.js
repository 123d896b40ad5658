/**
 * i18n.js — the page's words. The server renders the page in one language and embeds that
 * language's catalog (static/i18n/<lang>/*.json, merged, keys "<namespace>.<key>") as JSON in
 * <script id="catalog">; views take every string a person reads from here.
 *
 *   t(key, params)           the string, with {name} placeholders filled from params
 *   tn(key, n, params)       the plural form for n: key + "_one" | "_other" (Intl.PluralRules), n as {n}
 *   lang                     the page's language (<html lang>)
 */
const node = typeof document !== "undefined" ? document.getElementById("catalog") : null;
const catalog = node ? JSON.parse(node.textContent) : {};
export const lang = (typeof document !== "undefined" && document.documentElement.lang) || "en";
const plurals = new Intl.PluralRules(lang);

function fill(text, params) {
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

export function t(key, params = {}) {
  const text = catalog[key];
  if (typeof text !== "string") {
    console.error(`the catalog has no string ${key}`);
    return key;
  }
  return fill(text, params);
}

export function tn(key, n, params = {}) {
  const form = plurals.select(n) === "one" ? "one" : "other";
  return t(`${key}_${form}`, { n, ...params });
}
