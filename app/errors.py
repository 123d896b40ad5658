"""Errors a person can act on: every validation failure is a 422 whose message names the
field, a body over the limit is a 413, and a prompt the model cannot take is a 422."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from model import PromptError, PromptTooLongError

log = logging.getLogger("explainer")


def field_error(field: str, message: str) -> RequestValidationError:
    """A 422 in the app's validation format ({"detail", "errors": [{field, message}]}), for
    checks a route makes itself (a layer beyond the model's, an unknown hook...)."""
    return RequestValidationError([{"loc": ("query", *field.split(".")), "msg": message, "type": "value_error"}])


def _field(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        for item in error.errors():
            message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
            if item.get("type") == "json_invalid":
                problems.append({"field": "body", "message": "The request body is not valid JSON."})
            else:
                problems.append({"field": _field(item.get("loc", ())), "message": message})
        text = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return JSONResponse(status_code=422, content={"detail": text, "errors": problems})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        if error.status_code >= 500:  # a full queue, a time limit: in the log, with where it came from
            log.warning("%s %s answered %d: %s", request.method, request.url.path, error.status_code, error.detail,
                        exc_info=error)
        return await http_exception_handler(request, error)

    @app.exception_handler(PromptError)
    async def prompt_error(request: Request, error: PromptError) -> JSONResponse:
        content = {"detail": str(error), "errors": [{"field": "text", "message": str(error)}]}
        if isinstance(error, PromptTooLongError):
            content.update(n_tokens=error.n_tokens, limit=error.limit)
        return JSONResponse(status_code=422, content=content)


class BodySizeLimit:
    """Pure ASGI middleware: refuse bodies over `max_bytes` with 413, whether announced by
    Content-Length or streamed in chunks, before anything parses them."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._refuse(send)
        # Read the body first (at most max_bytes of it), then replay it to the app: bodies
        # here are small JSON, and a refusal must not depend on how the app parses.
        chunks, received = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            received += len(chunks[-1])
            if received > self.max_bytes:
                return await self._refuse(send)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send):
        limit_kb = self.max_bytes // 1024
        response = JSONResponse(status_code=413, content={"detail": f"The request body is larger than {limit_kb} KB."})
        await response({"type": "http"}, None, send)
