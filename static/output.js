/**
 * output.js — stage 8: the next-token probabilities as bars, redrawn in the browser from the
 * logits already received (temperature, top-k, top-p: the semantics of model/sampling.py, in
 * sampling.js), the entropy, a seeded Sample, and Generate that streams tokens in.
 */
import { generate, sample } from "./api.js";
import { el, pct, visible } from "./colors.js";
import { analyzeText, timings } from "./prompt.js";
import { distribution, sortedIds } from "./sampling.js";
import { set, state, subscribe } from "./state.js";

const slider = document.getElementById("temperature-slider");
const number = document.getElementById("temperature-number");
const wide = document.getElementById("temperature-wide");
const topK = document.getElementById("top-k");
const topP = document.getElementById("top-p");
const seed = document.getElementById("seed");
const bars = document.getElementById("prob-bars");
const stats = document.getElementById("output-stats");
const sampleButton = document.getElementById("sample-button");
const generateButton = document.getElementById("generate-button");
const stopButton = document.getElementById("stop-button");
const maxNew = document.getElementById("max-new-tokens");
const result = document.getElementById("sample-result");
const errorBox = document.getElementById("output-error");
const generated = document.getElementById("generated");

let order = null; // token ids by logit, for the current run
let rows = []; // [{id, node, fill, value}]
let controller = null;

function showError(message) {
  errorBox.textContent = message || "";
  errorBox.hidden = !message;
}

function renderBars() {
  bars.replaceChildren();
  rows = [];
  const run = state.run;
  order = run ? sortedIds(run.logits) : null;
  if (!run) return;
  for (const t of run.top) {
    const fill = el("span", { class: "fill" });
    const value = el("span", { class: "value" });
    const node = el("div", { class: "bar", role: "listitem", "data-testid": "prob-bar", "data-token-id": t.id },
      el("span", { class: "label", title: `id ${t.id}, logit ${t.logit.toFixed(4)}`, text: visible(t.text) }),
      el("span", { class: "track" }, fill),
      value);
    rows.push({ id: t.id, logit: t.logit, node, fill, value });
    bars.append(node);
  }
  redraw();
}

/** Recompute the distribution from the logits and update the bars in place. */
function redraw() {
  const run = state.run;
  if (!run || !order) return;
  const t0 = performance.now();
  const dist = distribution(run.logits, order, { temperature: state.temperature, topK: state.topK, topP: state.topP });
  const probs = rows.map((r) => dist.prob(r.id));
  // Bars are drawn against the most likely shown token, so a flat distribution is not hairlines;
  // the numbers beside them stay absolute.
  const top = Math.max(...probs) || 1;
  rows.forEach((r, i) => {
    const p = probs[i];
    r.node.dataset.prob = String(p);
    r.node.classList.toggle("cut", p === 0);
    r.fill.style.width = `${((p / top) * 100).toFixed(3)}%`;
    r.value.textContent = p === 0 ? "cut" : pct(p);
    r.node.setAttribute("aria-label", `${visible(run.top[i].text)}: ${pct(p)}`);
  });
  const T = state.temperature;
  const filters = [state.topK != null ? `top-k ${state.topK}` : null, state.topP != null ? `top-p ${state.topP}` : null].filter(Boolean);
  stats.textContent = `T = ${T === 0 ? "0 (always the most likely token)" : T.toFixed(2)} · entropy ${dist.entropy.toFixed(2)} bits · ` +
    `${dist.kept.toLocaleString("en")} of ${run.logits.length.toLocaleString("en")} tokens kept${filters.length ? ` (${filters.join(", ")})` : ""}` +
    ` · the ${rows.length} most likely tokens shown`;
  timings.lastRedraw = performance.now() - t0;
}

function syncControls() {
  const T = state.temperature;
  if (T > Number(slider.max)) {
    wide.checked = true;
    slider.max = "10";
  }
  if (Number(slider.value) !== T) slider.value = String(T);
  if (document.activeElement !== number) number.value = String(T);
  if (document.activeElement !== topK) topK.value = state.topK == null ? "" : String(state.topK);
  if (document.activeElement !== topP) topP.value = state.topP == null ? "" : String(state.topP);
  if (document.activeElement !== seed) seed.value = String(state.seed);
}

function params() {
  return { temperature: state.temperature, topK: state.topK, topP: state.topP, seed: state.seed };
}

async function doSample() {
  const run = state.run;
  if (!run) return;
  showError("");
  try {
    const answer = await sample({ runId: run.runId, ...params() });
    const token = answer.token;
    const bytes = /^(<0x[0-9A-F]{2}>)+$/.test(token.text);
    result.replaceChildren(
      `Drew “${visible(token.text)}” (id ${token.id}, probability ${pct(token.prob)}) with seed ${state.seed}. `,
      bytes ? "" : el("button", { type: "button", class: "ghost", onclick: () => analyzeText(run.text + token.text) }, "Append it to the prompt"),
    );
    for (const r of rows) r.node.classList.toggle("drawn", r.id === token.id);
  } catch (error) {
    showError(error.message);
  }
}

async function doGenerate() {
  const run = state.run;
  if (!run) return;
  showError("");
  controller = new AbortController();
  set({ busy: "generate" });
  generated.hidden = false;
  generated.replaceChildren(el("span", { class: "muted", text: "Generating: " }));
  const pieces = [];
  try {
    const done = await generate(
      { text: run.text, maxNewTokens: Math.max(1, Math.min(state.model.limits.max_new_tokens, Number(maxNew.value) || 20)), ...params() },
      {
        signal: controller.signal,
        onToken: (step) => {
          pieces.push(step.token.text);
          const span = el("span", { class: "new-token", "data-testid": "generated-token", title: `p = ${pct(step.token.prob)}`, text: visible(step.token.text) });
          generated.append(span);
        },
      },
    );
    set({ busy: null });
    generated.hidden = true;
    await analyzeText(done.text, { fresh: run.tokens.length });
  } catch (error) {
    set({ busy: null });
    if (error.name === "AbortError") {
      generated.hidden = true;
      if (pieces.length) await analyzeText(run.text + pieces.join(""), { fresh: run.tokens.length });
    } else {
      showError(error.message);
    }
  } finally {
    controller = null;
  }
}

export function init() {
  slider.addEventListener("input", () => set({ temperature: Number(slider.value) }));
  number.addEventListener("input", () => {
    const T = Number(number.value);
    if (number.value !== "" && Number.isFinite(T) && T >= 0 && T <= 10) set({ temperature: T });
  });
  wide.addEventListener("change", () => {
    slider.max = wide.checked ? "10" : "2";
    if (!wide.checked && state.temperature > 2) set({ temperature: 2 });
    syncControls();
  });
  topK.addEventListener("input", () => {
    const k = Number(topK.value);
    set({ topK: topK.value !== "" && Number.isInteger(k) && k >= 1 ? Math.min(k, state.model.limits.max_top_k) : null });
  });
  topP.addEventListener("input", () => {
    const p = Number(topP.value);
    set({ topP: topP.value !== "" && p > 0 && p <= 1 ? p : null });
  });
  seed.addEventListener("input", () => {
    const s = Number(seed.value);
    // Beyond 2^53 a JS number no longer holds the exact integer: a shared link would draw differently.
    if (Number.isSafeInteger(s) && s >= 0) set({ seed: s });
  });
  sampleButton.addEventListener("click", doSample);
  generateButton.addEventListener("click", doGenerate);
  stopButton.addEventListener("click", () => controller && controller.abort());
  subscribe(["run"], () => {
    result.replaceChildren();
    showError("");
    renderBars();
  });
  subscribe(["temperature", "topK", "topP"], redraw);
  subscribe(["temperature", "topK", "topP", "seed"], syncControls);
  subscribe(["busy", "run"], () => {
    const busy = state.busy != null;
    sampleButton.disabled = busy || !state.run;
    generateButton.disabled = busy || !state.run;
    stopButton.hidden = state.busy !== "generate";
  });
  syncControls();
  sampleButton.disabled = true;
  generateButton.disabled = true;
}
