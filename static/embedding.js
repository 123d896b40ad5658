/**
 * embedding.js — stage 3: for the token in detail (pinned, hovered, else the last), its row of the
 * token embedding W_E, its position's row of W_pos, and their sum x₀ (hook_embed, hook_pos_embed
 * and blocks.0.hook_resid_pre, each [pos, d_model], from the server), as three strips of d_model
 * cells, with their norms and a check that the sum adds up.
 *
 * mount(root, store, runKey) -> unmount
 */
import { getEmbeddings, slice } from "./api.js";
import { divergingScale } from "./colors.js";
import { mountView, withData } from "./dom.js";
import { fmt, plotlyText, visible } from "./format.js";
import { hookName } from "./hooks.js";
import { t } from "./i18n.js";
import { later } from "./lazy.js";
import { baseLayout, config, plotly } from "./plots.js";
import { detailToken, selectDetail, selectRun } from "./store.js";

const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

export function mount(root, store, runKey) {
  const view = mountView(root, store);
  const { plot, norms } = view.parts;

  async function draw() {
    const s = store.state;
    const detail = selectDetail(s, runKey);
    const Plotly = plotly();
    if (!detail || !Plotly) return;
    const { run, i } = detail;
    const tensors = await getEmbeddings(run.runId);
    if (selectRun(store.state, runKey) !== run || detailToken(store.state, runKey) !== i) return;
    const e = slice(tensors.hook_embed, i);
    const p = slice(tensors.hook_pos_embed, i);
    const x = slice(tensors[hookName("hook_resid_pre", 0)], i);
    let limit = 0;
    for (const v of [e, p, x]) for (const a of v) limit = Math.max(limit, Math.abs(a));
    const token = run.tokens[i];
    const WE = `W_E[${token.id}]`;
    const WP = `W_pos[${i}]`;
    const rows = [t("embedding.row_token", { name: WE }), t("embedding.row_position", { name: WP }), t("embedding.row_sum", { name: "x₀" })];
    const names = [`${WE} (“${plotlyText(visible(token.text))}”)`, WP, "x₀"];
    await Plotly.react(plot, [{
      type: "heatmap",
      z: [Array.from(e), Array.from(p), Array.from(x)],
      y: rows,
      customdata: names.map((name) => Array(e.length).fill(name)),
      colorscale: divergingScale,
      zmin: -limit,
      zmax: limit,
      colorbar: { thickness: 10, len: 1 },
      hovertemplate: `${t("embedding.hover", { name: "%{customdata}", dimension: "%{x}", value: "%{z:.4f}" })}<extra></extra>`,
    }], baseLayout(s.presenter, {
      height: s.presenter ? 230 : 190,
      margin: { l: 210, r: 10, t: 6, b: 36 },
      xaxis: { title: { text: t("embedding.x_title", { last: e.length - 1 }) }, showgrid: false, zeroline: false, automargin: true },
      yaxis: { autorange: "reversed", showgrid: false, automargin: true },
    }), config);
    let diff = 0;
    for (let c = 0; c < e.length; c++) diff = Math.max(diff, Math.abs(e[c] + p[c] - x[c]));
    // The formulas are symbols, not words: kept out of translation (withData marks them translate=no).
    norms.replaceChildren(...withData(t("embedding.norms", { position: i, text: visible(token.text), id: token.id,
                                                             diff: diff.toExponential(1) }), {
      norms: `‖${WE}‖ = ${fmt(norm(e))}, ‖${WP}‖ = ${fmt(norm(p))}, ‖x₀‖ = ${fmt(norm(x))}`,
      check: "|W_E + W_pos − x₀|",
    }));
  }

  const soon = later(() => draw().catch((error) => {
    norms.textContent = t("embedding.failed", { error: error.message });
  }), 40);
  view.watch(["runs", "shown", "hovered", "pinned", "presenter"], soon);
  view.cleanup(soon.cancel);
  view.plots(plot);
  soon();
  return view.unmount;
}
