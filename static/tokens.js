/**
 * tokens.js — stage 2: one chip per token (text with visible spaces, and its id). The chips are
 * the hover targets for every stage (a third line shows the weight while a token is in focus): hovering or focusing chip i sets state.hovered; a click (or
 * Enter/Space) pins it, a second click releases it. While a token is in focus, every chip is
 * coloured by the weight the focus token gives it in the selected layer and head, and carries
 * that weight in data-weight (0 for future tokens) and in its tooltip. While the selected layer's
 * pattern is still on its way (long prompts), no chip has a data-weight and the hint says
 * "Loading layer N…".
 */
import { slice } from "./api.js";
import { css, el, inkOn, viridis, visible } from "./colors.js";
import { focusToken, pattern, patternError, set, state, subscribe } from "./state.js";

const box = document.getElementById("token-chips");
const hint = document.getElementById("token-hint");
const HINT = hint.textContent;
let chips = [];

function render() {
  box.replaceChildren();
  chips = [];
  const run = state.run;
  if (!run) return;
  const fragment = document.createDocumentFragment();
  for (const token of run.tokens) {
    const chip = el("button", {
      type: "button",
      class: token.partial ? "chip partial" : "chip",
      "data-testid": "token",
      "data-index": token.position,
      tabindex: token.position === 0 ? "0" : "-1",
      "aria-pressed": "false",
    },
    el("span", { class: "t", text: visible(token.text) }),
    el("span", { class: "id", text: String(token.id) }),
    el("span", { class: "wt", "aria-hidden": "true" }));
    chip.title = `token ${token.position}: ${JSON.stringify(token.text)} (id ${token.id})${token.partial ? ", part of a character" : ""}`;
    chips.push(chip);
    fragment.append(chip);
  }
  box.append(fragment);
}

/** Say in the hint line while the selected layer's pattern is on its way (long prompts). */
function showLoading(weights) {
  const error = weights ? null : patternError(state.layer);
  hint.textContent = weights ? HINT : error ? `Could not load layer ${state.layer}: ${error.message}` : `Loading layer ${state.layer}…`;
  hint.classList.toggle("error", !!error);
  box.setAttribute("aria-busy", weights || error ? "false" : "true");
}

function paint() {
  const run = state.run;
  if (!run) return;
  const weights = pattern(state.layer);
  showLoading(weights);
  const focus = focusToken();
  box.classList.toggle("focused", focus != null && focus < chips.length);
  if (!weights && focus != null && focus < chips.length) {
    // No weights yet for this layer: none shown (never the previous layer's), only the source.
    for (const chip of chips) {
      const j = Number(chip.dataset.index);
      chip.removeAttribute("data-weight");
      chip.style.background = "";
      chip.style.color = "";
      chip.lastChild.textContent = j === focus ? "…" : "";
      chip.classList.remove("future");
      chip.classList.toggle("source", j === focus);
      chip.classList.toggle("pinned", j === state.pinned);
      chip.setAttribute("aria-pressed", j === state.pinned ? "true" : "false");
      chip.title = `${chip.title.split("\n")[0]}\nloading layer ${state.layer}…`;
    }
    return;
  }
  if (focus == null || focus >= chips.length) {
    for (const chip of chips) {
      chip.removeAttribute("data-weight");
      chip.style.background = "";
      chip.style.color = "";
      chip.classList.remove("source", "future", "pinned");
      chip.setAttribute("aria-pressed", "false");
      chip.title = chip.title.split("\n")[0];
    }
    return;
  }
  const row = slice(weights, state.head, focus);
  const from = visible(run.tokens[focus].text);
  for (let j = 0; j < chips.length; j++) {
    const chip = chips[j];
    const w = j <= focus ? row[j] : 0;
    chip.dataset.weight = String(w);
    const future = j > focus;
    chip.lastChild.textContent = future ? "–" : w >= 0.995 ? "1.00" : w.toFixed(2).replace(/^0/, "");
    chip.classList.toggle("future", future);
    chip.classList.toggle("source", j === focus);
    chip.classList.toggle("pinned", j === state.pinned);
    chip.setAttribute("aria-pressed", j === state.pinned ? "true" : "false");
    if (future) {
      chip.style.background = "";
      chip.style.color = "";
    } else {
      const rgb = viridis(w);
      chip.style.background = css(rgb);
      chip.style.color = inkOn(rgb);
    }
    const head = chip.title.split("\n")[0];
    chip.title = `${head}\n${future ? "future token: masked, weight 0" : `“${from}” gives it weight ${w.toFixed(6)} (layer ${state.layer}, head ${state.head})`}`;
  }
}

function indexOf(target) {
  const chip = target instanceof Element ? target.closest('[data-testid="token"]') : null;
  return chip && box.contains(chip) ? Number(chip.dataset.index) : null;
}

function moveFocus(i) {
  if (!chips.length) return;
  const j = Math.max(0, Math.min(chips.length - 1, i));
  for (const chip of chips) chip.tabIndex = -1;
  chips[j].tabIndex = 0;
  chips[j].focus();
}

export function init() {
  box.addEventListener("mouseover", (event) => {
    const i = indexOf(event.target);
    if (i != null && i !== state.hovered) set({ hovered: i });
  });
  box.addEventListener("mouseleave", () => {
    if (!box.contains(document.activeElement)) set({ hovered: null });
  });
  box.addEventListener("focusin", (event) => {
    const i = indexOf(event.target);
    if (i != null) {
      for (const chip of chips) chip.tabIndex = -1;
      chips[i].tabIndex = 0;
      set({ hovered: i });
    }
  });
  box.addEventListener("focusout", (event) => {
    if (!box.contains(event.relatedTarget)) set({ hovered: null });
  });
  box.addEventListener("click", (event) => {
    const i = indexOf(event.target);
    if (i == null) return;
    set({ pinned: state.pinned === i ? null : i });
  });
  box.addEventListener("keydown", (event) => {
    const i = indexOf(event.target);
    if (i == null) return;
    const moves = { ArrowLeft: i - 1, ArrowRight: i + 1, ArrowUp: i - 1, ArrowDown: i + 1, Home: 0, End: chips.length - 1 };
    if (event.key in moves) {
      event.preventDefault();
      moveFocus(moves[event.key]);
    }
  });
  subscribe(["run"], render);
  subscribe(["run", "hovered", "pinned", "layer", "head", "patternsLoaded"], paint);
}

/** Chip element for position i (for other views that want to scroll to it). */
export function chip(i) {
  return chips[i] || null;
}
