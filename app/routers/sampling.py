"""Sampling the next token, and streamed generation with the KV cache."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from model import Explainer
from model.batching import NO_EDITS, Request as DecodeRequest
from model.generation import Generation, Step, generate as generate_steps
from model.interventions import Editor
from model.sampling import Distribution, distribution, sample as draw

from app.runs import experiments
from app.runs.analysis import canonical, prompt_ids, run_id_for
from app.runs.cache import RunCache, pack_ids
from app.serving.concurrency import ForwardLimiter
from app.deps import get_cache, get_explainer, get_limiter, run_of
from app.errors import documented
from app.schemas import GenerateRequest, SampleRequest, SampleResponse

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


async def _steps(http: Request, explainer: Explainer, limiter: ForwardLimiter, ids: list[int],
                 request: GenerateRequest, editor: Editor) -> AsyncIterator[Step]:
    """The generation's steps: stepped together with the other generations (app/serving/batcher.py),
    or, with EXPLAINER_DECODE_BATCH=1, alone, one turn of the forward queue per step. Either way
    the prompt and every step are admitted already: a full queue makes them wait, never ends
    the stream."""
    if http.app.state.settings.decode_batch > 1:
        batched = http.app.state.batcher.generate(DecodeRequest(tuple(ids), request.max_new_tokens, request.temperature,
                                                                request.top_k, request.top_p, request.seed, editor))
        async with aclosing(batched):
            async for step in batched:
                yield step
        return
    generation = Generation(generate_steps(explainer, ids, request.max_new_tokens, request.temperature,
                                           request.top_k, request.top_p, request.seed, editor))
    try:
        while (step := await limiter.run(generation.step, admitted=True)) is not None:
            yield step
    finally:
        # Never closes the generator under a running step: that step's thread closes it.
        generation.cancel()


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
async def generate(
    request: GenerateRequest,
    http: Request,
    explainer: Explainer = Depends(get_explainer),
    cache: RunCache = Depends(get_cache),
    limiter: ForwardLimiter = Depends(get_limiter),
) -> StreamingResponse:
    # 422s before the stream starts: the prompt, then the interventions (checked for a generation).
    ids = await run_in_threadpool(prompt_ids, explainer, request.text, request.ids)
    editor = NO_EDITS
    if request.interventions:
        editor = await experiments.editor_for(request.interventions, len(ids), explainer, cache, limiter,
                                              http.app.state.coalescer, generation=True)
    limiter.admit()  # likewise a full queue: 503 + Retry-After, which the page waits out
    steps = _steps(http, explainer, limiter, ids, request, editor)
    interventions = canonical(editor.interventions)

    async def events() -> AsyncIterator[bytes]:
        generated: list[int] = []
        try:
            async for step in steps:
                if await http.is_disconnected():
                    return  # the client left: stop computing at once
                generated.append(step.token.id)
                yield _event({
                    "step": step.step,
                    "token": {"id": step.token.id, "text": step.token.text, "prob": step.prob},
                    "top": _top(explainer, step.dist, N_DISTRIBUTION),
                })
            # The run of exactly what was generated, issued now and computed when first asked for.
            full = ids + generated
            run_id = run_id_for(explainer, full, interventions)
            cache.remember(run_id, (pack_ids(full), interventions))
            text = "".join(piece.text for piece in explainer.tokenizer.token_texts(full))
            yield _event({"text": text, "ids": full, "run_id": run_id, "n_tokens": len(full),
                          "interventions": [it.as_dict() for it in editor.interventions]}, "done")
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a stream cannot change its status code any more
            detail = getattr(error, "detail", None) or str(error)
            log.error("generation stream ended with an error event: %s", detail, exc_info=error)
            yield _event({"detail": detail, "code": getattr(error, "code", "internal")}, "error")
        finally:
            await steps.aclose()

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
