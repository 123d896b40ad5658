"""How long a person waits where the tests used to assert a time (tests assert no timings): each
case against a baseline measured in the same run, alternating with it so that load on a shared
machine hits both alike; each figure is the median of the repeats.

    python bench/bench_waits.py [--repeats 3] [--only healthz,sigterm,download]

- healthz:  GET /healthz while the forward queue is full (every slot held, the queue full), against
            the same request on the idle app (in process, GPT-2-small-shaped checkpoint). The old
            test said: under 0.5 s.
- sigterm:  `explainer serve --random-weights`, SIGTERM while four logit lenses at their most and a
            generation are running or queued, until the process exits; against SIGTERM to the
            same server idle. The old test said: within 10 s (the graceful wait is 5 s).
- download: `explainer download` with HF_HUB_OFFLINE=1, with a Hub that refuses connections, and
            with one that accepts and never answers (the probe's deadline is 4 s), until it exits 1;
            against `explainer --help`, the command line's own start. The old tests said: within 10 s.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_api import free_port  # noqa: E402
from checkpoint import checkpoint_dir, median  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
LONG = "The cat sat on the mat. " * 120  # about 840 tokens


def report(name: str, case: list[float], baseline: list[float], bound: str) -> None:
    c, b = median(case), median(baseline)
    print(f"{name:<34} {c * 1e3:9.1f} ms   baseline {b * 1e3:9.1f} ms   ratio {c / b:6.2f}   (old test: {bound})")


# ---------------------------------------------------------------- /healthz with a full queue

def bench_healthz(repeats: int, model: str) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.serving.settings import Settings

    logging.getLogger("explainer").setLevel(logging.CRITICAL)  # the 503 below is logged with its traceback
    app = create_app(Settings(model=model, max_waiting=1))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        limiter, settings = app.state.limiter, app.state.settings
        idle, full = [], []
        _timed(lambda: client.get("/healthz"))  # warm
        for _ in range(repeats):
            idle.append(_timed(lambda: client.get("/healthz")))
            release = threading.Event()
            blockers = [threading.Thread(target=lambda: client.portal.call(limiter.run, release.wait, 60))
                        for _ in range(settings.max_concurrent + settings.max_waiting)]
            for n, blocker in enumerate(blockers, 1):
                blocker.start()
                while limiter.running + limiter.waiting < n:
                    time.sleep(0.002)
            assert client.post("/api/analyze", json={"text": "one more"}).status_code == 503
            full.append(_timed(lambda: client.get("/healthz")))
            release.set()
            for blocker in blockers:
                blocker.join()
    report("healthz, forward queue full", full, idle, "< 0.5 s")


def _timed(request, n: int = 20) -> float:
    """The median of n requests' seconds."""
    seconds = []
    for _ in range(n):
        start = time.perf_counter()
        assert request().status_code == 200
        seconds.append(time.perf_counter() - start)
    return median(seconds)


# ---------------------------------------------------------------- SIGTERM with work queued

@contextlib.contextmanager
def _server(args: list[str]):
    port = free_port()
    log = tempfile.TemporaryFile()
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port), *args], cwd=ROOT,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"the server exited: {log.read()[-600:].decode(errors='replace')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _sigterm_s(process: subprocess.Popen) -> float:
    start = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    process.wait(120)
    return time.perf_counter() - start


def bench_sigterm(repeats: int) -> None:
    idle, busy = [], []
    for _ in range(repeats):
        with _server(["--random-weights"]) as (url, process):
            idle.append(_sigterm_s(process))
        with _server(["--random-weights"]) as (url, process):
            run_id = httpx.post(f"{url}/api/analyze", json={"text": LONG, "patterns": "auto"}, timeout=300).json()["run_id"]

            def lens(window: int) -> None:
                with contextlib.suppress(httpx.HTTPError):
                    httpx.get(f"{url}/api/runs/{run_id}/logit-lens", timeout=120, params={
                        "k": 50, "stream": "both", "position": list(range(64 * window, 64 * window + 64))})

            def generate() -> None:
                with contextlib.suppress(httpx.HTTPError):
                    httpx.post(f"{url}/api/generate", timeout=120,
                               json={"text": "Once upon a time", "max_new_tokens": 200, "temperature": 0})

            threads = [threading.Thread(target=lens, args=(w,)) for w in range(4)] + [threading.Thread(target=generate)]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 60  # until one runs and the others wait
            while time.monotonic() < deadline:
                passes = httpx.get(f"{url}/healthz", timeout=10).json()["forward_passes"]
                if passes["running"] >= 1 and passes["waiting"] >= 3:
                    break
                time.sleep(0.02)
            busy.append(_sigterm_s(process))
            for thread in threads:
                thread.join(60)
    report("SIGTERM to exit, work queued", busy, idle, "within 10 s")


# ---------------------------------------------------------------- explainer download without a Hub

def _command_s(args: list[str], env: dict, status: int) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, cwd=ROOT, capture_output=True, timeout=120)
    seconds = time.perf_counter() - start
    assert result.returncode == status, result.stderr[-600:]
    return seconds


def bench_download(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as home, socket.socket() as silent, socket.socket() as closed:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # accepts (the kernel's backlog) and never answers
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "EXPLAINER_"))}
        base["HF_HOME"] = home
        cases = {"download, HF_HUB_OFFLINE=1": {"HF_HUB_OFFLINE": "1"},
                 "download, Hub refuses": {"HF_ENDPOINT": f"http://127.0.0.1:{closed.getsockname()[1]}"},
                 "download, Hub silent": {"HF_ENDPOINT": f"http://127.0.0.1:{silent.getsockname()[1]}"}}
        times: dict[str, list[float]] = {name: [] for name in cases}
        baseline = []
        for _ in range(repeats):
            baseline.append(_command_s(["--help"], base, 0))
            for name, env in cases.items():
                times[name].append(_command_s(["download"], {**base, **env}, 1))
        for name in cases:
            report(name, times[name], baseline, "within 10 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", help="a checkpoint folder (default: a GPT-2-small-shaped one, built once)")
    parser.add_argument("--only", default="healthz,sigterm,download")
    args = parser.parse_args()
    only = set(args.only.split(","))
    print(f"median of {args.repeats}; baseline measured in the same run\n")
    if "healthz" in only:
        bench_healthz(args.repeats, checkpoint_dir(args.model))
    if "download" in only:
        bench_download(args.repeats)
    if "sigterm" in only:
        bench_sigterm(args.repeats)


if __name__ == "__main__":
    main()
