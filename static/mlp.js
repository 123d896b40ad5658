/**
 * mlp.js — stage 6 (MLP): the shapes d_model → d_mlp → d_model, the GELU curve with the focus
 * token's d_mlp pre-activations plotted on it (mlp.hook_pre against mlp.hook_post, both from the
 * server), and the most activated neurons for that token in the selected layer.
 */
import { getLayer, slice } from "./api.js";
import { el, fmt, plotlyText, visible } from "./colors.js";
import { baseLayout, config, later, plotly } from "./plots.js";
import { detailToken, state, subscribe } from "./state.js";

const plot = document.getElementById("mlp-gelu");
const list = document.getElementById("mlp-neurons");
const shapes = document.getElementById("mlp-shapes");
const title = document.getElementById("mlp-title");
const canvas = document.getElementById("mlp-points");
const summary = document.getElementById("mlp-summary");

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

/**
 * The neurons as dots on a canvas laid over Plotly's plot area, placed with Plotly's own axes.
 * (Thousands of SVG markers would make every hover re-layerize the page: 100+ ms per frame.)
 */
function drawPoints(pre, post) {
  const layout = plot._fullLayout;
  if (!layout || !layout.xaxis) return;
  const x = layout.xaxis;
  const y = layout.yaxis;
  const ratio = window.devicePixelRatio || 1;
  canvas.style.left = `${plot.offsetLeft + x._offset}px`;
  canvas.style.top = `${plot.offsetTop + y._offset}px`;
  canvas.style.width = `${x._length}px`;
  canvas.style.height = `${y._length}px`;
  canvas.width = Math.round(x._length * ratio);
  canvas.height = Math.round(y._length * ratio);
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.fillStyle = "rgba(0, 114, 178, 0.45)";
  const r = state.presenter ? 3.5 : 2.6;
  for (let k = 0; k < pre.length; k++) {
    ctx.beginPath();
    ctx.arc(x.l2p(pre[k]), y.l2p(post[k]), r, 0, 2 * Math.PI);
    ctx.fill();
  }
  canvas.hidden = false;
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
  const curve = xs.map(gelu);
  const yLo = Math.min(...curve) - 0.15 * (hi - lo) / 8;
  const yHi = Math.max(...curve) + 0.15 * (hi - lo) / 8;
  await Plotly.react(plot, [
    { type: "scatter", mode: "lines", x: xs, y: curve, name: "GELU", line: { color: "#555", width: 2 }, hoverinfo: "skip" },
    // The d_mlp points are drawn on a canvas over the plot (see drawPoints); this entry only labels them.
    { type: "scatter", mode: "markers", x: [null], y: [null], name: `“${plotlyText(name)}”: ${pre.length} neurons`,
      marker: { color: "#0072B2", size: 6, opacity: 0.6 }, hoverinfo: "skip" },
    {
      type: "scatter", mode: "markers", x: top.map((k) => pre[k]), y: top.map((k) => post[k]), name: "most active",
      marker: { color: "rgba(0,0,0,0)", size: 11, line: { color: "#111", width: 2 } },
      customdata: top,
      hovertemplate: "neuron %{customdata}<br>pre %{x:.3f} → GELU %{y:.3f}<extra></extra>",
    },
  ], baseLayout({
    height: state.presenter ? 360 : 300,
    margin: { l: 55, r: 10, t: 10, b: 45 },
    xaxis: { title: { text: "pre-activation (mlp.hook_pre)" }, zeroline: true, range: [lo - 0.1, hi + 0.1] },
    yaxis: { title: { text: "after GELU (mlp.hook_post)" }, zeroline: true, range: [yLo, yHi] },
    legend: { x: 0.01, y: 0.99, bgcolor: "rgba(255,255,255,0.8)" },
    showlegend: true,
  }), config);
  drawPoints(pre, post);
  let negative = 0;
  for (const u of post) if (u < 0) negative++;
  list.replaceChildren(...top.map((k) => el("li", {}, el("span", { class: "nid", text: `#${k}` }),
    ` pre ${fmt(pre[k])} → ${fmt(post[k])}`)));
  list.setAttribute("aria-label", `Most active neurons of token ${i}`);
  summary.textContent = `${post.length - negative} of ${post.length} neurons pass a positive value on; ${negative} are squashed to small negatives.`;
}

const fail = (error) => {
  summary.textContent = `Could not load layer ${state.layer}: ${error.message}`;
};
// The MLP's tensors are the largest a layer sends ([pos, 3072] twice): fetch and draw them only
// while the stage is on screen (or near it), and catch up when it scrolls into view.
let onScreen = false;
let stale = true;
const soon = later(() => {
  if (!onScreen) {
    stale = true;
    return;
  }
  stale = false;
  draw().catch(fail);
}, 80);

export function init() {
  const stage = document.getElementById("stage-mlp");
  new IntersectionObserver((entries) => {
    onScreen = entries.some((e) => e.isIntersecting);
    if (onScreen && stale) soon();
  }, { rootMargin: "300px 0px" }).observe(stage);
  subscribe(["model"], drawShapes);
  subscribe(["run", "hovered", "pinned", "layer", "presenter"], soon);
  window.addEventListener("resize", later(() => draw().catch(fail), 200));
  drawShapes();
}
