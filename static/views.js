/**
 * views.js — what the two pages share: the stage views by name (each a module exporting
 * mount(root, store, runKey), mounted on the section `stage-<name>`), and what is done once the
 * model is known.
 *
 *   VIEWS           {stage name: module}, in page order
 *   mountSelects    the layer and head selects (in the tokens stage)
 *   startup(store, model, patch)   the model and the first view options into the store; the
 *                   inputs' limits and the dimensions in the text from the model
 */
import * as anatomy from "./anatomy.js";
import * as attention from "./attention.js";
import * as attribution from "./attribution.js";
import * as embedding from "./embedding.js";
import * as embeddingSpace from "./embedding_space.js";
import * as experiments from "./experiments.js";
import * as heads from "./heads.js";
import * as logitLens from "./logit_lens.js";
import * as mlp from "./mlp.js";
import * as output from "./output.js";
import * as overview from "./overview.js";
import * as patching from "./patching.js";
import * as prompt from "./prompt.js";
import * as qk from "./qk.js";
import * as tokens from "./tokens.js";
import { count } from "./format.js";

export { mountSelects } from "./selects.js";

export const VIEWS = {
  prompt,
  tokens,
  overview,
  experiments,
  embedding,
  attention,
  heads,
  attribution,
  qk,
  mlp,
  output,
  patching,
  "embedding-space": embeddingSpace,
  "logit-lens": logitLens,
  anatomy,
};

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
