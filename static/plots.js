/**
 * plots.js — small shared helpers for the Plotly charts: fonts that follow presenter mode, a
 * common config, and a coalescing scheduler so that heavy views redraw once the mouse rests.
 * Also imported by the issue-5 views (static/embedding_space.js, logit_lens.js, anatomy.js):
 * keep the exported names stable.
 */
import { state } from "./state.js";

export const config = { displayModeBar: false, responsive: true, doubleClick: false };

export function font() {
  return { family: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size: state.presenter ? 17 : 12, color: "#1b1f24" };
}

export function baseLayout(extra = {}) {
  return {
    font: font(),
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    margin: { l: 60, r: 20, t: 10, b: 40 },
    ...extra,
  };
}

/** later(fn, ms): a function that runs fn once, `ms` after the last call (the newest args win). */
export function later(fn, ms = 60) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

export function plotly() {
  return window.Plotly;
}
