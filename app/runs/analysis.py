"""The analysis service: a prompt run once through the model and cached under an id derived
from its content, and a run found again by that id, recomputed if the cache let it go.

A run's identity is its content (the model, the token ids and the interventions), so any id
this server issued can be recomputed bitwise: students never lose a run to eviction, and a 404
is only for an id the server never issued (or issued so long ago that even the index of recipes
forgot it). A prompt given as text is its tokens: the text's run and the same ids' run are one."""

from __future__ import annotations

import json
from functools import partial

from model import Explainer, Run
from model.hooks import LAYER_HOOKS, HookNameError, parse_hook
from model.cancellation import NEVER, CancelToken
from model.interventions import Editor, Intervention
from model.sampling import distribution
from model.threads import block_macs, forward_macs

from app.runs import tensors
from app.runs.cache import CachedRun, RunCache, unpack_ids
from app.serving.concurrency import Cost, ForwardLimiter
from app.errors import ApiError, field_error
from app.runs.model_info import model_info
from app.runs.responses import gzipped, model_bytes
from app.runs.tokens import token_prob
from app.schemas import AnalyzeResponse

N_TOP = 10


def run_id_for(explainer: Explainer, ids, interventions: str = "") -> str:
    """The id of a run: its content (the model, the token ids, the interventions' canonical JSON)."""
    return RunCache.id_for(explainer.identity, ids, interventions)


def prompt_ids(explainer: Explainer, text: str | None = None, ids: list[int] | None = None) -> list[int]:
    """The token ids of a request's prompt, given as text or as ids (exactly one), or a 422
    naming the field."""
    if (text is None) == (ids is None):
        raise field_error("ids" if ids is not None else "text",
                          "give the prompt as text or as ids, not both" if ids is not None else "give the prompt as text or as ids",
                          code="one_of")
    return explainer.tokenize(text) if ids is None else explainer.check_ids(ids)


def layer_hooks(explainer: Explainer, layer: int, fields: str | None) -> list[str]:
    """The hook suffixes of `layer` that `fields` asks for (comma-separated suffixes or this
    layer's full names; all when None), in the order asked, or a 422 naming the field."""
    n_layers = explainer.config.n_layer
    if not 0 <= layer < n_layers:
        raise field_error("layer", f"must be from 0 to {n_layers - 1}, got {layer}")
    if not fields:
        return list(LAYER_HOOKS)
    asked, unknown = [], []
    for name in (f.strip() for f in fields.split(",") if f.strip()):
        if name in LAYER_HOOKS:
            asked.append(name)
            continue
        try:
            at, suffix = parse_hook(name, n_layers)
        except HookNameError as error:  # the query's pattern holds the grammar: only the layer's range is left
            raise field_error("fields", str(error), code="out_of_range") from None
        (asked if at == layer else unknown).append(suffix if at == layer else name)
    if unknown:  # another layer's full hook name
        raise field_error("fields", f"{unknown[0]!r} is not a hook of layer {layer}; known: {', '.join(LAYER_HOOKS)}",
                          code="out_of_range")
    if not asked:
        raise field_error("fields", "name at least one hook, e.g. attn.hook_q")
    return asked


def analysis_cost(explainer: Explainer, n_tokens: int, field: str, patterns: bool) -> Cost:
    """An analysis of `n_tokens` (`patterns`: with every layer's attention), whose prompt is the
    request's `field` (text or ids)."""
    c = explainer.config
    return Cost("analysis", forward_macs(c, n_tokens, patterns), field, f"analyzing {n_tokens} tokens",
                "send a shorter prompt", grain=block_macs(c, n_tokens, observed=patterns), counted=True)


def run_text(run: Run) -> str:
    """The run's tokens as text (they join back to it; a byte token's half character is U+FFFD)."""
    return "".join(t.text for t in run.tokens)


def run_summary(explainer: Explainer, entry: CachedRun) -> dict:
    """GET /api/runs/{run_id}: what the run is, without its tensors."""
    return {"run_id": entry.run_id, "model": explainer.loaded.name, "text": run_text(entry.run),
            "tokens": token_list(entry.run), "interventions": [it.as_dict() for it in entry.run.interventions]}


def token_list(run: Run) -> list[dict]:
    return [{"position": i, "id": t.id, "text": t.text, "partial": t.partial} for i, t in enumerate(run.tokens)]


def pattern_bytes(explainer: Explainer, n_tokens: int) -> int:
    """Bytes of every layer's pattern in float16: [layer, head, q_pos, k_pos]."""
    c = explainer.config
    return c.n_layer * c.n_head * n_tokens * n_tokens * 2


def with_patterns(explainer: Explainer, n_tokens: int, mode: str, budget: int) -> bool:
    """Whether the analyze response carries every layer's pattern. With 'auto', only within
    `budget` bytes (settings.auto_pattern_bytes): at 1,024 tokens they would be 302 MB."""
    return pattern_bytes(explainer, n_tokens) <= budget or mode == "all"


def check_pattern_budget(explainer: Explainer, n_tokens: int, mode: str, budget: int) -> None:
    """'all' is bounded too: every layer's attention beyond the budget is a 422 naming the field,
    not seconds of work and hundreds of MB (302 MB at 1,024 tokens in GPT-2 small)."""
    size = pattern_bytes(explainer, n_tokens)
    if mode == "all" and size > budget:
        raise field_error("patterns", code="too_costly", message=f"every layer's attention for {n_tokens} tokens is {size / 2**20:.0f} MB, more "
                                      f"than the {budget / 2**20:.0f} MB one response may carry: ask with \"auto\" and "
                                      "fetch each layer from /api/runs/{run_id}/layers/{layer}?fields=attn.hook_pattern")


def analyze_body(explainer: Explainer, run_id: str, run: Run, include_patterns: bool = True) -> bytes:
    """The analyze response as JSON bytes. Patterns go as float16: half the bytes, and a
    float16 weight is exact to about 3 decimals, beyond what a person reads off a chart.
    Without them, the response says "patterns": "per-layer" and the layer endpoint serves
    them (recomputed from the residual stream, identical)."""
    logits = run["logits"]
    dist = distribution(logits, 1.0)
    top = [token_prob(explainer.tokenizer, i, p, logit=float(logits[i])) for i, p in dist.top(N_TOP)]
    patterns = {}
    if include_patterns:
        patterns = {f"blocks.{l}.attn.hook_pattern": tensors.encode(run[f"blocks.{l}.attn.hook_pattern"], "float16")
                    for l in range(run.n_layers)}
    body = {
        "run_id": run_id,
        "model": model_info(explainer),
        "text": run_text(run),
        "tokens": token_list(run),
        "tensors": {**patterns, "logits": tensors.encode(logits, "float32")},
        "resid_norms": tensors.encode(run.resid_norms(), "float32"),
        "top": top,
        "patterns": "included" if include_patterns else "per-layer",
        "interventions": [it.as_dict() for it in run.interventions],
    }
    return model_bytes(AnalyzeResponse, body)


def analyze_and_cache(explainer: Explainer, cache: RunCache, ids: list[int], include: bool = True,
                      cancel: CancelToken = NEVER) -> CachedRun:
    return analyze_into_cache(explainer, cache, ids, include, cancel)[0]


def analyze_into_cache(explainer: Explainer, cache: RunCache, ids: list[int], include: bool,
                       cancel: CancelToken = NEVER, editor: Editor | None = None) -> tuple[CachedRun, bytes]:
    """The cached run, and its body as plain JSON for a client that does not accept gzip.
    `cancel` stops the forward pass between blocks when nobody waits for it any more; `editor`
    applies the run's interventions (checked already)."""
    run = explainer.analyze_ids(ids, keep=["attn.hook_pattern"] if include else (), cancel=cancel, editor=editor)
    interventions = canonical(run.interventions)
    run_id = run_id_for(explainer, ids, interventions)
    plain = analyze_body(explainer, run_id, run, include)
    # Gzipped once, here, and kept so in the cache: a repeated prompt is served without
    # compressing 1.8 MB again, and a run holds 0.8 MB of body instead of 1.8 MB.
    body = gzipped(plain)
    # Patterns are in the body already; the Run keeps only the residual stream.
    run.stored = {k: v for k, v in run.stored.items() if not k.endswith("attn.hook_pattern")}
    entry = CachedRun(run_id=run_id, run=run, bodies={include: body}, interventions=interventions)
    cache.put(entry)
    return entry, plain


def add_body(explainer: Explainer, cache: RunCache, entry: CachedRun, include: bool) -> tuple[bytes, bytes]:
    """The other form of a cached run's response (patterns recomputed layer by layer)."""
    plain = analyze_body(explainer, entry.run_id, entry.run, include)
    body = gzipped(plain)
    cache.add_body(entry, include, body)
    return body, plain


def canonical(interventions) -> str:
    """The interventions as the JSON that identifies them: "" for none."""
    if not interventions:
        return ""
    return json.dumps([it.as_dict() for it in interventions], separators=(",", ":"), sort_keys=True)


def recompute(explainer: Explainer, cache: RunCache, run_id: str, ids: list[int], cancel: CancelToken = NEVER,
              editor: Editor | None = None) -> CachedRun:
    """The run of `ids` again (with its interventions), from the same forward pass code: bitwise
    the run that was evicted. Its analyze bodies are rebuilt only if asked for."""
    run = explainer.analyze_ids(ids, cancel=cancel, editor=editor)
    entry = CachedRun(run_id=run_id, run=run, bodies={}, interventions=canonical(run.interventions))
    cache.put(entry)
    return entry


async def resolve(run_id: str, explainer: Explainer, cache: RunCache, limiter: ForwardLimiter, coalescer) -> CachedRun:
    """The cached run `run_id`; recomputed (through the forward limiter, shared by identical
    requests in flight) when the cache evicted it, or when it was issued without being computed
    (a generation's)."""
    entry = cache.get(run_id)
    if entry is not None:
        return entry
    recipe = cache.recipe_of(run_id)
    if recipe is None and cache.shared is not None:  # issued by another replica (app/cluster.py)
        recipe = await cache.shared.lookup(run_id)
        if recipe is not None and run_id_for(explainer, unpack_ids(recipe[0]), recipe[1]) != run_id:
            recipe = None  # another model's run (replicas of two models mid-update): not ours to recompute
    if recipe is None:
        raise ApiError(404, "unknown_run", f"Unknown run_id {run_id!r}: this server never issued it, or forgot it long ago. "
                                           "Analyze the prompt again to get a run.", field="run_id")
    ids, interventions = unpack_ids(recipe[0]), recipe[1]
    editor = None
    if interventions:
        # Its source runs are found the same way (recomputed too if they were let go).
        parsed = tuple(Intervention(**it) for it in json.loads(interventions))
        sources = {it.source_run_id: (await resolve(it.source_run_id, explainer, cache, limiter, coalescer)).run
                   for it in parsed if it.source_run_id}
        editor = Editor(parsed, sources)
    return await coalescer.run(("recompute", run_id),
                               lambda: limiter.run(partial(recompute, editor=editor), explainer, cache, run_id, ids, cancellable=True))
