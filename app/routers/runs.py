"""Analyze a prompt once, then read its internals by run id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from app.deps import get_caller, get_lab
from app.errors import documented
from app.lab import Caller, Lab
from app.schemas import LAYER_FIELDS_PATTERN, AnalyzeRequest, AnalyzeResponse, Index, LayerResponse, RunResponse, TensorsResponse

router = APIRouter(prefix="/api", responses=documented(400, 422, 503))
RUN = documented(404)


@router.post("/analyze", response_model=AnalyzeResponse, responses=documented(413),
             summary="Run the model once on a prompt and capture it")
async def analyze(request: AnalyzeRequest, lab: Lab = Depends(get_lab), caller: Caller = Depends(get_caller)) -> Response:
    return await lab.analyze(request, caller)


@router.get("/runs/{run_id}", response_model=RunResponse, responses=RUN, response_model_exclude_none=True,
            summary="A run's model, token ids and texts, and interventions (computed if it was not yet)")
async def run_details(run_id: str, lab: Lab = Depends(get_lab)) -> dict:
    return await lab.summary(run_id)


@router.get("/runs/{run_id}/embeddings", response_model=TensorsResponse, responses=RUN, summary="Token and position embeddings")
async def embeddings(run_id: str, lab: Lab = Depends(get_lab), caller: Caller = Depends(get_caller)) -> Response:
    return await lab.embeddings(run_id, caller)


@router.get("/runs/{run_id}/layers/{layer}", response_model=LayerResponse, responses=RUN, summary="Every hook of one layer")
async def layer_details(
    run_id: str,
    layer: Annotated[Index, Path(description="0-based; at most the model's last layer.")],
    fields: str | None = Query(None, pattern=LAYER_FIELDS_PATTERN,
                               description="Comma-separated hook names or suffixes, e.g. attn.hook_q,attn.hook_k; all when omitted."),
    dtype: str = Query("float32", pattern="^(float32|float16)$"),
    lab: Lab = Depends(get_lab),
    caller: Caller = Depends(get_caller),
) -> Response:
    return await lab.layer(run_id, layer, fields, dtype, caller)
