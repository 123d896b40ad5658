/**
 * api.js — the page's only door to the server, and the one tensor decoder.
 *
 * Exported API (other views, e.g. templates/_vectors.html, rely on it; keep it stable):
 *
 *   decodeTensor(wire) -> Tensor
 *       wire = {dtype: "float32"|"float16", shape: [...], data: base64 little-endian C-order}.
 *       Returns {dtype, shape, data: Float32Array} (float16 is widened to float32; -inf stays -inf).
 *   at(tensor, ...index) -> number        element at a full index, C order
 *   slice(tensor, ...leading) -> Float32Array   a view (no copy) of the sub-tensor at the leading indices,
 *       e.g. slice(hook_q, pos, head) -> the d_head vector; slice(pattern, head, q) -> the row of weights.
 *
 *   class ApiError extends Error {status, detail, code, errors: [{field, message}]}; `code` is the
 *     API's stable error code (empty_prompt, prompt_too_long, busy, unknown_run...), or null
 *       Thrown by every call below on a non-2xx answer; .message is a sentence a person can read.
 *       A 503 (server busy) is first retried after its Retry-After, up to 5 times.
 *   busy.onWait = (sentence | null) => {}   set by the page to show "busy, retrying" while waiting.
 *   request(url, fetchOptions) -> Promise<Response>   fetch() with all of the above (errors, 503 retries).
 *
 *   timing.responded      performance.now() when the last analyze response arrived.
 *   getModel() -> Promise<{name, n_layers, n_heads, d_model, d_head, d_mlp, n_ctx, d_vocab, random_weights, ...}>
 *   analyze(source, interventions = []) -> Promise<Run>
 *       `source` is the text (a string, tokenized by the server) or {ids: [token id...]}: the
 *       tokens exactly (a generated sequence, the real <|endoftext|>: never the text again).
 *       `interventions` ([{hook, op, head?, neuron?, position?, source_run_id?}]) are sent when there
 *       are any: the answer is the intervened run (its own run id), run.interventions the list applied.
 *       Asks with patterns: "auto": the server sends every layer's attention pattern only while they
 *       fit its budget (16 MB by default, 241 tokens in GPT-2 small); past it, none (12·12·n²·2 bytes
 *       would be 75 MB at 512 tokens) and each layer's comes from the layer endpoint when needed.
 *       Run = {runId, model, tokens: [{position, id, text, partial}],
 *              text: the tokens' text (the server's), ids: their ids, byIds: asked for by ids,
 *              patternsMode: "included" | "per-layer",
 *              patterns: [Tensor [head, q_pos, k_pos]] indexed by layer (decoded float16). With
 *                        "per-layer", every entry starts undefined: call ensurePattern(run, layer),
 *              interventions: [...] (empty for a clean run),
 *              logits: Float32Array [d_vocab] (last position), top: [{id, text, logit, prob}],
 *              raw: the JSON as received}
 *   ensurePattern(run, layer) -> Promise<Tensor [head, q_pos, k_pos]>
 *       run.patterns[layer], fetched first if missing (GET /api/runs/{id}/layers/{layer}?fields=
 *       attn.hook_pattern&dtype=float16, the same float16 numbers analyze would have sent) and stored
 *       in run.patterns[layer]. One request per (run, layer) however many views ask; a failed request
 *       is not remembered, so a later call tries again. Resolves at once when the pattern is there.
 *   getEmbeddings(runId) -> Promise<{hook_embed, hook_pos_embed, "blocks.0.hook_resid_pre"}>   Tensors [pos, d_model]
 *   getLayer(runId, layer, fields, dtype="float32") -> Promise<{[full hook name]: Tensor}>
 *       fields: the names inside the block, ["attn.hook_q", "mlp.hook_pre"]; the answer is keyed by
 *       the full hook name ("blocks.3.attn.hook_q"), as everywhere else. Several views asking for
 *       the same layer cost one request.
 *   neighbours({word}|{tokenId}, k), arithmetic(expression, k), dot(a, b), anatomy()
 *       the embedding space's and the parameters' answers (GET /api/embedding-space/..., /api/anatomy)
 *   embeddingMap(runId, words), positions(runId) -> {hook_pos_embed, position_cosine},
 *   logitLens(runId, {positions, k, stream})   the run's own answers
 *   compareRuns(a, b), patching(body, signal), analyzeRaw(text, interventions, signal)   the experiments'
 *   Every answer above is kept in one cache: tensors by run id, full hook name and dtype; the
 *   rest by run id and URL. It is bounded (300 answers, 256 MB of tensors); a failure is not kept.
 *   sample({runId, temperature, topK, topP, seed}) -> Promise<{distribution, token, entropy}>
 *   generate({text | ids, maxNewTokens, temperature, topK, topP, seed, interventions}, {onToken, signal})
 *       -> Promise<{text, ids, run_id, n_tokens, interventions}>: `ids` the prompt's ids then the
 *       generated ones, `run_id` the run of exactly those ids with those interventions.
 *       Streams server-sent events over fetch(); onToken({step, token: {id, text, prob}, top}) per token.
 *       Rejects with ApiError on an `event: error`, or with an AbortError when `signal` aborts.
 *   getClassroom() -> {teacher, token_required, reachable, students_base, command}   GET /api/classroom:
 *       whether this browser may open rooms, and where (and whether) students reach this server
 *   openRoom() -> {code, secret, follow_url, students_url, reachable, expires_in}   POST /api/rooms
 *       (follow the teacher; 403 teacher_only, 429 client_limit, 403 cross_site: the server's sentence)
 *   publishRoom(code, secret, state) -> {version}            PUT /api/rooms/{code}/state, X-Room-Secret
 *   closeRoom(code, secret)                                  DELETE /api/rooms/{code}, X-Room-Secret
 *   roomSnapshot(code) -> {version, state}                   GET /api/rooms/{code} (404 unknown_room, 410 room_expired)
 *   roomEventsUrl(code), roomQrUrl(code)                     the event stream (for an EventSource) and the QR code's SVG
 *   checkRoomEvents(code)   resolves if the event stream would be served now (asked, then closed at
 *       once); else rejects with the server's ApiError (429 client_limit: too many tabs of this computer
 *       follow rooms; 503 room_full after its retries), which an EventSource never shows
 *   Not cached: a room's state changes.
 */

import { hookName, parseHook } from "./hooks.js";
import { t } from "./i18n.js";

const HALF_TABLE = (() => {
  // Every float16 bit pattern -> float32, computed once (64 K entries).
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    let v;
    if (exp === 0) v = frac * 2 ** -24;
    else if (exp === 31) v = frac ? NaN : Infinity;
    else v = (1 + frac / 1024) * 2 ** (exp - 15);
    table[h] = sign * v;
  }
  return table;
})();

function base64Bytes(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

/** The single decoder of the wire format. (Assumes a little-endian host, as every browser is.) */
export function decodeTensor(wire) {
  const bytes = base64Bytes(wire.data);
  let data;
  if (wire.dtype === "float32") {
    data = new Float32Array(bytes.buffer, 0, bytes.length / 4);
  } else if (wire.dtype === "float16") {
    const half = new Uint16Array(bytes.buffer, 0, bytes.length / 2);
    data = new Float32Array(half.length);
    for (let i = 0; i < half.length; i++) data[i] = HALF_TABLE[half[i]];
  } else {
    throw new Error(`Unknown tensor dtype ${wire.dtype}`);
  }
  const size = wire.shape.reduce((a, b) => a * b, 1);
  if (size !== data.length) throw new Error(`Tensor shape ${wire.shape} does not match ${data.length} values`);
  return { dtype: wire.dtype, shape: wire.shape.slice(), data };
}

function offsetOf(tensor, index) {
  let offset = 0;
  for (let d = 0; d < tensor.shape.length; d++) offset = offset * tensor.shape[d] + (index[d] || 0);
  return offset;
}

export function at(tensor, ...index) {
  return tensor.data[offsetOf(tensor, index)];
}

export function slice(tensor, ...leading) {
  const rest = tensor.shape.slice(leading.length).reduce((a, b) => a * b, 1);
  const start = offsetOf(tensor, leading);
  return tensor.data.subarray(start, start + rest);
}

export class ApiError extends Error {
  constructor(status, detail, errors = [], code = null, context = {}) {
    super(detail);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
    this.errors = errors;
    this.code = code;
    this.context = context; // the body's other fields: n_tokens and limit for prompt_too_long...
  }
}

async function failure(response) {
  let detail = t("page.server_answered", { status: response.status, statusText: response.statusText });
  let errors = [];
  let code = null;
  let context = {};
  try {
    const body = await response.json();
    if (typeof body.code === "string") code = body.code;
    const { detail: _d, code: _c, errors: _e, ...rest } = body;
    context = rest;
    if (Array.isArray(body.errors) && body.errors.length) {
      errors = body.errors;
      detail = body.errors.map((e) => e.message).join("; ");
    } else if (typeof body.detail === "string") {
      detail = body.detail;
    }
  } catch (_) { /* not JSON */ }
  if (response.status === 503) detail = detail || t("page.error_busy");
  return new ApiError(response.status, detail, errors, code, context);
}

/** Called with a sentence while a busy server is being waited for, and with null when it answers. */
export const busy = { onWait: null };

const MAX_BUSY_RETRIES = 5;
const NETWORK_RETRY_MS = 400;

/** The analyze bodies of the runs this page analyzed, by run id (the last 64): a run id is derived
 * from its token ids and interventions, so if the server has forgotten a run, sending the same
 * body again (the same text, or the same ids) brings back the same id. */
const runTexts = new Map();

function rememberRun(runId, body) {
  runTexts.delete(runId);
  runTexts.set(runId, body);
  if (runTexts.size > 64) runTexts.delete(runTexts.keys().next().value);
}

/** The run a request reads: /api/runs/{id}/... or a JSON body's run_id. */
function runIdOf(url, options) {
  const match = /\/api\/runs\/([^/?]+)/.exec(url);
  if (match) return decodeURIComponent(match[1]);
  try {
    return JSON.parse(options.body || "null")?.run_id ?? null;
  } catch (_) {
    return null;
  }
}

/**
 * fetch() for the API. `options.idempotent` (GETs always are) lets a request be sent once more
 * after a network error (a connection reset under load), before the page shows an error.
 */
export async function request(url, options = {}) {
  const idempotent = options.idempotent ?? (!options.method || options.method === "GET");
  let networkRetried = false;
  // A classroom makes the server busy in bursts: a 503 carries Retry-After, so wait that long
  // and try again a few times before giving up with the server's message.
  for (let attempt = 0; ; attempt++) {
    let response;
    try {
      response = await fetch(url, options);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      if (idempotent && !networkRetried) {
        networkRetried = true;
        await new Promise((resolve) => setTimeout(resolve, NETWORK_RETRY_MS));
        if (options.signal?.aborted) throw new DOMException("Aborted", "AbortError");
        continue;
      }
      throw new ApiError(0, t("page.unreachable"));
    }
    if (response.status === 404 && !options.reanalyzed) {
      const body = runTexts.get(runIdOf(url, options));
      if (body !== undefined) {
        // The server forgot this run (a restart): the same analyze body again restores the same id.
        await postJson("/api/analyze", body);
        return request(url, { ...options, reanalyzed: true });
      }
    }
    if (response.status === 503 && attempt < MAX_BUSY_RETRIES) {
      // Jittered (0.5–1.5 × Retry-After): thirty pages refused together must not all come back together.
      const seconds = Math.min(10, Number(response.headers.get("Retry-After")) || 2) * (0.5 + Math.random());
      busy.onWait?.(t("page.busy_retry", { seconds: seconds.toFixed(1) }));
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      if (options.signal?.aborted) throw new DOMException("Aborted", "AbortError");
      continue;
    }
    busy.onWait?.(null);
    if (!response.ok) throw await failure(response);
    return response;
  }
}

function postJson(url, body, signal, idempotent = true) {
  return request(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal,
    idempotent,
  });
}

export async function getModel() {
  return (await request("/api/model")).json();
}

/** performance.now() stamps of the last analyze: {responded} when its response arrived (for the tests). */
export const timing = {};

/** The analyze body's prompt: {text} for a string, {ids} for {ids: [...]}. */
function promptOf(source) {
  return typeof source === "string" ? { text: source } : { ids: source.ids.slice() };
}

export async function analyze(source, interventions = []) {
  const body = { ...promptOf(source), patterns: "auto" };
  if (interventions && interventions.length) body.interventions = interventions;
  const response = await postJson("/api/analyze", body);
  timing.responded = performance.now();
  const raw = await response.json();
  rememberRun(raw.run_id, body);
  const patternsMode = raw.patterns === "per-layer" ? "per-layer" : "included";
  const patterns = new Array(raw.model.n_layers);
  if (patternsMode === "included") {
    for (let l = 0; l < raw.model.n_layers; l++) {
      patterns[l] = decodeTensor(raw.tensors[hookName("attn.hook_pattern", l)]);
    }
  }
  return {
    runId: raw.run_id,
    text: typeof raw.text === "string" ? raw.text : body.text,
    ids: raw.tokens.map((token) => token.id),
    byIds: !!body.ids,
    model: raw.model,
    tokens: raw.tokens,
    patternsMode,
    patterns,
    logits: decodeTensor(raw.tensors.logits).data,
    residNorms: decodeTensor(raw.resid_norms), // [n_layers + 1, pos]
    top: raw.top,
    interventions: raw.interventions || [],
    raw,
  };
}

const patternRequests = new WeakMap(); // run -> Map(layer -> Promise<Tensor>), while in flight

export function ensurePattern(run, layer) {
  if (run.patterns[layer]) return Promise.resolve(run.patterns[layer]);
  let pending = patternRequests.get(run);
  if (!pending) patternRequests.set(run, (pending = new Map()));
  let promise = pending.get(layer);
  if (!promise) {
    promise = getLayer(run.runId, layer, ["attn.hook_pattern"], "float16")
      .then((t) => (run.patterns[layer] = t[hookName("attn.hook_pattern", layer)]))
      .finally(() => pending.delete(layer));
    pending.set(layer, promise);
  }
  return promise;
}

/* The one cache of answers. Tensors are keyed by run id, full hook name and dtype
 * ("r1|blocks.3.attn.hook_q|float32"), so views that ask for the same tensor through different
 * endpoints share it; other answers by run id and URL. Bounded in entries and in tensor bytes:
 * a 512-token layer is megabytes. A failed answer is forgotten, so asking again retries. */
const MAX_ENTRIES = 300;
const MAX_TENSOR_BYTES = 256e6;
const cache = new Map(); // key -> {promise, bytes}
let cachedBytes = 0;

function evict() {
  for (const [key, entry] of cache) {
    if (cache.size <= MAX_ENTRIES && cachedBytes <= MAX_TENSOR_BYTES) break;
    cache.delete(key);
    cachedBytes -= entry.bytes;
  }
}

function remember(key, make) {
  const known = cache.get(key);
  if (known) {
    cache.delete(key); // most recently used last
    cache.set(key, known);
    return known.promise;
  }
  const entry = { promise: make(), bytes: 0 };
  cache.set(key, entry);
  entry.promise.then((value) => {
    if (cache.get(key) !== entry) return;
    entry.bytes = value && value.data ? value.data.byteLength : 0;
    cachedBytes += entry.bytes;
    evict();
  }, () => {
    if (cache.get(key) === entry) cache.delete(key);
  });
  evict();
  return entry.promise;
}

/** Tensors named `names` (full hook names) of one run, from `url` (which answers {tensors: {name:
 * wire}}); only the ones not cached yet are asked for, in one request, by `urlFor(missing)`. */
async function tensors(runId, names, dtype, urlFor) {
  const key = (name) => `${runId}|${name}|${dtype}`;
  const missing = names.filter((name) => !cache.has(key(name)));
  if (missing.length) {
    const all = request(urlFor(missing)).then((r) => r.json());
    for (const name of missing) {
      remember(key(name), () => all.then((body) => decodeTensor(body.tensors[name])));
    }
  }
  const values = await Promise.all(names.map((name) => remember(key(name), () => Promise.reject(new Error("evicted")))));
  return Object.fromEntries(names.map((name, i) => [name, values[i]]));
}

const runPath = (runId) => `/api/runs/${encodeURIComponent(runId)}`;

export async function getEmbeddings(runId) {
  return tensors(runId, [hookName("hook_embed"), hookName("hook_pos_embed"), hookName("hook_resid_pre", 0)], "float32",
    () => `${runPath(runId)}/embeddings`);
}

/** Fields of one layer, named inside the block ("attn.hook_q"); the answer keyed by full hook name. */
export async function getLayer(runId, layer, fields, dtype = "float32") {
  return tensors(runId, fields.map((f) => hookName(f, layer)), dtype, (missing) =>
    `${runPath(runId)}/layers/${layer}?fields=${missing.map((n) => parseHook(n).suffix).join(",")}&dtype=${dtype}`);
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

/** A JSON answer, cached by run id (or "-" for answers of the weights alone) and URL. */
function getJson(runId, url) {
  return remember(`${runId ?? "-"}|${url}`, () => request(url).then((response) => response.json()));
}

export function neighbours({ word = null, tokenId = null }, k = 10) {
  return getJson(null, `/api/embedding-space/neighbours${query({ word, token_id: tokenId, k })}`);
}

export function arithmetic(expression, k = 10) {
  return getJson(null, `/api/embedding-space/arithmetic${query({ expression, k })}`);
}

export function dot(a, b) {
  return getJson(null, `/api/embedding-space/dot${query({ a: a.word, a_id: a.tokenId, b: b.word, b_id: b.tokenId })}`);
}

export function embeddingMap(runId, words = []) {
  return getJson(runId, `${runPath(runId)}/embedding-space/map${query({ word: words })}`);
}

export async function positions(runId) {
  return tensors(runId, ["hook_pos_embed", "position_cosine"], "float32",
    () => `${runPath(runId)}/embedding-space/positions`);
}

export function logitLens(runId, { positions: ps = null, k = 10, stream = "resid_post" } = {}) {
  return getJson(runId, `${runPath(runId)}/logit-lens${query({ position: ps, k, stream })}`);
}

export function anatomy() {
  return getJson(null, "/api/anatomy");
}

/** GET /api/runs/{a}/compare/{b}: the two runs' next-token distributions side by side. */
export function compareRuns(a, b) {
  return getJson(a, `${runPath(a)}/compare/${encodeURIComponent(b)}`);
}

/** POST /api/patching {clean, corrupted, target_token, baseline_token, hook}: the sweep's grid. */
export async function patching(body, signal) {
  return (await postJson("/api/patching", body, signal)).json();
}

/** The analyze answer as received (undecoded), for views that read one number of it. */
export async function analyzeRaw(text, interventions = [], signal) {
  return (await postJson("/api/analyze", { text, patterns: "auto", interventions }, signal)).json();
}

function samplingBody({ temperature, topK, topP, seed }) {
  const body = { temperature };
  if (topK != null) body.top_k = topK;
  if (topP != null) body.top_p = topP;
  if (seed != null) body.seed = seed;
  return body;
}

export async function sample({ runId, ...params }) {
  return (await postJson("/api/sample", { run_id: runId, ...samplingBody(params) })).json();
}

/** Parse one server-sent event block ("event: x\ndata: {...}") into {event, data}. */
function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  return { event, data: data.length ? JSON.parse(data.join("\n")) : null };
}

export async function generate({ text, ids, maxNewTokens, interventions = [], ...params }, { onToken = () => {}, signal } = {}) {
  const body = { ...promptOf(ids ? { ids } : text), max_new_tokens: maxNewTokens, ...samplingBody(params) };
  if (interventions.length) body.interventions = interventions;
  // Not sent twice: a generation is not idempotent without a seed, and it streams.
  const response = await postJson("/api/generate", body, signal, false);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buffer += decoder.decode(value, { stream: true });
    buffer = buffer.replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      if (!block.trim()) continue;
      const { event, data } = parseEvent(block);
      if (event === "done") return data;
      if (event === "error") throw new ApiError(200, (data && data.detail) || t("page.generation_failed"), [], (data && data.code) || null);
      if (data) onToken(data);
    }
    if (done) throw new ApiError(0, t("page.stream_ended"));
  }
}

/** GET /api/runs/{id}/head-scores: {previous_token, duplicate_token, induction: [[score | null per
 * head] per layer], definitions: {kind: sentence}} for this run's prompt. */
export function headScores(runId) {
  return getJson(runId, `${runPath(runId)}/head-scores`);
}

/** POST /api/induction-probe {length, seed}: random tokens repeated twice, {tokens, induction:
 * [[per head] per layer], loss, loss_first_half, loss_second_half}. Deterministic for a seed, so
 * kept in the one cache like a GET. */
export function inductionProbe(length = 50, seed = 0, interventions = []) {
  const body = interventions.length ? { length, seed, interventions } : { length, seed };
  return remember(`-|/api/induction-probe|${JSON.stringify(body)}`,
    () => postJson("/api/induction-probe", body).then((response) => response.json()));
}

/** GET /api/runs/{id}/attribution?target=&baseline=: logit(target) − logit(baseline) at the last
 * position split into its parts {embed, pos_embed, heads: [[per head] per layer], attn_bias, mlp,
 * ln_final_bias, total, logit_diff, note}. */
export function attribution(runId, target, baseline) {
  return getJson(runId, `${runPath(runId)}/attribution${query({ target, baseline })}`);
}

/** GET /api/scenes: the guided scenes, [{id, title}]; GET /api/scenes/{id}: one scene (data files). */
export function listScenes() {
  return getJson(null, "/api/scenes");
}

export function getScene(id) {
  return getJson(null, `/api/scenes/${encodeURIComponent(id)}`);
}

/** Follow the teacher (room.js): open a room, publish to it with its secret, read it. */
const roomPath = (code) => `/api/rooms/${encodeURIComponent(code)}`;

export async function getClassroom() {
  return (await request("/api/classroom")).json();
}

export async function openRoom() {
  return (await request("/api/rooms", { method: "POST" })).json();
}

/** DELETE /api/rooms/{code} with the teacher's secret: the room ends, its followers are told. */
export async function closeRoom(code, secret) {
  await request(roomPath(code), { method: "DELETE", headers: { "X-Room-Secret": secret }, idempotent: true });
}

export async function publishRoom(code, secret, state) {
  const response = await request(`${roomPath(code)}/state`, {
    method: "PUT",
    headers: { "Content-Type": "application/json", "X-Room-Secret": secret },
    body: JSON.stringify(state),
    idempotent: true, // the same state twice is one version
  });
  return response.json();
}

export async function roomSnapshot(code) {
  return (await request(roomPath(code))).json();
}

export const roomEventsUrl = (code) => `${roomPath(code)}/events`;
export const roomQrUrl = (code) => `${roomPath(code)}/qr.svg`;

export async function checkRoomEvents(code) {
  const done = new AbortController();
  await request(roomEventsUrl(code), { signal: done.signal });
  done.abort(); // the place it took is given back: the page's EventSource takes one next
}
