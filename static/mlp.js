/**
 * mlp.js — stage 6 (MLP): the GELU curve with the token in detail's d_mlp pre-activations
 * plotted on it (blocks.{layer}.mlp.hook_pre against mlp.hook_post, each [pos, d_mlp], from the
 * server), and that token's most activated neurons in the selected layer. (The shapes
 * d_model → d_mlp → d_model are in the template.)
 *
 * mount(root, store, runKey) -> unmount
 */
import { getLayer, slice } from "./api.js";
import { el, mountView } from "./dom.js";
import { fmt, plotlyText, visible } from "./format.js";
import { hookName } from "./hooks.js";
import { t, tn } from "./i18n.js";
import { later, onScreen } from "./lazy.js";
import { baseLayout, config, plotly } from "./plots.js";
import { detailToken, sameIntervention, selectDetail, selectRun, toggled } from "./store.js";

const FIELDS = ["mlp.hook_pre", "mlp.hook_post"];

/** GPT-2's GELU (the tanh approximation, "gelu_new"). */
export function gelu(u) {
  return 0.5 * u * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (u + 0.044715 * u * u * u)));
}

export function mount(root, store, runKey) {
  const view = mountView(root, store);
  const { plot, points: canvas, neurons: list, title, summary } = view.parts;
  let drawn = null; // "run id|layer" of the drawing on screen

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
    const r = store.state.presenter ? 3.5 : 2.6;
    for (let k = 0; k < pre.length; k++) {
      ctx.beginPath();
      ctx.arc(x.l2p(pre[k]), y.l2p(post[k]), r, 0, 2 * Math.PI);
      ctx.fill();
    }
    canvas.hidden = false;
  }

  async function draw() {
    const s = store.state;
    const detail = selectDetail(s, runKey);
    const Plotly = plotly();
    if (!detail || !Plotly) return;
    const { run, i } = detail;
    const layer = s.layer;
    title.textContent = t("mlp.layer", { layer });
    // Another token of the same layer is already here (api.js keeps it): say nothing then.
    if (drawn !== `${run.runId}|${layer}`) summary.textContent = t("page.loading_layer", { layer });
    const tensors = await getLayer(run.runId, layer, FIELDS);
    const now = store.state;
    if (selectRun(now, runKey) !== run || detailToken(now, runKey) !== i || now.layer !== layer) return;
    const pre = slice(tensors[hookName("mlp.hook_pre", layer)], i);
    const post = slice(tensors[hookName("mlp.hook_post", layer)], i);
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
      { type: "scatter", mode: "lines", x: xs, y: curve, name: t("mlp.legend_gelu"), line: { color: "#555", width: 2 }, hoverinfo: "skip" },
      // The d_mlp points are drawn on a canvas over the plot (see drawPoints); this entry only labels them.
      { type: "scatter", mode: "markers", x: [null], y: [null], name: tn("mlp.legend_points", pre.length, { token: plotlyText(name) }),
        marker: { color: "#0072B2", size: 6, opacity: 0.6 }, hoverinfo: "skip" },
      {
        type: "scatter", mode: "markers", x: top.map((k) => pre[k]), y: top.map((k) => post[k]), name: t("mlp.legend_top"),
        marker: { color: "rgba(0,0,0,0)", size: 11, line: { color: "#111", width: 2 } },
        customdata: top,
        // Plotly's own line break between the two catalog lines.
        hovertemplate: `${t("mlp.hover_neuron", { neuron: "%{customdata}" })}<br>${t("mlp.hover_values", { pre: "%{x:.3f}", post: "%{y:.3f}" })}<extra></extra>`,
      },
    ], baseLayout(now.presenter, {
      height: now.presenter ? 360 : 300,
      margin: { l: 55, r: 10, t: 10, b: 45 },
      xaxis: { title: { text: t("mlp.x_title", { hook: "mlp.hook_pre" }) }, zeroline: true, range: [lo - 0.1, hi + 0.1] },
      yaxis: { title: { text: t("mlp.y_title", { hook: "mlp.hook_post" }) }, zeroline: true, range: [yLo, yHi] },
      legend: { x: 0.01, y: 0.99, bgcolor: "rgba(255,255,255,0.8)" },
      showlegend: true,
    }), config);
    drawPoints(pre, post);
    let negative = 0;
    for (const u of post) if (u < 0) negative++;
    list.replaceChildren(...top.map((k) => {
      // An experiment: switch this neuron off (at every position) and watch the prediction move.
      const off = { hook: hookName("mlp.hook_post", layer), op: "zero", neuron: k };
      const ablated = s.interventions.some((x) => sameIntervention(x, off));
      return el("li", {}, el("span", { class: "nid", text: `#${k}` }), ` ${t("mlp.neuron", { pre: fmt(pre[k]), post: fmt(post[k]) })} `,
        el("button", { type: "button", class: "ghost small", "data-testid": "ablate-neuron", "data-neuron": k,
          "aria-pressed": ablated ? "true" : "false", title: t("mlp.switch_title", { neuron: k, layer }),
          onclick: () => store.set({ interventions: toggled(store.state.interventions, off) }) },
        t(ablated ? "mlp.switch_on" : "mlp.switch_off")));
    }));
    list.setAttribute("aria-label", t("mlp.neurons_label", { position: i }));
    summary.textContent = tn("mlp.summary", post.length, { positive: post.length - negative, negative });
    drawn = `${run.runId}|${layer}`;
  }

  const fail = (error) => {
    summary.textContent = t("page.layer_failed", { layer: store.state.layer, error: error.message });
  };
  // The MLP's tensors are the largest a layer sends ([pos, d_mlp] twice): fetch and draw them only
  // while the stage is on screen (or near it); the newest request waits for it to scroll in.
  const screen = onScreen(root);
  const soon = later(() => screen.whenVisible(() => draw().catch(fail)), 80);
  view.watch(["runs", "shown", "hovered", "pinned", "layer", "presenter"], soon);
  view.on(window, "resize", soon); // the canvas follows Plotly's plot area
  view.cleanup(screen.stop, soon.cancel);
  view.plots(plot);
  soon();
  return view.unmount;
}
