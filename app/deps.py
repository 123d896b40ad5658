"""Shared state reached through dependencies: the explainer (loaded once), the run cache, the
forward limiter and the byte budget."""

from __future__ import annotations

from fastapi import Request

from model import Explainer

from app.runs import analysis
from app.serving.budget import ByteBudget
from app.runs.cache import CachedRun, RunCache
from app.serving.concurrency import ForwardLimiter
from app.errors import ApiError
from app.rooms.store import Followers


def get_explainer(request: Request) -> Explainer:
    explainer = getattr(request.app.state, "explainer", None)
    if explainer is None:
        raise ApiError(503, "loading", "The model is still loading; try again in a moment.", headers={"Retry-After": "5"})
    return explainer


def get_cache(request: Request) -> RunCache:
    return request.app.state.cache


def get_limiter(request: Request) -> ForwardLimiter:
    return request.app.state.limiter


def get_budget(request: Request) -> ByteBudget:
    """Room for the bodies being built and sent, shared with the run cache (app/serving/budget.py)."""
    return request.app.state.budget


def get_rooms(request: Request):
    """The follow-the-teacher rooms: app/rooms/store.py's LocalRoomStore, or whatever a deployment set
    app.state.rooms to before start-up (the same async interface)."""
    return request.app.state.rooms


def get_room_followers(request: Request) -> Followers:
    return request.app.state.room_followers


async def run_of(request: Request, run_id: str) -> CachedRun:
    """The run `run_id`, from the cache or recomputed; 404 only for an id never issued."""
    state = request.app.state
    return await analysis.resolve(run_id, get_explainer(request), state.cache, state.limiter, state.coalescer)
