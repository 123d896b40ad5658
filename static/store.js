/**
 * store.js — the page's one store: the runs by id, which run each run key shows, the selection
 * and the view options. Views never talk to each other: they read the store through the pure
 * selectors below, change it with `store.set()` or an action, and re-render when told.
 *
 * A view is mounted with a run key ("main" on the page; "a" and "b" side by side on /compare):
 * `state.shown[runKey]` is the id of the run it shows, `state.runs.get(id)` that run. When a new
 * prompt is analyzed, the key points at the new run; the view re-renders from it. The selection
 * (layer, head, hovered and pinned token) and the options are shared, so two runs side by side
 * are always shown at the same layer, head and token.
 *
 *   createStore() -> store
 *     store.state          the current values (read-only by convention):
 *       model              /api/model dict, or null before it is known
 *       runs               Map run id -> run (api.js `analyze`); bounded to the last MAX_RUNS
 *       shown              {runKey: run id}
 *       patternsLoaded     bumped when a layer's pattern of a shown run arrives (or fails)
 *       hovered, pinned    token positions, or null
 *       layer, head        the selected layer and head
 *       attnMode           "pattern" | "masked" | "scores"
 *       temperature, topK, topP, seed   sampling options
 *       presenter          large-text mode
 *       busy               null, or a short name while a request runs ("analyze", "generate")
 *       analysis           {runKey: {text, ids, status: "running" | "done" | "failed", error, seconds, fresh}}:
 *                          the last analysis asked for under each key (prompt.js analyzeText, analyzeIds):
 *                          `ids` when it was asked for by token ids (else null), `text` the prompt box's text
 *       generation         {runKey: {id, prompt, streams: [{interventions, tokens: [{id, text, prob}]}], status, runId}}
 *                          or null: Generate's continuations as they stream in (one stream, or the clean
 *                          one then the one with the interventions), status "running" | "done" | "stopped",
 *                          runId the run they became (output.js writes it, tokens.js and output.js draw it)
 *       interventions      [{hook, op, head?, neuron?}]: applied to every analysis of the main run
 *                          (experiments.js); the clean run is shown beside it under the key cleanKey(runKey)
 *       ablate             true while a click on a head switches it off instead of selecting it
 *       candidates         {runKey: {runId, target, baseline}}: the two next tokens the attribution
 *                          stage explains, picked on the output bars (or its selects)
 *       probe              the last induction test's answer {interventions, ...POST /api/induction-probe}, or null
 *       stage              the id of the stage card the reader is at (the page keeps it as it scrolls), or null
 *       goTo               {stage, n}: the stage the page was last asked to scroll to (actions.js goToStage)
 *       scene              {id, step (0-based)} of the guided scene playing, or null: scenes.js sets it as
 *                          it moves, and opens or moves to the scene it names when another module sets it
 *                          (room.js, following the teacher)
 *     store.set(patch)               merge; subscribers of changed keys are called once, in order
 *     store.subscribe(keys, fn)      fn(state, changed: Set) when one of `keys` ("*" = any) changes;
 *                                    returns the unsubscribe function
 *     store.show(runKey, run)        add the run and show it under runKey
 *     store.subscriptions()         the number of live subscriptions
 *     store.requestPattern(runKey, layer)  fetch that layer's pattern if the run lacks it (once per
 *                                    run and layer); patternsLoaded is bumped when it arrives
 *
 * Selectors (pure: they read, never fetch or change anything):
 *   selectRun(state, runKey)              the run, or null
 *   selectPattern(state, runKey, layer)   Tensor [head, q_pos, k_pos], or null while not loaded
 *   selectPatternError(state, runKey, layer)  the Error of a failed fetch, or null
 *   focusToken(state, runKey)             pinned ?? hovered, if that position exists in the run
 *   detailToken(state, runKey)            focusToken, else the run's last token
 *   selectDetail(state, runKey)           {run, i: detailToken} for views that show one token, or null
 *   selectClean(state, runKey)            the clean run to compare the shown run with (same token ids,
 *                                         no interventions), or null when the shown run has none
 *   headAblated(state, layer, head)       is that head switched off by state.interventions (its z,
 *                                         or its whole attention layer)?
 *   mlpAblated(state, layer)              is that layer's MLP switched off?
 *   selectCandidates(state, runKey)       {target, baseline} token ids for the shown run: the picked
 *                                         ones, else its two most likely tokens; null without a run
 *   ranked(grid, n)                       the n heads of a [layer][head] grid of scores with the
 *                                         highest score, best first: [{layer, head, score}]
 * Pure helpers on intervention lists:
 *   headIntervention(layer, head)         {"hook": "blocks.L.attn.hook_z", "op": "zero", "head": H}
 *   sameIntervention(a, b), toggled(list, intervention)   the list with it added, or removed if there
 *   sameInterventions(a, b)               two lists of interventions are the same, in the same order
 *   sameIds(a, b)                         two lists of token ids are equal
 */
import { ensurePattern } from "./api.js";
import { hookName } from "./hooks.js";

const MAX_RUNS = 16;

export function createStore(initial = {}) {
  const state = {
    model: null,
    runs: new Map(),
    shown: {},
    patternsLoaded: 0,
    hovered: null,
    pinned: null,
    layer: 0,
    head: 0,
    attnMode: "pattern",
    temperature: 1,
    topK: null,
    topP: null,
    seed: 42,
    presenter: false,
    busy: null,
    analysis: {},
    generation: {},
    interventions: [],
    ablate: false,
    candidates: {},
    probe: null,
    scene: null,
    stage: null,
    goTo: null,
    ...initial,
  };
  const listeners = [];

  function subscribe(keys, fn) {
    const entry = { keys: keys === "*" ? "*" : new Set(keys), fn };
    listeners.push(entry);
    return () => {
      const i = listeners.indexOf(entry);
      if (i >= 0) listeners.splice(i, 1);
    };
  }

  function set(patch) {
    const changed = new Set();
    for (const [key, value] of Object.entries(patch)) {
      if (!(key in state)) throw new Error(`the store has no key ${key}`);
      if (state[key] !== value) {
        state[key] = value;
        changed.add(key);
      }
    }
    if (!changed.size) return changed;
    for (const entry of listeners.slice()) {
      if (!listeners.includes(entry)) continue; // unsubscribed by an earlier listener
      if (entry.keys === "*" || [...changed].some((k) => entry.keys.has(k))) {
        try {
          entry.fn(state, changed);
        } catch (error) {
          console.error(error); // one broken view must not stop the others
        }
      }
    }
    return changed;
  }

  function show(runKey, run, patch = {}) {
    // New objects, so that subscribers of "runs" and "shown" see a change.
    const runs = new Map(state.runs);
    runs.delete(run.runId);
    runs.set(run.runId, run);
    const shown = { ...state.shown, [runKey]: run.runId };
    const inUse = new Set(Object.values(shown));
    for (const id of runs.keys()) {
      if (runs.size <= MAX_RUNS) break;
      if (!inUse.has(id)) runs.delete(id);
    }
    return set({ ...patch, runs, shown });
  }

  const fetching = new WeakMap(); // run -> Map(layer -> null while in flight | Error)

  function requestPattern(runKey, layer) {
    const run = selectRun(state, runKey);
    if (!run || run.patterns[layer]) return;
    let asked = fetching.get(run);
    if (!asked) fetching.set(run, (asked = new Map()));
    if (asked.has(layer)) return;
    asked.set(layer, null);
    run.patternErrors = run.patternErrors || new Map();
    ensurePattern(run, layer)
      .then(() => asked.delete(layer), (error) => {
        asked.set(layer, error);
        run.patternErrors.set(layer, error);
      })
      .then(() => {
        if (Object.values(state.shown).includes(run.runId)) set({ patternsLoaded: state.patternsLoaded + 1 });
      });
  }

  /** How many subscriptions are live (a view that unmounts must leave none behind). */
  const subscriptions = () => listeners.length;

  return { state, set, subscribe, show, requestPattern, subscriptions };
}

export function selectRun(state, runKey) {
  const id = state.shown[runKey];
  return (id != null && state.runs.get(id)) || null;
}

export function selectPattern(state, runKey, layer) {
  const run = selectRun(state, runKey);
  return (run && run.patterns[layer]) || null;
}

export function selectPatternError(state, runKey, layer) {
  const run = selectRun(state, runKey);
  return (run && run.patternErrors && run.patternErrors.get(layer)) || null;
}

export function focusToken(state, runKey) {
  const run = selectRun(state, runKey);
  const focus = state.pinned ?? state.hovered ?? null;
  return run && focus != null && focus < run.tokens.length ? focus : null;
}

export function detailToken(state, runKey) {
  const focus = focusToken(state, runKey);
  if (focus != null) return focus;
  const run = selectRun(state, runKey);
  return run ? run.tokens.length - 1 : null;
}

export function selectDetail(state, runKey) {
  const run = selectRun(state, runKey);
  const i = detailToken(state, runKey);
  return run && i != null ? { run, i } : null;
}

/** The run key under which the clean run of `runKey`'s text is shown, for its ghost bars. */
export function cleanKey(runKey) {
  return `${runKey}:clean`;
}

export function selectClean(state, runKey) {
  const run = selectRun(state, runKey);
  if (!run || !run.interventions || !run.interventions.length) return null;
  const clean = selectRun(state, cleanKey(runKey));
  return clean && clean !== run && sameIds(clean.ids, run.ids) && !(clean.interventions || []).length ? clean : null;
}

export function sameIds(a, b) {
  return !!a && !!b && a.length === b.length && a.every((id, i) => id === b[i]);
}

export function headIntervention(layer, head) {
  return { hook: hookName("attn.hook_z", layer), op: "zero", head };
}

/** An intervention's fields, as POST /api/analyze takes them (schemas.InterventionSpec): the one list. */
export const INTERVENTION_FIELDS = Object.freeze(["hook", "op", "head", "neuron", "position", "source_run_id"]);

/** The intervention with only the fields it sets (the URL's, a scene's and the API's form). */
export function compactIntervention(x) {
  return Object.fromEntries(INTERVENTION_FIELDS.filter((f) => x[f] != null).map((f) => [f, x[f]]));
}

export function sameIntervention(a, b) {
  return INTERVENTION_FIELDS.every((f) => (a[f] ?? null) === (b[f] ?? null));
}

export function sameInterventions(a, b) {
  return a.length === b.length && a.every((x, i) => sameIntervention(x, b[i]));
}

export function toggled(list, intervention) {
  const rest = list.filter((x) => !sameIntervention(x, intervention));
  return rest.length < list.length ? rest : [...list, intervention];
}

const zeroAt = (state, hook, extra = {}) =>
  state.interventions.some((x) => sameIntervention(x, { hook, op: "zero", ...extra }));

export function headAblated(state, layer, head) {
  return zeroAt(state, hookName("attn.hook_z", layer), { head }) || zeroAt(state, hookName("hook_attn_out", layer));
}

export function mlpAblated(state, layer) {
  return zeroAt(state, hookName("hook_mlp_out", layer));
}

export function selectCandidates(state, runKey) {
  const run = selectRun(state, runKey);
  if (!run || !run.top.length) return null;
  const picked = state.candidates[runKey];
  if (picked && picked.runId === run.runId) return { target: picked.target, baseline: picked.baseline };
  return { target: run.top[0].id, baseline: (run.top[1] ?? run.top[0]).id };
}

/** Pick `id` on the output bars: it becomes the target, and the target before it the baseline. */
export function pickCandidate(state, runKey, id) {
  const run = selectRun(state, runKey);
  const now = selectCandidates(state, runKey);
  if (!run || !now || now.target === id) return state.candidates;
  return { ...state.candidates, [runKey]: { runId: run.runId, target: id, baseline: now.target } };
}

/** The `n` heads with the highest score, best first: [{layer, head, score}] (nulls left out). */
export function ranked(grid, n = 5) {
  const all = [];
  grid.forEach((row, layer) => row.forEach((score, head) => {
    if (score != null && Number.isFinite(score)) all.push({ layer, head, score });
  }));
  all.sort((a, b) => b.score - a.score || a.layer - b.layer || a.head - b.head);
  return all.slice(0, n);
}
