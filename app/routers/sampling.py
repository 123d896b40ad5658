"""Sampling the next token, and streamed generation with the KV cache."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from app.deps import get_caller, get_lab
from app.errors import documented
from app.lab import Caller, Lab
from app.schemas import GenerateRequest, SampleRequest, SampleResponse

router = APIRouter(prefix="/api", responses=documented(400, 413, 422, 503))


@router.post("/sample", response_model=SampleResponse, responses=documented(404), summary="Draw the next token of an analyzed prompt")
async def sample(request: SampleRequest, lab: Lab = Depends(get_lab)) -> dict:
    return await lab.sample(request)


@router.post(
    "/generate",
    summary="Stream new tokens as server-sent events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "One `data:` event per token {step, token, top}; then an `event: done` "
                                    "with {text, ids, run_id, n_tokens, interventions}: `ids` are the prompt's followed "
                                    "by the generated ones, and `run_id` names exactly that sequence with those "
                                    "interventions (computed when first asked for); or an `event: error` with "
                                    "{detail, code}."}},
)
async def generate(request: GenerateRequest, lab: Lab = Depends(get_lab), caller: Caller = Depends(get_caller)) -> StreamingResponse:
    return StreamingResponse(await lab.generate(request, caller), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
