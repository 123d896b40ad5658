/**
 * language.js — the language switch (#lang-switch, in the header): the page is rendered by the
 * server in one language, so choosing another loads the page again with ?lang=, in the same view,
 * which lives in the URL (url.js on the main page, compare.js on /compare). The server remembers
 * the choice in a cookie.
 *
 *   mountLanguageSwitch(beforeLeave)   beforeLeave(): write any view change still pending to the URL
 */
export function mountLanguageSwitch(beforeLeave = () => {}) {
  const select = document.getElementById("lang-switch");
  if (!select) return;
  select.addEventListener("change", () => {
    beforeLeave();
    const q = new URLSearchParams(location.search);
    q.set("lang", select.value);
    location.assign(`${location.pathname}?${q.toString()}${location.hash}`);
  });
}
