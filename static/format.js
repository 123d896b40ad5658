/**
 * format.js — how numbers and token texts are written on the page, in one place.
 */
import { t } from "./i18n.js";

/** A token's text with its whitespace made visible: ' cat' -> '␣cat', newline -> '↵'. */
export function visible(text) {
  if (text === "") return "∅";
  return text.replace(/ /g, "␣").replace(/\n/g, "↵").replace(/\t/g, "⇥").replace(/\r/g, "␍");
}

/** Escape text for Plotly labels (Plotly reads a few HTML-like tags; entities keep them text). */
export function plotlyText(text) {
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** A number with `digits` decimals and a real minus sign; ±∞ and NaN written as such. */
export function fmt(x, digits = 3) {
  if (x === -Infinity) return "−∞";
  if (x === Infinity) return "∞";
  if (!Number.isFinite(x)) return "—";
  return x.toFixed(digits).replace("-", "−");
}

/** A probability as a percentage, with two significant digits below 10%. */
export function pct(p) {
  if (p === 0) return "0%";
  const x = p * 100;
  if (x >= 10) return `${x.toFixed(1)}%`;
  if (x >= 1e-4) return `${Number(x.toPrecision(2)).toString()}%`;
  return `${x.toExponential(1)}%`;
}

/** An integer with thousands separators: 50257 -> "50,257" (the same in every language). */
export function count(n) {
  return Number(n).toLocaleString("en");
}

/** 124439808 -> "124.4 M", 175e9 -> "175.2 B". */
export function short(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(n >= 1e10 ? 1 : 2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} K`;
  return String(n);
}

/** A size in bytes: "1.2 MB", "840 kB". */
export function megabytes(bytes) {
  return bytes >= 1e6 ? t("page.megabytes", { n: (bytes / 1e6).toFixed(1) }) : t("page.kilobytes", { n: Math.ceil(bytes / 1e3) });
}

/** The first `n` characters of a token's visible text, with … when cut. */
export function clip(text, n = 9) {
  const shown = visible(text);
  return shown.length > n ? `${shown.slice(0, n - 1)}…` : shown;
}
