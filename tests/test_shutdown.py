"""A bounded shutdown: SIGTERM while expensive work is queued (four logit lenses at the most a
request may ask, on GPT-2 small's shapes, and a generation) exits within seconds. Queued work
is refused at once (503, "stopping"), a generation stream ends with an error event that says
so, and work already running gets a few seconds of grace before it is cancelled."""

from __future__ import annotations

import signal
import sys
import threading
import time

import httpx

from .live_server import serving

LONG = "The cat sat on the mat. " * 120  # about 840 tokens


def test_sigterm_with_queued_work_exits_within_10_s():
    command = [sys.executable, "-m", "app.cli", "serve", "--random-weights"]  # GPT-2 small's shapes: real costs
    with serving(command, timeout_s=180) as server:
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

        threads = [threading.Thread(target=lens, args=(w,)) for w in range(4)] + [threading.Thread(target=generate)]
        for thread in threads:
            thread.start()
            time.sleep(0.1)
        time.sleep(0.5)  # the first lens is running, the rest wait for the forward slot
        start = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=10)  # the bound the issue asks for (a TimeoutExpired fails the test)
        elapsed = time.monotonic() - start
        for thread in threads:
            thread.join(30)
        log = server.log
    print(f"exit after SIGTERM: {elapsed:.1f} s; answers: {[(k, s) for k, s, _ in answers]}")
    refused = [text for kind, status, text in answers if kind == "lens" and status == 503]
    # One lens runs; the rest and the generation fill this client's share of the queue (4) and
    # are refused as the server stops.
    assert refused and all("stopping" in text for text in refused)
    [(_, status, events)] = [a for a in answers if a[0] == "generate"]
    assert status == 200 and "event: error" in events and "stopping" in events
    assert "Application shutdown complete" in log
