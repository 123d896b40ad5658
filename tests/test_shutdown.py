"""A bounded shutdown: SIGTERM while expensive work is queued (four logit lenses at the most a
request may ask, on GPT-2 small's shapes, and a generation) ends the server. Queued work is
refused at once (503, "stopping"), a generation stream ends with an error event that says so,
and work already running gets a few seconds of grace before it is cancelled.

The server is `explainer serve`'s, in a thread of this process; SIGTERM is delivered as uvicorn's
signal handler delivers it. How long the exit takes is bench/bench_waits.py's (sigterm), not
asserted here."""

from __future__ import annotations

import logging
import threading

import httpx
import pytest

from app.main import create_app
from app.serving.settings import Settings
from model import Explainer

from .threaded_server import threaded_server
from .waiting import wait_until

LONG = "The cat sat on the mat. " * 120  # about 840 tokens


@pytest.fixture(scope="module")
def gpt2_small_shapes() -> Explainer:
    return Explainer.load("openai-community/gpt2", random_weights=True)  # real costs, no download


def test_sigterm_with_queued_work_refuses_it_and_ends_the_server(gpt2_small_shapes, caplog):
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    app = create_app(Settings(random_weights=True), explainer=gpt2_small_shapes)
    with threaded_server(app) as server:
        run = httpx.post(f"{server.url}/api/analyze", json={"text": LONG, "patterns": "auto"}, timeout=120).json()
        assert run["run_id"], run
        answers: list[tuple[str, int | str, str]] = []

        def lens(window: int) -> None:  # the most a request may ask: 64 positions, k = 50, both streams
            positions = list(range(64 * window, 64 * window + 64))
            try:
                r = httpx.get(f"{server.url}/api/runs/{run['run_id']}/logit-lens",
                              params={"k": 50, "stream": "both", "position": positions}, timeout=60)
                answers.append(("lens", r.status_code, r.text[:300]))
            except httpx.HTTPError as error:  # cancelled after the grace period: the connection closes
                answers.append(("lens", "closed", str(error)))

        def generate() -> None:
            try:
                with httpx.stream("POST", f"{server.url}/api/generate", timeout=60,
                                  json={"text": "Once upon a time", "max_new_tokens": 200, "temperature": 0}) as r:
                    answers.append(("generate", r.status_code, r.read().decode()[-400:]))
            except httpx.HTTPError as error:
                answers.append(("generate", "closed", str(error)))

        limiter, budget = app.state.limiter, app.state.budget

        def in_line() -> int:
            """Requests running, waiting for the forward slot or for room in the byte budget, or answered."""
            return limiter.running + limiter.waiting + budget.waiting + len(answers)

        threads = [threading.Thread(target=lens, args=(w,)) for w in range(4)] + [threading.Thread(target=generate)]
        for n, thread in enumerate(threads, 1):
            thread.start()  # each in line before the next: the first lens runs, the rest wait
            wait_until(lambda: in_line() >= n, f"request {n} is in line")
        server.sigterm()
        server.thread.join(60)
        assert not server.thread.is_alive(), "the server did not stop"
        for thread in threads:
            thread.join(30)
    print(f"answers: {[(k, s) for k, s, _ in answers]}")
    refused = [text for kind, status, text in answers if kind == "lens" and status == 503]
    # One lens runs; the rest and the generation fill this client's share of the queue (4) and
    # are refused as the server stops.
    assert refused and all("stopping" in text for text in refused)
    [(_, status, events)] = [a for a in answers if a[0] == "generate"]
    assert status == 200 and "event: error" in events and "stopping" in events
    assert "Application shutdown complete." in caplog.text
