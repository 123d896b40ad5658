/**
 * compare.js — /compare: two prompts side by side. Every stage view is mounted twice on one
 * store, with the run keys "a" and "b": each column shows its own run's numbers, and the
 * selection (layer, head, hovered or pinned position) and the options are shared, so the two
 * runs are always seen at the same place. The prompts are in the URL (?a=...&b=...).
 *
 * window.explainer = {store} for the browser tests and the console.
 */
import { getModel } from "./api.js";
import { analyzeText } from "./prompt.js";
import { createStore, selectRun } from "./store.js";
import { VIEWS, mountSelects, startup } from "./views.js";
import * as attentionLines from "./attention_lines.js";

// The classic pair: GPT-2 should say " Mary" after the first and " John" after the second.
const DEFAULTS = {
  a: "When Mary and John went to the store, John gave a drink to",
  b: "When Mary and John went to the store, Mary gave a drink to",
};
const STAGES = ["prompt", "tokens", "overview", "embedding", "attention", "qk", "mlp", "output", "logit-lens"];
const store = createStore();
const unmounts = [];
// unmountViews(): every view of both columns unmounted, for the test that none leaves anything behind.
window.explainer = { store, unmountViews: () => unmounts.splice(0).forEach((unmount) => unmount()) };

function writeUrl() {
  const q = new URLSearchParams(location.search);
  for (const key of Object.keys(DEFAULTS)) {
    const run = selectRun(store.state, key);
    if (run) q.set(key, run.text);
  }
  history.replaceState(null, "", `?${q.toString()}`);
}

async function start() {
  for (const key of Object.keys(DEFAULTS)) {
    for (const name of STAGES) unmounts.push(VIEWS[name].mount(document.getElementById(`${key}-stage-${name}`), store, key));
    unmounts.push(attentionLines.mount(document.getElementById(`${key}-stage-tokens`), store, key));
  }
  unmounts.push(mountSelects(document.getElementById("compare-bar"), store));
  const button = document.getElementById("presenter-toggle");
  button.addEventListener("click", () => store.set({ presenter: !store.state.presenter }));
  store.subscribe(["presenter"], (s) => {
    document.documentElement.classList.toggle("presenter", s.presenter);
    button.setAttribute("aria-pressed", s.presenter ? "true" : "false");
  });
  const embedded = JSON.parse(document.getElementById("model-info").textContent || "null");
  startup(store, embedded || (await getModel()), {});
  store.subscribe(["shown"], writeUrl);
  document.body.dataset.loaded = "1";
  const q = new URLSearchParams(location.search);
  await Promise.all(Object.entries(DEFAULTS).map(([key, text]) => analyzeText(store, key, q.get(key) || text)));
}

start().catch((error) => console.error(error));
