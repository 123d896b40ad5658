"""Sampling the next token, and streamed generation with the KV cache."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from model import Explainer
from model.generation import Generation, generate as generate_steps
from model.sampling import Distribution, distribution, sample as draw

from ..analysis import analyze_and_cache, run_id_for, with_patterns
from ..cache import RunCache
from ..concurrency import ForwardLimiter
from ..deps import get_cache, get_explainer, get_limiter, run_of
from ..errors import documented
from ..schemas import GenerateRequest, SampleRequest, SampleResponse

router = APIRouter(prefix="/api", responses=documented(400, 413, 422, 503))
log = logging.getLogger("explainer")

N_DISTRIBUTION = 20


def _top(explainer: Explainer, dist: Distribution, n: int) -> list[dict]:
    return [{"id": i, "text": explainer.tokenizer.label(i), "prob": p} for i, p in dist.top(n)]


@router.post("/sample", response_model=SampleResponse, responses=documented(404), summary="Draw the next token of an analyzed prompt")
async def sample(request: SampleRequest, http: Request, explainer: Explainer = Depends(get_explainer)) -> dict:
    run = (await run_of(http, request.run_id)).run
    dist = await run_in_threadpool(distribution, run["logits"], request.temperature, request.top_k, request.top_p)
    token_id = draw(dist, request.seed)
    return {
        "distribution": _top(explainer, dist, N_DISTRIBUTION),
        "token": {"id": token_id, "text": explainer.tokenizer.label(token_id), "prob": float(dist.probs[token_id])},
        "entropy": dist.entropy_bits,
    }


def _event(payload: dict, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


@router.post(
    "/generate",
    summary="Stream new tokens as server-sent events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "One `data:` event per token {step, token, top}; then an `event: done` "
                                    "with {text, run_id}; or an `event: error` with {detail, code}."}},
)
async def generate(
    request: GenerateRequest,
    http: Request,
    explainer: Explainer = Depends(get_explainer),
    cache: RunCache = Depends(get_cache),
    limiter: ForwardLimiter = Depends(get_limiter),
) -> StreamingResponse:
    ids = await run_in_threadpool(explainer.tokenize, request.text)  # 422 before the stream starts
    limiter.admit()  # likewise a full queue: 503 + Retry-After, which the page waits out
    generation = Generation(generate_steps(explainer, ids, request.max_new_tokens, request.temperature,
                                           request.top_k, request.top_p, request.seed))

    async def events() -> AsyncIterator[bytes]:
        text = request.text
        try:
            while True:
                if await http.is_disconnected():
                    return  # the client left: stop computing at once
                # One slot per step, so that other students' requests interleave with a long generation.
                # Admitted above: a full queue makes a step wait, never ends the stream.
                step = await limiter.run(generation.step, admitted=True)
                if step is None:
                    break
                text += step.token.text
                yield _event({
                    "step": step.step,
                    "token": {"id": step.token.id, "text": step.token.text, "prob": step.prob},
                    "top": _top(explainer, step.dist, N_DISTRIBUTION),
                })
            entry = cache.get(run_id_for(explainer, text))
            if entry is None:
                # In the form the page asks for next (patterns 'auto'): a long text's every-layer
                # patterns would cost seconds and hundreds of MB of cache for nothing.
                n_tokens = len(await run_in_threadpool(explainer.tokenize, text))
                include = with_patterns(explainer, n_tokens, "auto", http.app.state.settings.auto_pattern_bytes)
                entry = await limiter.run(analyze_and_cache, explainer, cache, text, include, admitted=True, cancellable=True)
            yield _event({"text": text, "run_id": entry.run_id, "n_tokens": len(entry.run)}, "done")
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a stream cannot change its status code any more
            detail = getattr(error, "detail", None) or str(error)
            log.error("generation stream ended with an error event: %s", detail, exc_info=error)
            yield _event({"detail": detail, "code": getattr(error, "code", "internal")}, "error")
        finally:
            # Never closes the generator under a running step: that step's thread closes it.
            generation.cancel()

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
