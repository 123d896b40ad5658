/**
 * mlp.js — stage 6 (MLP): the shapes d_model → d_mlp → d_model, the GELU curve with the focus
 * token's d_mlp pre-activations plotted on it (mlp.hook_pre against mlp.hook_post, both from the
 * server), and the most activated neurons for that token in the selected layer.
 */
import { getLayer, slice } from "./api.js";
import { el, fmt, visible } from "./colors.js";
import { baseLayout, config, later, plotly } from "./plots.js";
import { detailToken, state, subscribe } from "./state.js";

const plot = document.getElementById("mlp-gelu");
const list = document.getElementById("mlp-neurons");
const shapes = document.getElementById("mlp-shapes");
const title = document.getElementById("mlp-title");

/** GPT-2's GELU (the tanh approximation, "gelu_new"). */
export function gelu(u) {
  return 0.5 * u * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (u + 0.044715 * u * u * u)));
}

function drawShapes() {
  const m = state.model;
  if (!m) return;
  const box = (cls, big, small) => el("div", { class: `shape ${cls}` }, el("strong", { text: big }), el("span", { text: small }));
  shapes.replaceChildren(
    box("d", String(m.d_model), "LN(x): one token"),
    el("span", { class: "arrow", text: "→" }),
    box("w", `× W_in`, `${m.d_model} × ${m.d_mlp}`),
    el("span", { class: "arrow", text: "→" }),
    box("d", String(m.d_mlp), "neurons, then GELU"),
    el("span", { class: "arrow", text: "→" }),
    box("w", `× W_out`, `${m.d_mlp} × ${m.d_model}`),
    el("span", { class: "arrow", text: "→" }),
    box("d", String(m.d_model), "added to the residual stream"),
  );
}

async function draw() {
  const run = state.run;
  const Plotly = plotly();
  const i = detailToken();
  if (!run || i == null || !Plotly) return;
  const layer = state.layer;
  title.textContent = `layer ${layer}`;
  const t = await getLayer(run.runId, layer, ["mlp.hook_pre", "mlp.hook_post"]);
  if (state.run !== run || detailToken() !== i || state.layer !== layer) return;
  const pre = slice(t["mlp.hook_pre"], i);
  const post = slice(t["mlp.hook_post"], i);
  let lo = -4;
  let hi = 4;
  for (const u of pre) { lo = Math.min(lo, u); hi = Math.max(hi, u); }
  const xs = Array.from({ length: 241 }, (_, k) => lo + ((hi - lo) * k) / 240);
  const ids = Array.from(pre, (_, k) => k);
  const top = ids.slice().sort((a, b) => post[b] - post[a]).slice(0, 10);
  const name = visible(run.tokens[i].text);
  await Plotly.react(plot, [
    { type: "scatter", mode: "lines", x: xs, y: xs.map(gelu), name: "GELU", line: { color: "#555", width: 2 }, hoverinfo: "skip" },
    {
      type: "scatter", mode: "markers", x: Array.from(pre), y: Array.from(post), name: `“${name}”: ${pre.length} neurons`,
      marker: { color: "#0072B2", size: 5, opacity: 0.45 },
      customdata: ids,
      hovertemplate: "neuron %{customdata}<br>pre %{x:.3f} → GELU %{y:.3f}<extra></extra>",
    },
    {
      type: "scatter", mode: "markers", x: top.map((k) => pre[k]), y: top.map((k) => post[k]), name: "most active",
      marker: { color: "rgba(0,0,0,0)", size: 11, line: { color: "#111", width: 2 } },
      customdata: top,
      hovertemplate: "neuron %{customdata}<br>pre %{x:.3f} → GELU %{y:.3f}<extra></extra>",
    },
  ], baseLayout({
    height: state.presenter ? 360 : 300,
    margin: { l: 55, r: 10, t: 10, b: 45 },
    xaxis: { title: { text: "pre-activation (mlp.hook_pre)" }, zeroline: true },
    yaxis: { title: { text: "after GELU (mlp.hook_post)" }, zeroline: true },
    legend: { x: 0.01, y: 0.99, bgcolor: "rgba(255,255,255,0.8)" },
    showlegend: true,
  }), config);
  let negative = 0;
  for (const u of post) if (u < 0) negative++;
  list.replaceChildren(...top.map((k) => el("li", {}, el("span", { class: "nid", text: `#${k}` }),
    ` pre ${fmt(pre[k])} → ${fmt(post[k])}`)));
  list.setAttribute("aria-label", `Most active neurons of token ${i}`);
  list.dataset.negative = String(negative);
}

const soon = later(() => draw().catch((error) => console.error(error)), 80);

export function init() {
  subscribe(["model"], drawShapes);
  subscribe(["run", "hovered", "pinned", "layer", "presenter"], soon);
  drawShapes();
}
