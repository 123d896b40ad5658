"""Answers that cost a forward pass or a scan of the vocabulary (the logit lens, the embedding
map, neighbours): computed once through the forward limiter, shared by identical requests in
flight, and kept as JSON bytes in the run cache under the server's one byte budget."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request


async def cached_answer(request: Request, key: tuple, compute: Callable[..., bytes], *args,
                        cancellable: bool = False, run_id: str | None = None) -> bytes:
    """The body for `key`: from the cache, or compute(*args) (with cancel=token when
    `cancellable`) run once for everyone asking the same thing at once, then cached (with
    `run_id`: an answer about that run, kept only as long as the run is)."""
    state = request.app.state
    body = state.cache.get_answer(key)
    if body is not None:
        return body

    async def once() -> bytes:
        fresh = await state.limiter.run(compute, *args, cancellable=cancellable)
        state.cache.put_answer(key, fresh, run_id)
        return fresh

    return await state.coalescer.run(key, once)
