"""What each head does: the head detectors' scores for a run, the induction probe, and direct
logit attribution (why this token and not that one)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from model import Explainer

from app.runs import heads
from app.runs.analysis import canonical
from app.runs.answers import cached_answer
from app.serving.concurrency import Costed
from app.deps import get_explainer, run_of
from app.errors import documented, field_error
from app.runs.responses import json_response
from app.schemas import (
    AttributionResponse,
    HeadScoresResponse,
    Index,
    InductionProbeRequest,
    InductionProbeResponse,
)

router = APIRouter(prefix="/api", responses=documented(400, 422, 503))


@router.get("/runs/{run_id}/head-scores", response_model=HeadScoresResponse, responses=documented(404),
            summary="Previous-token, duplicate-token and induction scores of every head, for this prompt")
async def head_scores(run_id: str, http: Request) -> Response:
    run = (await run_of(http, run_id)).run
    body = await cached_answer(http, ("head-scores", run_id), heads.scores_body, run, cancellable=True, run_id=run_id)
    return await json_response(http, body)


@router.post("/induction-probe", response_model=InductionProbeResponse, responses=documented(413),
             summary="Random tokens repeated twice: every head's induction score, and the loss on both halves")
async def induction_probe(request: InductionProbeRequest, http: Request, explainer: Explainer = Depends(get_explainer)) -> Response:
    if 2 * request.length > explainer.n_ctx:
        raise field_error("length", f"twice the length must fit the model's context of {explainer.n_ctx} tokens",
                          code="out_of_range")
    editor = heads.probe_editor(explainer, request.interventions, request.length)
    body = await cached_answer(http, ("probe", request.length, request.seed, canonical(editor.interventions)),
                               Costed(heads.probe_body, heads.probe_cost(explainer, request.length)),
                               explainer, request.length, request.seed, editor, cancellable=True)
    return await json_response(http, body)


@router.get("/runs/{run_id}/attribution", response_model=AttributionResponse, responses=documented(404),
            summary="Direct logit attribution: logit(target) − logit(baseline) split into heads, MLPs and embeddings")
async def attribution(
    run_id: str,
    http: Request,
    target: Annotated[Index, Query(description="A token id: the candidate to explain.")],
    baseline: Annotated[Index, Query(description="A token id: the candidate it is compared with.")],
    explainer: Explainer = Depends(get_explainer),
) -> Response:
    run = (await run_of(http, run_id)).run
    heads.check_attribution(explainer, run, target, baseline)
    body = await cached_answer(http, ("attribution", run_id, target, baseline), heads.attribution_body, explainer, run,
                               target, baseline, cancellable=True, run_id=run_id)
    return await json_response(http, body)
