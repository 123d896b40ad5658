"""The server's log: one access line per request (method, path, status, milliseconds) and never a
prompt or a query string; every 5xx and every error event of a generation stream logged with
its traceback; `--log-level` obeyed."""

from __future__ import annotations

import contextlib
import logging
import re

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.serving import logs
from app.serving.settings import Settings
from model.batching import DecodeBatch

from .threaded_server import threaded_server
from .waiting import wait_until

SECRET_PROMPT = "My diary: Zanzibarquest is my password"
SECRET_WORD = "Zanzibarquest"
ACCESS = re.compile(r"explainer\.access: (GET|POST) (\S+) (\d{3}) (\d+\.\d) ms$")


def access_lines(log: str) -> list[tuple[str, str, int]]:
    return [(m[1], m[2], int(m[3])) for line in log.splitlines() if (m := ACCESS.search(line))]


LOGGERS = ("", "explainer", "explainer.access", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture
def served_as_explainer_serve(explainer, checkpoint_dir, capsys):
    """`explainer serve --log-level LEVEL`'s server and logging, in this process: logs.configure
    (the console handler on stderr, here the captured one) and uvicorn given logs.config; yields
    a context manager whose server has `.url` and `.log` (what it wrote so far). The loggers are
    put back afterwards, so later tests keep their own logging."""
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
                    logging.getLogger(name).propagate, logging.getLogger(name).disabled) for name in LOGGERS}
    class Served:
        def __init__(self, url: str):
            self.url, self.written = url, []

        @property
        def log(self) -> str:
            self.written.append(capsys.readouterr().err)
            return "".join(self.written)

    @contextlib.contextmanager
    def serve(level: str):
        logs.configure(level)
        app = create_app(Settings(model=checkpoint_dir, log_level=level), explainer=explainer)
        with threaded_server(app, log_level=level) as server:
            yield Served(server.url)

    try:
        yield serve
    finally:
        for name, (handlers, level, propagate, disabled) in saved.items():
            logger = logging.getLogger(name)
            for handler in logger.handlers:
                if handler not in handlers:
                    handler.close()
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled


def test_access_lines_name_method_path_status_and_time_but_no_personal_text(served_as_explainer_serve):
    with served_as_explainer_serve("info") as server:
        assert httpx.get(f"{server.url}/").status_code == 200
        assert httpx.post(f"{server.url}/api/analyze", json={"text": SECRET_PROMPT}).status_code == 200
        assert httpx.get(f"{server.url}/api/embedding-space/neighbours", params={"word": SECRET_WORD}).status_code in (200, 422)
        # A path that decodes to a line break, a terminal escape and fields of a forged line.
        forging = "/a%0d%0a2026-01-01 INFO explainer.access: GET /forged 200 1.0 ms%1b[2J%e2%80%a8\\x"
        assert httpx.get(f"{server.url}{forging}").status_code == 404
        assert httpx.post(f"{server.url}/api/analyze", json={"text": ""}).status_code == 422
        # The access line is written as the answer goes out: on a busy machine, a moment after the client has it.
        wait_until(lambda: ("POST", "/api/analyze", 422) in access_lines(server.log), "the 422's access line")
        log = server.log
    seen = access_lines(log)
    assert ("GET", "/", 200) in seen
    # One line for that request, its control characters, spaces and backslash escaped: nothing forged.
    forged = [line for line in log.splitlines() if "forged" in line]
    assert forged == [line for line in forged if "GET /a\\r\\n2026-01-01\\x20INFO" in line] and len(forged) == 1, forged
    assert ("GET", "/a\\r\\n2026-01-01\\x20INFO\\x20explainer.access:\\x20GET\\x20/forged\\x20200\\x201.0\\x20ms"
            "\\x1b[2J\\u2028\\\\x", 404) in seen
    assert "\x1b" not in log and "\u2028" not in log
    assert ("POST", "/api/analyze", 200) in seen and ("POST", "/api/analyze", 422) in seen
    assert any(path == "/api/embedding-space/neighbours" for _, path, _ in seen)
    assert SECRET_WORD not in log and "diary" not in log
    assert "uvicorn.access" not in log  # uvicorn's own access line would carry the query string


def test_log_level_warning_drops_access_lines(served_as_explainer_serve):
    with served_as_explainer_serve("warning") as server:
        assert httpx.get(f"{server.url}/api/model").status_code == 200
        log = server.log
    assert access_lines(log) == [] and "Application startup complete" not in log
    assert "Uvicorn running on" not in log  # uvicorn's info lines are dropped too


def test_log_level_info_keeps_uvicorn_start_up_lines(served_as_explainer_serve):
    """The other side of the test above: at info, uvicorn's start-up lines are in the same log."""
    with served_as_explainer_serve("info") as server:
        assert httpx.get(f"{server.url}/api/model").status_code == 200
        wait_until(lambda: ("GET", "/api/model", 200) in access_lines(server.log), "the access line")
        log = server.log
    assert "Application startup complete" in log


@pytest.fixture(autouse=True)
def explainer_logs_reach_caplog(monkeypatch):
    """caplog listens at the root: whatever an earlier test's in-process start-up configured
    (logs.configure makes the "explainer" logger stop propagating), these tests see its records."""
    for name in ("explainer", "explainer.access"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)


@pytest.fixture
def app(explainer, checkpoint_dir):
    return create_app(Settings(model=checkpoint_dir, max_waiting=0), explainer=explainer)


def test_an_unhandled_error_is_a_logged_json_500(app, caplog):
    def boom():
        raise RuntimeError("boom in a route")

    app.add_api_route("/boom", boom)
    caplog.set_level(logging.INFO, logger="explainer")
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500 and "log" in response.json()["detail"]
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.exc_info and str(error.exc_info[1]) == "boom in a route"
    assert any(r.name == "explainer.access" and r.getMessage().startswith("GET /boom 500 ") for r in caplog.records)


def test_a_503_is_logged_with_its_traceback(app, caplog):
    caplog.set_level(logging.WARNING, logger="explainer")
    with TestClient(app) as client:  # max_waiting=0: every forward pass is refused
        response = client.post("/api/analyze", json={"text": "The cat"})
    assert response.status_code == 503
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "POST /api/analyze answered 503" in record.getMessage() and record.exc_info


def test_an_error_event_in_a_generation_stream_is_logged(client, caplog, monkeypatch):
    def breaks(self):  # the batched step, after the prompt's own pass gave the first token
        raise RuntimeError("the model fell over mid-stream")

    monkeypatch.setattr(DecodeBatch, "step", breaks)
    caplog.set_level(logging.ERROR, logger="explainer")
    text = client.post("/api/generate", json={"text": "The cat", "max_new_tokens": 4, "temperature": 0}).text
    assert "event: error" in text and "mid-stream" in text
    [record] = caplog.records
    assert "generation stream" in record.getMessage() and str(record.exc_info[1]) == "the model fell over mid-stream"
