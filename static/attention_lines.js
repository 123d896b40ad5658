/**
 * attention_lines.js — where the token in focus looks, drawn as arcs over the token chips, as
 * bertviz's head view draws it: from the focus token to every token it attends to in the
 * selected layer and head, thickness and opacity growing with the weight. Each arc carries the
 * pattern's own value in data-weight. With "all heads", every head of the layer is drawn in its
 * own colour (data-head says which).
 *
 * Weights under 0.005 are not drawn (they would be invisible): the chips still show every weight.
 *
 * mount(root, store, runKey): draws into the chips box inside `root` (the tokens stage), with
 * its "all heads" box; returns the unmount function.
 */
import { slice } from "./api.js";
import { mountView } from "./dom.js";
import { focusToken, selectPattern } from "./store.js";

const SVG = "http://www.w3.org/2000/svg";
const MIN_WEIGHT = 0.005;
// Okabe–Ito, then Tol's muted: 12 colours that stay apart for colour-blind eyes.
const HEAD_COLOURS = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#332288", "#882255",
  "#117733", "#aa4499", "#999933", "#44aa99"];

export function mount(root, store, runKey) {
  const view = mountView(root, store);
  const { chips: box, allHeads } = view.parts;
  const state = store.state;
  const layer = document.createElementNS(SVG, "svg");
  layer.setAttribute("class", "attention-lines");
  layer.setAttribute("aria-hidden", "true");
  box.append(layer);
  let frame = 0;

  function arc(from, to, x0, y0, x1, y1, weight, colour, head) {
    const path = document.createElementNS(SVG, "path");
    const lift = Math.min(14, 5 + Math.abs(x1 - x0) * 0.05);
    const top = Math.min(y0, y1) - lift;
    path.setAttribute("d", from === to
      ? `M${x0 - 6},${y0} C${x0 - 8},${y0 - 14} ${x0 + 8},${y0 - 14} ${x0 + 6},${y0}`
      : `M${x0},${y0} C${x0},${top} ${x1},${top} ${x1},${y1}`);
    path.setAttribute("data-testid", "attention-line");
    path.setAttribute("data-from", String(from));
    path.setAttribute("data-to", String(to));
    path.setAttribute("data-head", String(head));
    path.setAttribute("data-weight", String(weight));
    path.setAttribute("stroke", colour);
    path.setAttribute("stroke-width", (1 + 6 * weight).toFixed(2));
    path.setAttribute("stroke-opacity", (0.4 + 0.6 * weight).toFixed(3));
    return path;
  }

  function draw() {
    frame = 0;
    if (layer.parentNode !== box) box.append(layer); // tokens.js empties the box for each new run
    layer.replaceChildren();
    const i = focusToken(state, runKey);
    const weights = i != null ? selectPattern(state, runKey, state.layer) : null;
    const chips = box.querySelectorAll('[data-testid="token"]');
    if (!weights || i >= chips.length) return;
    // Positions inside the (scrolling) chips box, so the arcs scroll with the chips.
    const origin = box.getBoundingClientRect();
    const anchor = (chip) => {
      const r = chip.getBoundingClientRect();
      return [r.left - origin.left + box.scrollLeft + r.width / 2, r.top - origin.top + box.scrollTop + 1];
    };
    layer.setAttribute("width", String(box.scrollWidth));
    layer.setAttribute("height", String(box.scrollHeight));
    const [x0, y0] = anchor(chips[i]);
    const heads = allHeads && allHeads.checked ? [...Array(state.model.n_heads).keys()] : [state.head];
    const fragment = document.createDocumentFragment();
    for (const h of heads) {
      const row = slice(weights, h, i);
      const colour = heads.length > 1 ? HEAD_COLOURS[h % HEAD_COLOURS.length] : "#f0a000";
      for (let j = 0; j <= i; j++) {
        if (row[j] < MIN_WEIGHT) continue;
        const [x1, y1] = anchor(chips[j]);
        fragment.append(arc(i, j, x0, y0, x1, y1, row[j], colour, h));
      }
    }
    layer.append(fragment);
  }

  // After the chips' own repaint in the same change: one frame later, at most once a frame.
  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(draw);
  };
  view.watch(["runs", "shown", "hovered", "pinned", "layer", "head", "patternsLoaded", "presenter"], schedule);
  view.on(allHeads, "change", schedule);
  const resize = new ResizeObserver(schedule);
  resize.observe(box);
  view.cleanup(() => resize.disconnect(), () => cancelAnimationFrame(frame), () => layer.remove());
  return view.unmount;
}
