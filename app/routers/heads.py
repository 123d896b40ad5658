"""What each head does: the head detectors' scores for a run, the induction probe, and direct
logit attribution (why this token and not that one)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from app.deps import get_caller, get_lab
from app.errors import documented
from app.lab import Caller, Lab
from app.schemas import AttributionResponse, HeadScoresResponse, Index, InductionProbeRequest, InductionProbeResponse

router = APIRouter(prefix="/api", responses=documented(400, 422, 503))


@router.get("/runs/{run_id}/head-scores", response_model=HeadScoresResponse, responses=documented(404),
            summary="Previous-token, duplicate-token and induction scores of every head, for this prompt")
async def head_scores(run_id: str, lab: Lab = Depends(get_lab), caller: Caller = Depends(get_caller)) -> Response:
    return await lab.head_scores(run_id, caller)


@router.post("/induction-probe", response_model=InductionProbeResponse, responses=documented(413),
             summary="Random tokens repeated twice: every head's induction score, and the loss on both halves")
async def induction_probe(request: InductionProbeRequest, lab: Lab = Depends(get_lab),
                          caller: Caller = Depends(get_caller)) -> Response:
    return await lab.induction_probe(request, caller)


@router.get("/runs/{run_id}/attribution", response_model=AttributionResponse, responses=documented(404),
            summary="Direct logit attribution: logit(target) − logit(baseline) split into heads, MLPs and embeddings")
async def attribution(
    run_id: str,
    target: Annotated[Index, Query(description="A token id: the candidate to explain.")],
    baseline: Annotated[Index, Query(description="A token id: the candidate it is compared with.")],
    lab: Lab = Depends(get_lab),
    caller: Caller = Depends(get_caller),
) -> Response:
    return await lab.attribution(run_id, target, baseline, caller)
