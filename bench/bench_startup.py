"""Start-up time: from `explainer serve` to a healthy /healthz, against its floor, measured in
the same run: a bare Python that imports torch and transformers and loads the same checkpoint.

    python bench/bench_startup.py [--repeats 5] [--model DIR] [--threads N]

Three cases, each against its own floor (target: ratio <= 1.2):
- checkpoint: `serve --model DIR` (a GPT-2-small-shaped checkpoint built once, or DIR);
- random:     `serve --random-weights`, against building GPT2LMHeadModel(GPT2Config());
- fallback:   a bare `serve` with HF_HUB_OFFLINE=1 and an empty HF_HOME (the first run without
              weights), against the same floor as random.
Runs alternate between the product and its floor, so that load on this shared machine hits
both alike; each figure is the median of the repeats.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkpoint import checkpoint_dir, median  # noqa: E402
from bench_api import free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = 1.2
LOAD_CHECKPOINT = ("import torch, transformers\nfrom transformers import GPT2LMHeadModel\n"
                   "GPT2LMHeadModel.from_pretrained({dir!r}).eval()")
BUILD_RANDOM = ("import torch, transformers\nfrom transformers import GPT2Config, GPT2LMHeadModel\n"
                "torch.manual_seed(0)\nGPT2LMHeadModel(GPT2Config()).eval()")


def floor_s(code: str, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def serve_s(args: list[str], env: dict, timeout_s: float = 300) -> float:
    """Seconds from spawning the server to its first 200 on /healthz."""
    port = free_port()
    log = tempfile.TemporaryFile()
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port), *args],
                               env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while time.perf_counter() - start < timeout_s:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"exited with {process.returncode}: {log.read()[-600:].decode(errors='replace')}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"not healthy within {timeout_s} s")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", help="a GPT-2-small-shaped checkpoint directory (built if missing)")
    parser.add_argument("--threads", type=int, help="OMP/MKL threads for the product and its floor alike")
    args = parser.parse_args()

    env = dict(os.environ)
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    model_dir = checkpoint_dir(args.model)
    empty_home = tempfile.mkdtemp(prefix="bench-startup-hf-")
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_HOME": empty_home}
    offline.pop("EXPLAINER_MODEL", None)
    offline.pop("EXPLAINER_RANDOM_WEIGHTS", None)
    cases = [
        ("checkpoint", ["--model", model_dir], env, LOAD_CHECKPOINT.format(dir=model_dir)),
        ("random", ["--random-weights"], env, BUILD_RANDOM),
        ("fallback", [], offline, BUILD_RANDOM),
    ]
    floor_s(BUILD_RANDOM, env)  # warm the page cache for the imports before anything is timed

    print(f"start-up to a healthy /healthz, median of {args.repeats} (product / floor; target <= {TARGET})")
    print(f"{'case':<11} {'product':>9} {'floor':>9} {'ratio':>6}")
    for name, serve_args, serve_env, floor_code in cases:
        product, floor = [], []
        try:
            for _ in range(args.repeats):
                floor.append(floor_s(floor_code, env))
                product.append(serve_s(serve_args, serve_env))
        except RuntimeError as error:
            print(f"{name:<11} failed: {error}")
            continue
        ratio = median(product) / median(floor)
        verdict = "ok" if ratio <= TARGET else "OVER"
        print(f"{name:<11} {median(product):8.2f}s {median(floor):8.2f}s {ratio:6.2f} {verdict}")


if __name__ == "__main__":
    main()
