"""Liveness and model metadata. /healthz never waits on the model."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from model import Explainer

from app.deps import get_explainer
from app.runs.model_info import model_info as describe
from app.errors import documented
from app.schemas import Health, ModelInfo

router = APIRouter()


@router.get("/healthz", summary="200 once the model is loaded", response_model=Health,
            responses={503: {"model": Health, "description": "The model is still loading."}, **documented(400)})
def healthz(request: Request) -> JSONResponse:
    if getattr(request.app.state, "explainer", None) is None:
        return JSONResponse({"status": "loading"}, status_code=503)
    return JSONResponse({"status": "ok", "cache": request.app.state.cache.stats,
                         "forward_passes": {"running": request.app.state.limiter.running,
                                            "waiting": request.app.state.limiter.waiting}})


@router.get("/api/model", response_model=ModelInfo, responses=documented(400, 503), summary="The loaded model's shapes and provenance")
def model_info(explainer: Explainer = Depends(get_explainer)) -> dict:
    return describe(explainer)
