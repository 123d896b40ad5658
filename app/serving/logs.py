"""One logging configuration for the whole server (ours and uvicorn's loggers), and one access
line per request: method, path, status, milliseconds. Never a body or a query string: prompts
and the words students look up can be personal."""

from __future__ import annotations

import json
import logging
import logging.config
import time

from app.serving.clients import client

LEVELS = ("critical", "error", "warning", "info", "debug")
log = logging.getLogger("explainer")
access = logging.getLogger("explainer.access")


def config(level: str = "info") -> dict:
    """A dictConfig, also handed to uvicorn.run so that it does not install its own."""
    level = level.upper() if level.lower() in LEVELS else "INFO"
    console = {"handlers": ["console"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
        "loggers": {
            "explainer": console,
            "uvicorn": console,
            "uvicorn.error": {"level": level},
            # Replaced by explainer.access: uvicorn's own line carries the query string.
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        },
    }


def uvicorn_level() -> str | None:
    """The level uvicorn's --log-level set on its loggers, if it has configured them."""
    level = logging.getLogger("uvicorn.error").level
    return logging.getLevelName(level).lower() if level else None


def configure(level: str = "info") -> None:
    known = level.lower() in LEVELS
    logging.config.dictConfig(config(level if known else "info"))
    if not known:
        log.warning("Unknown log level %r: using info; choose from %s.", level, ", ".join(LEVELS))


def internal_error_body() -> dict:
    from app.errors import ApiError  # here: the CLI imports this module and must not import torch for --help

    return ApiError(500, "internal", "Internal server error; it is in the server's log.").body()


def printable(text: str) -> str:
    """`text` on one line that cannot be mistaken for other fields: a backslash, a space and every
    character that is not printable (line breaks, escape sequences, U+2028) as a Python escape, so
    that a path holding %0a cannot write a second, forged line into the log."""
    return "".join(c if c.isprintable() and c not in " \\" else _escape(c) for c in text)


def _escape(c: str) -> str:
    return "\\x20" if c == " " else c.encode("unicode_escape").decode("ascii")


class AccessLog:
    """Pure ASGI middleware: the access line, and the last word on an exception no handler took
    (logged with its traceback, answered with a JSON 500, not re-raised into a second traceback)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = None
        # Who is asking, for the forward queue's turns between clients (never logged).
        client.set((scope.get("client") or ("",))[0])

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            log.exception("%s %s failed", printable(scope["method"]), printable(scope["path"]))
            if status is None:
                status = 500
                body = json.dumps(internal_error_body()).encode()
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
        finally:
            access.info("%s %s %s %.1f ms", printable(scope["method"]), printable(scope["path"]), status or "-",
                        (time.perf_counter() - start) * 1e3)
