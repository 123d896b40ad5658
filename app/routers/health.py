"""Liveness and model metadata. /healthz never waits on the model."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from app.deps import get_lab
from app.errors import documented
from app.lab import Lab
from app.schemas import Health, ModelInfo

router = APIRouter()


@router.get("/healthz", summary="200 once the model is loaded", response_model=Health,
            responses={503: {"model": Health, "description": "The model is still loading."}, **documented(400)})
def healthz(request: Request) -> JSONResponse:
    lab = getattr(request.app.state, "lab", None)
    if lab is None:
        return JSONResponse({"status": "loading"}, status_code=503)
    return JSONResponse(lab.health())


@router.get("/api/model", response_model=ModelInfo, responses=documented(400, 503), summary="The loaded model's shapes and provenance")
def model_info(lab: Lab = Depends(get_lab)) -> dict:
    return lab.model_info()
