/**
 * views.js — what the two pages share: the stage registry and its views (each a module exporting
 * mount(root, store, runKey), mounted on the section `stage-<id>`), and what is done once the
 * model is known.
 *
 *   STAGES          the stage registry (static/stages.json, embedded in the page by the
 *                   templates): [{id, part, title, view, compare}] in page order. Adding a stage is
 *                   its view module, its entry there and its catalog strings; nothing here.
 *   loadViews(stages) -> [[stage, module]]   the views of those stages (the ones with a view), imported
 *   mountSelects    the layer and head selects (in the tokens stage)
 *   startup(store, model, patch)   the model and the first view options into the store; the
 *                   inputs' limits and the dimensions in the text from the model
 */
import { count } from "./format.js";

export { mountSelects } from "./selects.js";

export const STAGES = JSON.parse(document.getElementById("stages").textContent).stages;

export async function loadViews(stages) {
  const withView = stages.filter((stage) => stage.view);
  const modules = await Promise.all(withView.map((stage) => import(`./${stage.view}`)));
  return withView.map((stage, i) => [stage, modules[i]]);
}

/** The inputs state the server's own limits (/api/model `limits`), never copies of them. */
function applyLimits(limits) {
  const set = (selector, attribute, value) => {
    for (const node of document.querySelectorAll(selector)) node.setAttribute(attribute, String(value));
  };
  set('[data-testid="prompt-input"]', "maxlength", limits.max_prompt_chars);
  set('[id$="top-k"]', "max", limits.max_top_k);
  set('[id$="seed"]', "max", limits.max_seed);
  set('[id$="max-new-tokens"]', "max", limits.max_new_tokens);
  for (const id of ["neighbours-word", "dot-a", "dot-b"]) set(`[id$="${id}"]`, "maxlength", limits.max_word_chars);
  set('[id$="map-word"]', "maxlength", limits.max_map_words * (limits.max_word_chars + 2));
  set('[id$="arithmetic-input"]', "maxlength", limits.max_expression_chars);
}

export function startup(store, model, patch) {
  applyLimits(model.limits);
  for (const node of document.querySelectorAll("[data-dim]")) {
    const value = model[node.dataset.dim];
    if (value != null) node.textContent = count(value);
  }
  store.set({ model, ...patch });
}
