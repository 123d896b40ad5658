/**
 * attention.js — stage 4: the selected layer and head, the N×N pattern as a Plotly heatmap
 * (rows = the token that looks, columns = the token looked at; the masked future in grey), a
 * toggle between raw scores qkᵀ/√d, masked scores and softmax weights, and all heads as small
 * multiples (one layer, or all of them) where a click selects a head. The hovered or pinned
 * token's row is outlined. For a long prompt (run.patternsMode "per-layer") a layer's pattern is
 * fetched when it is selected: the heatmap is dimmed and the title says "loading layer N…" until
 * it arrives, and the all-layers grid shows the layers loaded so far (never fetching all of them).
 */
import { getLayer, slice } from "./api.js";
import { divergingScale, drawMatrix, el, plotlyText, viridisScale, visible } from "./colors.js";
import { baseLayout, config, plotly } from "./plots.js";
import { focusToken, pattern, patternError, set, state, subscribe } from "./state.js";

const layerSelect = document.getElementById("layer-select");
const headSelect = document.getElementById("head-select");
const plot = document.getElementById("attention-heatmap");
const rowBox = document.getElementById("heatmap-row");
const grid = document.getElementById("head-grid");
const allLayers = document.getElementById("all-layers");
const title = document.getElementById("attention-title");
let drawn = null; // {n, top, rowHeight} of the heatmap on screen
let drawSerial = 0;

function fillSelects() {
  const m = state.model;
  if (!m) return;
  const options = (n, label) => Array.from({ length: n }, (_, i) => el("option", { value: i, text: `${label} ${i}` }));
  layerSelect.replaceChildren(...options(m.n_layers, "L"));
  headSelect.replaceChildren(...options(m.n_heads, "H"));
  layerSelect.value = String(state.layer);
  headSelect.value = String(state.head);
}

/** Raw scores q·k/√d_head for every pair (future included), from the model's q and k. [q, k] */
export function rawScores(q, k, head) {
  const [n, , d] = q.shape;
  const out = new Float32Array(n * n);
  const scale = 1 / Math.sqrt(d);
  for (let i = 0; i < n; i++) {
    const qi = slice(q, i, head);
    for (let j = 0; j < n; j++) {
      const kj = slice(k, j, head);
      let s = 0;
      for (let c = 0; c < d; c++) s += qi[c] * kj[c];
      out[i * n + j] = s * scale;
    }
  }
  return out;
}

function labels(run) {
  return run.tokens.map((t) => plotlyText(visible(t.text)));
}

async function draw() {
  const run = state.run;
  const Plotly = plotly();
  if (!run || !Plotly) return;
  const serial = ++drawSerial;
  const n = run.tokens.length;
  const mode = state.attnMode;
  const { layer, head } = state;
  let values;
  if (mode === "pattern") {
    const weights = pattern(layer);
    if (!weights) {
      // Wait for it (state.patternsLoaded redraws); meanwhile the old heatmap is dimmed, not passed off as this layer's.
      const error = patternError(layer);
      title.textContent = `layer ${layer}, head ${head}: ${error ? `could not load it (${error.message})` : `loading layer ${layer}…`}`;
      plot.style.opacity = "0.3";
      drawn = null;
      highlightRow();
      return;
    }
    title.textContent = `layer ${layer}, head ${head}`;
    values = slice(weights, head);
  } else {
    title.textContent = `layer ${layer}, head ${head}`;
    const t = await getLayer(run.runId, layer, ["attn.hook_q", "attn.hook_k"]);
    if (serial !== drawSerial) return;
    values = rawScores(t["attn.hook_q"], t["attn.hook_k"], head);
  }
  const z = [];
  const masked = [];
  let limit = 0;
  for (let i = 0; i < n; i++) {
    const row = new Array(n);
    const mrow = new Array(n);
    for (let j = 0; j < n; j++) {
      const future = j > i;
      const show = mode === "scores" || !future;
      row[j] = show ? values[i * n + j] : null;
      mrow[j] = future && mode !== "scores" ? 1 : null;
      if (show && mode !== "pattern") limit = Math.max(limit, Math.abs(values[i * n + j]));
    }
    z.push(row);
    masked.push(mrow);
  }
  const names = labels(run);
  const ticks = Array.from({ length: n }, (_, i) => i);
  const step = Math.max(1, Math.ceil(n / 40));
  const tickvals = ticks.filter((i) => i % step === 0);
  const ticktext = tickvals.map((i) => names[i]);
  const what = mode === "pattern" ? "weight" : mode === "masked" ? "masked score" : "score qk/√d";
  const trace = {
    type: "heatmap",
    z,
    x: ticks,
    y: ticks,
    colorscale: mode === "pattern" ? viridisScale : divergingScale,
    zmin: mode === "pattern" ? 0 : -limit || -1,
    zmax: mode === "pattern" ? 1 : limit || 1,
    xgap: n <= 24 ? 1 : 0,
    ygap: n <= 24 ? 1 : 0,
    colorbar: { thickness: 12, len: 0.9, title: { text: what, side: "right" } },
    hoverongaps: false,
    hovertemplate: `query %{y} → key %{x}<br>${what} %{z:.4f}<extra></extra>`,
  };
  if (n <= 160) {
    trace.customdata = z.map((row, i) => row.map((_, j) => [names[i], names[j]]));
    trace.hovertemplate = `“%{customdata[0]}” (%{y}) looks at “%{customdata[1]}” (%{x})<br>${what} %{z:.4f}<extra></extra>`;
  }
  const maskTrace = {
    type: "heatmap",
    z: masked,
    x: ticks,
    y: ticks,
    colorscale: [[0, "#c8c8c8"], [1, "#c8c8c8"]],
    showscale: false,
    xgap: n <= 24 ? 1 : 0,
    ygap: n <= 24 ? 1 : 0,
    hoverongaps: false,
    hovertemplate: "masked: a token cannot look at later tokens<extra></extra>",
  };
  // On a projector the heatmap takes the card's width, up to the screen's height.
  const size = state.presenter
    ? Math.max(420, Math.min((plot.clientWidth || 1000) - 100, innerHeight - 40))
    : Math.min(600, Math.max(420, 170 + n * 14));
  const layout = baseLayout({
    height: size,
    // A square plot area, with room for the labels and the colour bar: no empty band in between.
    width: Math.min(plot.clientWidth || 10000, size - 100 + 90 + 110),
    margin: { l: 90, r: 10, t: 10, b: 90 },
    // automargin: long token labels push the axis titles out instead of running into them.
    xaxis: { tickvals, ticktext, tickangle: -60, automargin: true, title: { text: "key: the token looked at", standoff: 10 },
      constrain: "domain", showgrid: false, zeroline: false },
    yaxis: { tickvals, ticktext, autorange: "reversed", automargin: true, title: { text: "query: the token looking", standoff: 10 },
      scaleanchor: "x", constrain: "domain", showgrid: false, zeroline: false },
  });
  await Plotly.react(plot, [trace, maskTrace], layout, config);
  if (serial !== drawSerial) return;
  plot.style.opacity = "";
  drawn = { n };
  attachClicks();
  placeRowBox();
  highlightRow();
}

/** Outline the focus token's row. The box is placed once per draw; a hover only moves it with a
 * transform (no layout), so highlighting stays fast on a large page. */
function placeRowBox() {
  const layout = plot._fullLayout;
  if (!drawn || !layout || !layout.yaxis) return;
  const x = layout.xaxis;
  const y = layout.yaxis;
  const rowHeight = Math.abs(y.l2p(1) - y.l2p(0));
  drawn.top = plot.offsetTop + y._offset + Math.min(y.l2p(-0.5), y.l2p(0.5)) - 2;
  drawn.rowHeight = rowHeight;
  rowBox.style.left = `${plot.offsetLeft + x._offset - 2}px`;
  rowBox.style.width = `${x._length + 4}px`;
  rowBox.style.height = `${rowHeight + 4}px`;
}

function highlightRow() {
  const focus = focusToken();
  if (focus == null || !drawn || drawn.top == null || focus >= drawn.n) {
    rowBox.style.visibility = "hidden";
    return;
  }
  rowBox.style.transform = `translateY(${(drawn.top + focus * drawn.rowHeight).toFixed(1)}px)`;
  rowBox.style.visibility = "visible";
}

function megabytes(bytes) {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.ceil(bytes / 1e3)} kB`;
}

/** The heads as small multiples: the selected layer's, or every layer's. For a per-layer run the
 * grid never asks for a layer on its own: all 144 heads of a long prompt would be hundreds of MB
 * (12·12·n²·2 bytes), so it draws the layers loaded so far and a button per missing layer that
 * selects it (which loads it). */
function drawGrid() {
  const run = state.run;
  grid.replaceChildren();
  if (!run || !state.model) return;
  const { n_layers: L, n_heads: H } = state.model;
  const n = run.tokens.length;
  const all = allLayers.checked;
  const perLayer = run.patternsMode === "per-layer";
  const layers = all ? Array.from({ length: L }, (_, i) => i) : [state.layer];
  grid.classList.toggle("all", all);
  grid.style.setProperty("--cols", String(all ? H : Math.min(H, 6)));
  const wide = { style: "grid-column: 1 / -1" };
  const perLayerBytes = megabytes(H * n * n * 2);
  if (all && perLayer) {
    grid.append(el("p", { class: "muted small", ...wide, text:
      `Long prompts get their attention one layer at a time: all ${L * H} heads for these ${n} tokens would be ` +
      `${megabytes(L * H * n * n * 2)}, so each layer's (${perLayerBytes}) is fetched only when you select it. Shown: the layers loaded so far.` }));
  }
  if (all) {  // column labels: which head each column is
    grid.append(el("span", { class: "grid-label", "aria-hidden": "true" }));
    for (let head = 0; head < H; head++) grid.append(el("span", { class: "grid-label col", "data-testid": "head-column", text: `H${head}` }));
  }
  for (const layer of layers) {
    const weights = layer === state.layer ? pattern(layer) : run.patterns[layer];
    if (!weights) {
      const error = layer === state.layer ? patternError(layer) : null;
      const text = layer !== state.layer ? `L${layer}: not loaded — select to load (${perLayerBytes})`
        : error ? `Could not load layer ${layer}: ${error.message}` : `Loading layer ${layer}…`;
      if (all) grid.append(el("span", { class: "grid-label", text: `L${layer}` }));
      if (layer === state.layer) {
        const span = all ? { style: `grid-column: span ${H}` } : wide;
        grid.append(el("p", { class: error ? "error small" : "muted small", ...span, "aria-live": "polite", text }));
      } else {
        grid.append(el("button", { type: "button", class: "head missing", style: `grid-column: span ${H}`,
          "data-layer": layer, "data-head": state.head, "aria-pressed": "false", text }));
      }
      continue;
    }
    if (all) grid.append(el("span", { class: "grid-label", text: `L${layer}` }));
    for (let head = 0; head < H; head++) {
      const canvas = el("canvas", { "aria-hidden": "true" });
      drawMatrix(canvas, weights.data, n, head * n * n);
      const selected = layer === state.layer && head === state.head;
      const button = el("button", {
        type: "button",
        class: selected ? "head selected" : "head",
        "data-layer": layer,
        "data-head": head,
        "aria-pressed": selected ? "true" : "false",
        "aria-label": all ? `Layer ${layer}, head ${head}` : `H${head}: layer ${layer}, head ${head}`, // the visible name first
        title: `Layer ${layer}, head ${head}`,
      }, canvas, all ? null : el("span", { text: `H${head}` }));
      grid.append(button);
    }
  }
}

function markSelected() {
  for (const b of grid.querySelectorAll("button.head:not(.missing)")) {
    const on = Number(b.dataset.layer) === state.layer && Number(b.dataset.head) === state.head;
    b.classList.toggle("selected", on);
    b.setAttribute("aria-pressed", on ? "true" : "false");
  }
}

export function init() {
  layerSelect.addEventListener("change", () => set({ layer: Number(layerSelect.value) }));
  headSelect.addEventListener("change", () => set({ head: Number(headSelect.value) }));
  for (const radio of document.querySelectorAll('input[name="attn-mode"]')) {
    radio.addEventListener("change", () => radio.checked && set({ attnMode: radio.value }));
  }
  allLayers.addEventListener("change", drawGrid);
  grid.addEventListener("click", (event) => {
    const b = event.target.closest("button.head");
    if (b) set({ layer: Number(b.dataset.layer), head: Number(b.dataset.head) });
  });
  subscribe(["model"], fillSelects);
  subscribe(["layer", "head"], () => {
    layerSelect.value = String(state.layer);
    headSelect.value = String(state.head);
  });
  subscribe(["attnMode"], () => {
    for (const radio of document.querySelectorAll('input[name="attn-mode"]')) radio.checked = radio.value === state.attnMode;
  });
  subscribe(["run", "layer", "head", "attnMode", "presenter"], () => {
    draw().catch((error) => console.error(error));
  });
  subscribe(["patternsLoaded"], () => {
    // A layer arrived (per-layer runs): redraw what waits for it. (drawn === null: the heatmap waits.)
    if (state.attnMode === "pattern" && !drawn) draw().catch((error) => console.error(error));
    drawGrid();
  });
  subscribe(["hovered", "pinned"], highlightRow);
  subscribe(["run"], drawGrid);
  subscribe(["layer"], () => (allLayers.checked && state.run && state.run.patternsMode !== "per-layer" ? markSelected() : drawGrid()));
  subscribe(["head"], markSelected);
  window.addEventListener("resize", () => setTimeout(() => { placeRowBox(); highlightRow(); }, 100));
  subscribe(["presenter"], () => setTimeout(() => { placeRowBox(); highlightRow(); }, 100));
  fillSelects();
}

/** Once Plotly has drawn: a click on a cell pins its query token. */
function attachClicks() {
  if (plot.on && !plot.dataset.clicks) {
    plot.dataset.clicks = "1";
    // Hovering a cell's row is hovering that token: the chips and the other views follow.
    plot.on("plotly_hover", (data) => {
      const point = data.points && data.points[0];
      if (point && Number.isInteger(point.y) && point.y !== state.hovered) set({ hovered: point.y });
    });
    plot.on("plotly_unhover", () => set({ hovered: null }));
    plot.on("plotly_click", (data) => {
      const point = data.points && data.points[0];
      if (point && Number.isInteger(point.y)) set({ pinned: state.pinned === point.y ? null : point.y });
    });
  }
}
