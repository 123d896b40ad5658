/**
 * embedding.js — stage 3: for the token in focus, its row of the token embedding W_E, its
 * position's row of W_P, and their sum x₀ (the residual stream entering layer 0), as three
 * strips of d_model cells with their norms. All three vectors come from the server.
 */
import { getEmbeddings, slice } from "./api.js";
import { divergingScale, plotlyText, visible } from "./colors.js";
import { baseLayout, config, later, plotly } from "./plots.js";
import { detailToken, state, subscribe } from "./state.js";

const plot = document.getElementById("embedding-plot");
const norms = document.getElementById("embedding-norms");

const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

async function draw() {
  const run = state.run;
  const Plotly = plotly();
  const i = detailToken();
  if (!run || i == null || !Plotly) return;
  const t = await getEmbeddings(run.runId);
  if (state.run !== run || detailToken() !== i) return;
  const e = slice(t.hook_embed, i);
  const p = slice(t.hook_pos_embed, i);
  const x = slice(t["blocks.0.hook_resid_pre"], i);
  let limit = 0;
  for (const v of [e, p, x]) for (const a of v) limit = Math.max(limit, Math.abs(a));
  const token = run.tokens[i];
  const rows = [
    `token embedding W_E[${token.id}]`,
    `position embedding W_P[${i}]`,
    "input vector x₀ = sum",
  ];
  const names = [
    `W_E[${token.id}] (“${plotlyText(visible(token.text))}”)`,
    `W_P[${i}]`,
    "x₀",
  ];
  await Plotly.react(plot, [{
    type: "heatmap",
    z: [Array.from(e), Array.from(p), Array.from(x)],
    y: rows,
    customdata: [0, 1, 2].map((r) => Array(e.length).fill(names[r])),
    colorscale: divergingScale,
    zmin: -limit,
    zmax: limit,
    colorbar: { thickness: 10, len: 1 },
    hovertemplate: "%{customdata} · dimension %{x}: %{z:.4f}<extra></extra>",
  }], baseLayout({
    height: state.presenter ? 230 : 190,
    margin: { l: 210, r: 10, t: 6, b: 36 },
    xaxis: { title: { text: `dimension (0 … ${e.length - 1})` }, showgrid: false, zeroline: false, automargin: true },
    yaxis: { autorange: "reversed", showgrid: false, automargin: true },
  }), config);
  let diff = 0;
  for (let c = 0; c < e.length; c++) diff = Math.max(diff, Math.abs(e[c] + p[c] - x[c]));
  norms.textContent = `Token ${i} “${visible(token.text)}” (id ${token.id}): ‖W_E[id]‖ = ${norm(e).toFixed(3)}, ‖W_P[${i}]‖ = ${norm(p).toFixed(3)}, ` +
    `‖x₀‖ = ${norm(x).toFixed(3)} · largest |W_E + W_P − x₀| = ${diff.toExponential(1)} (the sum checks out). Colour: blue negative, red positive.`;
}

const soon = later(() => draw().catch((error) => {
  norms.textContent = `Could not load the embeddings: ${error.message}`;
}), 40);

export function init() {
  subscribe(["run", "hovered", "pinned", "presenter"], soon);
}
