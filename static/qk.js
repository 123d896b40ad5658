/**
 * qk.js — stage 5 (Q·K step by step): for the token in focus and the selected layer and head,
 * its query vector, the keys of the tokens it may see, the dot products, ÷√d_head, the mask, the
 * softmax, and the weighted sum of the value vectors, checked against the model's own output z.
 * q, k, v and z come from the layer endpoint; the arithmetic in between is redone here in float64.
 * For a long prompt it says "loading layer N…" until the layer's pattern (the model's weights it
 * checks the softmax against) has arrived.
 */
import { getLayer, slice } from "./api.js";
import { drawStrip, el, fmt, visible } from "./colors.js";
import { later } from "./plots.js";
import { detailToken, pattern, patternError, state, subscribe } from "./state.js";

const view = document.getElementById("qk-view");
const FIELDS = ["attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z"];
const MAX_ROWS = 64;

function strip(values, limit, label) {
  const canvas = el("canvas", { class: "strip", role: "img", "aria-label": label });
  drawStrip(canvas, values, { limit });
  const preview = Array.from(values.slice(0, 6), (v) => fmt(v, 2)).join(", ");
  canvas.title = `${label}: [${preview}, …] (${values.length} numbers)`;
  return canvas;
}

function maxAbs(...vectors) {
  let m = 0;
  for (const v of vectors) for (const x of v) m = Math.max(m, Math.abs(x));
  return m || 1;
}

async function draw() {
  const run = state.run;
  const i = detailToken();
  if (!run || i == null) return;
  const { layer, head } = state;
  const modelPattern = pattern(layer); // the model's own weights, to check the softmax against
  if (!modelPattern) {
    // A long prompt's layer is on its way: state.patternsLoaded brings us back here.
    const error = patternError(layer);
    view.replaceChildren(el("p", { class: error ? "error" : "muted", text: error ? `Could not load layer ${layer}: ${error.message}` : `Loading layer ${layer}…` }));
    return;
  }
  const t = await getLayer(run.runId, layer, FIELDS);
  if (state.run !== run || detailToken() !== i || state.layer !== layer || state.head !== head) return;
  const q = slice(t["attn.hook_q"], i, head);
  const d = q.length;
  const n = run.tokens.length;
  const scale = Math.sqrt(d);
  const dots = [];
  for (let j = 0; j < n; j++) {
    const k = slice(t["attn.hook_k"], j, head);
    let s = 0;
    for (let c = 0; c < d; c++) s += q[c] * k[c];
    dots.push(s);
  }
  const scaled = dots.map((s) => s / scale);
  const visibleScores = scaled.slice(0, i + 1);
  const m = Math.max(...visibleScores);
  const exps = visibleScores.map((s) => Math.exp(s - m));
  const total = exps.reduce((a, b) => a + b, 0);
  const weights = exps.map((e) => e / total);
  const z = new Float64Array(d);
  for (let j = 0; j <= i; j++) {
    const v = slice(t["attn.hook_v"], j, head);
    for (let c = 0; c < d; c++) z[c] += weights[j] * v[c];
  }
  const modelZ = slice(t["attn.hook_z"], i, head);
  const modelRow = slice(modelPattern, head, i);
  let zDiff = 0;
  let wDiff = 0;
  for (let c = 0; c < d; c++) zDiff = Math.max(zDiff, Math.abs(z[c] - modelZ[c]));
  for (let j = 0; j <= i; j++) wDiff = Math.max(wDiff, Math.abs(weights[j] - modelRow[j]));

  const kLimit = maxAbs(q, ...Array.from({ length: Math.min(n, MAX_ROWS) }, (_, j) => slice(t["attn.hook_k"], j, head)));
  const vLimit = maxAbs(modelZ, ...Array.from({ length: Math.min(i + 1, MAX_ROWS) }, (_, j) => slice(t["attn.hook_v"], j, head)));
  const name = visible(run.tokens[i].text);

  const head_ = el("div", { class: "qk-query" },
    el("span", { class: "qk-label", text: `query q of “${name}” (token ${i}), layer ${layer} head ${head}:` }),
    strip(q, kLimit, "query vector"),
    el("span", { class: "muted", text: ` ${d} numbers · √d_head = ${scale.toFixed(3)}` }));

  // The rows to show: every visible key (most recent first would hide the start: keep order), capped.
  let shown = Array.from({ length: i + 1 }, (_, j) => j);
  let note = null;
  if (shown.length > MAX_ROWS) {
    shown = shown.slice().sort((a, b) => weights[b] - weights[a]).slice(0, MAX_ROWS).sort((a, b) => a - b);
    note = `Showing the ${MAX_ROWS} keys with the largest weights of ${i + 1}.`;
  }
  const futureShown = Math.min(n - 1 - i, 2);
  const table = el("table", { class: "qk-table" });
  table.append(el("thead", {}, el("tr", {},
    ...["j", "token", "key k_j", "q·k_j", "÷√d", "mask", "softmax a_j", "value v_j"].map((h) => el("th", { scope: "col", text: h })))));
  const body = el("tbody");
  for (const j of shown) {
    const w = weights[j];
    body.append(el("tr", { class: j === i ? "self" : "" },
      el("td", { class: "num", text: String(j) }),
      el("td", { class: "tok", text: visible(run.tokens[j].text) }),
      el("td", {}, strip(slice(t["attn.hook_k"], j, head), kLimit, `key of token ${j}`)),
      el("td", { class: "num", text: fmt(dots[j]) }),
      el("td", { class: "num", text: fmt(scaled[j]) }),
      el("td", { class: "num muted", text: "+0" }),
      el("td", { class: "num weight" },
        el("span", { class: "wbar", style: `width:${(w * 100).toFixed(1)}%` }),
        el("span", { class: "wval", text: fmt(w, 4) })),
      el("td", {}, strip(slice(t["attn.hook_v"], j, head), vLimit, `value of token ${j}`))));
  }
  for (let j = i + 1; j <= i + futureShown; j++) {
    body.append(el("tr", { class: "future" },
      el("td", { class: "num", text: String(j) }),
      el("td", { class: "tok", text: visible(run.tokens[j].text) }),
      el("td", {}, strip(slice(t["attn.hook_k"], j, head), kLimit, `key of token ${j}`)),
      el("td", { class: "num", text: fmt(dots[j]) }),
      el("td", { class: "num", text: fmt(scaled[j]) }),
      el("td", { class: "num", text: "−∞" }),
      el("td", { class: "num", text: "0" }),
      el("td", { class: "muted", text: "future: masked" })));
  }
  if (n - 1 - i > futureShown) {
    body.append(el("tr", { class: "future" }, el("td", { colspan: 8, class: "muted", text: `… ${n - 1 - i - futureShown} more future tokens, all masked` })));
  }
  table.append(body);

  const result = el("div", { class: "qk-result" },
    el("div", {}, el("span", { class: "qk-label", text: "z = Σ a_j v_j, computed here: " }), strip(z, vLimit, "weighted sum of values")),
    el("div", {}, el("span", { class: "qk-label", text: "z from the model: " }), strip(modelZ, vLimit, "the model's z")),
    el("p", { class: "numbers", text:
      `Largest difference: ${zDiff.toExponential(1)} for z, ${wDiff.toExponential(1)} between these softmax weights and the model's pattern ` +
      "(sent as float16, so about 1e-3). Strips: blue negative, red positive; hover one to read its first numbers." }));

  view.replaceChildren(head_, el("div", { class: "qk-scroll" }, table), note ? el("p", { class: "muted", text: note }) : "", result);
}

const soon = later(() => draw().catch((error) => {
  view.replaceChildren(el("p", { class: "error", text: `Could not load layer ${state.layer}: ${error.message}` }));
}), 60);

export function init() {
  subscribe(["run", "hovered", "pinned", "layer", "head", "patternsLoaded"], soon);
}
