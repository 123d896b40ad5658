/**
 * prompt.js — stage 1: the text box, Analyze (button or Enter), example prompts, and the API's
 * errors in the page's own words next to the box. What Analyze does is actions.js's.
 *
 *   mount(root, store, runKey) -> unmount
 */
import { END_OF_TEXT, addEndOfText, analyzeIds, analyzeText, explain } from "./actions.js";
import { busy } from "./api.js";
import { mountView } from "./dom.js";
import { t, tn } from "./i18n.js";
import { selectRun } from "./store.js";

export function mount(root, store, runKey) {
  const view = mountView(root, store);
  const { form, input, analyze: button, error: errorBox, status } = view.parts;
  const endOfText = root.querySelector('[data-part="end-of-text"]'); // the main page's prompt only

  /** The box grows with its text, up to 8 lines (then it scrolls). */
  function fit() {
    input.style.height = "auto";
    const line = parseFloat(getComputedStyle(input).lineHeight) || 24;
    input.style.height = `${Math.min(input.scrollHeight + 4, line * 8 + 16)}px`;
  }

  let shown = null;
  function render() {
    const a = store.state.analysis[runKey];
    if (a !== shown) {
      const textChanged = !shown || shown.text !== a?.text;
      shown = a;
      if (a && textChanged && a.text != null) {
        input.value = a.text;
        fit();
      }
      const message = a && a.status === "failed" ? explain(a.error) : "";
      errorBox.textContent = message;
      errorBox.hidden = !message;
      input.setAttribute("aria-invalid", message ? "true" : "false");
      status.textContent = !a ? "" : a.status === "running" ? t("prompt.running")
        : a.status === "done" ? `${tn("prompt.answered", a.n, { seconds: a.seconds.toFixed(2) })} ` : "";
    }
    button.disabled = store.state.busy != null;
    if (endOfText) endOfText.disabled = store.state.busy != null;
    button.textContent = store.state.busy === "analyze" ? t("prompt.analyzing") : t("prompt.analyze");
  }

  view.on(form, "submit", (event) => {
    event.preventDefault();
    // The box still holding a run of ids (a generation, an end-of-text token) analyzes those ids:
    // its text tokenized again could be other tokens.
    const run = selectRun(store.state, runKey);
    if (run && run.byIds && input.value === run.text) analyzeIds(store, runKey, run.ids, { text: run.text });
    else analyzeText(store, runKey, input.value);
  });
  function showEndOfText() { // the id is the model's: known once /api/model has answered
    if (!endOfText) return;
    const id = store.state.model?.end_of_text_id;
    endOfText.hidden = id == null; // no model yet, or a tokenizer without one
    endOfText.title = t("prompt.end_of_text_title", { token: END_OF_TEXT, id: id ?? "" });
  }
  if (endOfText) view.on(endOfText, "click", () => addEndOfText(store, runKey, input.value));
  view.on(input, "input", fit);
  view.on(input, "keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  for (const b of view.all("example")) view.on(b, "click", () => analyzeText(store, runKey, b.dataset.example));
  // While the server is busy (a whole class pressed Analyze at once), say so instead of freezing.
  busy.onWait = (sentence) => {
    if (sentence) status.textContent = sentence;
  };
  view.watch(["analysis", "busy"], render);
  view.watch(["model"], showEndOfText);
  render();
  showEndOfText();
  return view.unmount;
}
