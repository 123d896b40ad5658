"""Experiments on the model: two runs' predictions compared, and the activation-patching sweep.
Interventions themselves ride on POST /api/analyze."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from model import Explainer

from .. import experiments
from ..deps import get_explainer, run_of
from ..errors import documented
from ..schemas import CompareResponse

router = APIRouter(prefix="/api", responses=documented(400, 422, 503))


@router.get("/runs/{a}/compare/{b}", response_model=CompareResponse, responses=documented(404),
            summary="Two runs' next-token distributions side by side: top tokens, biggest changes, KL(a‖b)")
async def compare(a: str, b: str, http: Request, explainer: Explainer = Depends(get_explainer)) -> dict:
    run_a, run_b = await run_of(http, a), await run_of(http, b)
    return await run_in_threadpool(experiments.compare, explainer, run_a, run_b)
