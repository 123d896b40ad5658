/**
 * prompt.js — stage 1: the text box, Analyze (button or Enter), example prompts, and the API's
 * errors in the page's own words next to the box.
 *
 *   analyzeText(store, runKey, text, after)  the one way a new run arrives: analyze `text` and
 *       show the run under `runKey`. `after.pinned` pins a token; `after.fresh` = the number of
 *       leading tokens that are old (Generate): the chips after them are highlighted. Progress and
 *       errors go to store.state.analysis[runKey], which the prompt view shows.
 *       store.state.interventions (switched-off heads...) are applied to the analysis; when there
 *       are any, the clean text is analyzed too (unless already shown) and shown under the run key
 *       cleanKey(runKey) ("main:clean"), so the output can draw the clean run's bars as ghosts beside the new ones.
 *   analyzeIds(store, runKey, ids, after)   the same for token ids exactly (a generated sequence, the
 *       real <|endoftext|>): the run of those ids, never of their text tokenized again. `after.text`
 *       is the text to show in the box until the answer brings the server's. The clean run beside
 *       it is of the same ids.
 *   reanalyze(store, runKey, after)   the last prompt asked for under runKey (its text or its ids) again,
 *       with store.state.interventions (experiments.js, when the list changes)
 *   analyzeWith(store, runKey, text, interventions)   analyzeText with a new list of interventions
 *   addEndOfText(store, runKey, text)   the run of `text` (the shown one if it is that text) followed by
 *       the real <|endoftext|> token. Typed, "<|endoftext|>" is ordinary text (as OpenAI's encoder reads
 *       it): the token itself can only be asked for by its id.
 *   explain(error)   the page's sentence for an API error, by its stable `code`
 *   mount(root, store, runKey) -> unmount
 */
import { analyze, busy, timing } from "./api.js";
import { part, parts } from "./dom.js";
import { t, tn } from "./i18n.js";
import { cleanKey, sameIds, selectRun } from "./store.js";

/** GPT-2's end-of-text token: the one token the tokenizer never produces from typed text. Its id
 * is the server's (/api/model end_of_text_id). */
const END_OF_TEXT = "<|endoftext|>";

/** Timings the browser tests read: analyzeReturned / interactive (performance.now() ms). */
export const timings = (window.explainerTimings = window.explainerTimings || {});

/** The page's own words for the API's errors a person meets here, keyed by the stable `code`. */
export function explain(error) {
  const code = error && error.code;
  if (code === "empty_prompt") return t("page.error_empty_prompt");
  if (code === "busy") return t("page.error_busy");
  if (code === "unknown_run") return t("page.error_unknown_run");
  if (code === "prompt_too_long" && error.context && error.context.n_tokens != null) {
    return t("page.error_prompt_too_long", error.context);
  }
  return (error && error.message) || String(error);
}

const serials = new Map(); // runKey -> the serial of its newest analysis: older answers are dropped

function report(store, runKey, patch) {
  store.set({ analysis: { ...store.state.analysis, [runKey]: { ...store.state.analysis[runKey], ...patch } } });
}

export function analyzeText(store, runKey, text, after = {}) {
  return analyzeSource(store, runKey, text, after);
}

export function analyzeIds(store, runKey, ids, after = {}) {
  return analyzeSource(store, runKey, { ids: ids.slice() }, after);
}

/** `source`: the text, or {ids}. */
async function analyzeSource(store, runKey, source, after) {
  const byIds = typeof source !== "string";
  const mine = (serials.get(runKey) || 0) + 1;
  serials.set(runKey, mine);
  report(store, runKey, { text: byIds ? after.text ?? null : source, ids: byIds ? source.ids : null,
    status: "running", error: null, fresh: null });
  store.set({ busy: "analyze" });
  const started = performance.now();
  try {
    const interventions = store.state.interventions || [];
    // The clean run of the same tokens, if one is here already.
    const same = (r) => (byIds ? sameIds(r.ids, source.ids) : !r.byIds && r.text === source);
    const known = [selectRun(store.state, cleanKey(runKey)), selectRun(store.state, runKey)]
      .find((r) => r && same(r) && !r.interventions.length);
    const [run, clean] = await Promise.all([
      analyze(source, interventions),
      interventions.length && !known ? analyze(source) : Promise.resolve(known),
    ]);
    if (serials.get(runKey) !== mine) return null;
    if (interventions.length && clean) store.show(cleanKey(runKey), clean);
    timings.analyzeReturned = timing.responded;
    const n = run.tokens.length;
    const pinned = after.pinned != null && after.pinned < n ? after.pinned : null;
    report(store, runKey, { text: run.text, status: "done", seconds: (timings.analyzeReturned - started) / 1000, n,
      fresh: after.fresh ?? null });
    store.show(runKey, run, { hovered: null, pinned, busy: null });
    await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
    timings.interactive = performance.now();
    timings.timeToInteractive = timings.interactive - timings.analyzeReturned;
    timings.nTokens = n;
    timings.runs = (timings.runs || 0) + 1;
    document.body.dataset.ready = "1";
    return run;
  } catch (error) {
    if (serials.get(runKey) !== mine) return null;
    store.set({ busy: null });
    report(store, runKey, { status: "failed", error });
    if (!(error && error.name === "ApiError")) console.error(error);
    return null;
  }
}

/**
 * Analyze `source` (a text, or {ids, text}) with `interventions` in place of the current list (a
 * patch chosen elsewhere, say; a room's teacher's view). The prompt is named first, so that a view
 * that re-analyzes on a new list (experiments.js) asks for this prompt, once; if none did, it is
 * asked for here.
 */
export function analyzeWith(store, runKey, source, interventions) {
  const ids = typeof source === "string" ? null : source.ids;
  const text = typeof source === "string" ? source : source.text;
  report(store, runKey, { text, ids });
  store.set({ interventions });
  const asked = store.state.analysis[runKey];
  if (asked?.status === "running" && (ids ? sameIds(asked.ids, ids) : !asked.ids && asked.text === text)) return null;
  return ids ? analyzeIds(store, runKey, ids, { text }) : analyzeText(store, runKey, text);
}

export function reanalyze(store, runKey, after = {}) {
  const asked = store.state.analysis[runKey];
  const run = selectRun(store.state, runKey);
  if (asked?.ids) return analyzeIds(store, runKey, asked.ids, { ...after, text: asked.text });
  if (asked?.text != null) return analyzeText(store, runKey, asked.text, after);
  if (run) return run.byIds ? analyzeIds(store, runKey, run.ids, { ...after, text: run.text }) : analyzeText(store, runKey, run.text, after);
  return null;
}

/** The prompt box's text as a run: the shown run when the box still holds its text (so a run of
 * ids stays those ids), else the text analyzed. */
function runOfBox(store, runKey, text) {
  const run = selectRun(store.state, runKey);
  if (run && run.text === text) return Promise.resolve(run);
  return analyzeText(store, runKey, text);
}

export async function addEndOfText(store, runKey, text) {
  const run = await runOfBox(store, runKey, text);
  if (!run) return null;
  const id = store.state.model?.end_of_text_id;
  if (id == null) return null;
  return analyzeIds(store, runKey, [...run.ids, id], { text: run.text + END_OF_TEXT, fresh: run.ids.length });
}

export function mount(root, store, runKey) {
  const form = part(root, "form");
  const input = part(root, "input");
  const button = part(root, "analyze");
  const errorBox = part(root, "error");
  const status = part(root, "status");
  const endOfText = root.querySelector('[data-part="end-of-text"]'); // the main page's prompt only
  const off = new AbortController();
  const { signal } = off;

  /** The box grows with its text, up to 8 lines (then it scrolls). */
  function fit() {
    input.style.height = "auto";
    const line = parseFloat(getComputedStyle(input).lineHeight) || 24;
    input.style.height = `${Math.min(input.scrollHeight + 4, line * 8 + 16)}px`;
  }

  let shown = null;
  function render() {
    const a = store.state.analysis[runKey];
    if (a !== shown) {
      const textChanged = !shown || shown.text !== a?.text;
      shown = a;
      if (a && textChanged && a.text != null) {
        input.value = a.text;
        fit();
      }
      const message = a && a.status === "failed" ? explain(a.error) : "";
      errorBox.textContent = message;
      errorBox.hidden = !message;
      input.setAttribute("aria-invalid", message ? "true" : "false");
      status.textContent = !a ? "" : a.status === "running" ? t("prompt.running")
        : a.status === "done" ? `${tn("prompt.answered", a.n, { seconds: a.seconds.toFixed(2) })} ` : "";
    }
    button.disabled = store.state.busy != null;
    if (endOfText) endOfText.disabled = store.state.busy != null;
    button.textContent = store.state.busy === "analyze" ? t("prompt.analyzing") : t("prompt.analyze");
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    // The box still holding a run of ids (a generation, an end-of-text token) analyzes those ids:
    // its text tokenized again could be other tokens.
    const run = selectRun(store.state, runKey);
    if (run && run.byIds && input.value === run.text) analyzeIds(store, runKey, run.ids, { text: run.text });
    else analyzeText(store, runKey, input.value);
  }, { signal });
  function showEndOfText() { // the id is the model's: known once /api/model has answered
    if (!endOfText) return;
    const id = store.state.model?.end_of_text_id;
    endOfText.hidden = id == null; // no model yet, or a tokenizer without one
    endOfText.title = t("prompt.end_of_text_title", { token: END_OF_TEXT, id: id ?? "" });
  }
  endOfText?.addEventListener("click", () => addEndOfText(store, runKey, input.value), { signal });
  input.addEventListener("input", fit, { signal });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  }, { signal });
  for (const b of parts(root, "example")) {
    b.addEventListener("click", () => analyzeText(store, runKey, b.dataset.example), { signal });
  }
  // While the server is busy (a whole class pressed Analyze at once), say so instead of freezing.
  busy.onWait = (sentence) => {
    if (sentence) status.textContent = sentence;
  };
  const unsubscribe = store.subscribe(["analysis", "busy"], render);
  const unsubscribeModel = store.subscribe(["model"], showEndOfText);
  render();
  showEndOfText();
  return () => {
    off.abort();
    unsubscribe();
    unsubscribeModel();
  };
}
