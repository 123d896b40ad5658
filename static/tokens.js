/**
 * tokens.js — stage 2: one chip per token (text with visible spaces, and its id). The chips are
 * the hover targets for every stage: hovering or focusing chip i sets `hovered`; a click (or
 * Enter/Space) pins it, a second click releases it. While a token is in focus, every chip is
 * coloured by the weight the focus token gives it in the selected layer and head, and carries
 * that weight in data-weight (0 for future tokens), in a third line and in its tooltip. While the
 * selected layer's pattern is still on its way (long prompts), no chip has a data-weight and the
 * hint says "Loading layer N…". Chips after `analysis[runKey].fresh` (the tokens Generate added)
 * get a short highlight. While Generate streams, the tokens that will become the run's (the last
 * stream of store.state.generation[runKey]: the one with the interventions, when there are two)
 * are shown under the chips, until that run is shown.
 *
 * mount(root, store, runKey) -> unmount
 */
import { css, inkOn, viridis } from "./colors.js";
import { el, mountView } from "./dom.js";
import { pct, visible } from "./format.js";
import { t } from "./i18n.js";
import { focusToken, selectPattern, selectPatternError, selectRun } from "./store.js";
import { slice } from "./api.js";

export function mount(root, store, runKey) {
  const view = mountView(root, store);
  const { chips: box, hint, generated } = view.parts;
  const HINT = hint.textContent;
  const s = store.state;
  let chips = [];
  let shownRun = null;

  function chipTitle(token) {
    return t(token.partial ? "tokens.chip_title_partial" : "tokens.chip_title",
      { position: token.position, text: visible(token.text), id: token.id });
  }

  function render() {
    const run = selectRun(s, runKey);
    if (run === shownRun) return;
    shownRun = run;
    box.querySelectorAll('[data-testid="token"]').forEach((chip) => chip.remove());
    chips = [];
    if (!run) return;
    const fragment = document.createDocumentFragment();
    const fresh = s.analysis[runKey]?.fresh;
    for (const token of run.tokens) {
      const chip = el("button", {
        type: "button",
        class: `chip${token.partial ? " partial" : ""}${fresh != null && token.position >= fresh ? " fresh" : ""}`,
        "data-testid": "token",
        "data-index": token.position,
        tabindex: token.position === 0 ? "0" : "-1",
        "aria-pressed": "false",
        title: chipTitle(token),
      },
      el("span", { class: "t", translate: "no", text: visible(token.text) }),
      el("span", { class: "id", text: String(token.id) }),
      el("span", { class: "wt", "aria-hidden": "true" }));
      chips.push(chip);
      fragment.append(chip);
    }
    box.prepend(fragment);
  }

  function showLoading(weights) {
    const error = weights ? null : selectPatternError(s, runKey, s.layer);
    hint.textContent = weights ? HINT
      : error ? t("page.layer_failed", { layer: s.layer, error: error.message }) : t("page.loading_layer", { layer: s.layer });
    hint.classList.toggle("error", !!error);
    box.setAttribute("aria-busy", weights || error ? "false" : "true");
  }

  function clear(chip, focus) {
    const j = Number(chip.dataset.index);
    chip.removeAttribute("data-weight");
    chip.style.background = "";
    chip.style.color = "";
    chip.classList.remove("future");
    chip.classList.toggle("source", j === focus);
    chip.classList.toggle("pinned", j === s.pinned);
    chip.setAttribute("aria-pressed", j === s.pinned ? "true" : "false");
  }

  function paint() {
    render();
    const run = selectRun(s, runKey);
    if (!run) return;
    const weights = selectPattern(s, runKey, s.layer);
    if (!weights) store.requestPattern(runKey, s.layer);
    showLoading(weights);
    const focus = focusToken(s, runKey);
    box.classList.toggle("focused", focus != null);
    if (focus == null || !weights) {
      // No focus, or no weights yet for this layer: none shown (never the previous layer's).
      for (const chip of chips) {
        clear(chip, focus);
        const j = Number(chip.dataset.index);
        chip.lastChild.textContent = focus != null && j === focus ? "…" : "";
        chip.title = chipTitle(run.tokens[j]) + (focus != null ? `\n${t("tokens.chip_loading", { layer: s.layer })}` : "");
      }
      return;
    }
    const row = slice(weights, s.head, focus);
    const from = visible(run.tokens[focus].text);
    for (let j = 0; j < chips.length; j++) {
      const chip = chips[j];
      const w = j <= focus ? row[j] : 0;
      const future = j > focus;
      clear(chip, focus);
      chip.dataset.weight = String(w);
      chip.lastChild.textContent = future ? "–" : w >= 0.995 ? "1.00" : w.toFixed(2).replace(/^0/, "");
      chip.classList.toggle("future", future);
      if (!future) {
        const rgb = viridis(w);
        chip.style.background = css(rgb);
        chip.style.color = inkOn(rgb);
      }
      chip.title = `${chipTitle(run.tokens[j])}\n${future ? t("tokens.chip_future")
        : t("tokens.chip_weight", { from, weight: w.toFixed(6), layer: s.layer, head: s.head })}`;
    }
  }

  let streamed = 0; // generated tokens on screen: each arrival adds one node, never redraws the rest
  let streaming = null; // the id of the generation they belong to
  function showGeneration() {
    const generation = s.generation[runKey];
    const on = !!generation && !generation.runId;
    generated.hidden = !on;
    if (!on) return;
    const tokens = generation.streams[generation.streams.length - 1].tokens;
    if (streaming !== generation.id || tokens.length < streamed || !generated.firstChild) {
      generated.replaceChildren(el("span", { class: "muted", text: t("tokens.generating") }));
      streamed = 0;
      streaming = generation.id;
    }
    generated.append(...tokens.slice(streamed).map((token) => el("span", { class: "new-token", "data-testid": "generated-token",
      "data-token-id": token.id, translate: "no", title: t("tokens.generated_title", { prob: pct(token.prob) }), text: visible(token.text) })));
    streamed = tokens.length;
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

  // Every listener goes with the view: unmounting and mounting again on the same root adds none twice.
  view.on(box, "mouseover", (event) => {
    const i = indexOf(event.target);
    if (i != null && i !== s.hovered) store.set({ hovered: i });
  });
  view.on(box, "mouseleave", () => {
    if (!box.contains(document.activeElement)) store.set({ hovered: null });
  });
  view.on(box, "focusin", (event) => {
    const i = indexOf(event.target);
    if (i != null) {
      for (const chip of chips) chip.tabIndex = -1;
      chips[i].tabIndex = 0;
      store.set({ hovered: i });
    }
  });
  view.on(box, "focusout", (event) => {
    if (!box.contains(event.relatedTarget)) store.set({ hovered: null });
  });
  view.on(box, "click", (event) => {
    const i = indexOf(event.target);
    if (i != null) store.set({ pinned: s.pinned === i ? null : i });
  });
  view.on(box, "keydown", (event) => {
    const i = indexOf(event.target);
    if (i == null) return;
    const moves = { ArrowLeft: i - 1, ArrowRight: i + 1, ArrowUp: i - 1, ArrowDown: i + 1, Home: 0, End: chips.length - 1 };
    if (event.key in moves) {
      event.preventDefault();
      moveFocus(moves[event.key]);
    }
  });
  view.watch(["runs", "shown", "hovered", "pinned", "layer", "head", "patternsLoaded"], paint);
  view.watch(["generation"], showGeneration);
  view.cleanup(() => box.querySelectorAll('[data-testid="token"]').forEach((chip) => chip.remove()));
  paint();
  return view.unmount;
}
