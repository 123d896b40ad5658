/**
 * main.js — the explainer page: one store, every stage mounted on its own section with the run
 * key "main", the view restored from the URL, and the page-wide keys (/ prompt, [ ] layer, - =
 * head, P presenter mode, J K next and previous stage, Esc unpin).
 *
 * window.explainer = {store} for the browser tests and the console.
 */
import { getModel } from "./api.js";
import { t } from "./i18n.js";
import { analyzeIds, analyzeText } from "./actions.js";
import { createStore, sameIds, selectRun } from "./store.js";
import { STAGES, loadViews, mountSelects, startup } from "./views.js";
import { readUrl, restoreControls, startUrlSync, urlIndex } from "./url.js";
import * as attentionLines from "./attention_lines.js";
import * as scenes from "./scenes.js";
import * as room from "./room.js";
import { mountLanguageSwitch, restoreDrafts } from "./language.js";

const RUN = "main";
const DEFAULT_PROMPT = "The cat sat on the mat because it was";
const presenterButton = document.getElementById("presenter-toggle");
const modelError = document.getElementById("model-error");
const store = createStore();
window.explainer = { store };

function wirePresenter() {
  store.subscribe(["presenter"], (s) => {
    document.documentElement.classList.toggle("presenter", s.presenter);
    presenterButton.setAttribute("aria-pressed", s.presenter ? "true" : "false");
  });
  presenterButton.addEventListener("click", () => store.set({ presenter: !store.state.presenter }));
}

function typing(target) {
  return target instanceof Element && target.closest("input, textarea, select, [contenteditable]");
}

function wireKeys() {
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const s = store.state;
    if (event.key === "Escape") {
      if (s.pinned != null) store.set({ pinned: null });
      return;
    }
    if (typing(event.target) || !s.model) return;
    const { n_layers: L, n_heads: H } = s.model;
    const actions = {
      "/": () => document.getElementById("prompt-input").focus(),
      "[": () => store.set({ layer: (s.layer + L - 1) % L }),
      "]": () => store.set({ layer: (s.layer + 1) % L }),
      "-": () => store.set({ head: (s.head + H - 1) % H }),
      "=": () => store.set({ head: (s.head + 1) % H }),
      p: () => store.set({ presenter: !s.presenter }),
      P: () => store.set({ presenter: !s.presenter }),
      j: () => jumpStage(1),
      k: () => jumpStage(-1),
    };
    if (actions[event.key]) {
      event.preventDefault();
      actions[event.key]();
    }
  });
}

/** The next (+1) or previous (-1) stage card, scrolled to just below the sticky token bar. */
function jumpStage(direction) {
  const bar = document.getElementById("stage-tokens").getBoundingClientRect().bottom;
  const stages = [...document.querySelectorAll(".stage:not(.sticky)")];
  const tops = stages.map((s) => s.getBoundingClientRect().top - bar);
  const index = direction > 0 ? tops.findIndex((t) => t > 12) : tops.findLastIndex((t) => t < -12);
  if (index < 0) return;
  stages[index].scrollIntoView({ block: "start" });
  stages[index].querySelector("h2, summary")?.setAttribute("tabindex", "-1");
  stages[index].querySelector("h2, summary")?.focus({ preventScroll: true });
}

/** The stage card the reader is at: the last one whose top is above a quarter of the space under the token bar. */
function currentStage() {
  const bar = document.getElementById("stage-tokens").getBoundingClientRect().bottom;
  const line = bar + (innerHeight - bar) / 4;
  let at = null;
  for (const card of document.querySelectorAll(".stage[data-stage]:not(.sticky)")) {
    const r = card.getBoundingClientRect();
    if (!r.height) continue;
    if (r.top > line) break;
    at = card.dataset.stage;
  }
  return at ?? "prompt";
}

/** The page's stages in the store: `stage`, the card the reader is at (as it scrolls), and `goTo`,
 * a card asked for (actions.js goToStage: a scene's step, the teacher's view) scrolled into view. */
function trackStage() {
  const update = () => {
    const at = currentStage();
    if (at !== store.state.stage) store.set({ stage: at });
  };
  window.addEventListener("scroll", update, { passive: true }); // before room.js's: it reads the stage
  store.subscribe(["goTo"], (s) => {
    document.querySelector(`.stage[data-stage="${s.goTo.stage}"]`)?.scrollIntoView({ block: "start" });
    update();
  });
  update();
}

/** --sticky-height: the token bar's height, for scroll-padding (it changes with presenter mode and wrapping). */
function trackStickyBar() {
  const bar = document.getElementById("stage-tokens");
  new ResizeObserver(() => {
    document.documentElement.style.setProperty("--sticky-height", `${bar.offsetHeight}px`);
  }).observe(bar);
}

/** Back and Forward: the view of that history entry, and its prompt (its ids, if the URL has
 * them, else its text) analyzed again (from the cache). */
function followHistory() {
  const url = readUrl();
  const { n_layers: L, n_heads: H } = store.state.model;
  store.set({ layer: urlIndex(url.layer, L), head: urlIndex(url.head, H), pinned: null });
  const switchedOff = url.interventions || [];
  if (JSON.stringify(switchedOff) !== JSON.stringify(store.state.interventions)) store.set({ interventions: switchedOff });
  restoreControls();
  const run = selectRun(store.state, RUN);
  if (url.ids && (!run || !run.byIds || !sameIds(url.ids, run.ids))) {
    analyzeIds(store, RUN, url.ids, { pinned: url.pinned, text: url.prompt });
  } else if (!url.ids && url.prompt && (!run || run.byIds || url.prompt !== run.text)) {
    analyzeText(store, RUN, url.prompt, { pinned: url.pinned });
  } else if (url.pinned != null && run && url.pinned < run.tokens.length) store.set({ pinned: url.pinned });
}

async function loadModel() {
  const embedded = JSON.parse(document.getElementById("model-info").textContent || "null");
  if (embedded) return embedded;
  for (let attempt = 0; ; attempt++) {
    try {
      return await getModel();
    } catch (error) {
      modelError.textContent = t("page.not_ready", { error: error.message });
      modelError.hidden = false;
      await new Promise((r) => setTimeout(r, Math.min(5000, 1000 * (attempt + 1))));
    }
  }
}

async function start() {
  for (const [stage, view] of await loadViews(STAGES)) view.mount(document.getElementById(`stage-${stage.id}`), store, RUN);
  const tokens = document.getElementById("stage-tokens");
  mountSelects(tokens, store);
  attentionLines.mount(tokens, store, RUN);
  trackStage();
  // The guided scenes and the classroom live in the header: their menu and button, and their cards.
  scenes.mount(document.querySelector("header.top"), store, RUN);
  room.mount(document.querySelector("header.top"), store, RUN); // follow the teacher: /r/CODE, or the teacher's button
  wirePresenter();
  let flushUrl = () => {}; // until the URL follows the view
  mountLanguageSwitch(() => flushUrl());
  wireKeys();
  trackStickyBar();

  const model = await loadModel();
  modelError.hidden = true;
  if (model.random_weights && !document.querySelector('[data-testid="random-weights-banner"]')) {
    // The page was rendered before the model had loaded: say it now.
    modelError.id = "untrained";
    modelError.dataset.testid = "random-weights-banner";
    modelError.textContent = t("page.untrained_late", { reason: model.reason || "" });
    modelError.hidden = false;
    document.querySelector('[data-testid="untrained-badge"]').hidden = false;
  }
  const url = readUrl();
  startup(store, model, {
    layer: urlIndex(url.layer, model.n_layers),
    head: urlIndex(url.head, model.n_heads),
    temperature: url.temperature != null && url.temperature >= 0 && url.temperature <= 10 ? url.temperature : 1,
    topK: url.topK != null && url.topK >= 1 ? Math.min(url.topK, model.d_vocab) : null,
    topP: url.topP != null && url.topP > 0 && url.topP <= 1 ? url.topP : null,
    seed: Number.isSafeInteger(url.seed) && url.seed >= 0 ? url.seed : store.state.seed,
    presenter: !!url.presenter,
  });
  restoreControls();
  flushUrl = startUrlSync(store, RUN);
  window.addEventListener("popstate", followHistory);
  document.body.dataset.loaded = "1";
  // The first screen is alive: the URL's prompt, or the example, is analyzed at once.
  if (url.ids) await analyzeIds(store, RUN, url.ids, { pinned: url.pinned, text: url.prompt });
  else await analyzeText(store, RUN, url.prompt || DEFAULT_PROMPT, { pinned: url.pinned });
  restoreDrafts();
}

start().catch((error) => console.error(error));
