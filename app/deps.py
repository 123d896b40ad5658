"""Shared state reached through dependencies: the explainer (loaded once), the run cache and
the forward limiter."""

from __future__ import annotations

from fastapi import HTTPException, Request

from model import Explainer

from .cache import CachedRun, RunCache
from .concurrency import ForwardLimiter


def get_explainer(request: Request) -> Explainer:
    explainer = getattr(request.app.state, "explainer", None)
    if explainer is None:
        raise HTTPException(503, "The model is still loading; try again in a moment.", headers={"Retry-After": "5"})
    return explainer


def get_cache(request: Request) -> RunCache:
    return request.app.state.cache


def get_limiter(request: Request) -> ForwardLimiter:
    return request.app.state.limiter


def cached_run(run_id: str, cache: RunCache) -> CachedRun:
    entry = cache.get(run_id)
    if entry is None:
        raise HTTPException(404, f"Unknown run_id {run_id!r}: it expired or never existed. Analyze the prompt again to get a new run.")
    return entry
