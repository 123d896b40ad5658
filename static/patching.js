/**
 * patching.js — the activation-patching sweep. Two prompts that differ in one word (clean and
 * corrupted), a target and a baseline token, and a hook: POST /api/patching patches each clean
 * activation (every layer × every position, or every head for z) into the corrupted run and
 * answers (LD_patched − LD_corrupted) / (LD_clean − LD_corrupted), LD = logit(target) −
 * logit(baseline) at the last position. The grid is a heatmap (layers × the corrupted prompt's
 * tokens, or heads); clicking a cell says what that cell is and runs that one patch through
 * POST /api/analyze with `interventions`, showing P(target) and P(baseline) with and without it.
 *
 * When the answer is not `reliable` (the two prompts barely differ in their LD, so every cell is
 * a small change divided by almost nothing), the heatmap is not drawn: a message says so in
 * words, with a button that draws it anyway, the message staying above it.
 *
 * Nothing is asked for until Run is pressed. The view does not read the shown run: runKey is
 * taken for the common signature only.
 *
 * mount(root, store, runKey) -> unmount
 */
import { analyzeWith, explain } from "./actions.js";
import { analyzeRaw, decodeTensor, patching } from "./api.js";
import { el, mountView, showError, withData } from "./dom.js";
import { fmt, pct, plotlyText, visible } from "./format.js";
import { hookName } from "./hooks.js";
import { t } from "./i18n.js";
import { baseLayout, config, divergingCells, plotly } from "./plots.js";

/** The full hook name a sweep's `hook` patches at layer L (z is per head). */
const HOOKS = {
  resid_pre: (layer) => hookName("hook_resid_pre", layer),
  attn_out: (layer) => hookName("hook_attn_out", layer),
  mlp_out: (layer) => hookName("hook_mlp_out", layer),
  z: (layer) => hookName("attn.hook_z", layer),
};

/** Probabilities of `ids` under the softmax of an analyze answer's last-position logits. */
function probsOf(body, ids) {
  const logits = decodeTensor(body.tensors.logits).data;
  let max = -Infinity;
  for (const x of logits) if (x > max) max = x;
  let sum = 0;
  for (const x of logits) sum += Math.exp(x - max);
  return ids.map((id) => Math.exp(logits[id] - max) / sum);
}

/** One word's single token, the word read with a space in front (" Mary"); an Error that says
 * so when it is several tokens. */
async function tokenOf(word, signal) {
  const text = ` ${word.trim()}`;
  const body = await analyzeRaw(text, [], signal);
  if (body.tokens.length !== 1) {
    const error = new Error(t("patching.not_one_token", {
      word: visible(text), n: body.tokens.length, pieces: body.tokens.map((tok) => `“${visible(tok.text)}”`).join(", "),
    }));
    error.name = "WordError"; // the person's input, not a fault of the page: shown, not logged
    throw error;
  }
  return { id: body.tokens[0].id, text: body.tokens[0].text };
}

export function mount(root, store, runKey) { // eslint-disable-line no-unused-vars
  const view = mountView(root, store);
  const { form, clean, corrupted, target, baseline, hook: hookSelect, run: runButton, status, lds, heatmap, cell: cellLine,
    cellResult, error: errorBox } = view.parts;
  const inputs = { clean, corrupted, target, baseline };
  // Said instead of the heatmap when the sweep is not reliable (made here: the template is shared).
  const unreliable = el("div", { class: "patching-unreliable", "data-testid": "patching-unreliable", role: "note", hidden: true });
  lds.after(unreliable);

  let controller = null; // aborts the sweep (or cell) in flight
  let sweep = null; // {answer, clean, corrupted, target, baseline, plain: Promise<[p_target, p_baseline]>, shown}
  let clickWired = false;
  let cellSerial = 0;

  function fail(error) {
    if (!view.alive || (error && error.name === "AbortError")) return;
    status.textContent = "";
    const said = error && (error.name === "ApiError" ? explain(error) : error.name === "WordError" ? error.message : null);
    showError(errorBox, said ?? error);
  }

  async function run(event) {
    event.preventDefault();
    const words = { target: inputs.target.value, baseline: inputs.baseline.value };
    if (!words.target.trim() || !words.baseline.trim()) {
      showError(errorBox, t("patching.empty_word"));
      return;
    }
    controller?.abort();
    controller = new AbortController();
    const { signal } = controller;
    const clean = inputs.clean.value;
    const corrupted = inputs.corrupted.value;
    const hook = hookSelect.value;
    showError(errorBox, null);
    cellLine.replaceChildren();
    cellResult.replaceChildren();
    // Until the new answer, nothing of the last one is shown (it was for other inputs).
    sweep = null;
    hideHeatmap();
    lds.hidden = true;
    unreliable.hidden = true;
    runButton.disabled = true;
    try {
      status.textContent = t("patching.resolving");
      const [target, baseline] = await Promise.all([tokenOf(words.target, signal), tokenOf(words.baseline, signal)]);
      status.textContent = t("patching.running", { axis: t(hook === "z" ? "patching.axis_head" : "patching.axis_position") });
      const answer = await patching({ clean, corrupted, target_token: target.id, baseline_token: baseline.id, hook }, signal);
      if (!view.alive || signal.aborted) return;
      const ids = [target.id, baseline.id];
      const plain = analyzeRaw(corrupted, [], signal).then((body) => probsOf(body, ids));
      plain.catch(() => {}); // shown (or not) when a cell is clicked
      sweep = { answer, clean, corrupted, target, baseline, plain, shown: answer.reliable };
      showLds();
      showReliability();
      if (answer.reliable) {
        status.textContent = t("patching.done");
        await draw();
      } else {
        status.textContent = "";
      }
    } catch (error) {
      fail(error);
    } finally {
      if (view.alive) runButton.disabled = false;
    }
  }

  function showLds() {
    const { answer, target, baseline } = sweep;
    lds.dataset.ldClean = String(answer.ld_clean);
    lds.dataset.ldCorrupted = String(answer.ld_corrupted);
    lds.dataset.denominator = String(answer.denominator);
    lds.dataset.reliable = String(answer.reliable);
    lds.replaceChildren(...withData(t("patching.lds", { clean: fmt(answer.ld_clean, 3), corrupted: fmt(answer.ld_corrupted, 3) }),
      { target: `“${visible(target.text)}”`, baseline: `“${visible(baseline.text)}”` }));
    lds.hidden = false;
  }

  /** An unreliable sweep: say in words why there is no heatmap, and offer it anyway. */
  function showReliability() {
    const { answer, target, baseline } = sweep;
    unreliable.hidden = answer.reliable;
    if (answer.reliable) {
      unreliable.replaceChildren();
      return;
    }
    const anyway = el("button", { type: "button", class: "ghost small", "data-testid": "patching-show-anyway",
      onclick: async () => {
        if (!sweep || sweep.answer !== answer) return;
        sweep.shown = true;
        anyway.replaceWith(el("p", { class: "small", "data-testid": "patching-shown-anyway", text: t("patching.shown_anyway") }));
        status.textContent = t("patching.done");
        await draw();
      } }, t("patching.show_anyway"));
    unreliable.replaceChildren(
      el("p", {}, el("strong", { text: t("patching.unreliable_title") })),
      el("p", {}, ...withData(t("patching.unreliable", {
        // Two significant digits: the difference is small, and fmt's fixed decimals would round it to 0.
        difference: Number(Math.abs(answer.denominator).toPrecision(2)).toString(), threshold: String(answer.threshold),
      }), { target: `“${visible(target.text)}”`, baseline: `“${visible(baseline.text)}”` })),
      anyway);
  }

  /** No heatmap (a new sweep, or one not worth drawing): hidden, and Plotly's plot removed. */
  function hideHeatmap() {
    heatmap.hidden = true;
    const Plotly = plotly();
    if (Plotly && clickWired) {
      Plotly.purge(heatmap); // its click handler goes with it
      clickWired = false;
    }
  }

  /** The x axis: the corrupted prompt's tokens, or the heads. */
  function columns(answer) {
    const n = answer.grid[0]?.length ?? 0;
    if (answer.axis === "head") {
      return Array.from({ length: n }, (_, h) => ({ tick: t("patching.head_tick", { head: h }), hover: t("patching.hover_head", { head: h }) }));
    }
    return answer.tokens.map((tok) => ({
      tick: plotlyText(visible(tok.text)),
      hover: t("patching.hover_position", { position: tok.position, token: `“${plotlyText(visible(tok.text))}”` }),
    }));
  }

  async function draw() {
    const Plotly = plotly();
    if (!Plotly || !sweep || !sweep.shown || !view.alive) return;
    const { answer } = sweep;
    const grid = answer.grid;
    const cols = columns(answer);
    const limit = Math.max(1e-6, ...grid.flat().filter(Number.isFinite).map(Math.abs));
    const hover = grid.map((row, layer) => row.map((value, i) => t("patching.hover", { layer, where: cols[i].hover, value: fmt(value, 3) })));
    const presenter = store.state.presenter;
    heatmap.hidden = false;
    await Plotly.react(heatmap, [{
      type: "heatmap",
      z: grid,
      x: cols.map((_, i) => i),
      y: grid.map((_, layer) => layer),
      text: hover,
      hovertemplate: "%{text}<extra></extra>",
      ...divergingCells(limit),
    }], baseLayout(presenter, {
      height: Math.min(640, 120 + grid.length * (presenter ? 34 : 26)),
      margin: { l: 50, r: 10, t: 10, b: 90 },
      xaxis: { tickvals: cols.map((_, i) => i), ticktext: cols.map((c) => c.tick), tickangle: -45,
        title: { text: t(answer.axis === "head" ? "patching.axis_heads" : "patching.axis_token") }, fixedrange: true },
      yaxis: { tickvals: grid.map((_, l) => l), ticktext: grid.map((_, l) => t("patching.layer_tick", { layer: l })),
        autorange: "reversed", title: { text: t("patching.axis_layer") }, fixedrange: true },
    }), config);
    if (!view.alive || clickWired) return;
    clickWired = true;
    heatmap.on("plotly_click", (event) => {
      const point = event.points && event.points[0];
      if (point) showCell(point.y, point.x);
    });
  }

  /** What cell [layer, index] means, and the run with that one patch. */
  async function showCell(layer, index) {
    if (!sweep) return;
    const { answer, corrupted, target, baseline, plain } = sweep;
    const value = answer.grid[layer][index];
    const serial = ++cellSerial;
    const head = answer.axis === "head";
    const hook = HOOKS[answer.hook](layer);
    const intervention = head
      ? { hook, op: "patch", head: index, source_run_id: answer.clean_run_id }
      : { hook, op: "patch", position: index, source_run_id: answer.clean_run_id };
    cellLine.dataset.layer = String(layer);
    cellLine.dataset.index = String(index);
    cellLine.replaceChildren(...(head
      ? withData(t("patching.cell_head", { head: index, layer, value: fmt(value, 3) }), {})
      : withData(t("patching.cell_position", { layer, position: index, value: fmt(value, 3) }),
        { hook, token: `“${visible(answer.tokens[index].text)}”` })));
    cellResult.textContent = t("patching.cell_running");
    try {
      const body = await analyzeRaw(corrupted, [intervention], controller?.signal);
      const [pTarget, pBaseline] = probsOf(body, [target.id, baseline.id]);
      const [cTarget, cBaseline] = await plain;
      if (!view.alive || serial !== cellSerial) return;
      cellResult.dataset.runId = body.run_id;
      cellResult.dataset.probTarget = String(pTarget);
      cellResult.dataset.probBaseline = String(pBaseline);
      cellResult.replaceChildren(...withData(t("patching.cell_result", {
        p_target: pct(pTarget), p_baseline: pct(pBaseline), c_target: pct(cTarget), c_baseline: pct(cBaseline),
      }), { target: `“${visible(target.text)}”`, baseline: `“${visible(baseline.text)}”` }), " ",
      // Every stage can show the patched run: the corrupted prompt with this one patch applied.
      el("button", { type: "button", class: "ghost small", "data-testid": "patching-show-run",
        onclick: () => analyzeWith(store, runKey, corrupted, [intervention]) }, t("patching.show_run")));
    } catch (error) {
      if (serial === cellSerial) {
        cellResult.textContent = "";
        fail(error);
      }
    }
  }

  view.on(form, "submit", run);
  view.watch(["presenter"], () => { if (sweep?.shown) draw(); });
  view.cleanup(() => controller?.abort());
  view.plots(heatmap);
  return view.unmount;
}
