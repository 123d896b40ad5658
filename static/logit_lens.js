/**
 * logit_lens.js — stage 9: the logit lens grid, layers x positions. Each cell is the top guess of
 * the final LayerNorm + unembedding applied to that layer's residual stream at that position,
 * shaded by its probability (viridis, like the attention weights); a framed cell is where the
 * model's final answer is already the top guess. Clicking a cell lists its top 10; the chart
 * follows the rank of the final answer through the layers for the token in focus.
 * Data: GET /api/runs/{id}/logit-lens (all positions for short prompts, a window for long ones),
 * asked for only once the stage is on screen.
 *
 * mount(root, store, runKey) -> unmount
 */
import { logitLens } from "./api.js";
import { css, inkOn, viridis } from "./colors.js";
import { el, mountView, showError, withData } from "./dom.js";
import { pct, plotlyText, visible } from "./format.js";
import { t } from "./i18n.js";
import { later, onScreen } from "./lazy.js";
import { baseLayout, config, plotly } from "./plots.js";
import { detailToken, focusToken, selectRun } from "./store.js";

const MAX_ALL = 48; // prompts up to this many tokens get every position; longer ones a window
const WINDOW = 32;

/** A row's name in the page's words, from the point of the stream it reads (the server's own
 * label is English, and only a fallback for a stream this page does not know). */
function rowName(row) {
  if (row.hook.endsWith(".hook_resid_pre")) return t("logit_lens.row_embed");
  if (row.hook.endsWith(".hook_resid_mid")) return t("logit_lens.row_attn", { layer: row.layer });
  if (row.hook.endsWith(".hook_resid_post")) return t("logit_lens.row_mlp", { layer: row.layer });
  return row.label;
}

export function mount(root, store, runKey) {
  const s = store.state;
  const view = mountView(root, store);
  const { grid: table, mid: midBox, status, error: errorBox, rank: rankBox } = view.parts;

  let shownRun = null; // the run whose lens is shown or on its way
  let lens = null; // the last answer
  let names = []; // the rows' names, by row
  let picked = null; // {row, pos} clicked by the user, or null
  let loading = 0;

  /** The positions to ask for: all of a short prompt; a window around the token in focus otherwise. */
  function wantedPositions(run) {
    const n = run.tokens.length;
    if (n <= MAX_ALL) return null;
    // Pinned, not hovered: the window must not jump under the mouse.
    const centre = s.pinned != null && s.pinned < n ? s.pinned : n - 1;
    const start = Math.max(0, Math.min(n - WINDOW, centre - WINDOW / 2));
    return Array.from({ length: WINDOW }, (_, i) => start + i);
  }

  async function load() {
    const run = selectRun(s, runKey);
    if (!run) return;
    const positions = wantedPositions(run);
    const stream = midBox.checked ? "both" : "resid_post";
    const mine = ++loading;
    status.textContent = t("logit_lens.computing");
    try {
      const data = await logitLens(run.runId, { positions, k: 10, stream });
      if (!view.alive || mine !== loading || selectRun(s, runKey) !== run) return;
      showError(errorBox, null);
      lens = data;
      names = lens.rows.map(rowName);
      if (picked && !lens.positions.includes(picked.pos)) picked = null;
      if (picked && picked.row >= lens.rows.length) picked = null;
      const n = run.tokens.length;
      status.textContent = positions
        ? t("logit_lens.window", { first: positions[0], last: positions[positions.length - 1], n })
        : t("logit_lens.size", { rows: lens.rows.length, n });
      render(run);
    } catch (error) {
      if (view.alive && mine === loading) {
        status.textContent = "";
        showError(errorBox, error);
      }
    }
  }

  function render(run) {
    const head = el("tr", {}, el("th", { class: "corner", scope: "col", text: t("logit_lens.corner") }));
    for (const p of lens.positions) {
      const token = run.tokens[p];
      head.append(el("th", { scope: "col", "data-pos": p },
        el("button", { type: "button", class: "chip lens-tok", "data-index": p,
          title: t("tokens.chip_title", { position: p, text: visible(token.text), id: token.id }) },
        el("span", { class: "t", translate: "no", text: visible(token.text) }))));
    }
    const body = el("tbody");
    const last = lens.rows.length - 1;
    lens.rows.forEach((row, r) => {
      const name = r === last && row.hook.endsWith(".hook_resid_post") ? t("logit_lens.row_output", { row: names[r] }) : names[r];
      const tr = el("tr", { "data-row": r }, el("th", { scope: "row", title: row.hook, text: name }));
      lens.positions.forEach((p, i) => {
        const cell = lens.cells[r][i];
        const top = cell.top[0];
        const rgb = viridis(top.prob);
        const td = el("td", {
          class: cell.final_rank === 1 ? "lens-cell hit" : "lens-cell",
          "data-testid": "lens-cell", "data-row": r, "data-pos": p, "data-token-id": top.id, "data-prob": top.prob,
          "data-rank": cell.final_rank, tabindex: r === 0 && i === 0 ? "0" : "-1",
          title: t("logit_lens.cell_title", { hook: row.hook, position: p, top: visible(top.text), prob: pct(top.prob),
            final: visible(lens.final[i].text), rank: cell.final_rank, final_prob: pct(cell.final_prob) }),
          style: `background:${css(rgb)};color:${inkOn(rgb)}`,
        },
        el("span", { class: "tt", translate: "no", text: visible(top.text) }),
        el("span", { class: "meta" },
          el("span", { class: "pp", text: pct(top.prob) }),
          cell.final_rank > 1 ? el("span", { class: "rk", text: `#${cell.final_rank}` }) : null));
        tr.append(td);
      });
      body.append(tr);
    });
    const foot = el("tr", { class: "final" }, el("th", { scope: "row", text: t("logit_lens.first_on_top") }));
    lens.positions.forEach((p, i) => {
      const r = lens.first_top_row[i];
      const final = visible(lens.final[i].text);
      foot.append(el("td", { "data-pos": p,
        title: r == null ? t("logit_lens.first_title_never", { final }) : t("logit_lens.first_title", { final, hook: lens.rows[r].hook }),
        text: r == null ? "—" : names[r] }));
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
    const scroller = view.parts.scroll;
    const column = s.pinned != null ? table.querySelector(`thead th[data-pos="${s.pinned}"]`) : null;
    if (!column) return;
    const corner = table.querySelector("th.corner").offsetWidth;
    scroller.scrollLeft = Math.max(0, column.offsetLeft - corner - (scroller.clientWidth - corner - column.offsetWidth) / 2);
  }

  /** Highlight the column of the token in focus (the same token as the chips). */
  function paintFocus() {
    const focus = focusToken(s, runKey);
    for (const node of table.querySelectorAll("[data-pos]")) {
      node.classList.toggle("focus", focus != null && Number(node.dataset.pos) === focus);
    }
    for (const node of table.querySelectorAll(".lens-tok")) {
      node.classList.toggle("pinned", Number(node.dataset.index) === s.pinned);
    }
    for (const node of table.querySelectorAll(".lens-cell.picked")) node.classList.remove("picked");
    if (picked) {
      const cell = table.querySelector(`.lens-cell[data-row="${picked.row}"][data-pos="${picked.pos}"]`);
      if (cell) cell.classList.add("picked");
    }
  }

  function detailPosition() {
    if (picked) return picked.pos;
    const i = detailToken(s, runKey);
    return i != null && lens.positions.includes(i) ? i : lens.positions[lens.positions.length - 1];
  }

  function renderDetail() {
    const run = selectRun(s, runKey);
    if (!run || !lens || run !== shownRun) return;
    const pos = detailPosition();
    const i = lens.positions.indexOf(pos);
    const r = picked ? picked.row : lens.rows.length - 1;
    const cell = lens.cells[r][i];
    view.parts.cellTitle.replaceChildren(...withData(t("logit_lens.cell_top", { k: cell.top.length, row: names[r], position: pos }),
      { hook: lens.rows[r].hook, text: visible(run.tokens[pos].text) }));
    const list = view.parts.cell;
    list.dataset.row = String(r);
    list.dataset.pos = String(pos);
    list.replaceChildren(...cell.top.map((top) => el("li", { class: "vec-item", "data-testid": "lens-top", "data-token-id": top.id,
      "data-prob": top.prob, title: t("logit_lens.top_title", { id: top.id, logit: top.logit.toFixed(4) }) },
    el("span", { class: "label", translate: "no", text: visible(top.text) }),
    el("span", { class: "track" }, el("span", { class: "fill", style: `width:${(top.prob * 100).toFixed(2)}%` })),
    el("span", { class: "value", text: pct(top.prob) }))));
    drawRank(pos, i);
  }

  function drawRank(pos, i) {
    const Plotly = plotly();
    if (!Plotly) return;
    const final = lens.final[i];
    const ranks = lens.cells.map((row) => row[i].final_rank);
    view.parts.rankTitle.replaceChildren(...withData(t("logit_lens.rank_title", { prob: pct(final.prob), position: pos }),
      { text: visible(final.text) }));
    const hover = t("logit_lens.rank_hover", { row: "%{x}", rank: "%{y}", guess: "%{customdata}" });
    Plotly.react(rankBox, [{
      type: "scatter", mode: "lines+markers", x: names.map(plotlyText), y: ranks,
      marker: { color: ranks.map((k) => (k === 1 ? "#f0a000" : "#0063a0")), size: 8 },
      line: { color: "#0063a0" },
      customdata: lens.cells.map((row) => plotlyText(visible(row[i].top[0].text))),
      hovertemplate: `${hover}<extra></extra>`,
    }], baseLayout(s.presenter, {
      height: s.presenter ? 320 : 260,
      margin: { l: 60, r: 10, t: 6, b: 60 },
      xaxis: { type: "category", tickangle: -45 },
      yaxis: { type: "log", dtick: 1, autorange: "reversed", title: { text: t("logit_lens.rank_axis") } },
    }), config);
  }

  function onTableEvent(event) {
    const tok = event.target.closest(".lens-tok");
    if (event.type === "mouseover") {
      if (tok) {
        const i = Number(tok.dataset.index);
        if (i !== s.hovered) store.set({ hovered: i });
      }
      return;
    }
    if (tok) {
      const i = Number(tok.dataset.index);
      store.set({ pinned: s.pinned === i ? null : i });
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

  const watch = onScreen(root, "400px 0px");
  const soonLoad = later(() => load(), 80);
  const soonFocus = later(() => {
    const run = selectRun(s, runKey);
    if (!lens || !run || run !== shownRun) return;
    const wanted = wantedPositions(run);
    if (wanted && (wanted[0] !== lens.positions[0] || wanted.length !== lens.positions.length)) {
      soonLoad();
      return;
    }
    paintFocus();
    renderDetail();
  }, 40);

  function runChanged() {
    const run = selectRun(s, runKey);
    if (run === shownRun) return;
    shownRun = run;
    lens = null;
    picked = null;
    loading++; // an answer still on its way is for the previous run
    table.replaceChildren();
    delete table.dataset.rows;
    if (run) watch.whenVisible(load); // a new prompt costs no lens request until someone looks at the lens
  }

  // Every listener here is inside root; unmounting removes them all.
  view.on(table, "click", onTableEvent);
  view.on(table, "keydown", onTableKey);
  view.on(table, "mouseover", onTableEvent);
  view.on(table, "mouseleave", () => {
    if (s.hovered != null) store.set({ hovered: null });
  });
  view.on(midBox, "change", () => watch.whenVisible(load));
  view.watch(["runs", "shown"], runChanged);
  view.watch(["hovered", "pinned"], soonFocus);
  view.watch(["presenter"], () => renderDetail());
  view.cleanup(watch.stop, soonLoad.cancel, soonFocus.cancel);
  view.plots(rankBox);
  runChanged();
  return view.unmount;
}
