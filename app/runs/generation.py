"""Sampling the next token of a run, and a generation streamed as server-sent events: stepped
with the other generations by the batcher, or alone through the forward queue."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing

from model import Explainer
from model.batching import Request as DecodeRequest
from model.generation import Generation, Step, generate as generate_steps
from model.interventions import Editor
from model import Run
from model.sampling import distribution, sample as draw

from app.runs.analysis import run_id_for
from app.runs.cache import RunCache, pack_ids
from app.runs.tokens import token_prob, top_tokens
from app.serving.batcher import DecodeBatcher
from app.serving.concurrency import ForwardLimiter

log = logging.getLogger("explainer")

N_DISTRIBUTION = 20


def sample(explainer: Explainer, run: Run, temperature: float, top_k: int | None, top_p: float | None, seed: int | None) -> dict:
    """POST /api/sample: the distribution at this temperature, and one token drawn from it."""
    dist = distribution(run["logits"], temperature, top_k, top_p)
    token_id = draw(dist, seed)
    return {"distribution": top_tokens(explainer.tokenizer, dist, N_DISTRIBUTION),
            "token": token_prob(explainer.tokenizer, token_id, float(dist.probs[token_id])),
            "entropy": dist.entropy_bits}


def event(payload: dict, name: str | None = None) -> bytes:
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


async def steps(explainer: Explainer, limiter: ForwardLimiter, batcher: DecodeBatcher, batched: bool, ids: list[int],
                request, editor: Editor) -> AsyncIterator[Step]:
    """The generation's steps: stepped together with the other generations (app/serving/batcher.py),
    or, with EXPLAINER_DECODE_BATCH=1, alone, one turn of the forward queue per step. Either way
    the prompt and every step are admitted already: a full queue makes them wait, never ends
    the stream."""
    if batched:
        together = batcher.generate(DecodeRequest(tuple(ids), request.max_new_tokens, request.temperature,
                                                  request.top_k, request.top_p, request.seed, editor))
        async with aclosing(together):
            async for step in together:
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


async def events(explainer: Explainer, cache: RunCache, ids: list[int], interventions: str, editor: Editor,
                 stepped: AsyncIterator[Step], disconnected: Callable[[], Awaitable[bool]]) -> AsyncIterator[bytes]:
    """One `data:` event per step, then `event: done` naming the run of exactly what was
    generated (issued now, computed when first asked for), or `event: error`."""
    generated: list[int] = []
    try:
        async for step in stepped:
            if await disconnected():
                return  # the client left: stop computing at once
            generated.append(step.token.id)
            yield event({"step": step.step, "token": {"id": step.token.id, "text": step.token.text, "prob": step.prob},
                         "top": top_tokens(explainer.tokenizer, step.dist, N_DISTRIBUTION)})
        full = ids + generated
        run_id = run_id_for(explainer, full, interventions)
        cache.remember(run_id, (pack_ids(full), interventions))
        text = "".join(piece.text for piece in explainer.tokenizer.token_texts(full))
        yield event({"text": text, "ids": full, "run_id": run_id, "n_tokens": len(full),
                     "interventions": [it.as_dict() for it in editor.interventions]}, "done")
    except asyncio.CancelledError:
        raise
    except Exception as error:  # a stream cannot change its status code any more
        detail = getattr(error, "detail", None) or str(error)
        log.error("generation stream ended with an error event: %s", detail, exc_info=error)
        yield event({"detail": detail, "code": getattr(error, "code", "internal")}, "error")
    finally:
        await stepped.aclose()
