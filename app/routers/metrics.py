"""GET /metrics: the Prometheus text format of this process's metrics (app/serving/metrics.py). Left
out of the OpenAPI schema, like the pages: it is for a scraper, not for the page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    # On the event loop, not in a worker thread: the collector reads state the loop owns (the
    # limiter's counts, the room store, which sweeps idle rooms when asked); it is quick.
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
