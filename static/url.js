/**
 * url.js — the main page's view in its URL, so that a shared link opens the same view, and Back
 * and Forward move through the analysed prompts.
 *
 *   readUrl() -> {prompt?, layer?, head?, temperature?, pinned?, topK?, topP?, seed?, presenter?}
 *   startUrlSync(store, runKey)   keep location.search up to date with the store and the view's
 *       other controls (url_controls.js). A new prompt pushes a history entry; the rest replaces it.
 *   restoreControls()    set those controls from the URL
 */
import * as controls from "./url_controls.js";
import { selectRun } from "./store.js";

const URL_KEYS = { prompt: "p", layer: "layer", head: "head", temperature: "t", pinned: "pin", topK: "k", topP: "topp", seed: "seed", presenter: "present" };

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

function writeUrl(store, runKey) {
  const state = store.state;
  const run = selectRun(state, runKey);
  const q = new URLSearchParams();
  // The language is the server's choice of page: it stays as the link gave it.
  const lang = new URLSearchParams(location.search).get("lang");
  if (lang) q.set("lang", lang);
  if (run) q.set(URL_KEYS.prompt, run.text);
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
  if (run && shown != null && shown !== run.text) history.pushState(null, "", search);
  else history.replaceState(null, "", search);
}

export function startUrlSync(store, runKey) {
  let timer = null;
  // Coalesced: dragging the temperature slider must not call replaceState 60 times a second.
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(() => writeUrl(store, runKey), 150);
  };
  store.subscribe(["shown", "layer", "head", "temperature", "pinned", "topK", "topP", "seed", "presenter", "attnMode"], schedule);
  controls.watch(schedule);
}

export function restoreControls() {
  controls.restore(new URLSearchParams(location.search));
}
