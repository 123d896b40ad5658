/**
 * logit_lens.js — stage 9: the logit lens grid, layers x positions. Each cell is the top guess of
 * the final LayerNorm + unembedding applied to that layer's residual stream at that position,
 * shaded by its probability (viridis, like the attention weights); a framed cell is where the
 * model's final answer is already the top guess. Clicking a cell lists its top 10; the chart
 * follows the rank of the final answer through the layers for the token in focus.
 * Data: GET /api/runs/{id}/logit-lens (all positions for short prompts, a window for long ones).
 */
import { css, el, inkOn, pct, plotlyText, viridis, visible } from "./colors.js";
import { baseLayout, config, later, plotly } from "./plots.js";
import { detailToken, focusToken, set, state, subscribe } from "./state.js";
import * as api from "./vectors_api.js";

const $ = (id) => document.getElementById(id);
const table = $("logit-lens");
const midBox = $("lens-mid");
const status = $("lens-status");
const MAX_ALL = 48; // prompts up to this many tokens get every position; longer ones a window
const WINDOW = 32;

let lens = null; // the last answer
let picked = null; // {row, pos} clicked by the user, or null
let loading = 0;

function showError(error) {
  const box = $("lens-error");
  box.textContent = error ? error.message || String(error) : "";
  box.hidden = !error;
  if (error && error.name !== "ApiError") console.error(error);
}

/** The positions to ask for: all of a short prompt; a window around the token in focus otherwise. */
function wantedPositions() {
  const n = state.run.tokens.length;
  if (n <= MAX_ALL) return null;
  const centre = state.pinned ?? n - 1; // pinned, not hovered: the window must not jump under the mouse
  const start = Math.max(0, Math.min(n - WINDOW, centre - WINDOW / 2));
  return Array.from({ length: WINDOW }, (_, i) => start + i);
}

async function load() {
  const run = state.run;
  if (!run) return;
  const positions = wantedPositions();
  const stream = midBox.checked ? "both" : "resid_post";
  const mine = ++loading;
  status.textContent = "Computing the lens…";
  try {
    const data = await api.logitLens(run.runId, { positions, k: 10, stream });
    if (mine !== loading || state.run !== run) return;
    showError(null);
    lens = data;
    if (picked && !lens.positions.includes(picked.pos)) picked = null;
    if (picked && picked.row >= lens.rows.length) picked = null;
    const n = run.tokens.length;
    status.textContent = positions
      ? `Showing positions ${positions[0]}–${positions[positions.length - 1]} of ${n} (pin a token to move the window).`
      : `${lens.rows.length} rows × ${n} positions.`;
    render();
  } catch (error) {
    if (mine === loading) {
      status.textContent = "";
      showError(error);
    }
  }
}

function render() {
  const run = state.run;
  if (!run || !lens) {
    table.replaceChildren();
    return;
  }
  const head = el("tr", {}, el("th", { class: "corner", scope: "col", text: "layer ↓ · token →" }));
  for (const p of lens.positions) {
    const token = run.tokens[p];
    head.append(el("th", { scope: "col", "data-pos": p },
      el("button", { type: "button", class: "chip lens-tok", "data-index": p, title: `token ${p}: ${JSON.stringify(token.text)} (id ${token.id})` },
        el("span", { class: "t", text: visible(token.text) }))));
  }
  const body = el("tbody");
  const last = lens.rows.length - 1;
  lens.rows.forEach((row, r) => {
    const label = r === last && row.hook.endsWith("hook_resid_post") ? `${row.label} = output` : row.label;
    const tr = el("tr", { "data-row": r }, el("th", { scope: "row", title: row.hook, text: label }));
    lens.positions.forEach((p, i) => {
      const cell = lens.cells[r][i];
      const top = cell.top[0];
      const rgb = viridis(top.prob);
      const td = el("td", {
        class: cell.final_rank === 1 ? "lens-cell hit" : "lens-cell",
        "data-testid": "lens-cell", "data-row": r, "data-pos": p, "data-token-id": top.id, "data-prob": top.prob,
        "data-rank": cell.final_rank, tabindex: r === 0 && i === 0 ? "0" : "-1",
        title: `${row.hook} at token ${p}: top guess “${visible(top.text)}” ${pct(top.prob)}; the final answer “${visible(lens.final[i].text)}” ranks #${cell.final_rank} (${pct(cell.final_prob)})`,
        style: `background:${css(rgb)};color:${inkOn(rgb)}`,
      },
      el("span", { class: "tt", text: visible(top.text) }),
      el("span", { class: "meta" },
        el("span", { class: "pp", text: pct(top.prob) }),
        cell.final_rank > 1 ? el("span", { class: "rk", text: `#${cell.final_rank}` }) : null));
      tr.append(td);
    });
    body.append(tr);
  });
  const foot = el("tr", { class: "final" }, el("th", { scope: "row", text: "first on top" }));
  lens.positions.forEach((p, i) => {
    const r = lens.first_top_row[i];
    foot.append(el("td", { "data-pos": p, title: `the final answer “${visible(lens.final[i].text)}” first becomes the top guess at ${r == null ? "no row" : lens.rows[r].hook}`,
      text: r == null ? "—" : lens.rows[r].label }));
  });
  table.replaceChildren(el("thead", {}, head), body, el("tfoot", {}, foot));
  table.dataset.rows = String(lens.rows.length);
  table.dataset.positions = String(lens.positions.length);
  paintFocus();
  renderDetail();
  showPinnedColumn();
}

/** The window is centred on the pinned token: scroll its column into the middle of the view
 * (sideways only, never the page), or it sits off-screen on a narrow card. */
function showPinnedColumn() {
  const scroller = table.closest(".lens-scroll");
  const column = state.pinned != null ? table.querySelector(`thead th[data-pos="${state.pinned}"]`) : null;
  if (!scroller || !column) return;
  const corner = table.querySelector("th.corner").offsetWidth;
  scroller.scrollLeft = Math.max(0, column.offsetLeft - corner - (scroller.clientWidth - corner - column.offsetWidth) / 2);
}

/** Highlight the column of the token in focus (the same token as the chips). */
function paintFocus() {
  const focus = focusToken();
  for (const node of table.querySelectorAll("[data-pos]")) {
    node.classList.toggle("focus", focus != null && Number(node.dataset.pos) === focus);
  }
  for (const node of table.querySelectorAll(".lens-tok")) {
    node.classList.toggle("pinned", Number(node.dataset.index) === state.pinned);
  }
  for (const node of table.querySelectorAll(".lens-cell.picked")) node.classList.remove("picked");
  if (picked) {
    const cell = table.querySelector(`.lens-cell[data-row="${picked.row}"][data-pos="${picked.pos}"]`);
    if (cell) cell.classList.add("picked");
  }
}

function detailPosition() {
  if (!lens) return null;
  if (picked) return picked.pos;
  const i = detailToken();
  return i != null && lens.positions.includes(i) ? i : lens.positions[lens.positions.length - 1];
}

function renderDetail() {
  const run = state.run;
  if (!run || !lens) return;
  const pos = detailPosition();
  const i = lens.positions.indexOf(pos);
  const r = picked ? picked.row : lens.rows.length - 1;
  const cell = lens.cells[r][i];
  const token = run.tokens[pos];
  $("lens-cell-title").textContent = `Top 10 after ${lens.rows[r].label} (${lens.rows[r].hook}), at token ${pos} “${visible(token.text)}”`;
  const list = $("lens-cell");
  list.dataset.row = String(r);
  list.dataset.pos = String(pos);
  list.replaceChildren(...cell.top.map((t) => el("li", { class: "vec-item", "data-testid": "lens-top", "data-token-id": t.id, "data-prob": t.prob,
    title: `id ${t.id}, logit ${t.logit.toFixed(4)}` },
  el("span", { class: "label", text: visible(t.text) }),
  el("span", { class: "track" }, el("span", { class: "fill", style: `width:${(t.prob * 100).toFixed(2)}%` })),
  el("span", { class: "value", text: pct(t.prob) }))));
  drawRank(pos, i);
}

function drawRank(pos, i) {
  const Plotly = plotly();
  if (!Plotly) return;
  const final = lens.final[i];
  const ranks = lens.cells.map((row) => row[i].final_rank);
  $("lens-rank-title").textContent = `Rank of the final answer “${visible(final.text)}” (${pct(final.prob)}) at token ${pos}, layer by layer`;
  Plotly.react($("lens-rank"), [{
    type: "scatter", mode: "lines+markers", x: lens.rows.map((row) => row.label), y: ranks,
    marker: { color: ranks.map((k) => (k === 1 ? "#f0a000" : "#0063a0")), size: 8 },
    line: { color: "#0063a0" },
    customdata: lens.cells.map((row) => plotlyText(visible(row[i].top[0].text))),
    hovertemplate: "%{x}: rank %{y} (top guess there: %{customdata})<extra></extra>",
  }], baseLayout({
    height: state.presenter ? 320 : 260,
    margin: { l: 60, r: 10, t: 6, b: 60 },
    xaxis: { type: "category", tickangle: -45 },
    yaxis: { type: "log", dtick: 1, autorange: "reversed", title: { text: "rank (1 = top guess)" } },
  }), config);
}

function onTableEvent(event) {
  const tok = event.target.closest(".lens-tok");
  if (event.type === "mouseover") {
    if (tok) {
      const i = Number(tok.dataset.index);
      if (i !== state.hovered) set({ hovered: i });
    }
    return;
  }
  if (tok) {
    const i = Number(tok.dataset.index);
    set({ pinned: state.pinned === i ? null : i });
    return;
  }
  const cell = event.target.closest(".lens-cell");
  if (cell) {
    const next = { row: Number(cell.dataset.row), pos: Number(cell.dataset.pos) };
    picked = picked && picked.row === next.row && picked.pos === next.pos ? null : next;
    paintFocus();
    renderDetail();
  }
}

/** Keyboard: arrows move between cells (one tab stop for the whole grid), Enter or Space picks. */
function onTableKey(event) {
  const cell = event.target.closest && event.target.closest(".lens-cell");
  if (!cell || !lens) return;
  const r = Number(cell.dataset.row);
  const i = lens.positions.indexOf(Number(cell.dataset.pos));
  const moves = { ArrowUp: [r - 1, i], ArrowDown: [r + 1, i], ArrowLeft: [r, i - 1], ArrowRight: [r, i + 1] };
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    cell.click();
  } else if (event.key in moves) {
    event.preventDefault();
    const [r2, i2] = moves[event.key];
    if (r2 < 0 || r2 >= lens.rows.length || i2 < 0 || i2 >= lens.positions.length) return;
    const next = table.querySelector(`.lens-cell[data-row="${r2}"][data-pos="${lens.positions[i2]}"]`);
    if (!next) return;
    cell.tabIndex = -1;
    next.tabIndex = 0;
    next.focus();
  }
}

const soonLoad = later(() => load(), 80);
const soonFocus = later(() => {
  if (!lens || !state.run) return;
  const wanted = wantedPositions();
  if (wanted && (wanted[0] !== lens.positions[0] || wanted.length !== lens.positions.length)) {
    soonLoad();
    return;
  }
  paintFocus();
  renderDetail();
}, 40);

/** A function that runs fn now if the section is on (or near) the screen, or else once it
 * scrolls into view: a new prompt costs no lens request until someone looks at the lens. */
function whenOnScreen(section, fn) {
  let visible = false;
  let pending = false;
  new IntersectionObserver((entries) => {
    visible = entries.some((e) => e.isIntersecting);
    if (visible && pending) {
      pending = false;
      fn();
    }
  }, { rootMargin: "400px 0px" }).observe(section);
  return () => {
    if (visible) fn();
    else pending = true;
  };
}

function init() {
  const loadWhenSeen = whenOnScreen($("stage-logit-lens"), () => load());
  table.addEventListener("click", onTableEvent);
  table.addEventListener("keydown", onTableKey);
  table.addEventListener("mouseover", onTableEvent);
  table.addEventListener("mouseleave", () => {
    if (state.hovered != null) set({ hovered: null });
  });
  midBox.addEventListener("change", () => load());
  subscribe(["run"], () => {
    lens = null;
    picked = null;
    table.replaceChildren();
    loadWhenSeen();
  });
  subscribe(["hovered", "pinned"], soonFocus);
  subscribe(["presenter"], () => renderDetail());
  if (state.run) loadWhenSeen();
}

init();
