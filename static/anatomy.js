/**
 * anatomy.js — stage 10: where the parameters sit. A table of the loaded model's parameters by
 * kind of matrix (counted from its tensors by the server), and a chart of the share of each kind
 * beside GPT-3 175B (computed by the server from GPT-3's hyperparameters with the same formulas).
 * Data: GET /api/anatomy.
 */
import { el } from "./colors.js";
import { baseLayout, config, plotly } from "./plots.js";
import { state, subscribe } from "./state.js";
import * as api from "./vectors_api.js";

const $ = (id) => document.getElementById(id);
let data = null;

/** 124439808 -> "124.4 M", 175e9 -> "175.2 B". */
function short(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(n >= 1e10 ? 1 : 2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} K`;
  return String(n);
}

const full = (n) => n.toLocaleString("en");

function shape(part) {
  const dims = part.shape.map(full).join(" × ");
  return part.copies > 1 ? `${part.copies} × [${dims}]` : `[${dims}]`;
}

function renderTable(loaded, gpt3) {
  const head = el("tr", {},
    el("th", { scope: "col", text: "kind" }),
    el("th", { scope: "col", class: "num", text: "parameters" }),
    el("th", { scope: "col", class: "num", text: "share" }),
    el("th", { scope: "col", class: "num", text: `${gpt3.name}` }));
  const rows = loaded.kinds.map((k) => {
    const other = gpt3.kinds.find((g) => g.key === k.key);
    const parts = k.parts.map((p) => `${p.name} ${shape(p)} = ${full(p.count)}`).join("\n");
    return el("tr", { "data-kind": k.key, "data-count": k.count, title: `${k.description}\n${parts}` },
      el("td", {}, el("strong", { text: k.label }), el("div", { class: "small muted", text: k.note || k.description })),
      el("td", { class: "num", text: full(k.count) }),
      el("td", { class: "num", text: `${(k.share * 100).toFixed(2)}%` }),
      el("td", { class: "num", text: other ? `${short(other.count)} (${(other.share * 100).toFixed(1)}%)` : "—" }));
  });
  const total = el("tr", { class: "total" },
    el("td", { text: "total" }),
    el("td", { class: "num", "data-testid": "anatomy-total-count", text: full(loaded.total) }),
    el("td", { class: "num", text: "100%" }),
    el("td", { class: "num", text: `${short(gpt3.total)} (${full(gpt3.total)})` }));
  $("anatomy-table").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows, total));
  const hp = loaded.hyperparameters;
  $("anatomy-total").textContent = `${loaded.name}: ${hp.n_layers} layers, d_model ${hp.d_model}, ${hp.n_heads} heads of ${hp.d_head}, ` +
    `d_mlp ${hp.d_mlp}, ${full(hp.d_vocab)} tokens, ${full(hp.n_ctx)} positions. Total ${full(loaded.total)}, ` +
    `equal to the sum of the sizes of the model's tensors (${full(data.n_params)}).`;
}

function drawChart(loaded, gpt3) {
  const Plotly = plotly();
  if (!Plotly) return;
  const keys = gpt3.kinds.map((k) => k.key).filter((key) => key !== "other");
  const labels = keys.map((key) => gpt3.kinds.find((k) => k.key === key).label);
  const series = (model, color, name) => {
    const kinds = keys.map((key) => model.kinds.find((k) => k.key === key) || { count: 0, share: 0 });
    return {
      type: "bar", orientation: "h", name: `${name} (${short(model.total)})`,
      y: labels, x: kinds.map((k) => k.share * 100),
      text: kinds.map((k) => short(k.count)), textposition: "outside", cliponaxis: false,
      marker: { color },
      hovertemplate: `${model.name}<br>%{y}: %{text} parameters, %{x:.2f}%<extra></extra>`,
    };
  };
  Plotly.react($("anatomy-chart"), [series(loaded, "#0b5cad", "this model"), series(gpt3, "#944a00", gpt3.name)], baseLayout({
    barmode: "group",
    height: state.presenter ? 520 : 430,
    margin: { l: 190, r: 60, t: 50, b: 40 },
    legend: { orientation: "h", yanchor: "bottom", y: 1.02, x: 0 },
    xaxis: { title: { text: "share of all parameters (%)" }, rangemode: "tozero" },
    yaxis: { autorange: "reversed" },
  }), config);
}

async function load() {
  try {
    data = await api.anatomy();
    const [loaded, gpt3] = data.models;
    renderTable(loaded, gpt3);
    drawChart(loaded, gpt3);
    $("anatomy-error").hidden = true;
  } catch (error) {
    $("anatomy-error").textContent = error.message || String(error);
    $("anatomy-error").hidden = false;
  }
}

function init() {
  subscribe(["model"], () => state.model && !data && load());
  subscribe(["presenter"], () => data && drawChart(...data.models));
  if (state.model) load();
}

init();
