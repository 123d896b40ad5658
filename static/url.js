/**
 * url.js — the main page's view in its URL, so that a shared link opens the same view, and Back
 * and Forward move through the analysed prompts.
 *
 *   readUrl() -> {prompt?, ids?, layer?, head?, temperature?, pinned?, topK?, topP?, seed?, presenter?, interventions?}
 *       prompt: the run's text (`p`)
 *       ids: the run's token ids (`ids=464,3797,3332`), there when the run was asked for by ids (a
 *            generation, the end-of-text token): its text tokenized again could be other tokens,
 *            so a reload or a shared link analyzes these ids, and `p` is what the prompt box shows
 *       interventions: the switched-off heads... (`abl`, compact JSON: [{"hook", "op", "head"?, ...}])
 *   startUrlSync(store, runKey) -> flush()   keep location.search up to date with the store and the
 *       view's other controls (url_controls.js). A new prompt (another text, or other ids) pushes a
 *       history entry; the rest replaces it. The URL's interventions go into the store first, so the first analysis
 *       applies them. flush() writes a change still pending at once.
 *   restoreControls()    set those controls from the URL
 *   urlIndex(value, n)   a layer or head index from the URL if below n, else 0
 */
import * as controls from "./url_controls.js";
import { compactIntervention, selectRun } from "./store.js";

const URL_KEYS = { prompt: "p", ids: "ids", layer: "layer", head: "head", temperature: "t", pinned: "pin", topK: "k", topP: "topp", seed: "seed", presenter: "present", interventions: "abl" };

/** The URL's interventions, if `abl` holds a list of objects with a hook and an op. */
function readInterventions(value) {
  try {
    const list = JSON.parse(value);
    if (!Array.isArray(list)) return undefined;
    const clean = list.filter((x) => x && typeof x.hook === "string" && typeof x.op === "string")
      .map(compactIntervention);
    return clean.length === list.length ? clean : undefined;
  } catch (_) {
    return undefined;
  }
}

/** `abl` = the interventions as compact JSON, or no `abl` for none (both pages). */
export function writeInterventions(q, interventions) {
  if (!interventions.length) {
    q.delete(URL_KEYS.interventions);
    return;
  }
  q.set(URL_KEYS.interventions, JSON.stringify(interventions.map(compactIntervention)));
}

/** What names the run in a query: its ids if there, else its text; null for neither. */
function promptOf(q) {
  if (q.has(URL_KEYS.ids)) return `ids:${q.get(URL_KEYS.ids)}`;
  return q.has(URL_KEYS.prompt) ? `p:${q.get(URL_KEYS.prompt)}` : null;
}

/** A layer or head index from the URL, if the model has it; else 0. */
export function urlIndex(value, n) {
  return Number.isInteger(value) && value >= 0 && value < n ? value : 0;
}

export function readUrl() {
  const q = new URLSearchParams(location.search);
  const out = {};
  const int = (s) => (s != null && /^\d+$/.test(s) ? Number(s) : undefined);
  const num = (s) => (s != null && s !== "" && Number.isFinite(Number(s)) ? Number(s) : undefined);
  if (q.has(URL_KEYS.prompt)) out.prompt = q.get(URL_KEYS.prompt);
  const ids = q.get(URL_KEYS.ids);
  if (ids != null && /^(0|[1-9][0-9]{0,5})(,(0|[1-9][0-9]{0,5}))*$/.test(ids)) out.ids = ids.split(",").map(Number);
  for (const key of ["layer", "head", "pinned", "topK", "seed"]) {
    const v = int(q.get(URL_KEYS[key]));
    if (v !== undefined) out[key] = v;
  }
  for (const key of ["temperature", "topP"]) {
    const v = num(q.get(URL_KEYS[key]));
    if (v !== undefined) out[key] = v;
  }
  if (q.get(URL_KEYS.presenter) === "1") out.presenter = true;
  if (q.has(URL_KEYS.interventions)) {
    const list = readInterventions(q.get(URL_KEYS.interventions));
    if (list) out.interventions = list;
  }
  return out;
}

function writeUrl(store, runKey) {
  const state = store.state;
  const run = selectRun(state, runKey);
  const q = new URLSearchParams();
  // Kept as the link gave them: the language (the server's choice of page) and the scene playing.
  const kept = new URLSearchParams(location.search);
  for (const key of ["lang", "scene", "step"]) if (kept.get(key)) q.set(key, kept.get(key));
  if (run) {
    q.set(URL_KEYS.prompt, run.text);
    if (run.byIds) q.set(URL_KEYS.ids, run.ids.join(","));
  } else {
    // Until the first run is shown, the link's prompt and pinned token are still the view.
    for (const key of [URL_KEYS.prompt, URL_KEYS.ids, URL_KEYS.pinned]) if (kept.has(key)) q.set(key, kept.get(key));
  }
  q.set(URL_KEYS.layer, String(state.layer));
  q.set(URL_KEYS.head, String(state.head));
  q.set(URL_KEYS.temperature, String(state.temperature));
  if (state.pinned != null) q.set(URL_KEYS.pinned, String(state.pinned));
  if (state.topK != null) q.set(URL_KEYS.topK, String(state.topK));
  if (state.topP != null) q.set(URL_KEYS.topP, String(state.topP));
  q.set(URL_KEYS.seed, String(state.seed));
  if (state.presenter) q.set(URL_KEYS.presenter, "1");
  writeInterventions(q, state.interventions);
  controls.write(q);
  const search = `?${q.toString()}`;
  if (search === location.search) return;
  // A new prompt (its text, or its ids) is a new history entry, so Back returns to the previous
  // one; anything else (layer, head, temperature...) refines the current entry.
  const shown = promptOf(new URLSearchParams(location.search));
  if (run && shown != null && shown !== promptOf(q)) history.pushState(null, "", search);
  else history.replaceState(null, "", search);
}

export function startUrlSync(store, runKey) {
  const { interventions } = readUrl();
  if (interventions) store.set({ interventions });
  let timer = null;
  // Coalesced: dragging the temperature slider must not call replaceState 60 times a second.
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(() => writeUrl(store, runKey), 150);
  };
  store.subscribe(["shown", "layer", "head", "temperature", "pinned", "topK", "topP", "seed", "presenter", "attnMode", "interventions"], schedule);
  controls.watch(schedule);
  // For leaving the page (language.js): the change still waiting for its 150 ms, written now.
  return () => {
    clearTimeout(timer);
    writeUrl(store, runKey);
  };
}

export function restoreControls() {
  controls.restore(new URLSearchParams(location.search));
}
