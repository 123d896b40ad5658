/**
 * attribution.js — "Why this token and not that one": direct logit attribution of the shown run
 * (GET /api/runs/{id}/attribution?target=&baseline=).
 *
 *   - The two candidates are the store's (selectCandidates): picked by clicking the output bars
 *     (the clicked token is the target, the one clicked before it the baseline), by default the
 *     run's two most likely tokens. Two selects show them and change them (keyboard).
 *   - `attribution-sum`: logit(target) − logit(baseline) and the sum of the parts (data-logit-diff,
 *     data-total, data-target, data-baseline: the API's numbers).
 *   - `attribution-heatmap`: a Plotly heatmap, layers × heads, of the heads' parts (z is the API's
 *     `heads` as sent); the selected head is outlined. Clicking a cell selects that layer and head.
 *   - `attribution-bars`: the MLPs' and the attention biases' parts per layer, the token and
 *     position embeddings' and the final LayerNorm bias's.
 *   - Asked for only while the stage is on screen (one request per run and pair, kept in api.js's cache).
 *
 * mount(root, store, runKey) -> unmount
 */
import { explain, selectHead } from "./actions.js";
import { attribution } from "./api.js";
import { el, mountView, showError, withData } from "./dom.js";
import { fmt, pct, visible } from "./format.js";
import { t } from "./i18n.js";
import { onScreen } from "./lazy.js";
import { baseLayout, config, divergingCells, plotly } from "./plots.js";
import { selectCandidates, selectRun } from "./store.js";

const quoted = (text) => `“${visible(text)}”`;

export function mount(root, store, runKey) {
  const state = store.state;
  const view = mountView(root, store);
  const { target, baseline, status, sum, heatmap, bars, error: errorBox } = view.parts;
  let runId = null; // the run the selects were filled from
  let answer = null; // {key, body, tokens: {target, baseline}}
  let asked = null; // the key asked for last
  let plotted = false;
  let clickWired = false;

  function fillSelects(run) {
    const options = (select) => {
      select.replaceChildren(...run.top.map((top) => el("option", { value: top.id }, `${quoted(top.text)} ${pct(top.prob)}`)));
    };
    options(target);
    options(baseline);
  }

  /** A select changed: the pair it makes becomes the store's. */
  function choose() {
    const run = selectRun(state, runKey);
    if (!run) return;
    store.set({ candidates: { ...state.candidates, [runKey]: { runId: run.runId, target: Number(target.value), baseline: Number(baseline.value) } } });
  }

  function hide() {
    sum.hidden = true;
    heatmap.hidden = true;
    bars.hidden = true;
  }

  async function load() {
    const run = selectRun(state, runKey);
    if (!run || !run.top.length) return;
    if (run.runId !== runId) {
      runId = run.runId;
      fillSelects(run);
    }
    const { target: a, baseline: b } = selectCandidates(state, runKey);
    target.value = String(a);
    baseline.value = String(b);
    const key = `${run.runId}|${a}|${b}`;
    if (key === asked) return;
    asked = key;
    showError(errorBox, null);
    if (a === b) {
      hide();
      status.textContent = t("attribution.same");
      return;
    }
    status.textContent = t("attribution.loading");
    const names = Object.fromEntries(run.top.map((top) => [top.id, top.text]));
    try {
      const body = await attribution(run.runId, a, b);
      if (!view.alive || asked !== key) return;
      answer = { key, body, tokens: { target: names[a], baseline: names[b] } };
      status.textContent = "";
      draw();
    } catch (error) {
      if (asked !== key || !view.alive) return;
      asked = null;
      status.textContent = "";
      hide();
      showError(errorBox, error && error.name === "ApiError" ? explain(error) : error);
    }
  }

  function outline() {
    return [{ type: "rect", xref: "x", yref: "y", x0: state.head - 0.5, x1: state.head + 0.5, y0: state.layer - 0.5,
      y1: state.layer + 0.5, line: { color: "#1b1f24", width: 2 } }];
  }

  async function draw() {
    if (!answer) return;
    const { body, tokens } = answer;
    sum.dataset.logitDiff = String(body.logit_diff);
    sum.dataset.total = String(body.total);
    sum.dataset.target = String(body.target);
    sum.dataset.baseline = String(body.baseline);
    sum.replaceChildren(...withData(t("attribution.sum", { diff: fmt(body.logit_diff, 3), total: fmt(body.total, 3) }),
      { target: quoted(tokens.target), baseline: quoted(tokens.baseline) }));
    sum.hidden = false;
    const Plotly = plotly();
    if (!Plotly) return;
    const grid = body.heads;
    const L = grid.length;
    const nh = grid[0]?.length ?? 0;
    const limit = Math.max(1e-6, ...grid.flat().map(Math.abs));
    const presenter = state.presenter;
    heatmap.hidden = false;
    bars.hidden = false;
    await Plotly.react(heatmap, [{
      type: "heatmap",
      z: grid,
      x: Array.from({ length: nh }, (_, h) => h),
      y: Array.from({ length: L }, (_, l) => l),
      text: grid.map((row, layer) => row.map((value, head) => t("attribution.hover_head", { layer, head, value: fmt(value, 3) }))),
      hovertemplate: "%{text}<extra></extra>",
      reversescale: false,
      ...divergingCells(limit),
    }], baseLayout(presenter, {
      height: Math.min(560, 110 + L * (presenter ? 34 : 26)),
      margin: { l: 50, r: 10, t: 10, b: 50 },
      xaxis: { tickvals: Array.from({ length: nh }, (_, h) => h), ticktext: Array.from({ length: nh }, (_, h) => t("attribution.head_tick", { head: h })),
        title: { text: t("attribution.axis_head") }, fixedrange: true },
      yaxis: { tickvals: Array.from({ length: L }, (_, l) => l), ticktext: Array.from({ length: L }, (_, l) => t("attribution.layer_tick", { layer: l })),
        autorange: "reversed", title: { text: t("attribution.axis_layer") }, fixedrange: true },
      shapes: outline(),
    }), config);
    if (!view.alive) return;
    plotted = true;
    const layers = Array.from({ length: L }, (_, l) => l);
    const trace = (name, labels, values, color) => ({ type: "bar", name, x: labels, y: values, marker: { color },
      hovertemplate: "%{x}: %{y:.3f}<extra></extra>" });
    await Plotly.react(bars, [
      trace(t("attribution.legend_other"), [t("attribution.bar_embed"), t("attribution.bar_pos_embed")], [body.embed, body.pos_embed], "#6b7280"),
      trace(t("attribution.legend_attn_bias"), layers.map((l) => t("attribution.bar_attn_bias", { layer: l })), body.attn_bias, "#e69f00"),
      trace(t("attribution.legend_mlp"), layers.map((l) => t("attribution.bar_mlp", { layer: l })), body.mlp, "#0072b2"),
      trace(t("attribution.legend_other"), [t("attribution.bar_ln_final_bias")], [body.ln_final_bias], "#6b7280"),
    ].map((x, i) => (i === 3 ? { ...x, showlegend: false } : x)), baseLayout(presenter, {
      height: presenter ? 340 : 280,
      margin: { l: 60, r: 10, t: 36, b: 110 },
      barmode: "relative",
      legend: { orientation: "h", x: 0, y: 1, yanchor: "bottom" },
      xaxis: { tickangle: -45, fixedrange: true },
      yaxis: { title: { text: t("attribution.axis_part") }, zeroline: true, fixedrange: true },
    }), config);
    if (!view.alive || clickWired) return;
    clickWired = true;
    heatmap.on("plotly_click", (event) => {
      const point = event.points && event.points[0];
      if (point) selectHead(store, Number(point.y), Number(point.x));
    });
  }

  const screen = onScreen(root);
  const refresh = () => {
    const run = selectRun(state, runKey);
    const picked = selectCandidates(state, runKey);
    // The selects follow a pick on the output bars at once; the parts are asked for on screen.
    if (run && run.runId === runId && picked) {
      target.value = String(picked.target);
      baseline.value = String(picked.baseline);
    }
    if (run && run.runId !== runId && !screen.visible) status.textContent = t("attribution.waiting");
    screen.whenVisible(load);
  };
  view.on(target, "change", choose);
  view.on(baseline, "change", choose);
  view.watch(["runs", "shown", "candidates"], refresh);
  view.watch(["presenter"], () => { if (answer) draw(); });
  view.watch(["layer", "head"], () => {
    const Plotly = plotly();
    if (Plotly && plotted && !heatmap.hidden) Plotly.relayout(heatmap, { shapes: outline() });
  });
  view.cleanup(screen.stop);
  view.plots(heatmap, bars);
  refresh();
  return view.unmount;
}
