/**
 * vectors_api.js — the API calls of the issue-5 views (embedding space, logit lens, anatomy).
 * Same contract as api.js, whose ApiError and tensor decoder it uses: every call rejects with an
 * ApiError whose message a person can read. Answers are memoised per URL (the server's answers
 * depend only on the weights, the run and the query).
 *
 *   neighbours({word} | {tokenId}, k=10)   -> {terms, neighbours: [{id, text, cosine}], excluded, notes}
 *   arithmetic(expression, k=10)           -> same shape
 *   dot(a, b)   a, b: {word} | {tokenId}   -> {a, b, dot, cosine, norm_a, norm_b}
 *   embeddingMap(runId, words=[])          -> {d_model, explained: [3], points: [{id, text, xyz, group, positions}], terms, notes}
 *   positions(runId)                       -> {hook_pos_embed: Tensor [pos, d_model], position_cosine: Tensor [pos, pos]}
 *   logitLens(runId, {positions, k, stream}) -> {stream, k, positions, rows, final, first_top_row, cells[row][i]}
 *   anatomy()                              -> {models: [loaded, GPT-3], n_params}
 */
import { decodeTensor, request } from "./api.js";

const memo = new Map();

async function getJson(url) {
  if (memo.has(url)) return memo.get(url);
  // api.js's request: the same errors, and a busy server (503) is waited for, not shown as a failure.
  const promise = request(url).then((response) => response.json());
  memo.set(url, promise);
  promise.catch(() => memo.delete(url));
  if (memo.size > 300) memo.delete(memo.keys().next().value);
  return promise;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value == null) continue;
    if (Array.isArray(value)) value.forEach((v) => q.append(key, String(v)));
    else q.set(key, String(value));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

const run = (runId) => `/api/runs/${encodeURIComponent(runId)}`;

export function neighbours({ word = null, tokenId = null }, k = 10) {
  return getJson(`/api/embedding-space/neighbours${query({ word, token_id: tokenId, k })}`);
}

export function arithmetic(expression, k = 10) {
  return getJson(`/api/embedding-space/arithmetic${query({ expression, k })}`);
}

export function dot(a, b) {
  return getJson(`/api/embedding-space/dot${query({ a: a.word, a_id: a.tokenId, b: b.word, b_id: b.tokenId })}`);
}

export function embeddingMap(runId, words = []) {
  return getJson(`${run(runId)}/embedding-space/map${query({ word: words })}`);
}

export async function positions(runId) {
  const body = await getJson(`${run(runId)}/embedding-space/positions`);
  return { hook_pos_embed: decodeTensor(body.tensors.hook_pos_embed), position_cosine: decodeTensor(body.tensors.position_cosine) };
}

export function logitLens(runId, { positions: ps = null, k = 10, stream = "resid_post" } = {}) {
  return getJson(`${run(runId)}/logit-lens${query({ position: ps, k, stream })}`);
}

export function anatomy() {
  return getJson("/api/anatomy");
}
