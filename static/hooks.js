/**
 * hooks.js — hook names: one grammar, one builder and one parser for the whole page (the same as
 * model/hooks.py on the server, and TransformerLens's get_act_name). No other module spells a
 * hook name by hand.
 *
 * A hook name is `hook_embed`, `hook_pos_embed`, `ln_final.hook_out`, `logits`, or a layer's
 * `blocks.L.<suffix>`, with L in ASCII decimal and no leading zero (`blocks.03`, `blocks.３`
 * are not names) and a known suffix.
 *
 *   hookName(suffix, layer)     "attn.hook_z", 3 -> "blocks.3.attn.hook_z"; "hook_embed" -> "hook_embed"
 *                               (no layer: a global hook). Throws HookNameError for an unknown
 *                               suffix or a layer that is not a whole number from 0.
 *   parseHook(name, nLayers?)   "blocks.3.attn.hook_z" -> {layer: 3, suffix: "attn.hook_z"};
 *                               "hook_embed" -> {layer: null, suffix: "hook_embed"}. Throws
 *                               HookNameError for anything else (and, with nLayers, a layer the
 *                               model lacks).
 *   isHook(name, nLayers?)      parseHook without the throw
 *   LAYER_HOOKS, GLOBAL_HOOKS   the known suffixes, in the order the computation produces them
 */

export const LAYER_HOOKS = Object.freeze([
  "hook_resid_pre",
  "ln1.hook_out",
  "attn.hook_q",
  "attn.hook_k",
  "attn.hook_v",
  "attn.hook_attn_scores",
  "attn.hook_pattern",
  "attn.hook_z",
  "hook_attn_out",
  "hook_resid_mid",
  "ln2.hook_out",
  "mlp.hook_pre",
  "mlp.hook_post",
  "hook_mlp_out",
  "hook_resid_post",
]);
export const GLOBAL_HOOKS = Object.freeze(["hook_embed", "hook_pos_embed", "ln_final.hook_out", "logits"]);

// [0-9], never \d with the u flag's Unicode digits; at most 6 digits, as on the server.
const LAYER_NAME = /^blocks\.(0|[1-9][0-9]{0,5})\.(.+)$/;

export class HookNameError extends Error {
  constructor(message) {
    super(message);
    this.name = "HookNameError";
  }
}

export function hookName(suffix, layer = null) {
  if (layer == null) {
    if (!GLOBAL_HOOKS.includes(suffix)) throw new HookNameError(`${JSON.stringify(suffix)} is not a hook outside the blocks`);
    return suffix;
  }
  if (!LAYER_HOOKS.includes(suffix)) throw new HookNameError(`${JSON.stringify(suffix)} is not a hook of a block`);
  if (!Number.isSafeInteger(layer) || layer < 0) throw new HookNameError(`a layer is a whole number from 0, got ${String(layer)}`);
  return `blocks.${layer}.${suffix}`;
}

export function parseHook(name, nLayers = null) {
  if (typeof name !== "string") throw new HookNameError(`a hook name is a string, got ${typeof name}`);
  if (GLOBAL_HOOKS.includes(name)) return { layer: null, suffix: name };
  const match = LAYER_NAME.exec(name);
  if (!match) throw new HookNameError(`${JSON.stringify(name)} is not a hook name`);
  const layer = Number(match[1]);
  const suffix = match[2];
  if (!LAYER_HOOKS.includes(suffix)) throw new HookNameError(`${JSON.stringify(suffix)} is not a hook of a block`);
  if (nLayers != null && layer >= nLayers) throw new HookNameError(`layer ${layer} does not exist (the model has ${nLayers})`);
  return { layer, suffix };
}

export function isHook(name, nLayers = null) {
  try {
    parseHook(name, nLayers);
    return true;
  } catch (_) {
    return false;
  }
}
