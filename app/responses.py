"""JSON bodies built and compressed off the event loop: a layer of a 1,024-token run is over
200 MB of JSON, and the event loop must only route (the GZip middleware would compress it on
the loop, and FastAPI would validate a returned dict there)."""

from __future__ import annotations

import json

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from .analysis import gzipped


def json_bytes(payload) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


async def json_response(request: Request, body: bytes) -> Response:
    """`body` (JSON bytes), gzipped in a worker thread when the client accepts it; the GZip
    middleware passes a response that is encoded already."""
    if len(body) > 2048 and "gzip" in request.headers.get("accept-encoding", ""):
        return Response(await run_in_threadpool(gzipped, body), media_type="application/json",
                        headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
    return Response(body, media_type="application/json", headers={"Vary": "Accept-Encoding"})
