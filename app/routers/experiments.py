"""Experiments on the model: two runs' predictions compared, and the activation-patching sweep.
Interventions themselves ride on POST /api/analyze."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from model import Explainer

from app.runs import experiments
from app.serving.concurrency import Costed
from app.deps import get_cache, get_explainer, get_limiter, run_of
from app.errors import documented
from app.schemas import MAX_PATCHING_TOKENS, CompareResponse, PatchingRequest, PatchingResponse

router = APIRouter(prefix="/api", responses=documented(400, 422, 503))


@router.get("/runs/{a}/compare/{b}", response_model=CompareResponse, responses=documented(404),
            summary="Two runs' next-token distributions side by side: top tokens, biggest changes, KL(a‖b)")
async def compare(a: str, b: str, http: Request, explainer: Explainer = Depends(get_explainer)) -> dict:
    run_a, run_b = await run_of(http, a), await run_of(http, b)
    return await run_in_threadpool(experiments.compare, explainer, run_a, run_b)


@router.post("/patching", response_model=PatchingResponse, responses=documented(413),
             summary="Activation patching: every layer and position (or head), clean into corrupted")
async def patching(request: PatchingRequest, http: Request, explainer: Explainer = Depends(get_explainer),
                   cache=Depends(get_cache), limiter=Depends(get_limiter)) -> dict:
    n_tokens = await run_in_threadpool(experiments.check_patching, explainer, request, MAX_PATCHING_TOKENS)  # 422s before queueing
    cost = experiments.patching_cost(explainer, n_tokens, request.hook)
    return await limiter.run(Costed(experiments.patching, cost), explainer, cache, request, cancellable=True)
