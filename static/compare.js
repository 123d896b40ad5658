/**
 * compare.js — /compare: two prompts side by side. Every stage view is mounted twice on one
 * store, with the run keys "a" and "b": each column shows its own run's numbers, and the
 * selection (layer, head, hovered or pinned position) and the options are shared, so the two
 * runs are always seen at the same place. The prompts are in the URL (?a=...&b=...).
 *
 * Above the columns, a summary: KL(a‖b) of the two next-token distributions and the tokens whose
 * log-probability changed the most (GET /api/runs/{a}/compare/{b}), asked for whenever the pair
 * of runs shown changes.
 *
 * window.explainer = {store} for the browser tests and the console.
 */
import { compareRuns, getModel } from "./api.js";
import { el, showError, withData } from "./dom.js";
import { fmt, pct, visible } from "./format.js";
import { t } from "./i18n.js";
import { analyzeText } from "./actions.js";
import { createStore, selectRun } from "./store.js";
import { readUrl, urlIndex, writeInterventions } from "./url.js";
import { STAGES, loadViews, mountSelects, startup } from "./views.js";
import * as attentionLines from "./attention_lines.js";
import { mountLanguageSwitch, restoreDrafts } from "./language.js";

// The classic pair: GPT-2 should say " Mary" after the first and " John" after the second.
const DEFAULTS = {
  a: "When Mary and John went to the store, John gave a drink to",
  b: "When Mary and John went to the store, Mary gave a drink to",
};
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
  q.set("layer", String(store.state.layer));
  q.set("head", String(store.state.head));
  writeInterventions(q, store.state.interventions);
  history.replaceState(null, "", `?${q.toString()}`);
}

const MAX_CHANGES = 6;
let comparing = null; // "a|b" of the pair asked for last: older answers are dropped

/** The summary card: KL(a‖b) and the biggest changes, for the two runs shown. */
async function summarize() {
  const a = selectRun(store.state, "a");
  const b = selectRun(store.state, "b");
  if (!a || !b) return;
  const pair = `${a.runId}|${b.runId}`;
  if (pair === comparing) return;
  comparing = pair;
  const kl = document.getElementById("compare-kl");
  const list = document.getElementById("compare-changes");
  const errorBox = document.getElementById("compare-error");
  kl.textContent = t("compare.loading");
  try {
    const body = await compareRuns(a.runId, b.runId);
    if (comparing !== pair) return;
    showError(errorBox, null);
    kl.dataset.value = body.kl_a_b == null ? "Infinity" : String(body.kl_a_b);
    kl.textContent = body.kl_a_b == null ? t("compare.kl_infinite") : t("compare.kl", { kl: fmt(body.kl_a_b, 4) });
    list.replaceChildren(...body.biggest_changes.slice(0, MAX_CHANGES).map((c) => el("li", {
      "data-testid": "compare-change", "data-token-id": c.id, "data-prob-a": c.prob_a, "data-prob-b": c.prob_b, "data-change": c.change,
    }, ...withData(t("compare.change", { prob_a: pct(c.prob_a), prob_b: pct(c.prob_b), change: `${c.change >= 0 ? "+" : ""}${fmt(c.change, 2)}` }),
      { token: `“${visible(c.text)}”` }))));
  } catch (error) {
    if (comparing !== pair) return;
    comparing = null; // asked again at the next change
    kl.textContent = "";
    showError(errorBox, error);
  }
}

async function start() {
  const views = await loadViews(STAGES.filter((stage) => stage.compare)); // the registry's stages for /compare
  for (const key of Object.keys(DEFAULTS)) {
    for (const [stage, view] of views) unmounts.push(view.mount(document.getElementById(`${key}-stage-${stage.id}`), store, key));
    unmounts.push(attentionLines.mount(document.getElementById(`${key}-stage-tokens`), store, key));
  }
  unmounts.push(mountSelects(document.getElementById("compare-bar"), store));
  const button = document.getElementById("presenter-toggle");
  button.addEventListener("click", () => store.set({ presenter: !store.state.presenter }));
  store.subscribe(["presenter"], (s) => {
    document.documentElement.classList.toggle("presenter", s.presenter);
    button.setAttribute("aria-pressed", s.presenter ? "true" : "false");
  });
  mountLanguageSwitch(writeUrl);
  const embedded = JSON.parse(document.getElementById("model-info").textContent || "null");
  const model = embedded || (await getModel());
  const url = readUrl();
  // The URL's switched-off parts apply to both prompts from the first analysis.
  startup(store, model, { interventions: url.interventions || [], layer: urlIndex(url.layer, model.n_layers),
                          head: urlIndex(url.head, model.n_heads) });
  store.subscribe(["shown", "interventions", "layer", "head"], writeUrl);
  unmounts.push(store.subscribe(["shown"], summarize)); // the summary card is a view too
  document.body.dataset.loaded = "1";
  const q = new URLSearchParams(location.search);
  await Promise.all(Object.entries(DEFAULTS).map(([key, text]) => analyzeText(store, key, q.get(key) || text)));
  restoreDrafts();
}

start().catch((error) => console.error(error));
