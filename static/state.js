/**
 * state.js — the one shared state every view reads, with subscribe/notify.
 *
 * Views never talk to each other: they read `state`, change it through `set()`, and re-render
 * when told. Exported API (other views, e.g. templates/_vectors.html, rely on it; keep it stable):
 *
 *   state            the current values (read-only by convention; change them with set()):
 *     model          /api/model dict, or null before it is known
 *     run            the current analyzed prompt (see api.js `analyze`: {runId, text, model, tokens,
 *                    patternsMode, patterns[layer] [head,q,k], logits, top}), or null. For a long
 *                    prompt (patternsMode "per-layer") patterns[layer] is undefined until fetched:
 *                    read it through pattern(layer) below.
 *     patternsLoaded a counter, bumped when a layer's pattern of the current run arrives (or fails)
 *                    after the run itself: views that read patterns subscribe to it and redraw.
 *     hovered        token position under the mouse / keyboard focus, or null
 *     pinned         token position pinned by a click, or null
 *     layer, head    selected layer and head (0-based)
 *     attnMode       "pattern" | "masked" | "scores"  (what the attention heatmap shows)
 *     temperature    number >= 0 (0 = greedy)
 *     topK           integer >= 1, or null (off)
 *     topP           number in (0, 1], or null (off)
 *     seed           integer, for Sample and Generate
 *     presenter      boolean: large-text mode
 *     busy           null, or a short string while a request runs ("analyze", "generate", ...)
 *
 *   set(patch)                 merge `patch` into state; subscribers whose keys changed are called
 *                              once, synchronously, in subscription order.
 *   subscribe(keys, fn)        fn(state, changedKeys: Set) when any of `keys` (array of names, or "*")
 *                              changes. Returns an unsubscribe function.
 *   pattern(layer)             state.run.patterns[layer] [head, q, k], or null while it is not there
 *                              yet: then it is fetched (once per run and layer, api.js ensurePattern)
 *                              and patternsLoaded is bumped when it arrives, if that run is still
 *                              current (an answer for an older prompt changes nothing on screen).
 *   patternError(layer)        the Error of a failed fetch of that layer for the current run, or null
 *                              (not retried for this run; analyzing again retries).
 *   focusToken()               pinned ?? hovered ?? null: the token the views explain.
 *   detailToken()              focusToken(), or the last token when none: for views that always
 *                              show one token (embeddings, Q·K, MLP).
 *
 * URL: readUrl() returns the view encoded in location.search (prompt, layer, head, temperature,
 * pinned token, top-k, top-p, seed, presenter); startUrlSync() keeps location.search up to date,
 * with the view's other controls (url_controls.js), so a shared link reproduces the view. A new
 * prompt pushes a history entry (Back returns to the previous prompt); the rest replaces it.
 * restoreControls() sets those controls from the URL.
 */

import { ensurePattern } from "./api.js";
import * as controls from "./url_controls.js";

export const state = {
  model: null,
  run: null,
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
};

const listeners = [];

export function subscribe(keys, fn) {
  const entry = { keys: keys === "*" ? "*" : new Set(keys), fn };
  listeners.push(entry);
  return () => {
    const i = listeners.indexOf(entry);
    if (i >= 0) listeners.splice(i, 1);
  };
}

export function set(patch) {
  const changed = new Set();
  for (const [key, value] of Object.entries(patch)) {
    if (!(key in state)) throw new Error(`state has no key ${key}`);
    if (state[key] !== value) {
      state[key] = value;
      changed.add(key);
    }
  }
  if (!changed.size) return changed;
  for (const { keys, fn } of listeners.slice()) {
    if (keys === "*" || [...changed].some((k) => keys.has(k))) {
      try {
        fn(state, changed);
      } catch (error) {
        console.error(error); // one broken view must not stop the others
      }
    }
  }
  return changed;
}

const fetching = new WeakMap(); // run -> Map(layer -> null while in flight | Error)

export function pattern(layer) {
  const run = state.run;
  if (!run) return null;
  if (run.patterns[layer]) return run.patterns[layer];
  let asked = fetching.get(run);
  if (!asked) fetching.set(run, (asked = new Map()));
  if (!asked.has(layer)) {
    asked.set(layer, null);
    ensurePattern(run, layer)
      .then(() => asked.delete(layer), (error) => asked.set(layer, error))
      .then(() => {
        if (state.run === run) set({ patternsLoaded: state.patternsLoaded + 1 });
      });
  }
  return null;
}

export function patternError(layer) {
  const asked = state.run && fetching.get(state.run);
  return (asked && asked.get(layer)) || null;
}

export function focusToken() {
  return state.pinned ?? state.hovered ?? null;
}

export function detailToken() {
  const focus = focusToken();
  if (focus != null) return focus;
  return state.run ? state.run.tokens.length - 1 : null;
}

const URL_KEYS = { prompt: "p", layer: "layer", head: "head", temperature: "t", pinned: "pin", topK: "k", topP: "topp", seed: "seed", presenter: "present" };

/** The view in location.search: {prompt?, layer?, head?, temperature?, pinned?, topK?, topP?, seed?, presenter?}. */
export function readUrl() {
  const q = new URLSearchParams(location.search);
  const out = {};
  const int = (s) => (s != null && /^\d+$/.test(s) ? Number(s) : undefined);
  const num = (s) => (s != null && s !== "" && Number.isFinite(Number(s)) ? Number(s) : undefined);
  if (q.has(URL_KEYS.prompt)) out.prompt = q.get(URL_KEYS.prompt);
  for (const key of ["layer", "head", "pinned", "topK", "seed"]) {
    const v = int(q.get(URL_KEYS[key]));
    if (v !== undefined) out[key] = v;
  }
  for (const key of ["temperature", "topP"]) {
    const v = num(q.get(URL_KEYS[key]));
    if (v !== undefined) out[key] = v;
  }
  if (q.get(URL_KEYS.presenter) === "1") out.presenter = true;
  return out;
}

function writeUrl() {
  const q = new URLSearchParams();
  if (state.run) q.set(URL_KEYS.prompt, state.run.text);
  q.set(URL_KEYS.layer, String(state.layer));
  q.set(URL_KEYS.head, String(state.head));
  q.set(URL_KEYS.temperature, String(state.temperature));
  if (state.pinned != null) q.set(URL_KEYS.pinned, String(state.pinned));
  if (state.topK != null) q.set(URL_KEYS.topK, String(state.topK));
  if (state.topP != null) q.set(URL_KEYS.topP, String(state.topP));
  q.set(URL_KEYS.seed, String(state.seed));
  if (state.presenter) q.set(URL_KEYS.presenter, "1");
  controls.write(q);
  const search = `?${q.toString()}`;
  if (search === location.search) return;
  // A new prompt is a new history entry, so Back returns to the previous one; anything else
  // (layer, head, temperature...) refines the current entry.
  const shown = new URLSearchParams(location.search).get(URL_KEYS.prompt);
  if (state.run && shown != null && shown !== state.run.text) history.pushState(null, "", search);
  else history.replaceState(null, "", search);
}

let urlTimer = null;

function scheduleWrite() {
  // Coalesce: dragging the temperature slider must not call replaceState 60 times a second.
  clearTimeout(urlTimer);
  urlTimer = setTimeout(writeUrl, 150);
}

export function startUrlSync() {
  subscribe(["run", "layer", "head", "temperature", "pinned", "topK", "topP", "seed", "presenter", "attnMode"], scheduleWrite);
  controls.watch(scheduleWrite);
}

/** Set the view's controls from the URL (after the views are wired, so they react). */
export function restoreControls() {
  controls.restore(new URLSearchParams(location.search));
}
