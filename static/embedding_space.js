/**
 * embedding_space.js — stage 8: tokens as points. A 3D PCA map of token embeddings with the
 * prompt's tokens highlighted (the token in focus ringed), the nearest neighbours of the token in
 * focus or of a typed word, word arithmetic, a dot product, and the prompt's position embeddings.
 * Every number comes from the server (/api/embedding-space/..., /api/runs/{id}/embedding-space/...).
 */
import { divergingScale, el, fmt, plotlyText, visible } from "./colors.js";
import { baseLayout, config, later, plotly } from "./plots.js";
import { detailToken, set, state, subscribe } from "./state.js";
import * as api from "./vectors_api.js";

const $ = (id) => document.getElementById(id);
const mapBox = $("embedding-map");
const FOCUS = "#f0a000"; // the chips' outline colour for the token in focus
const PROMPT = "#0063a0"; // --data
const WORD = "#944a00"; // --weights
let addedWords = [];
let mapData = null; // the last map answer, for the current run and words
let neighbourWord = ""; // a typed word; empty = follow the token in focus
let mapPrompt = []; // the prompt's points as drawn (trace 1), for clicks

function showError(id, error) {
  const box = $(id);
  const message = error ? error.message || String(error) : "";
  box.textContent = message;
  box.hidden = !message;
  if (error && error.name !== "ApiError") console.error(error);
}

/** A list of tokens with cosine bars: [{id, text, cosine}]. */
function renderList(list, items, testid) {
  list.replaceChildren(...items.map((n) => {
    const width = Math.max(0, Math.min(1, n.cosine)) * 100;
    return el("li", { class: "vec-item", "data-testid": testid, "data-token-id": n.id, "data-cosine": n.cosine,
      title: `token id ${n.id}, cosine ${n.cosine.toFixed(6)}` },
    el("span", { class: "label", text: visible(n.text) }),
    el("span", { class: "track" }, el("span", { class: "fill", style: `width:${width.toFixed(2)}%` })),
    el("span", { class: "value", text: fmt(n.cosine, 3) }));
  }));
}

function termText(terms) {
  return terms.map((t, i) => `${t.sign < 0 ? "− " : i ? "+ " : ""}“${visible(t.text)}”`).join(" ");
}

// ---------------------------------------------------------------- the map

async function loadMap() {
  const run = state.run;
  if (!run) return;
  const words = addedWords.slice();
  try {
    const data = await api.embeddingMap(run.runId, words);
    if (state.run !== run || words.join("\u0000") !== addedWords.join("\u0000")) return;
    mapData = data;
    showError("map-error", null);
    const pct = data.explained.map((v) => (v * 100).toFixed(1));
    const kept = data.explained.reduce((a, b) => a + b, 0) * 100;
    $("map-variance").textContent = `(the 3 axes keep ${kept.toFixed(1)}% of the spread; the other ${data.d_model - 3} directions hold the rest)`;
    mapBox.dataset.explained = pct.join(",");
    $("map-notes").textContent = data.notes.join(" ");
    drawMap();
  } catch (error) {
    if (state.run === run) showError("map-error", error);
  }
}

function trace(points, style) {
  return {
    type: "scatter3d",
    x: points.map((p) => p.xyz[0]),
    y: points.map((p) => p.xyz[1]),
    z: points.map((p) => p.xyz[2]),
    text: points.map((p) => plotlyText(visible(p.text))),
    customdata: points.map((p) => (p.id == null ? "average of its tokens" : `id ${p.id}`)),
    hovertemplate: "%{text} (%{customdata})<extra></extra>",
    ...style,
  };
}

function drawMap() {
  const Plotly = plotly();
  const run = state.run;
  if (!Plotly || !run || !mapData) return;
  const groups = { sample: [], prompt: [], word: [] };
  for (const p of mapData.points) groups[p.group].push(p);
  const focus = detailToken();
  const focusId = focus != null ? run.tokens[focus].id : null;
  const focused = groups.prompt.filter((p) => p.id === focusId);
  const big = state.presenter ? 1.4 : 1;
  const traces = [
    trace(groups.sample, { name: "common words (sample)", mode: "markers", marker: { size: 2.5 * big, color: "#9aa3ad", opacity: 0.55 } }),
    trace(groups.prompt, { name: "the prompt's tokens", mode: "markers+text", textposition: "top center",
      marker: { size: 5 * big, color: PROMPT }, textfont: { color: PROMPT, size: 12 * big } }),
    trace(groups.word, { name: "added words", mode: "markers+text", textposition: "top center",
      marker: { size: 5 * big, color: WORD, symbol: "diamond" }, textfont: { color: WORD, size: 12 * big } }),
    trace(focused, { name: "token in focus", mode: "markers", hoverinfo: "skip", hovertemplate: null,
      marker: { size: 11 * big, color: "rgba(0,0,0,0)", line: { color: FOCUS, width: 4 } } }),
  ];
  const pct = mapData.explained.map((v) => `${(v * 100).toFixed(1)}%`);
  const axis = (i) => ({ title: { text: `direction ${i + 1} (${pct[i]})` }, showspikes: false, zeroline: false });
  Plotly.react(mapBox, traces, baseLayout({
    height: state.presenter ? 560 : 460,
    margin: { l: 0, r: 0, t: 0, b: 0 },
    showlegend: true,
    legend: { orientation: "h", y: 1.02, x: 0 },
    uirevision: run.runId, // keep the user's rotation while the focus moves
    // The camera a little further out than Plotly's default, so the axis titles stay inside the box.
    scene: { xaxis: axis(0), yaxis: axis(1), zaxis: axis(2), aspectmode: "cube", camera: { eye: { x: 1.7, y: 1.7, z: 1.2 } } },
  }), config).then(() => {
    if (!mapBox.dataset.wired) {
      // Clicking one of the prompt's tokens pins it, as a click on its chip does.
      mapBox.dataset.wired = "1";
      mapBox.on("plotly_click", (event) => {
        const point = event.points && event.points[0];
        if (!point || point.curveNumber !== 1 || !mapPrompt[point.pointNumber]) return;
        const p = mapPrompt[point.pointNumber].positions[0];
        set({ pinned: state.pinned === p ? null : p });
      });
    }
    mapPrompt = groups.prompt;
    mapBox.dataset.points = String(mapData.points.length);
    mapBox.dataset.prompt = String(groups.prompt.length);
    mapBox.dataset.words = String(groups.word.length);
  });
}

// ---------------------------------------------------------------- neighbours

async function loadNeighbours() {
  const run = state.run;
  const word = neighbourWord;
  const i = detailToken();
  let query;
  let title;
  if (word) {
    query = { word };
  } else if (run && i != null) {
    const token = run.tokens[i];
    query = { tokenId: token.id };
    title = `Nearest to token ${i}, “${visible(token.text)}” (id ${token.id}): hover or pin another token, or type a word.`;
  } else {
    return;
  }
  try {
    const data = await api.neighbours(query, 10);
    if (word !== neighbourWord || (!word && (state.run !== run || detailToken() !== i))) return;
    showError("neighbours-error", null);
    const list = $("neighbours");
    list.dataset.query = word ? `word:${word}` : `token:${query.tokenId}`;
    renderList(list, data.neighbours, "neighbour");
    $("neighbours-title").textContent = word
      ? `Nearest to ${termText(data.terms)} (${data.terms[0].tokens.length === 1 ? `id ${data.terms[0].ids[0]}` : "several tokens"}), leaving it out. ${data.notes.join(" ")} Clear the box to follow the token in focus.`
      : title;
  } catch (error) {
    showError("neighbours-error", error);
  }
}

// ---------------------------------------------------------------- arithmetic and dot product

async function runArithmetic() {
  const expression = $("arithmetic-input").value;
  try {
    const data = await api.arithmetic(expression, 10);
    if ($("arithmetic-input").value !== expression) return;
    showError("arithmetic-error", null);
    renderList($("arithmetic-results"), data.neighbours, "arithmetic-result");
    $("arithmetic-notes").textContent = `${termText(data.terms)} ≈ the tokens above (cosine with the resulting vector). ${data.notes.join(" ")}`;
  } catch (error) {
    $("arithmetic-results").replaceChildren();
    $("arithmetic-notes").textContent = "";
    showError("arithmetic-error", error);
  }
}

async function runDot() {
  const a = $("dot-a").value;
  const b = $("dot-b").value;
  try {
    const d = await api.dot({ word: a }, { word: b });
    showError("dot-error", null);
    const box = $("dot-result");
    box.dataset.dot = String(d.dot);
    box.dataset.cosine = String(d.cosine);
    const angle = (Math.acos(Math.max(-1, Math.min(1, d.cosine))) * 180) / Math.PI;
    box.textContent = `“${visible(d.a.text)}” · “${visible(d.b.text)}” = ${fmt(d.dot, 4)} · lengths ${fmt(d.norm_a, 3)} and ${fmt(d.norm_b, 3)}` +
      ` · cosine ${fmt(d.cosine, 4)} (an angle of ${angle.toFixed(1)}°). ` +
      (d.cosine > 0.3 ? "They point in broadly the same direction: the model treats them as related."
        : d.cosine < -0.1 ? "They point in somewhat opposite directions."
          : "They are nearly perpendicular: for the model, these directions have little in common.") +
      [d.a.note, d.b.note].filter(Boolean).map((n) => ` ${n}`).join("");
  } catch (error) {
    $("dot-result").textContent = "";
    showError("dot-error", error);
  }
}

// ---------------------------------------------------------------- positions

async function drawPositions() {
  const run = state.run;
  const Plotly = plotly();
  if (!run || !Plotly) return;
  try {
    const t = await api.positions(run.runId);
    if (state.run !== run) return;
    const [n, d] = t.hook_pos_embed.shape;
    const labels = run.tokens.map((tok) => `${tok.position} ${plotlyText(visible(tok.text))}`);
    const rows = [];
    let limit = 0;
    for (let i = 0; i < n; i++) {
      const row = Array.from(t.hook_pos_embed.data.subarray(i * d, (i + 1) * d));
      for (const v of row) limit = Math.max(limit, Math.abs(v));
      rows.push(row);
    }
    const cos = [];
    for (let i = 0; i < n; i++) cos.push(Array.from(t.position_cosine.data.subarray(i * n, (i + 1) * n)));
    const height = Math.max(200, Math.min(520, 60 + n * 16)) * (state.presenter ? 1.3 : 1);
    // automargin: the labels and titles push the margins out rather than being cut off.
    const y = { autorange: "reversed", showgrid: false, automargin: true, tickmode: n <= 40 ? "array" : "auto", tickvals: n <= 40 ? labels : undefined };
    await Plotly.react($("positions-heatmap"), [{
      type: "heatmap", z: rows, y: labels, colorscale: divergingScale, zmin: -limit, zmax: limit,
      colorbar: { thickness: 10 }, hovertemplate: "position %{y} · dimension %{x}: %{z:.4f}<extra></extra>",
    }], baseLayout({ height, margin: { l: 110, r: 10, t: 6, b: 36 }, xaxis: { title: { text: `dimension (0 … ${d - 1})` }, automargin: true }, yaxis: y }), config);
    await Plotly.react($("positions-cosine"), [{
      type: "heatmap", z: cos, x: labels, y: labels, colorscale: divergingScale, zmin: -1, zmax: 1,
      colorbar: { thickness: 10 }, hovertemplate: "cos(W_P[%{y}], W_P[%{x}]) = %{z:.4f}<extra></extra>",
    }], baseLayout({ height, margin: { l: 110, r: 10, t: 6, b: 90 }, xaxis: { showgrid: false, tickangle: -60, automargin: true, tickmode: y.tickmode, tickvals: y.tickvals }, yaxis: y, shapes: focusShapes(labels) }), config);
    positionLabels = labels;
  } catch (error) {
    console.error(error);
  }
}

let positionLabels = null; // the y labels of the position heatmaps, once drawn

/** A frame around the row of the token in focus, in the cosine heatmap. */
function focusShapes(labels) {
  const i = detailToken();
  if (i == null || !labels || i >= labels.length) return [];
  return [{ type: "rect", xref: "paper", x0: 0, x1: 1, yref: "y", y0: i - 0.5, y1: i + 0.5, line: { color: FOCUS, width: 3 } }];
}

function markPosition() {
  const Plotly = plotly();
  const box = $("positions-cosine");
  if (!Plotly || !positionLabels || !box.data) return;
  Plotly.relayout(box, { shapes: focusShapes(positionLabels) });
}

// ---------------------------------------------------------------- wiring

const soonNeighbours = later(() => loadNeighbours(), 120);
const soonMap = later(() => drawMap(), 60);

function wireForms() {
  $("map-add").addEventListener("submit", (event) => {
    event.preventDefault();
    const words = $("map-word").value.split(",").map((w) => w.trim()).filter(Boolean);
    if (!words.length) return;
    addedWords = [...addedWords, ...words.filter((w) => !addedWords.includes(w))].slice(-state.model.limits.max_map_words);
    $("map-word").value = "";
    loadMap();
  });
  $("map-clear").addEventListener("click", () => {
    addedWords = [];
    loadMap();
  });
  $("neighbours-form").addEventListener("submit", (event) => {
    event.preventDefault();
    neighbourWord = $("neighbours-word").value.trim() ? $("neighbours-word").value : "";
    loadNeighbours();
  });
  $("neighbours-word").addEventListener("input", () => {
    if (!$("neighbours-word").value.trim() && neighbourWord) {
      neighbourWord = "";
      loadNeighbours();
    }
  });
  $("arithmetic-form").addEventListener("submit", (event) => {
    event.preventDefault();
    runArithmetic();
  });
  $("dot-form").addEventListener("submit", (event) => {
    event.preventDefault();
    runDot();
  });
}

/**
 * whenOnScreen(section)(fn): a function that runs fn now if the section is on (or near) the
 * screen, or else once it scrolls into view. A new prompt then costs no map, neighbour or position request until
 * someone looks at this section.
 */
function whenOnScreen(section) {
  let visible = false;
  let pending = new Set();
  new IntersectionObserver((entries) => {
    visible = entries.some((e) => e.isIntersecting);
    if (visible && pending.size) {
      const todo = [...pending];
      pending = new Set();
      todo.forEach((fn) => fn());
    }
  }, { rootMargin: "400px 0px" }).observe(section);
  return (fn) => () => (visible ? fn() : pending.add(fn));
}

function init() {
  wireForms();
  const onScreen = whenOnScreen($("stage-embedding-space"));
  const newRun = onScreen(() => {
    loadMap();
    drawPositions();
  });
  const focusMoved = onScreen(() => {
    soonMap();
    markPosition();
    if (!neighbourWord) soonNeighbours();
  });
  const redraw = onScreen(() => {
    drawMap();
    drawPositions();
  });
  subscribe(["run"], () => {
    mapData = null;
    positionLabels = null;
    newRun();
  });
  subscribe(["run", "hovered", "pinned"], focusMoved);
  subscribe(["presenter"], redraw);
  subscribe(["model"], () => {
    if (!state.model) return;
    runArithmetic();
    runDot();
  });
  if (state.model) {
    runArithmetic();
    runDot();
  }
  if (state.run) {
    newRun();
    focusMoved();
  }
}

init();
