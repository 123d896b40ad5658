/**
 * sampling.js — the next-token distribution, exactly as model/sampling.py computes it:
 * p = softmax(logits / T) over the full vocabulary (T = 0: all mass on the argmax); top-k keeps the
 * k most likely; top-p keeps the smallest most-likely-first set whose full-vocabulary mass reaches
 * top_p; the kept mass is renormalised to 1. Computed in float64 in the browser, no round trip.
 */

/** Token ids sorted by logit, most likely first (the order is the same at every T > 0). Stable. */
export function sortedIds(logits) {
  const ids = new Uint32Array(logits.length);
  for (let i = 0; i < ids.length; i++) ids[i] = i;
  ids.sort((a, b) => (logits[b] - logits[a]) || (a - b));
  return ids;
}

/**
 * distribution(logits, order, {temperature, topK, topP}) ->
 *   {prob(id) -> number, kept: number of kept ids (a prefix of `order`), entropy (bits), full: Float64Array | null}
 * `order` = sortedIds(logits), computed once per run.
 */
export function distribution(logits, order, { temperature, topK = null, topP = null }) {
  const n = logits.length;
  if (!(temperature > 0)) {
    const best = order[0];
    return { prob: (id) => (id === best ? 1 : 0), kept: 1, entropy: 0, full: null };
  }
  const max = logits[order[0]];
  const full = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const e = Math.exp((logits[i] - max) / temperature);
    full[i] = e;
    sum += e;
  }
  for (let i = 0; i < n; i++) full[i] /= sum;
  let kept = n;
  if (topK != null) kept = Math.min(kept, topK);
  if (topP != null && topP < 1) {
    // keep i while the mass before it is < topP (at least one); topP = 1 keeps everything, as rounding
    // could make the running mass reach 1 before the end
    let before = 0;
    let count = 0;
    for (let r = 0; r < n; r++) {
      if (!(before < topP)) break;
      count++;
      before += full[order[r]];
    }
    kept = Math.min(kept, Math.max(1, count));
  }
  let keptMass = 0;
  for (let r = 0; r < kept; r++) keptMass += full[order[r]];
  let entropy = 0;
  for (let r = 0; r < kept; r++) {
    const p = full[order[r]] / keptMass;
    if (p > 0) entropy -= p * Math.log2(p);
  }
  const rank = kept === n ? null : new Map(Array.from(order.subarray(0, kept), (id) => [id, true]));
  return {
    prob: (id) => (rank && !rank.has(id) ? 0 : full[id] / keptMass),
    kept,
    entropy,
    full,
  };
}
