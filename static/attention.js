/**
 * attention.js — stage 4: the selected layer and head, the N×N pattern as a Plotly heatmap
 * (rows = the token that looks, columns = the token looked at; the masked future in grey), a
 * toggle between raw scores qkᵀ/√d, masked scores and softmax weights, and all heads as small
 * multiples (one layer, or all of them) where a click selects a head (in "switch heads off" mode,
 * store.state.ablate, it switches the head off or back on; a switched-off head has the class
 * `ablated`). The hovered or pinned
 * token's row is outlined. For a long prompt (run.patternsMode "per-layer") a layer's pattern is
 * fetched when it is selected: the heatmap is dimmed and the title says "loading layer N…" until
 * it arrives, and the all-layers grid shows the layers loaded so far (never fetching all of them).
 *
 * mount(root, store, runKey): draws the run shown under `runKey` into the attention stage `root`;
 * returns the unmount function. (The layer and head selects are in the token bar: selects.js.)
 *
 * rawScores(q, k, head): the scores q·k/√d_head of one head, future included. [q_pos, k_pos]
 */
import { selectHead } from "./actions.js";
import { getLayer, headScores, slice } from "./api.js";
import { divergingScale, drawMatrix, viridisScale } from "./colors.js";
import { el, mountView } from "./dom.js";
import { megabytes, plotlyText, visible } from "./format.js";
import { hookName } from "./hooks.js";
import { t } from "./i18n.js";
import { later, onScreen } from "./lazy.js";
import { baseLayout, config, plotly } from "./plots.js";
import { focusToken, headAblated, headIntervention, selectPattern, selectPatternError, selectRun, toggled } from "./store.js";

/** Raw scores q·k/√d_head for every pair (future included), from the model's q and k
 * ([pos, head, d_head] each). [q_pos, k_pos], flattened */
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

/** What a cell holds in each mode: the colour bar's title and the hover's word. */
function quantity(mode) {
  if (mode === "pattern") return t("attention.quantity_weight");
  if (mode === "masked") return t("attention.quantity_masked");
  // q·k, not qk: Plotly's colour bar cannot mark its title translate="no", so the formula holds no word.
  return t("attention.quantity_scores", { formula: "q·k/√d" });
}

export function mount(root, store, runKey) {
  const state = store.state;
  const view = mountView(root, store);
  const { title, heatmap: plot, row: rowBox, grid, allLayers } = view.parts;
  const modes = view.all("mode");
  let shownRun = null; // the run last drawn: a run added under another key changes nothing here
  let drawn = null; // {n, top, rowHeight} of the heatmap on screen
  let drawSerial = 0;
  let plotEvents = null; // Plotly's handlers on this mount's heatmap, once it has been drawn

  const heading = (layer, head) => t("attention.heading", { layer, head });

  /** The pattern of `layer`, asked for when missing (it arrives with a patternsLoaded bump). */
  function patternOf(layer) {
    const weights = selectPattern(state, runKey, layer);
    if (!weights) store.requestPattern(runKey, layer);
    return weights;
  }

  /** The old heatmap dimmed, not passed off as this layer's, while `text` says why. */
  function wait(text) {
    title.textContent = text;
    plot.style.opacity = "0.3";
    drawn = null;
    highlightRow();
  }

  async function draw() {
    const run = selectRun(state, runKey);
    const Plotly = plotly();
    if (!run || !Plotly) return;
    const serial = ++drawSerial;
    const n = run.tokens.length;
    const mode = state.attnMode;
    const { layer, head } = state;
    let values;
    if (mode === "pattern") {
      const weights = patternOf(layer);
      if (!weights) {
        const error = selectPatternError(state, runKey, layer);
        wait(error ? t("attention.heading_failed", { layer, head, error: error.message }) : t("attention.heading_loading", { layer, head }));
        return;
      }
      title.textContent = heading(layer, head);
      values = slice(weights, head);
    } else {
      title.textContent = heading(layer, head);
      let tensors;
      try {
        tensors = await getLayer(run.runId, layer, ["attn.hook_q", "attn.hook_k"]);
      } catch (error) {
        if (serial === drawSerial) wait(t("attention.heading_failed", { layer, head, error: error.message }));
        return;
      }
      if (serial !== drawSerial) return;
      values = rawScores(tensors[hookName("attn.hook_q", layer)], tensors[hookName("attn.hook_k", layer)], head);
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
    const names = run.tokens.map((token) => plotlyText(visible(token.text)));
    const ticks = Array.from({ length: n }, (_, i) => i);
    const step = Math.max(1, Math.ceil(n / 40));
    const tickvals = ticks.filter((i) => i % step === 0);
    const ticktext = tickvals.map((i) => names[i]);
    const what = quantity(mode);
    // Plotly's own %{…} go in as parameters, so the catalog's words never touch them.
    const value = plotlyText(t("attention.hover_value", { what, value: "%{z:.4f}" }));
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
      colorbar: { thickness: 12, len: 0.9, title: { text: plotlyText(what), side: "right" } },
      hoverongaps: false,
      hovertemplate: `${plotlyText(t("attention.hover_cell", { query: "%{y}", key: "%{x}" }))}<br>${value}<extra></extra>`,
    };
    if (n <= 160) {
      trace.customdata = z.map((row, i) => row.map((_, j) => [names[i], names[j]]));
      const cell = t("attention.hover_cell_tokens", { query_text: "%{customdata[0]}", query: "%{y}", key_text: "%{customdata[1]}", key: "%{x}" });
      trace.hovertemplate = `${plotlyText(cell)}<br>${value}<extra></extra>`;
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
      hovertemplate: `${plotlyText(t("attention.hover_masked"))}<extra></extra>`,
    };
    // On a projector the heatmap takes the card's width, up to the screen's height.
    const size = state.presenter
      ? Math.max(420, Math.min((plot.clientWidth || 1000) - 100, innerHeight - 40))
      : Math.min(600, Math.max(420, 170 + n * 14));
    const layout = baseLayout(state.presenter, {
      height: size,
      // A square plot area, with room for the labels and the colour bar: no empty band in between.
      width: Math.min(plot.clientWidth || 10000, size - 100 + 90 + 110),
      margin: { l: 90, r: 10, t: 10, b: 90 },
      // automargin: long token labels push the axis titles out instead of running into them.
      xaxis: { tickvals, ticktext, tickangle: -60, automargin: true, title: { text: plotlyText(t("attention.axis_key")), standoff: 10 },
        constrain: "domain", showgrid: false, zeroline: false },
      yaxis: { tickvals, ticktext, autorange: "reversed", automargin: true, title: { text: plotlyText(t("attention.axis_query")), standoff: 10 },
        scaleanchor: "x", constrain: "domain", showgrid: false, zeroline: false },
    });
    await Plotly.react(plot, [trace, maskTrace], layout, config);
    if (serial !== drawSerial) return;
    // The tick labels are token texts: not the page's language.
    for (const ticks of plot.querySelectorAll(".xaxislayer-above, .yaxislayer-above")) ticks.setAttribute("translate", "no");
    plot.style.opacity = "";
    drawn = { n };
    attachPlotEvents();
    placeRowBox();
    highlightRow();
  }

  function redraw() {
    draw().catch((error) => console.error(error));
  }

  /** Hovering a cell's row is hovering that token (the chips and the other views follow); a
   * click pins it. Plotly's graph div has `on` only once drawn, hence after the first draw. */
  function attachPlotEvents() {
    if (plotEvents || !plot.on) return;
    plotEvents = {
      plotly_hover: (data) => {
        const point = data.points && data.points[0];
        if (point && Number.isInteger(point.y) && point.y !== state.hovered) store.set({ hovered: point.y });
      },
      plotly_unhover: () => store.set({ hovered: null }),
      plotly_click: (data) => {
        const point = data.points && data.points[0];
        if (point && Number.isInteger(point.y)) store.set({ pinned: state.pinned === point.y ? null : point.y });
      },
    };
    for (const [name, fn] of Object.entries(plotEvents)) plot.on(name, fn);
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
    const focus = focusToken(state, runKey);
    if (focus == null || !drawn || drawn.top == null || focus >= drawn.n) {
      rowBox.style.visibility = "hidden";
      return;
    }
    rowBox.style.transform = `translateY(${(drawn.top + focus * drawn.rowHeight).toFixed(1)}px)`;
    rowBox.style.visibility = "visible";
  }

  // Head detectors (GET /head-scores): a head whose strongest score is at least BADGE gets a tag.
  const BADGE = 0.5;
  let detected = null; // {runId, body}
  const screen = onScreen(root);

  async function loadDetectors(run) {
    detected = { runId: run.runId, body: null };
    try {
      const body = await headScores(run.runId);
      if (detected && detected.runId === run.runId && view.alive) { // an answer after unmount draws nothing
        detected.body = body;
        drawGrid();
      }
    } catch (error) {
      if (error.name !== "ApiError") console.error(error);
    }
  }

  function badgeOf(run, layer, head) {
    if (!detected || detected.runId !== run.runId || !detected.body) return null;
    let best = null;
    for (const kind of ["previous_token", "duplicate_token", "induction"]) {
      const score = detected.body[kind][layer][head];
      if (score != null && score >= BADGE && (!best || score > best.score)) best = { kind, score };
    }
    if (!best) return null;
    return el("span", { class: "grid-badge", "data-testid": "grid-badge", "data-layer": layer, "data-head": head,
      "data-kind": best.kind, "data-score": String(best.score), title: t(`attention.badge_title_${best.kind}`, { score: best.score.toFixed(2) }) },
    t(`attention.badge_${best.kind}`));
  }

  /** The heads as small multiples: the selected layer's, or every layer's. For a per-layer run the
   * grid never asks for a layer on its own: all 144 heads of a long prompt would be hundreds of MB
   * (12·12·n²·2 bytes), so it draws the layers loaded so far and a button per missing layer that
   * selects it (which loads it). */
  function drawGrid() {
    const run = selectRun(state, runKey);
    grid.replaceChildren();
    if (!run || !state.model) return;
    // The scores cost the server a third of a pass: asked for only once this stage is seen, not
    // for every prompt a student types.
    if (!detected || detected.runId !== run.runId) {
      screen.whenVisible(() => {
        const shown = selectRun(state, runKey);
        if (shown && (!detected || detected.runId !== shown.runId)) loadDetectors(shown);
      });
    }
    const { n_layers: L, n_heads: H } = state.model;
    const n = run.tokens.length;
    const all = allLayers.checked;
    const perLayer = run.patternsMode === "per-layer";
    const layers = all ? Array.from({ length: L }, (_, i) => i) : [state.layer];
    grid.classList.toggle("all", all);
    grid.style.setProperty("--cols", String(all ? H : Math.min(H, 6)));
    const wide = { style: "grid-column: 1 / -1" };
    const size = megabytes(H * n * n * 2);
    if (all && perLayer) {
      grid.append(el("p", { class: "muted small", ...wide,
        text: t("attention.grid_per_layer", { heads: L * H, n, total: megabytes(L * H * n * n * 2), size }) }));
    }
    if (all) { // column labels: which head each column is
      grid.append(el("span", { class: "grid-label", "aria-hidden": "true" }));
      for (let head = 0; head < H; head++) {
        grid.append(el("span", { class: "grid-label col", "data-testid": "head-column", text: t("attention.grid_head", { head }) }));
      }
    }
    for (const layer of layers) {
      const selectedLayer = layer === state.layer;
      const weights = selectedLayer ? patternOf(layer) : selectPattern(state, runKey, layer);
      const label = t("attention.grid_layer", { layer });
      if (all) grid.append(el("span", { class: "grid-label", text: label }));
      if (!weights) {
        if (selectedLayer) {
          const error = selectPatternError(state, runKey, layer);
          const text = error ? t("page.layer_failed", { layer, error: error.message }) : t("page.loading_layer", { layer });
          const span = all ? { style: `grid-column: span ${H}` } : wide;
          grid.append(el("p", { class: error ? "error small" : "muted small", ...span, "aria-live": "polite", text }));
        } else {
          grid.append(el("button", { type: "button", class: "head missing", style: `grid-column: span ${H}`,
            "data-layer": layer, "data-head": state.head, "aria-pressed": "false", text: t("attention.grid_missing", { label, size }) }));
        }
        continue;
      }
      for (let head = 0; head < H; head++) {
        const canvas = el("canvas", { "aria-hidden": "true" });
        drawMatrix(canvas, weights.data, n, head * n * n);
        const selected = selectedLayer && head === state.head;
        const short = t("attention.grid_head", { head });
        const name = t("attention.head_name", { layer, head });
        grid.append(el("button", {
          type: "button",
          class: `head${selected ? " selected" : ""}${headAblated(state, layer, head) ? " ablated" : ""}`,
          "data-layer": layer,
          "data-head": head,
          "aria-pressed": selected ? "true" : "false",
          "aria-label": all ? name : t("attention.head_name_shown", { label: short, layer, head }), // the visible name first
          title: name,
        }, canvas, all ? null : el("span", { text: short }), badgeOf(run, layer, head)));
      }
    }
  }

  function markSelected() {
    for (const b of grid.querySelectorAll("button.head:not(.missing)")) {
      const on = Number(b.dataset.layer) === state.layer && Number(b.dataset.head) === state.head;
      b.classList.toggle("selected", on);
      b.classList.toggle("ablated", headAblated(state, Number(b.dataset.layer), Number(b.dataset.head)));
      b.setAttribute("aria-pressed", on ? "true" : "false");
    }
  }

  function followMode() {
    for (const radio of modes) radio.checked = radio.value === state.attnMode;
  }

  // The row box sits in the page's coordinates: place it again once a resize has settled.
  const replace = later(() => {
    placeRowBox();
    highlightRow();
  }, 100);

  // Every listener is let go on unmount, even inside root: a second mount on the same stage
  // must not find the first one still drawing into it.
  for (const radio of modes) view.on(radio, "change", () => radio.checked && store.set({ attnMode: radio.value }));
  view.on(allLayers, "change", drawGrid);
  view.on(grid, "click", (event) => {
    const b = event.target.closest("button.head");
    if (!b) return;
    const layer = Number(b.dataset.layer);
    const head = Number(b.dataset.head);
    // In "switch heads off" mode (experiments.js), a click switches the head off or back on.
    if (state.ablate && !b.classList.contains("missing")) store.set({ interventions: toggled(state.interventions, headIntervention(layer, head)) });
    else selectHead(store, layer, head);
  });
  view.watch(["runs", "shown"], () => {
    const run = selectRun(state, runKey);
    if (run === shownRun) return;
    shownRun = run;
    redraw();
    drawGrid();
  });
  view.watch(["model"], drawGrid);
  view.watch(["attnMode"], followMode);
  view.watch(["layer", "head", "attnMode", "presenter"], redraw);
  view.watch(["patternsLoaded"], () => {
    // A layer arrived (per-layer runs): redraw what waits for it. (drawn === null: the heatmap waits.)
    if (state.attnMode === "pattern" && !drawn) redraw();
    drawGrid();
  });
  view.watch(["hovered", "pinned"], highlightRow);
  view.watch(["layer"], () => {
    const run = selectRun(state, runKey);
    if (allLayers.checked && run && run.patternsMode !== "per-layer") markSelected();
    else drawGrid();
  });
  view.watch(["head", "interventions"], markSelected);
  view.watch(["presenter"], replace);
  view.on(window, "resize", replace);
  view.cleanup(screen.stop, replace.cancel, () => {
    drawSerial++; // a draw still awaiting its data finds itself outdated
    if (plotEvents) for (const [name, fn] of Object.entries(plotEvents)) plot.removeListener(name, fn);
    plotEvents = null;
  });
  followMode();
  shownRun = selectRun(state, runKey);
  if (shownRun) {
    redraw();
    drawGrid();
  }
  return view.unmount;
}
