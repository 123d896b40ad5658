"""One error type, one body, one handler: every 4xx and 5xx is {"detail", "code", "errors"}
(schemas.ErrorBody), with a stable `code` a page can key its own message on, and each field at
fault named. Validation failures are 422, a body that is not JSON 400, a body over the limit 413,
a prompt the model cannot take 422."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from model.errors import FieldError

from app.schemas import NOT_BLANK, ErrorBody
from app.serving.logs import printable

log = logging.getLogger("explainer")


class ApiError(Exception):
    """An answer other than success: status, stable code, a sentence, and the field at fault."""

    def __init__(self, status: int, code: str, detail: str, field: str | None = None,
                 headers: dict[str, str] | None = None, **extra):
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers, self.extra = status, code, detail, headers, extra
        self.field = field
        self.errors = [{"field": field, "message": detail.removeprefix(f"{field}: "), "code": code}] if field else []

    def body(self) -> dict:
        return {"detail": self.detail, "code": self.code, "field": self.field, "errors": self.errors, **self.extra}

    @classmethod
    def of(cls, error: FieldError) -> ApiError:
        """model/'s field error as the server's: a 422 naming the field, with its code."""
        return cls(422, error.code, error.detail, field=error.field, **error.extra)

    def __reduce__(self):
        """Pickled with every field (Exception's default keeps only `detail`, and could not call
        __init__ again): app/cluster.py carries these between processes."""
        return _rebuild, (type(self), self.args, self.__dict__.copy())

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def _rebuild(cls: type, args: tuple, state: dict) -> ApiError:
    error = Exception.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


def field_error(field: str, message: str, code: str = "invalid") -> ApiError:
    """A 422 for a check a route makes itself. `code` "invalid" when the value breaks the
    schema; one of the context codes when it fits the schema but not this prompt or run."""
    return ApiError(422, code, f"{field}: {message}", field=field)


def _field(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def _message(item: dict) -> str:
    if item.get("type") == "string_pattern_mismatch" and item.get("ctx", {}).get("pattern") == NOT_BLANK:
        return "is blank: type some text"
    return str(item.get("msg", "invalid")).removeprefix("Value error, ")


_STATUS_CODES = {400: "invalid", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large",
                 503: "busy"}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        if error.status >= 500:  # a full queue, a time limit: in the log, with where it came from
            log.warning("%s %s answered %d: %s", printable(request.method), printable(request.url.path), error.status,
                        error.detail, exc_info=error)
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        items = error.errors()
        if any(item.get("type") == "json_invalid" for item in items):
            message = "The request body is not valid JSON."
            return ApiError(400, "invalid_json", message, field="body").response()
        problems = [{"field": _field(item.get("loc", ())), "message": _message(item),
                     "code": "empty_prompt" if item.get("type") == "empty_prompt" else "invalid"} for item in items]
        code = "empty_prompt" if any(p["code"] == "empty_prompt" for p in problems) else "invalid"
        text = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return JSONResponse(status_code=422, content={"detail": text, "code": code, "field": problems[0]["field"] if problems else None,
                                                      "errors": problems})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        # Starlette's own: an unknown path (404), a method the path lacks (405, with Allow),
        # a body it could not parse (400).
        code = _STATUS_CODES.get(error.status_code, "internal" if error.status_code >= 500 else "invalid")
        headers = error.headers
        if error.status_code == 405:
            # Starlette names the methods of the first route with this path only; a path with two
            # routes (GET and DELETE /api/rooms/{code}) must list both.
            methods = [m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
                       if any(route.matches({**request.scope, "method": m})[0] == Match.FULL for route in request.app.router.routes)]
            headers = {**(headers or {}), "Allow": ", ".join(methods)}
        return JSONResponse({"detail": str(error.detail), "code": code, "field": None, "errors": []},
                            status_code=error.status_code, headers=headers)

    @app.exception_handler(FieldError)
    async def model_field_error(request: Request, error: FieldError) -> JSONResponse:
        return ApiError.of(error).response()


# What each status means, for the OpenAPI document: every route lists the ones it can answer.
_DESCRIPTIONS = {
    400: "The body is not JSON (code invalid_json), or the Host header names a host this server does not answer "
         "to (host_not_allowed). Written by the server library before the app sees the request: bytes that are not "
         "an HTTP request, or headers over 64 KB (code invalid under explainer serve; from a bare uvicorn or Ray's "
         "proxy, uvicorn's own plain-text 400 without this body).",
    404: "unknown_run: a run id this server never issued (or forgot long ago: analyze the prompt again); "
         "unknown_scene: no scene of that id (GET /api/scenes lists them); unknown_room: no room of that code "
         "(check it); not_found: no such path.",
    403: "not_teacher: X-Room-Secret is missing or is not the secret the room was opened with (only the teacher's "
         "page, which opened it, can publish to a room); teacher_only: a teacher action (opening or closing a room) "
         "on a server students can reach, without the teacher token (the cookie the teacher URL sets, or "
         "Authorization: Bearer); cross_site: a POST, PUT or DELETE sent by another web site (its Origin or "
         "Sec-Fetch-Site is not this server's).",
    410: "room_expired: the room was closed after EXPLAINER_ROOM_IDLE without a change; the teacher opens a new one.",
    429: "client_limit: this client address holds as much as one computer may: rooms open (EXPLAINER_CLIENT_ROOMS) "
         "or room event streams (EXPLAINER_CLIENT_FOLLOWERS). Retry-After says when to try again.",
    413: "body_too_large: the request body is over 2 MB, more than any body this schema allows.",
    408: "body_timeout: the request body was not complete within EXPLAINER_BODY_TIMEOUT (10 s) of its headers; "
         "the connection is closed.",
    422: "The request does not fit this schema (code invalid, or empty_prompt for a blank prompt), or it fits but "
         "the prompt, the run or the model cannot take it: prompt_too_long (more tokens than the model's context; "
         "n_tokens and limit say how many), too_costly (the answer would pass a stated budget: patterns 'all' on a "
         "long prompt, the logit lens over more than 64 positions, patching prompts over 64 tokens; or the work "
         "could not finish within EXPLAINER_REQUEST_TIMEOUT at the speed this server measured on its own passes: "
         "the message says about how long it would take, and the field is the one that sets it, e.g. clean for "
         "patching, position for the lens, text or ids for an analysis, length for the induction probe), "
         "out_of_range (a position beyond this run's tokens, a hook of another layer), unknown_hook (a hook no "
         "experiment can edit: the hook field's pattern "
         "lists those that can), one_of (give exactly one of two parameters), bad_words (a word or "
         "expression the tokenizer or the arithmetic cannot take: over 16 tokens a word, over 12 words, "
         "two operators in a row, an unclosed quote, a zero vector), not_applicable (an intervention's field its hook or op "
         "does not take: a head on the residual stream, a pattern zeroed, a patch between prompts of different "
         "lengths), unknown_source (a patch's source_run_id this server cannot find: analyze that prompt again). "
         "`errors` names each field at fault.",
    503: "loading (the model is not loaded yet), busy (the forward queue is full, or this client has 8 requests "
         "waiting), timeout (no slot within EXPLAINER_REQUEST_TIMEOUT, or the work ran longer than that; long work "
         "paused to let others go first counts only its running time, and each of its waits for its turn again on "
         "its own), stopping (the server is shutting down), too_many_rooms (EXPLAINER_ROOMS_MAX rooms are open), "
         "room_full (the room has as many "
         "followers as it takes), too_many_connections (written before the app sees the request: this client address "
         "holds EXPLAINER_CLIENT_CONNECTIONS connections, or the server as many as its open-file limit allows; the "
         "connection is closed). Retry-After says when to try again.",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}}


def documented(*statuses: int) -> dict:
    """OpenAPI `responses` for these error statuses, each with the ErrorBody schema. A route that
    takes a body (413) can also time out reading it (408)."""
    responses = {}
    for status in (*statuses, 408) if 413 in statuses else statuses:
        responses[status] = {"model": ErrorBody, "description": _DESCRIPTIONS[status]}
        if status in (429, 503):
            responses[status]["headers"] = _RETRY_AFTER
    return responses


class BodySizeLimit:
    """Pure ASGI middleware: read the whole body before anything parses it, and refuse one over
    `max_bytes` with 413 (announced by Content-Length or streamed in chunks), or one not complete
    `timeout_s` after the headers with 408 (a client that stalls), closing the connection."""

    def __init__(self, app, max_bytes: int, timeout_s: float):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

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
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client went away
                    chunks.append(message.get("body", b""))
                    received += len(chunks[-1])
                    if received > self.max_bytes or not message.get("more_body", False):
                        break
        except TimeoutError:
            error = ApiError(408, "body_timeout", f"The request body did not arrive within {self.timeout_s:g} s.",
                             field="body", headers={"Connection": "close"})
            return await error.response()({"type": "http"}, None, send)
        if received > self.max_bytes:
            return await self._refuse(send)
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
        error = ApiError(413, "body_too_large", f"The request body is larger than {limit_kb} KB.", field="body")
        await error.response()({"type": "http"}, None, send)
