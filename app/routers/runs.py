"""Analyze a prompt once, then read its internals by run id."""

from __future__ import annotations

import gzip
import math
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from model import Explainer
from model.hooks import LAYER_HOOKS, HookNameError, parse_hook

from app.runs import tensors
from app.runs import experiments
from app.runs.analysis import (
    add_body,
    analysis_cost,
    analyze_into_cache,
    canonical,
    check_pattern_budget,
    prompt_ids,
    run_id_for,
    run_summary,
    with_patterns,
)
from app.runs.cache import RunCache
from app.serving.concurrency import Costed, ForwardLimiter
from app.serving.budget import ByteBudget
from app.deps import get_budget, get_cache, get_explainer, get_limiter, run_of
from app.errors import documented, field_error
from app.runs.responses import tensors_response
from app.schemas import AnalyzeRequest, AnalyzeResponse, Index, LayerResponse, RunResponse, TensorsResponse

_HOOK = f"(blocks\\.(0|[1-9][0-9]*)\\.)?({'|'.join(h.replace('.', chr(92) + '.') for h in LAYER_HOOKS)})"
FIELDS_PATTERN = f"^ *{_HOOK} *(, *{_HOOK} *)*$"  # the known hooks, as the route checks them

router = APIRouter(prefix="/api", responses=documented(400, 422, 503))
RUN = documented(404)

@router.post("/analyze", response_model=AnalyzeResponse, responses=documented(413),
             summary="Run the model once on a prompt and capture it")
async def analyze(
    request: AnalyzeRequest,
    http: Request,
    explainer: Explainer = Depends(get_explainer),
    cache: RunCache = Depends(get_cache),
    limiter: ForwardLimiter = Depends(get_limiter),
) -> Response:
    budget = http.app.state.settings.auto_pattern_bytes
    state = http.app.state
    ids = await run_in_threadpool(prompt_ids, explainer, request.text, request.ids)  # fail fast (422) before queueing
    cost = analysis_cost(explainer, len(ids), "ids" if request.ids is not None else "text",
                         with_patterns(explainer, len(ids), request.patterns, budget))
    limiter.estimate(cost)  # too_costly: a 422 before anything is queued (a source run's recompute included)
    editor, interventions = None, ""
    if request.interventions:
        # Checked, and their source runs found, before anything is queued.
        editor = await experiments.editor_for(request.interventions, len(ids), explainer, cache, limiter, state.coalescer)
        interventions = canonical(editor.interventions)
    run_id = run_id_for(explainer, ids, interventions)
    entry, plain = cache.get(run_id), None
    if entry is None:
        check_pattern_budget(explainer, len(ids), request.patterns, budget)
        include = with_patterns(explainer, len(ids), request.patterns, budget)
        entry, plain = await state.coalescer.run(
            (run_id, include),
            lambda: limiter.run(Costed(partial(analyze_into_cache, editor=editor), cost), explainer, cache, ids, include,
                                cancellable=True))
    check_pattern_budget(explainer, len(entry.run), request.patterns, budget)
    include = with_patterns(explainer, len(entry.run), request.patterns, budget)
    body = entry.bodies.get(include)
    if body is None:
        body, plain = await limiter.run(add_body, explainer, cache, entry, include)
    # The body is stored gzipped; the GZip middleware passes a response that is encoded already.
    if "gzip" in http.headers.get("accept-encoding", ""):
        return Response(body, media_type="application/json",
                        headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
    return Response(plain or await run_in_threadpool(gzip.decompress, body), media_type="application/json",
                    headers={"Vary": "Accept-Encoding"})


@router.get("/runs/{run_id}", response_model=RunResponse, responses=RUN, response_model_exclude_none=True,
            summary="A run's model, token ids and texts, and interventions (computed if it was not yet)")
async def run_details(run_id: str, http: Request, explainer: Explainer = Depends(get_explainer)) -> dict:
    return run_summary(explainer, await run_of(http, run_id))


@router.get("/runs/{run_id}/embeddings", response_model=TensorsResponse, responses=RUN, summary="Token and position embeddings")
async def embeddings(run_id: str, http: Request, explainer: Explainer = Depends(get_explainer),
                     budget: ByteBudget = Depends(get_budget)) -> Response:
    run = (await run_of(http, run_id)).run
    shapes = dict.fromkeys(("hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre"), (len(run), explainer.config.n_embd))
    return await tensors_response(http, budget, {}, shapes, "float32",
                                  lambda: run_in_threadpool(lambda: {name: run[name] for name in shapes}))


@router.get("/runs/{run_id}/layers/{layer}", response_model=LayerResponse, responses=RUN, summary="Every hook of one layer")
async def layer_details(
    run_id: str,
    http: Request,
    layer: Annotated[Index, Path(description="0-based; at most the model's last layer.")],
    fields: str | None = Query(None, pattern=FIELDS_PATTERN,
                               description="Comma-separated hook names or suffixes, e.g. attn.hook_q,attn.hook_k; all when omitted."),
    dtype: str = Query("float32", pattern="^(float32|float16)$"),
    explainer: Explainer = Depends(get_explainer),
    limiter: ForwardLimiter = Depends(get_limiter),
    budget: ByteBudget = Depends(get_budget),
) -> Response:
    n_layers = explainer.config.n_layer
    if not 0 <= layer < n_layers:
        raise field_error("layer", f"must be from 0 to {n_layers - 1}, got {layer}")
    suffixes = list(LAYER_HOOKS)
    if fields:
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
        suffixes = asked
    run = (await run_of(http, run_id)).run
    until = max(suffixes, key=LAYER_HOOKS.index)  # the block is recomputed up to the last hook asked for
    shapes = tensors.block_shapes(explainer.config, len(run))
    computed = LAYER_HOOKS[:LAYER_HOOKS.index(until) + 1]

    def recompute() -> dict:  # in the forward slot; the hooks not asked for are dropped there
        captured = run.layer(layer, until)
        return {f"blocks.{layer}.{s}": captured[s] for s in suffixes}

    # Hundreds of MB at 1,024 tokens: reserved in the byte budget, then encoded in pieces off the loop.
    return await tensors_response(http, budget, {"layer": layer}, {f"blocks.{layer}.{s}": shapes[s] for s in suffixes},
                                  dtype, lambda: limiter.run(recompute),
                                  held=sum(4 * math.prod(shapes[s]) for s in computed if s not in suffixes))
