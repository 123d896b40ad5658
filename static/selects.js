/**
 * selects.js — the layer and head <select>s of the token bar. They are not the attention view's:
 * they sit in the tokens stage, so that the selection stays in view while the stages scroll by,
 * and every view follows the store's `layer` and `head` they set.
 *
 * mountSelects(root, store): wires the selects `[data-part=layer]` and `[data-part=head]` inside
 * `root` (the tokens stage); returns the unmount function. A root without them (a page rendered
 * with `selects` off) is left alone.
 */
import { el, listen, parts } from "./dom.js";
import { t } from "./i18n.js";

export function mountSelects(root, store) {
  const [layerSelect] = parts(root, "layer");
  const [headSelect] = parts(root, "head");
  if (!layerSelect || !headSelect) return () => {};
  const state = store.state;

  function follow() {
    layerSelect.value = String(state.layer);
    headSelect.value = String(state.head);
  }

  function fill() {
    const m = state.model;
    if (!m) return;
    const options = (n, name) => Array.from({ length: n }, (_, i) => el("option", { value: i, text: name(i) }));
    layerSelect.replaceChildren(...options(m.n_layers, (layer) => t("tokens.layer_option", { layer })));
    headSelect.replaceChildren(...options(m.n_heads, (head) => t("tokens.head_option", { head })));
    follow();
  }

  const stop = [
    listen(layerSelect, "change", () => store.set({ layer: Number(layerSelect.value) })),
    listen(headSelect, "change", () => store.set({ head: Number(headSelect.value) })),
    store.subscribe(["model"], fill),
    store.subscribe(["layer", "head"], follow),
  ];
  fill();
  return () => stop.forEach((s) => s());
}
