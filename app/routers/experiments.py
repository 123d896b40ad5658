"""Experiments on the model: two runs' predictions compared, and the activation-patching sweep.
Interventions themselves ride on POST /api/analyze."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.deps import get_lab
from app.errors import documented
from app.lab import Lab
from app.schemas import CompareResponse, PatchingRequest, PatchingResponse

router = APIRouter(prefix="/api", responses=documented(400, 422, 503))


@router.get("/runs/{a}/compare/{b}", response_model=CompareResponse, responses=documented(404),
            summary="Two runs' next-token distributions side by side: top tokens, biggest changes, KL(a‖b)")
async def compare(a: str, b: str, lab: Lab = Depends(get_lab)) -> dict:
    return await lab.compare(a, b)


@router.post("/patching", response_model=PatchingResponse, responses=documented(413),
             summary="Activation patching: every layer and position (or head), clean into corrupted")
async def patching(request: PatchingRequest, lab: Lab = Depends(get_lab)) -> dict:
    return await lab.patching(request)
