/**
 * embedding_space.js — stage 8: tokens as points. A 3D PCA map of token embeddings with the
 * prompt's tokens highlighted (the token in focus ringed), the nearest neighbours of the token in
 * focus or of a typed word, word arithmetic, a dot product, and the prompt's position embeddings.
 * Every number comes from the server (/api/embedding-space/..., /api/runs/{id}/embedding-space/...).
 * The map, the neighbours and the positions are asked for only once the stage is on screen.
 *
 * mount(root, store, runKey) -> unmount
 */
import { arithmetic, dot, embeddingMap, neighbours, positions } from "./api.js";
import { divergingScale } from "./colors.js";
import { el, mountView, showError, withData } from "./dom.js";
import { fmt, plotlyText, visible } from "./format.js";
import { t, tn } from "./i18n.js";
import { later, onScreen } from "./lazy.js";
import { baseLayout, config, plotly } from "./plots.js";
import { detailToken, selectRun } from "./store.js";

const FOCUS = "#f0a000"; // the chips' outline colour for the token in focus
const PROMPT = "#0063a0"; // --data
const WORD = "#944a00"; // --weights

/** A list of tokens with cosine bars: [{id, text, cosine}]. */
function renderList(list, items, testid) {
  list.replaceChildren(...items.map((n) => {
    const width = Math.max(0, Math.min(1, n.cosine)) * 100;
    return el("li", { class: "vec-item", "data-testid": testid, "data-token-id": n.id, "data-cosine": n.cosine,
      title: t("embedding_space.item_title", { id: n.id, cosine: n.cosine.toFixed(6) }) },
    el("span", { class: "label", translate: "no", text: visible(n.text) }),
    el("span", { class: "track" }, el("span", { class: "fill", style: `width:${width.toFixed(2)}%` })),
    el("span", { class: "value", text: fmt(n.cosine, 3) }));
  }));
}

/** Sentences (arrays of nodes, or null) one after the other. */
function sentences(...list) {
  return list.filter(Boolean).flatMap((pieces, i) => (i ? [" ", ...pieces] : pieces));
}

/** “␣king” − “␣man” + “␣woman”: an expression's terms as the server read them. */
function termText(terms) {
  return terms.map((term, i) => `${term.sign < 0 ? "− " : i ? "+ " : ""}“${visible(term.text)}”`).join(" ");
}

/** One sentence per term that is several tokens: its vector is their average. */
function termNotes(terms) {
  return terms.filter((term) => term.ids.length > 1).map((term) => withData(tn("embedding_space.term_note", term.ids.length), {
    text: visible(term.text), pieces: term.tokens.map((label) => `“${visible(label)}”`).join(", "),
  }));
}

export function mount(root, store, runKey) {
  const s = store.state;
  const view = mountView(root, store);
  const { map: mapBox, mapWord, neighboursWord: neighbourBox, neighbours: neighbourList, arithmeticInput, dotA, dotB,
    dotResult, positionsHeatmap: heatmapBox, positionsCosine: cosineBox } = view.parts;
  const errors = Object.fromEntries(["map", "neighbours", "arithmetic", "dot", "positions"]
    .map((name) => [name, view.part(`${name}-error`)]));

  let addedWords = [];
  let mapData = null; // the last map answer, for the current run and words
  let neighbourWord = ""; // a typed word; empty = follow the token in focus
  let mapPrompt = []; // the prompt's points as drawn (trace 1), for clicks
  let positionLabels = null; // the y labels of the position heatmaps, once drawn
  let clickWired = false;
  let weightsAsked = false; // arithmetic and dot product: they need the model, not a run
  const drawn = { run: null, focus: null, presenter: s.presenter }; // what the stage shows now

  const current = (run) => view.alive && selectRun(s, runKey) === run;

  // ------------------------------------------------------------ the map

  async function loadMap() {
    const run = selectRun(s, runKey);
    if (!run) return;
    const words = addedWords.slice();
    try {
      const data = await embeddingMap(run.runId, words);
      if (!current(run) || words.join("\u0000") !== addedWords.join("\u0000")) return;
      mapData = data;
      showError(errors.map, null);
      const kept = data.explained.reduce((a, b) => a + b, 0) * 100;
      view.part("map-variance").textContent = t("embedding_space.variance", { kept: kept.toFixed(1), rest: data.d_model - 3 });
      mapBox.dataset.explained = data.explained.map((v) => (v * 100).toFixed(1)).join(",");
      view.part("map-notes").replaceChildren(...sentences(...termNotes(data.terms)));
      drawMap();
    } catch (error) {
      if (current(run)) showError(errors.map, error);
    }
  }

  function trace(points, style) {
    return {
      type: "scatter3d",
      x: points.map((p) => p.xyz[0]),
      y: points.map((p) => p.xyz[1]),
      z: points.map((p) => p.xyz[2]),
      text: points.map((p) => plotlyText(visible(p.text))),
      customdata: points.map((p) => (p.id == null ? t("embedding_space.point_average") : t("embedding_space.point_id", { id: p.id }))),
      hovertemplate: "%{text} (%{customdata})<extra></extra>",
      ...style,
    };
  }

  function drawMap() {
    const Plotly = plotly();
    const run = selectRun(s, runKey);
    if (!Plotly || !run || !mapData || !view.alive) return;
    const groups = { sample: [], prompt: [], word: [] };
    for (const p of mapData.points) groups[p.group].push(p);
    const focus = detailToken(s, runKey);
    const focusId = focus != null ? run.tokens[focus].id : null;
    const focused = groups.prompt.filter((p) => p.id === focusId);
    const big = s.presenter ? 1.4 : 1;
    const traces = [
      trace(groups.sample, { name: t("embedding_space.legend_sample"), mode: "markers", marker: { size: 2.5 * big, color: "#9aa3ad", opacity: 0.55 } }),
      trace(groups.prompt, { name: t("embedding_space.legend_prompt"), mode: "markers+text", textposition: "top center",
        marker: { size: 5 * big, color: PROMPT }, textfont: { color: PROMPT, size: 12 * big } }),
      trace(groups.word, { name: t("embedding_space.legend_words"), mode: "markers+text", textposition: "top center",
        marker: { size: 5 * big, color: WORD, symbol: "diamond" }, textfont: { color: WORD, size: 12 * big } }),
      trace(focused, { name: t("embedding_space.legend_focus"), mode: "markers", hoverinfo: "skip", hovertemplate: null,
        marker: { size: 11 * big, color: "rgba(0,0,0,0)", line: { color: FOCUS, width: 4 } } }),
    ];
    const share = mapData.explained.map((v) => `${(v * 100).toFixed(1)}%`);
    const axis = (i) => ({ title: { text: t("embedding_space.axis", { n: i + 1, share: share[i] }) }, showspikes: false, zeroline: false });
    const points = mapData.points.length;
    Plotly.react(mapBox, traces, baseLayout(s.presenter, {
      height: s.presenter ? 560 : 460,
      margin: { l: 0, r: 0, t: 0, b: 0 },
      showlegend: true,
      legend: { orientation: "h", y: 1.02, x: 0 },
      uirevision: run.runId, // keep the user's rotation while the focus moves
      // The camera a little further out than Plotly's default, so the axis titles stay inside the box.
      scene: { xaxis: axis(0), yaxis: axis(1), zaxis: axis(2), aspectmode: "cube", camera: { eye: { x: 1.7, y: 1.7, z: 1.2 } } },
    }), config).then(() => {
      if (!view.alive) return;
      if (!clickWired) {
        // Clicking one of the prompt's tokens pins it, as a click on its chip does.
        clickWired = true;
        mapBox.on("plotly_click", (event) => {
          const point = event.points && event.points[0];
          if (!point || point.curveNumber !== 1 || !mapPrompt[point.pointNumber]) return;
          const p = mapPrompt[point.pointNumber].positions[0];
          store.set({ pinned: s.pinned === p ? null : p });
        });
      }
      mapPrompt = groups.prompt;
      mapBox.dataset.points = String(points);
      mapBox.dataset.prompt = String(groups.prompt.length);
      mapBox.dataset.words = String(groups.word.length);
    });
  }

  // ------------------------------------------------------------ neighbours

  async function loadNeighbours() {
    const run = selectRun(s, runKey);
    const word = neighbourWord;
    const i = detailToken(s, runKey);
    let query;
    let title;
    if (word) {
      query = { word };
    } else if (run && i != null) {
      const token = run.tokens[i];
      query = { tokenId: token.id };
      title = [withData(t("embedding_space.nearest_token", { position: i, id: token.id }), { text: visible(token.text) })];
    } else {
      return;
    }
    try {
      const data = await neighbours(query, 10);
      if (!view.alive || word !== neighbourWord || (!word && (!current(run) || detailToken(s, runKey) !== i))) return;
      showError(errors.neighbours, null);
      neighbourList.dataset.query = word ? `word:${word}` : `token:${query.tokenId}`;
      renderList(neighbourList, data.neighbours, "neighbour");
      if (word) {
        const [term] = data.terms;
        const terms = { terms: termText(data.terms) };
        title = [withData(term.tokens.length === 1 ? t("embedding_space.nearest_word", { id: term.ids[0] })
          : t("embedding_space.nearest_words"), terms), ...termNotes(data.terms), [t("embedding_space.follow_focus")]];
      }
      view.part("neighbours-title").replaceChildren(...sentences(...title));
    } catch (error) {
      if (view.alive) showError(errors.neighbours, error);
    }
  }

  // ------------------------------------------------------------ arithmetic and dot product

  async function runArithmetic() {
    const expression = arithmeticInput.value;
    const results = view.part("arithmetic-results");
    const notes = view.part("arithmetic-notes");
    try {
      const data = await arithmetic(expression, 10);
      if (!view.alive || arithmeticInput.value !== expression) return;
      showError(errors.arithmetic, null);
      renderList(results, data.neighbours, "arithmetic-result");
      notes.replaceChildren(...sentences(withData(t("embedding_space.arithmetic_result"), { terms: termText(data.terms) }),
        ...termNotes(data.terms)));
    } catch (error) {
      if (!view.alive) return;
      results.replaceChildren();
      notes.replaceChildren();
      showError(errors.arithmetic, error);
    }
  }

  async function runDot() {
    try {
      const d = await dot({ word: dotA.value }, { word: dotB.value });
      if (!view.alive) return;
      showError(errors.dot, null);
      dotResult.dataset.dot = String(d.dot);
      dotResult.dataset.cosine = String(d.cosine);
      const angle = (Math.acos(Math.max(-1, Math.min(1, d.cosine))) * 180) / Math.PI;
      dotResult.replaceChildren(...sentences(
        withData(t("embedding_space.dot_result", { dot: fmt(d.dot, 4), norm_a: fmt(d.norm_a, 3), norm_b: fmt(d.norm_b, 3),
          cosine: fmt(d.cosine, 4), angle: angle.toFixed(1) }), { a: visible(d.a.text), b: visible(d.b.text) }),
        [d.cosine > 0.3 ? t("embedding_space.dot_related") : d.cosine < -0.1 ? t("embedding_space.dot_opposite")
          : t("embedding_space.dot_perpendicular")],
        ...termNotes([d.a, d.b])));
    } catch (error) {
      if (!view.alive) return;
      dotResult.replaceChildren();
      showError(errors.dot, error);
    }
  }

  // ------------------------------------------------------------ positions

  async function drawPositions() {
    const run = selectRun(s, runKey);
    const Plotly = plotly();
    if (!run || !Plotly) return;
    try {
      const w = await positions(run.runId);
      if (!current(run)) return;
      const [n, d] = w.hook_pos_embed.shape; // [pos, d_model]
      const labels = run.tokens.map((tok) => `${tok.position} ${plotlyText(visible(tok.text))}`);
      const rows = [];
      let limit = 0;
      for (let i = 0; i < n; i++) {
        const row = Array.from(w.hook_pos_embed.data.subarray(i * d, (i + 1) * d));
        for (const v of row) limit = Math.max(limit, Math.abs(v));
        rows.push(row);
      }
      const cos = []; // [pos, pos]
      for (let i = 0; i < n; i++) cos.push(Array.from(w.position_cosine.data.subarray(i * n, (i + 1) * n)));
      const height = Math.max(200, Math.min(520, 60 + n * 16)) * (s.presenter ? 1.3 : 1);
      // automargin: the labels and titles push the margins out rather than being cut off.
      const y = { autorange: "reversed", showgrid: false, automargin: true, tickmode: n <= 40 ? "array" : "auto", tickvals: n <= 40 ? labels : undefined };
      const hover = t("embedding_space.positions_hover", { position: "%{y}", dimension: "%{x}", value: "%{z:.4f}" });
      await Plotly.react(heatmapBox, [{
        type: "heatmap", z: rows, y: labels, colorscale: divergingScale, zmin: -limit, zmax: limit,
        colorbar: { thickness: 10 }, hovertemplate: `${hover}<extra></extra>`,
      }], baseLayout(s.presenter, { height, margin: { l: 110, r: 10, t: 6, b: 36 },
        xaxis: { title: { text: t("embedding_space.positions_axis", { last: d - 1 }) }, automargin: true }, yaxis: y }), config);
      if (!current(run)) return;
      await Plotly.react(cosineBox, [{
        type: "heatmap", z: cos, x: labels, y: labels, colorscale: divergingScale, zmin: -1, zmax: 1,
        colorbar: { thickness: 10 }, hovertemplate: "cos(W_pos[%{y}], W_pos[%{x}]) = %{z:.4f}<extra></extra>",
      }], baseLayout(s.presenter, { height, margin: { l: 110, r: 10, t: 6, b: 90 },
        xaxis: { showgrid: false, tickangle: -60, automargin: true, tickmode: y.tickmode, tickvals: y.tickvals }, yaxis: y,
        shapes: focusShapes(labels) }), config);
      positionLabels = labels;
      showError(errors.positions, null);
    } catch (error) {
      if (current(run)) showError(errors.positions, error);
    }
  }

  /** A frame around the row of the token in focus, in the cosine heatmap. */
  function focusShapes(labels) {
    const i = detailToken(s, runKey);
    if (i == null || !labels || i >= labels.length) return [];
    return [{ type: "rect", xref: "paper", x0: 0, x1: 1, yref: "y", y0: i - 0.5, y1: i + 0.5, line: { color: FOCUS, width: 3 } }];
  }

  function markPosition() {
    const Plotly = plotly();
    if (!Plotly || !positionLabels || !cosineBox.data) return;
    Plotly.relayout(cosineBox, { shapes: focusShapes(positionLabels) });
  }

  // ------------------------------------------------------------ wiring

  const soonNeighbours = later(() => loadNeighbours(), 120);
  const soonMap = later(() => drawMap(), 60);

  /** Bring the stage up to date with the store: called only while it is on screen, so a new
   * prompt costs no map, neighbour or position request until someone looks at this stage. */
  function update() {
    const run = selectRun(s, runKey);
    const focus = detailToken(s, runKey);
    const newRun = run !== drawn.run;
    if (newRun) {
      drawn.run = run;
      mapData = null;
      positionLabels = null;
      mapPrompt = [];
      if (run) {
        loadMap();
        drawPositions();
      }
    } else if (s.presenter !== drawn.presenter) {
      drawMap();
      drawPositions();
    }
    drawn.presenter = s.presenter;
    if (newRun || focus !== drawn.focus) {
      drawn.focus = focus;
      if (!newRun) {
        soonMap();
        markPosition();
      }
      if (!neighbourWord) soonNeighbours();
    }
  }

  /** The first arithmetic and dot product, once the model is known (the inputs' limits are set
   * from it by views.js startup). */
  function modelKnown() {
    if (!s.model || weightsAsked) return;
    weightsAsked = true;
    runArithmetic();
    runDot();
  }

  // Every listener here is inside root; unmounting removes them all.
  const submit = (name, fn) => view.on(view.part(name), "submit", (event) => {
    event.preventDefault();
    fn();
  });
  submit("map-add", () => {
    const words = mapWord.value.split(",").map((w) => w.trim()).filter(Boolean);
    if (!words.length) return;
    addedWords = [...addedWords, ...words.filter((w) => !addedWords.includes(w))];
    if (s.model) addedWords = addedWords.slice(-s.model.limits.max_map_words);
    mapWord.value = "";
    loadMap();
  });
  view.on(view.parts.mapClear, "click", () => {
    addedWords = [];
    loadMap();
  });
  submit("neighbours-form", () => {
    neighbourWord = neighbourBox.value.trim() ? neighbourBox.value : "";
    loadNeighbours();
  });
  view.on(neighbourBox, "input", () => {
    if (!neighbourBox.value.trim() && neighbourWord) {
      neighbourWord = "";
      loadNeighbours();
    }
  });
  submit("arithmetic-form", runArithmetic);
  submit("dot-form", runDot);

  const watch = onScreen(root, "400px 0px");
  view.watch(["runs", "shown", "hovered", "pinned", "presenter"], () => watch.whenVisible(update));
  view.watch(["model"], modelKnown);
  view.cleanup(watch.stop, soonNeighbours.cancel, soonMap.cancel);
  view.plots(mapBox, heatmapBox, cosineBox); // purging drops the click handler too
  modelKnown();
  watch.whenVisible(update);
  return view.unmount;
}
