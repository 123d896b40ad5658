/**
 * prompt.js — stage 1: the text box, Analyze (button or Enter), example prompts, and the API's
 * errors in plain words next to the box. `analyzeText(text)` is the one way a new run arrives.
 */
import { analyze, busy, timing } from "./api.js";
import { set, state, subscribe } from "./state.js";

const form = document.getElementById("prompt-form");
const input = document.getElementById("prompt-input");
const button = document.getElementById("analyze-button");
const errorBox = document.getElementById("prompt-error");
const status = document.getElementById("prompt-status");

/** Timings the browser tests read: analyzeReturned / interactive (performance.now() ms). */
export const timings = (window.explainerTimings = window.explainerTimings || {});

/** The page's own words for the API's errors a person meets here, keyed by the stable `code`. */
function explain(error) {
  if (error && error.code === "empty_prompt") return "The prompt is empty: type some text to analyze.";
  return error.message || String(error);
}

/** The box grows with its text, up to 8 lines (then it scrolls). */
export function fit() {
  input.style.height = "auto";
  const line = parseFloat(getComputedStyle(input).lineHeight) || 24;
  input.style.height = `${Math.min(input.scrollHeight + 4, line * 8 + 16)}px`;
}

export function showError(message) {
  errorBox.textContent = message || "";
  errorBox.hidden = !message;
  input.setAttribute("aria-invalid", message ? "true" : "false");
}

let serial = 0;

// While the server is busy (a whole class pressed Analyze at once), say so instead of freezing.
busy.onWait = (sentence) => {
  if (sentence) status.textContent = sentence;
};

/**
 * Analyze `text` and make it the current run. `after.pinned` pins a token; `after.fresh` = the
 * number of leading tokens that are old: the chips after them get a short highlight (Generate).
 */
export async function analyzeText(text, after = {}) {
  const mine = ++serial;
  showError("");
  input.value = text;
  fit();
  status.textContent = "Running the model…";
  set({ busy: "analyze" });
  const started = performance.now();
  try {
    const run = await analyze(text);
    if (mine !== serial) return null;
    timings.analyzeReturned = timing.responded;
    const n = run.tokens.length;
    const pinned = after.pinned != null && after.pinned < n ? after.pinned : null;
    set({ run, hovered: null, pinned, busy: null });
    await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
    timings.interactive = performance.now();
    timings.timeToInteractive = timings.interactive - timings.analyzeReturned;
    timings.nTokens = n;
    timings.runs = (timings.runs || 0) + 1;
    status.textContent = `${n} token${n === 1 ? "" : "s"}, answered in ${((timings.analyzeReturned - started) / 1000).toFixed(2)} s. `;
    document.body.dataset.ready = "1";
    if (after.fresh != null) {
      for (const chip of document.querySelectorAll('[data-testid="token"]')) {
        if (Number(chip.dataset.index) >= after.fresh) chip.classList.add("fresh");
      }
    }
    return run;
  } catch (error) {
    if (mine !== serial) return null;
    set({ busy: null });
    status.textContent = "";
    showError(explain(error));
    if (!(error && error.name === "ApiError")) console.error(error);
    return null;
  }
}

export function init() {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    analyzeText(input.value);
  });
  input.addEventListener("input", fit);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  for (const b of document.querySelectorAll("[data-example]")) {
    b.addEventListener("click", () => analyzeText(b.dataset.example));
  }
  const sync = () => {
    const busy = state.busy != null;
    button.disabled = busy;
    button.textContent = state.busy === "analyze" ? "Analyzing…" : "Analyze";
  };
  subscribe(["busy"], sync);
}
