/**
 * qk.js — stage 5 (Q·K step by step): for the token in focus and the selected layer and head,
 * its query vector, the keys of the tokens it may see, the dot products, ÷√d_head, the mask, the
 * softmax, and the weighted sum of the value vectors, checked against the model's own output z.
 * q, k, v and z come from the layer endpoint; the arithmetic in between is redone here in float64.
 * For a long prompt it says "loading layer N…" until the layer's pattern (the model's weights it
 * checks the softmax against) has arrived.
 *
 * mount(root, store, runKey): draws the run shown under `runKey` into the Q·K stage `root`;
 * returns the unmount function.
 */
import { getLayer, slice } from "./api.js";
import { drawStrip } from "./colors.js";
import { el, mountView, withData } from "./dom.js";
import { fmt, visible } from "./format.js";
import { hookName } from "./hooks.js";
import { t, tn } from "./i18n.js";
import { later } from "./lazy.js";
import { detailToken, selectPattern, selectPatternError, selectRun } from "./store.js";

const FIELDS = ["attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z"];
const MAX_ROWS = 64;

/** A symbol or formula, kept out of translation. */
function symbol(text) {
  return el("span", { translate: "no", text });
}

function strip(values, limit, label) {
  const canvas = el("canvas", { class: "strip", role: "img", "aria-label": label });
  drawStrip(canvas, values, { limit });
  const preview = Array.from(values.slice(0, 6), (v) => fmt(v, 2)).join(", ");
  canvas.title = tn("qk.strip_title", values.length, { label, preview });
  return canvas;
}

function maxAbs(...vectors) {
  let m = 0;
  for (const v of vectors) for (const x of v) m = Math.max(m, Math.abs(x));
  return m || 1;
}

/** The table's header: each column a word in the page's language and a symbol kept as written
 * (either may be absent). */
function header() {
  const columns = [[null, "j"], [t("qk.col_token"), null], [t("qk.col_key"), "k_j"], [null, "q·k_j"], [null, "÷√d"],
    [t("qk.col_mask"), null], [t("qk.col_softmax"), "a_j"], [t("qk.col_value"), "v_j"]];
  const cells = columns.map(([word, sign]) => el("th", { scope: "col" }, word, word && sign ? " " : null, sign ? symbol(sign) : null));
  return el("thead", {}, el("tr", {}, ...cells));
}

export function mount(root, store, runKey) {
  const state = store.state;
  const view = mountView(root, store);
  const box = view.parts.view;

  async function draw() {
    const run = selectRun(state, runKey);
    const i = detailToken(state, runKey);
    if (!run || i == null) return;
    const { layer, head } = state;
    const modelPattern = selectPattern(state, runKey, layer); // the model's own weights, to check the softmax against
    if (!modelPattern) {
      // A long prompt's layer is on its way: the patternsLoaded bump brings us back here.
      store.requestPattern(runKey, layer);
      const error = selectPatternError(state, runKey, layer);
      box.replaceChildren(el("p", { class: error ? "error" : "muted",
        text: error ? t("page.layer_failed", { layer, error: error.message }) : t("page.loading_layer", { layer }) }));
      return;
    }
    const tensors = await getLayer(run.runId, layer, FIELDS);
    if (!view.alive || selectRun(state, runKey) !== run || detailToken(state, runKey) !== i || state.layer !== layer || state.head !== head) return;
    const [hookQ, hookK, hookV, hookZ] = FIELDS.map((name) => tensors[hookName(name, layer)]); // each [pos, head, d_head]
    const q = slice(hookQ, i, head);
    const d = q.length;
    const n = run.tokens.length;
    const scale = Math.sqrt(d);
    const dots = [];
    for (let j = 0; j < n; j++) {
      const k = slice(hookK, j, head);
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
      const v = slice(hookV, j, head);
      for (let c = 0; c < d; c++) z[c] += weights[j] * v[c];
    }
    const modelZ = slice(hookZ, i, head);
    const modelRow = slice(modelPattern, head, i);
    let zDiff = 0;
    let wDiff = 0;
    for (let c = 0; c < d; c++) zDiff = Math.max(zDiff, Math.abs(z[c] - modelZ[c]));
    for (let j = 0; j <= i; j++) wDiff = Math.max(wDiff, Math.abs(weights[j] - modelRow[j]));

    const kLimit = maxAbs(q, ...Array.from({ length: Math.min(n, MAX_ROWS) }, (_, j) => slice(hookK, j, head)));
    const vLimit = maxAbs(modelZ, ...Array.from({ length: Math.min(i + 1, MAX_ROWS) }, (_, j) => slice(hookV, j, head)));

    const query = el("div", { class: "qk-query" },
      el("span", { class: "qk-label" }, ...withData(t("qk.query_label", { i, layer, head }), { token: visible(run.tokens[i].text) })),
      strip(q, kLimit, t("qk.query_vector")),
      el("span", { class: "muted" }, ` ${tn("qk.numbers", d)} · `, symbol(`√d_head = ${scale.toFixed(3)}`)));

    // The rows to show: every visible key (most recent first would hide the start: keep order), capped.
    let shown = Array.from({ length: i + 1 }, (_, j) => j);
    let note = null;
    if (shown.length > MAX_ROWS) {
      shown = shown.slice().sort((a, b) => weights[b] - weights[a]).slice(0, MAX_ROWS).sort((a, b) => a - b);
      note = t("qk.capped", { shown: MAX_ROWS, n: i + 1 });
    }
    const futureShown = Math.min(n - 1 - i, 2);
    // What every row starts with, visible or future: j, its token, its key, q·k_j and ÷√d.
    const row = (j, cls, ...rest) => el("tr", { class: cls },
      el("td", { class: "num", text: String(j) }),
      el("td", { class: "tok", translate: "no", text: visible(run.tokens[j].text) }),
      el("td", {}, strip(slice(hookK, j, head), kLimit, t("qk.key_label", { j }))),
      el("td", { class: "num", text: fmt(dots[j]) }),
      el("td", { class: "num", text: fmt(scaled[j]) }),
      ...rest);
    const body = el("tbody");
    for (const j of shown) {
      const w = weights[j];
      body.append(row(j, j === i ? "self" : "",
        el("td", { class: "num muted", text: "+0" }),
        el("td", { class: "num weight" },
          el("span", { class: "wbar", style: `width:${(w * 100).toFixed(1)}%` }),
          el("span", { class: "wval", text: fmt(w, 4) })),
        el("td", {}, strip(slice(hookV, j, head), vLimit, t("qk.value_label", { j })))));
    }
    for (let j = i + 1; j <= i + futureShown; j++) {
      body.append(row(j, "future",
        el("td", { class: "num", text: "−∞" }),
        el("td", { class: "num", text: "0" }),
        el("td", { class: "muted", text: t("qk.future_masked") })));
    }
    if (n - 1 - i > futureShown) {
      body.append(el("tr", { class: "future" }, el("td", { colspan: 8, class: "muted", text: tn("qk.more_future", n - 1 - i - futureShown) })));
    }
    const table = el("table", { class: "qk-table" }, header(), body);

    const differences = t("qk.differences", { z_diff: zDiff.toExponential(1), w_diff: wDiff.toExponential(1) });
    const result = el("div", { class: "qk-result" },
      el("div", {}, el("span", { class: "qk-label" }, ...withData(t("qk.z_computed"), { formula: "z = Σ a_j v_j" })),
        strip(z, vLimit, t("qk.z_computed_label"))),
      el("div", {}, el("span", { class: "qk-label" }, ...withData(t("qk.z_model"), { z: "z" })), strip(modelZ, vLimit, t("qk.z_model_label"))),
      el("p", { class: "numbers" }, ...withData(differences, { z: "z", dtype: "float16", tolerance: "1e-3" }), " ", t("qk.strips")));

    box.replaceChildren(query, el("div", { class: "qk-scroll", tabindex: "0", role: "region", "aria-label": t("qk.table_label") }, table), note ? el("p", { class: "muted", text: note }) : "", result);
  }

  const soon = later(() => draw().catch((error) => {
    if (error.name !== "ApiError") console.error(error); // a bug, not the server's answer
    if (view.alive) box.replaceChildren(el("p", { class: "error", text: t("page.layer_failed", { layer: state.layer, error: error.message }) }));
  }), 60);

  // The layer's q, k, v and z are asked for at once, not after the debounce: sent together with
  // the pattern's request (tokens view), the server computes the layer once for both.
  const prefetch = () => {
    const run = selectRun(state, runKey);
    if (run) getLayer(run.runId, state.layer, FIELDS).catch(() => {}); // draw() reports errors
  };
  view.watch(["runs", "shown", "layer"], prefetch);
  view.watch(["runs", "shown", "hovered", "pinned", "layer", "head", "patternsLoaded"], soon);
  view.cleanup(soon.cancel);
  if (selectRun(state, runKey)) soon();
  return view.unmount;
}
