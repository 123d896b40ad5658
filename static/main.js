/**
 * main.js — wires the stages to the shared state, restores the view from the URL, and handles
 * the page-wide keys (/ prompt, [ ] layer, - = head, P presenter mode, J K next and previous stage, Esc unpin).
 */
import { getLayer, getModel } from "./api.js";
import * as attention from "./attention.js";
import * as attentionLines from "./attention_lines.js";
import * as embedding from "./embedding.js";
import * as mlp from "./mlp.js";
import * as output from "./output.js";
import * as overview from "./overview.js";
import * as prompt from "./prompt.js";
import * as qk from "./qk.js";
import { pattern, readUrl, restoreControls, set, startUrlSync, state, subscribe } from "./state.js";
import * as tokens from "./tokens.js";

const DEFAULT_PROMPT = "The cat sat on the mat because it was";
const presenterButton = document.getElementById("presenter-toggle");
const modelError = document.getElementById("model-error");

function clamp(value, n) {
  return Number.isInteger(value) && value >= 0 && value < n ? value : 0;
}

function wirePresenter() {
  subscribe(["presenter"], () => {
    document.documentElement.classList.toggle("presenter", state.presenter);
    presenterButton.setAttribute("aria-pressed", state.presenter ? "true" : "false");
  });
  presenterButton.addEventListener("click", () => set({ presenter: !state.presenter }));
}

function typing(target) {
  return target instanceof Element && target.closest("input, textarea, select, [contenteditable]");
}

function wireKeys() {
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Escape") {
      if (state.pinned != null) set({ pinned: null });
      return;
    }
    if (typing(event.target) || !state.model) return;
    const { n_layers: L, n_heads: H } = state.model;
    const actions = {
      "/": () => document.getElementById("prompt-input").focus(),
      "[": () => set({ layer: (state.layer + L - 1) % L }),
      "]": () => set({ layer: (state.layer + 1) % L }),
      "-": () => set({ head: (state.head + H - 1) % H }),
      "=": () => set({ head: (state.head + 1) % H }),
      p: () => set({ presenter: !state.presenter }),
      P: () => set({ presenter: !state.presenter }),
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

/** The inputs state the server's own limits (/api/model `limits`), never copies of them. */
function applyLimits(limits) {
  const set = (selector, attribute, value) => document.querySelector(selector)?.setAttribute(attribute, String(value));
  set("#prompt-input", "maxlength", limits.max_prompt_chars);
  set("#top-k", "max", limits.max_top_k);
  set("#seed", "max", limits.max_seed);
  set("#max-new-tokens", "max", limits.max_new_tokens);
  for (const id of ["#neighbours-word", "#dot-a", "#dot-b"]) set(id, "maxlength", limits.max_word_chars);
  set("#map-word", "maxlength", limits.max_map_words * (limits.max_word_chars + 2));
  set("#arithmetic-input", "maxlength", limits.max_expression_chars);
}

/** --sticky-height: the token bar's height, for scroll-padding (it changes with presenter mode and wrapping). */
function trackStickyBar() {
  const bar = document.getElementById("stage-tokens");
  new ResizeObserver(() => {
    document.documentElement.style.setProperty("--sticky-height", `${bar.offsetHeight}px`);
  }).observe(bar);
}

/** Back and Forward: the view of that history entry, and its prompt analyzed again (from the cache). */
function followHistory() {
  const url = readUrl();
  const { n_layers: L, n_heads: H } = state.model;
  set({ layer: clamp(url.layer, L), head: clamp(url.head, H), pinned: null });
  restoreControls();
  if (url.prompt && (!state.run || url.prompt !== state.run.text)) prompt.analyzeText(url.prompt, { pinned: url.pinned });
  else if (url.pinned != null && state.run && url.pinned < state.run.tokens.length) set({ pinned: url.pinned });
}

async function loadModel() {
  const embedded = JSON.parse(document.getElementById("model-info").textContent || "null");
  if (embedded) return embedded;
  for (let attempt = 0; ; attempt++) {
    try {
      return await getModel();
    } catch (error) {
      modelError.textContent = `The model is not ready yet (${error.message}). Retrying…`;
      modelError.hidden = false;
      await new Promise((r) => setTimeout(r, Math.min(5000, 1000 * (attempt + 1))));
    }
  }
}

/** The fields the attention and Q·K views read, asked for in one request per layer (api.js
 * memoises them per field). The MLP's two [pos, 3072] tensors, twice the bytes of these four,
 * are fetched by mlp.js only when its stage is on screen. */
const LAYER_FIELDS = ["attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z"];

async function start() {
  subscribe(["run", "layer"], () => {
    if (!state.run) return;
    pattern(state.layer); // a long prompt's pattern for this layer first: the chips and heatmap wait for it
    getLayer(state.run.runId, state.layer, LAYER_FIELDS).catch(() => {}); // the views report errors
  });
  prompt.init();
  tokens.init();
  embedding.init();
  attention.init();
  qk.init();
  mlp.init();
  output.init();
  overview.mount(document.getElementById("stage-overview"));
  attentionLines.mount(document.getElementById("stage-tokens"));
  wirePresenter();
  wireKeys();
  trackStickyBar();

  const model = await loadModel();
  modelError.hidden = true;
  if (model.random_weights && !document.querySelector('[data-testid="random-weights-banner"]')) {
    // The page was rendered before the model had loaded: say it now.
    modelError.id = "untrained";
    modelError.dataset.testid = "random-weights-banner";
    modelError.textContent = "Untrained model. This server runs GPT-2's shapes with random weights: every number is " +
      `really computed, but the predictions and attention patterns mean nothing. ${model.reason || ""}`;
    modelError.hidden = false;
    document.querySelector('[data-testid="untrained-badge"]').hidden = false;
  }
  applyLimits(model.limits);
  for (const node of document.querySelectorAll("[data-dim]")) {
    const value = model[node.dataset.dim];
    if (value != null) node.textContent = Number(value).toLocaleString("en");
  }
  const url = readUrl();
  set({
    model,
    layer: clamp(url.layer, model.n_layers),
    head: clamp(url.head, model.n_heads),
    temperature: url.temperature != null && url.temperature >= 0 && url.temperature <= 10 ? url.temperature : 1,
    topK: url.topK != null && url.topK >= 1 ? Math.min(url.topK, model.d_vocab) : null,
    topP: url.topP != null && url.topP > 0 && url.topP <= 1 ? url.topP : null,
    seed: Number.isSafeInteger(url.seed) && url.seed >= 0 ? url.seed : state.seed,
    presenter: !!url.presenter,
  });
  restoreControls();
  startUrlSync();
  window.addEventListener("popstate", followHistory);
  document.body.dataset.loaded = "1";
  // The first screen is alive: the URL's prompt, or the example, is analyzed at once.
  await prompt.analyzeText(url.prompt || DEFAULT_PROMPT, { pinned: url.pinned });
}

start().catch((error) => console.error(error));
