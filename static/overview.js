/**
 * overview.js — the whole model on one screen, drawn from the run's own numbers: the tokens
 * enter through the embedding onto the residual stream (the spine), each block branches off to
 * its attention heads and its MLP and adds their output back, and the final LayerNorm and the
 * unembedding give the prediction.
 *
 *   - "Colour the heads by" a head detector (previous-token, duplicate-token, induction: GET
 *     /head-scores, for the whole prompt; data-kind and data-value say which and how much), or
 *   - by default, each head cell is coloured by how sharply that head attends for the token in focus (the
 *     pinned or hovered token, else the last): 1 − H(row) / log(i + 1), where H is the entropy
 *     of its attention row (1: all weight on one token; 0: spread evenly). Its title gives the
 *     key it attends to most, with the weight. A layer whose pattern has not been fetched yet
 *     (long prompts) is drawn grey: it is never fetched just for this picture.
 *   - Under each block: the residual stream's length ‖x‖ as it leaves the block (from the
 *     analyze response's resid_norms), and the logit lens's top guess after that block, for the token in focus
 *     (GET /logit-lens?position=i&k=1, fetched once the focus rests).
 *   - At the end: the model's top next token at that position, `overview-prediction`.
 *   - Clicking a head selects its layer and head; clicking a block selects its layer. In
 *     "switch heads off" mode (store.state.ablate), clicking a head switches it off or back on.
 *   - What is switched off (store.state.interventions) is marked: the head or MLP gets the class
 *     `ablated` and a cross over it.
 *
 * mount(root, store, runKey) -> unmount
 */
import { headScores, logitLens, slice } from "./api.js";
import { css, viridis } from "./colors.js";
import { mountView } from "./dom.js";
import { onScreen } from "./lazy.js";
import { clip, pct, visible } from "./format.js";
import { t } from "./i18n.js";
import { detailToken, headAblated, headIntervention, mlpAblated, selectRun, toggled } from "./store.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 1200;
const H = 230;
const SPINE_Y = 128;
const LEFT = 116; // the blocks start here
const RIGHT = 992; // and end here
const LENS_DELAY_MS = 180;
let mounts = 0; // SVG ids are page-wide: each mounted overview names its arrowhead apart

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text != null) node.textContent = text;
  return node;
}

/** 1 − entropy / log(i + 1) of attention row i, and the key with the largest weight. */
export function sharpness(row, i) {
  let entropy = 0;
  let best = 0;
  for (let j = 0; j <= i; j++) {
    const w = row[j];
    if (w > 0) entropy -= w * Math.log(w);
    if (w > row[best]) best = j;
  }
  return { value: i === 0 ? 1 : Math.max(0, Math.min(1, 1 - entropy / Math.log(i + 1))), best, weight: row[best] };
}

export function mount(root, store, runKey) {
  const view = mountView(root, store);
  const { overview: box, caption, colour } = view.parts;
  let scores = null; // {runId, body} of GET /head-scores, when the heads are coloured by a detector
  const state = store.state;
  const set = (patch) => store.set(patch);
  const arrow = `ov-arrow-${++mounts}`;
  let drawn = null; // {model key, heads[l][h], blocks[l], lens[l + 1], prediction}
  let lensTimer = null;
  let lensKey = null;

  function build() {
    const m = state.model;
    const L = m.n_layers;
    const nh = m.n_heads;
    const bw = (RIGHT - LEFT) / L;
    const cols = Math.ceil(Math.sqrt(nh));
    const rows = Math.ceil(nh / cols);
    const cell = Math.min(15, (bw - 16) / cols);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, "data-testid": "model-overview", role: "img",
      "aria-label": t("overview.label", { n_layers: L, n_heads: nh }) });
    const defs = svg("defs");
    const marker = svg("marker", { id: arrow, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 12, markerHeight: 12,
      markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "ov-arrowhead" }));
    defs.append(marker);
    root.append(defs);

    // The residual stream: one spine from the embedding to the final LayerNorm.
    root.append(svg("line", { x1: 96, y1: SPINE_Y, x2: RIGHT + 24, y2: SPINE_Y, class: "ov-spine", "marker-end": `url(#${arrow})` }));

    const embed = svg("g", { class: "ov-io" });
    embed.append(svg("rect", { x: 6, y: SPINE_Y - 26, width: 88, height: 52, rx: 6 }));
    embed.append(svg("text", { x: 50, y: SPINE_Y - 6, "text-anchor": "middle" }, t("overview.tokens")));
    embed.append(svg("text", { x: 50, y: SPINE_Y + 12, "text-anchor": "middle", translate: "no" }, "W_E + W_pos"));
    root.append(embed);
    const embedLens = svg("text", { x: 50, y: SPINE_Y + 44, "text-anchor": "middle", class: "ov-lens" }, "");
    root.append(embedLens);

    const heads = [];
    const norms = [];
    const blocks = [];
    const lens = [embedLens];
    const crosses = []; // [layer][head]: the crosses over switched-off heads
    const mlps = [];
    const mlpCrosses = [];
    const cross = [];
    for (let l = 0; l < L; l++) {
      const x0 = LEFT + l * bw;
      const g = svg("g", { "data-testid": "overview-block", "data-layer": l, class: "ov-block" });
      const frame = svg("rect", { x: x0 + 2, y: 4, width: bw - 4, height: H - 8, rx: 6, class: "ov-frame" });
      frame.addEventListener("click", () => set({ layer: l }));
      g.append(frame);
      g.append(svg("text", { x: x0 + bw / 2, y: 20, "text-anchor": "middle", class: "ov-label" }, t("overview.block", { layer: l })));
      // Attention: the heads in a small grid above the spine, branching off it and adding back.
      const gridW = cols * cell;
      const gx = x0 + (bw - gridW) / 2;
      const gy = 30;
      g.append(svg("path", { d: `M${x0 + 8},${SPINE_Y} C${x0 + 8},${gy + rows * cell + 8} ${gx},${gy + rows * cell + 8} ${gx},${gy + rows * cell}`, class: "ov-branch" }));
      g.append(svg("path", { d: `M${gx + gridW},${gy + rows * cell} C${gx + gridW},${gy + rows * cell + 8} ${x0 + bw / 2},${SPINE_Y - 20} ${x0 + bw / 2},${SPINE_Y - 7}`, class: "ov-branch" }));
      g.append(svg("circle", { cx: x0 + bw / 2, cy: SPINE_Y, r: 6, class: "ov-add" }));
      g.append(svg("text", { x: x0 + bw / 2, y: SPINE_Y + 4, "text-anchor": "middle", class: "ov-plus" }, "+"));
      const row = [];
      for (let h = 0; h < nh; h++) {
        const rect = svg("rect", {
          x: gx + (h % cols) * cell, y: gy + Math.floor(h / cols) * cell, width: cell - 1.5, height: cell - 1.5, rx: 2,
          "data-testid": "overview-head", "data-layer": l, "data-head": h, class: "ov-head",
        });
        rect.append(svg("title", {}, t("overview.head", { layer: l, head: h })));
        rect.addEventListener("click", (event) => {
          event.stopPropagation();
          if (state.ablate) {
            set({ interventions: toggled(state.interventions, headIntervention(l, h)) });
            return;
          }
          set({ layer: l, head: h });
          // The attention stage showing this run (on /compare, the one in this run's column).
          const scope = root.closest("[data-run-key]") || document;
          scope.querySelector('[data-stage="attention"]')?.scrollIntoView({ behavior: "smooth", block: "start" });
        });
        row.push(rect);
        g.append(rect);
        // The cross drawn over a switched-off head (hidden while it is on).
        const cx = gx + (h % cols) * cell;
        const cy = gy + Math.floor(h / cols) * cell;
        const s = cell - 1.5;
        cross.push(svg("path", { d: `M${cx + 2},${cy + 2} L${cx + s - 2},${cy + s - 2} M${cx + s - 2},${cy + 2} L${cx + 2},${cy + s - 2}`,
          class: "ov-cross", "data-testid": "overview-cross", "data-layer": l, "data-head": h, visibility: "hidden",
          stroke: "#c5221f", "stroke-width": 2, "pointer-events": "none" }));
      }
      heads.push(row);
      crosses.push(cross.splice(0));
      // The MLP: one node below the spine, adding back to it.
      const mx = x0 + bw / 2 + 10;
      g.append(svg("path", { d: `M${x0 + bw / 2 + 6},${SPINE_Y + 6} L${mx - 10},${SPINE_Y + 18}`, class: "ov-branch" }));
      const mlp = svg("rect", { x: mx - 22, y: SPINE_Y + 16, width: 34, height: 18, rx: 4, class: "ov-mlp" });
      mlp.append(svg("title", {}, t("overview.mlp", { layer: l, d_model: m.d_model, d_mlp: m.d_mlp })));
      g.append(mlp);
      g.append(svg("text", { x: mx - 5, y: SPINE_Y + 29, "text-anchor": "middle", class: "ov-mlp-label", translate: "no" }, "MLP"));
      mlps.push(mlp);
      mlpCrosses.push(svg("path", { d: `M${mx - 20},${SPINE_Y + 18} L${mx + 10},${SPINE_Y + 32} M${mx + 10},${SPINE_Y + 18} L${mx - 20},${SPINE_Y + 32}`,
        class: "ov-cross", "data-testid": "overview-mlp-cross", "data-layer": l, visibility: "hidden", stroke: "#c5221f", "stroke-width": 2, "pointer-events": "none" }));
      g.append(...crosses[l], mlpCrosses[l]);
      const norm = svg("text", { x: x0 + bw / 2, y: SPINE_Y + 56, "text-anchor": "middle", class: "ov-norm",
        "data-testid": "overview-norm", "data-layer": l }, "");
      g.append(norm);
      norms.push(norm);
      const guess = svg("text", { x: x0 + bw / 2, y: SPINE_Y + 76, "text-anchor": "middle", class: "ov-lens" }, "");
      g.append(guess);
      lens.push(guess);
      blocks.push(g);
      root.append(g);
    }
    root.append(svg("text", { x: LEFT - 4, y: SPINE_Y + 76, "text-anchor": "end", class: "ov-note" }, t("overview.lens_row")));
    root.append(svg("text", { x: LEFT - 4, y: SPINE_Y + 56, "text-anchor": "end", class: "ov-note" }, t("overview.norm_row")));

    const out = svg("g", { class: "ov-io" });
    out.append(svg("rect", { x: RIGHT + 28, y: SPINE_Y - 26, width: 62, height: 52, rx: 6 }));
    out.append(svg("text", { x: RIGHT + 59, y: SPINE_Y - 6, "text-anchor": "middle", translate: "no" }, "LN_f"));
    out.append(svg("text", { x: RIGHT + 59, y: SPINE_Y + 12, "text-anchor": "middle", translate: "no" }, "· W_Eᵀ"));
    root.append(out);
    root.append(svg("line", { x1: RIGHT + 90, y1: SPINE_Y, x2: RIGHT + 106, y2: SPINE_Y, class: "ov-out", "marker-end": `url(#${arrow})` }));
    const prediction = svg("g", { "data-testid": "overview-prediction", class: "ov-prediction" });
    const predText = svg("text", { x: RIGHT + 110, y: SPINE_Y + 4, class: "ov-pred" }, "");
    const predProb = svg("text", { x: RIGHT + 110, y: SPINE_Y + 22, class: "ov-note" }, "");
    prediction.append(predText, predProb);
    root.append(prediction);
    box.replaceChildren(root);
    drawn = { key: `${m.name}/${L}/${nh}`, heads, norms, blocks, lens, prediction, predText, predProb, crosses, mlps, mlpCrosses };
  }

  /** Mark what store.state.interventions switches off. */
  function markAblated() {
    if (!drawn) return;
    drawn.heads.forEach((row, l) => row.forEach((rect, h) => {
      const off = headAblated(state, l, h);
      rect.classList.toggle("ablated", off);
      drawn.crosses[l][h].setAttribute("visibility", off ? "visible" : "hidden");
    }));
    drawn.mlps.forEach((rect, l) => {
      const off = mlpAblated(state, l);
      rect.classList.toggle("ablated", off);
      drawn.mlpCrosses[l].setAttribute("visibility", off ? "visible" : "hidden");
    });
  }

  function paint() {
    if (!state.model) return;
    if (!drawn) build();
    markAblated();
    const run = selectRun(state, runKey);
    const i = detailToken(state, runKey);
    const kind = colour.value;
    if (kind !== "sharpness" && run && (!scores || scores.runId !== run.runId)) loadScores(run);
    for (let l = 0; l < drawn.blocks.length; l++) {
      drawn.blocks[l].classList.toggle("selected", l === state.layer);
      // The stream's length as it leaves block l (its input is the previous block's output).
      const norm = run && i != null && run.residNorms ? run.residNorms.data[(l + 1) * run.tokens.length + i] : null;
      drawn.norms[l].textContent = norm == null ? "" : norm.toFixed(1);
      if (norm == null) drawn.norms[l].removeAttribute("data-value");
      else drawn.norms[l].dataset.value = String(norm);
      const weights = run ? run.patterns[l] : null;
      for (let h = 0; h < drawn.heads[l].length; h++) {
        const rect = drawn.heads[l][h];
        rect.classList.toggle("selected", l === state.layer && h === state.head);
        const title = rect.firstChild;
        if (kind !== "sharpness") {
          paintScore(rect, title, l, h, kind, run);
          continue;
        }
        if (!weights || i == null) {
          rect.style.fill = "";
          rect.classList.add("unknown");
          rect.removeAttribute("data-value");
          title.textContent = t(run ? "overview.head_unloaded" : "overview.head", { layer: l, head: h });
          continue;
        }
        const { value, best, weight } = sharpness(slice(weights, h, i), i);
        rect.classList.remove("unknown");
        rect.style.fill = css(viridis(value));
        rect.dataset.value = String(value);
        title.textContent = t("overview.head_detail", { layer: l, head: h, from: visible(run.tokens[i].text),
          to: visible(run.tokens[best].text), best, weight: weight.toFixed(3), sharpness: value.toFixed(2) });
        rect.dataset.kind = "sharpness";
      }
    }
    caption.textContent = run && i != null
      ? t("overview.caption", { position: i, text: visible(run.tokens[i].text) })
      : t("overview.caption_empty");
    paintPrediction(run, i);
    scheduleLens(run, i);
  }

  /** A head coloured by its detector score for the whole prompt (GET /head-scores). */
  function paintScore(rect, title, layer, head, kind, run) {
    const value = scores && scores.body && run && scores.runId === run.runId ? scores.body[kind][layer][head] : undefined;
    rect.dataset.kind = kind;
    if (value == null) {
      rect.style.fill = "";
      rect.classList.add("unknown");
      rect.removeAttribute("data-value");
      title.textContent = value === null ? t("overview.head_score_none", { layer, head }) : t("overview.head", { layer, head });
      return;
    }
    rect.classList.remove("unknown");
    rect.style.fill = css(viridis(value));
    rect.dataset.value = String(value);
    title.textContent = t("overview.head_score", { layer, head, kind: colour.selectedOptions[0].textContent, score: value.toFixed(3) });
  }

  async function loadScores(run) {
    scores = { runId: run.runId, body: null };
    try {
      const body = await headScores(run.runId);
      if (scores && scores.runId === run.runId) {
        scores.body = body;
        paint();
      }
    } catch (error) {
      if (error.name !== "ApiError") console.error(error);
    }
  }

  function paintPrediction(run, i) {
    const { prediction, predText, predProb } = drawn;
    if (!run || i == null) {
      predText.textContent = "";
      predProb.textContent = "";
      prediction.removeAttribute("data-token-id");
      return;
    }
    if (i === run.tokens.length - 1) {
      const top = run.top[0];
      showPrediction(top.id, top.text, top.prob);
    }
  }

  function showPrediction(id, text, prob) {
    drawn.prediction.dataset.tokenId = String(id);
    drawn.predProb.textContent = t("overview.next", { prob: pct(prob) });
    drawn.predText.replaceChildren(svg("tspan", { translate: "no" }, `“${clip(text, 8)}”`), svg("title", {}, t("overview.prediction_title", { token: visible(text), id })));
  }

  function scheduleLens(run, i) {
    clearTimeout(lensTimer);
    // The lens row costs a request: only while the overview is on screen (else once it is).
    if (run && i != null && !screen.visible) screen.whenVisible(() => scheduleLens(selectRun(state, runKey), detailToken(state, runKey)));
    const key = run && i != null && screen.visible ? `${run.runId}/${i}` : null;
    if (key === lensKey) return;
    for (const t of drawn.lens) t.textContent = "";
    lensKey = key;
    if (!key) return;
    lensTimer = setTimeout(async () => {
      try {
        const lens = await logitLens(run.runId, { positions: [i], k: 1 });
        if (lensKey !== key) return;
        lens.cells.forEach((row, r) => {
          const top = row[0].top[0];
          if (drawn.lens[r]) {
            drawn.lens[r].replaceChildren(svg("tspan", { translate: "no" }, clip(top.text, 8)),
              svg("title", {}, t("overview.lens_title", { row: r === 0 ? t("overview.row_embed") : t("overview.block", { layer: r - 1 }),
                token: visible(top.text), prob: pct(top.prob) })));
          }
        });
        if (i !== run.tokens.length - 1) showPrediction(lens.final[0].id, lens.final[0].text, lens.final[0].prob);
      } catch (error) {
        if (lensKey === key) drawn.lens[0].textContent = t("overview.lens_unavailable");
      }
    }, LENS_DELAY_MS);
  }

  const screen = onScreen(root, "0px");
  view.on(colour, "change", paint);
  view.watch(["model"], () => { drawn = null; paint(); });
  view.watch(["runs", "shown", "hovered", "pinned", "layer", "head", "patternsLoaded"], paint);
  view.watch(["interventions"], markAblated);
  view.cleanup(() => clearTimeout(lensTimer), screen.stop);
  paint();
  return view.unmount;
}
