/**
 * actions.js — what the views ask the app to do. A view imports actions and the store (and the
 * shared helpers: dom, format, lazy, api...), never another view: what one stage does that
 * another needs is here.
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
 *   selectHead(store, layer, head)   select that layer and head (every stage follows)
 *   runInductionProbe(store, interventions)   the induction test, its answer kept in the store (`probe`)
 *   goToStage(store, id)   the page scrolls to that stage's card (main.js follows store.state.goTo);
 *       store.state.stage is the card the reader is at, then and after every scroll
 *   timings          what the browser tests read (window.explainerTimings)
 */
import { analyze, inductionProbe, timing } from "./api.js";
import { t } from "./i18n.js";
import { cleanKey, sameIds, selectRun } from "./store.js";

/** GPT-2's end-of-text token: the one token the tokenizer never produces from typed text. Its id
 * is the server's (/api/model end_of_text_id). */
export const END_OF_TEXT = "<|endoftext|>";

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

/** Select that layer and head: every stage shows it. */
export function selectHead(store, layer, head) {
  store.set({ layer, head });
}

let goes = 0;

/** Scroll the page to the stage `id`: the page does it (main.js), and store.state.stage follows. */
export function goToStage(store, id) {
  store.set({ goTo: { stage: id, n: ++goes } });
}

const PROBE = { length: 50, seed: 0 };

/**
 * Run the induction test with `interventions` applied, and keep its answer in the store (`probe`,
 * with the interventions it ran with), where the heads stage and a scene read it.
 */
export async function runInductionProbe(store, interventions) {
  const answer = await inductionProbe(PROBE.length, PROBE.seed, interventions);
  store.set({ probe: { ...answer, interventions } });
  return answer;
}
