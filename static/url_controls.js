/**
 * url_controls.js — the view's own controls in the URL, beside what state.js keeps there: the
 * attention mode, "all heads", "all layers", the lens's second stream, the wide temperature
 * slider, the embedding-space inputs and the number of tokens to generate. A shared link opens
 * the same view; restoring sets each control and fires its usual event, so its view reacts as
 * if a person had changed it.
 *
 *   write(q)       add the controls that differ from their defaults to URLSearchParams q
 *   restore(q)     set the controls from URLSearchParams q
 *   watch(onChange) call onChange when any of them changes
 */

// URL key -> the control. A radio group is named by its selector and holds the checked value.
const CONTROLS = {
  mode: 'input[name="attn-mode"]',
  hc: "#overview-colour",
  heads: "#all-heads",
  layers: "#all-layers",
  mid: "#lens-mid",
  wide: "#temperature-wide",
  map: "#map-word",
  nb: "#neighbours-word",
  ar: "#arithmetic-input",
  da: "#dot-a",
  db: "#dot-b",
  gen: "#max-new-tokens",
};

const defaults = new Map();

function nodes(selector) {
  return [...document.querySelectorAll(selector)];
}

function read(selector) {
  const all = nodes(selector);
  if (!all.length) return null;
  if (all[0].type === "radio") return (all.find((n) => n.checked) || all[0]).value;
  if (all[0].type === "checkbox") return all[0].checked ? "1" : "0";
  return all[0].value;
}

for (const [key, selector] of Object.entries(CONTROLS)) defaults.set(key, read(selector));

export function write(q) {
  for (const [key, selector] of Object.entries(CONTROLS)) {
    const value = read(selector);
    if (value != null && value !== defaults.get(key)) q.set(key, value);
  }
}

export function restore(q) {
  for (const [key, selector] of Object.entries(CONTROLS)) {
    const all = nodes(selector);
    if (!all.length) continue;
    const value = q.has(key) ? q.get(key) : defaults.get(key);
    if (value == null || read(selector) === value) continue;
    if (all[0].type === "radio") {
      const chosen = all.find((n) => n.value === value);
      if (!chosen) continue;
      chosen.checked = true;
      chosen.dispatchEvent(new Event("change", { bubbles: true }));
    } else if (all[0].type === "checkbox") {
      all[0].checked = value === "1";
      all[0].dispatchEvent(new Event("change", { bubbles: true }));
    } else {
      all[0].value = value.slice(0, 1000);
      all[0].dispatchEvent(new Event("input", { bubbles: true }));
      all[0].dispatchEvent(new Event("change", { bubbles: true }));
    }
  }
}

export function watch(onChange) {
  for (const selector of Object.values(CONTROLS)) {
    for (const node of nodes(selector)) {
      node.addEventListener("change", onChange);
      node.addEventListener("input", onChange);
    }
  }
}
