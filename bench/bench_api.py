"""Benchmark: the real server over loopback against plain `transformers` in the same run.

    python bench/bench_api.py [--model DIR] [--repeats 12] [--gen-repeats 5]

Starts `python -m app.cli serve --model DIR --port P` on 127.0.0.1 (GPT-2 small shapes,
seeded random weights, built with save_pretrained in a temporary directory unless --model is
given), waits for /healthz, and measures with httpx:

1. POST /api/analyze end to end for fresh 64-token prompts (a new prompt every time, so no
   cache), with and without `Accept-Encoding: gzip`, against a plain `transformers` forward of
   the same ids in this process (the faster of eager and sdpa, inference_mode). Target <= 1.3x.
2. The same prompt again (served from the run cache). Target <= 30 ms.
3. The analyze response for 64 tokens on the wire (raw bytes received), with and without gzip.
   Target <= 1.5 MB (1.5e6 bytes; also printed in MiB).
4. POST /api/generate, 32 new tokens streamed as SSE, greedy (temperature 0) and sampled
   (temperature 1, no top-k/top-p), against `model.generate(ids, max_new_tokens=32,
   do_sample=False/True, temperature=1, use_cache=True)` (faster of eager and sdpa; transformers 5
   applies no top-k/top-p unless asked).
   Tokens/s of the stream = 32 / (time from the request to the 32nd token event); the time to
   the final `done` event (which also analyzes the whole text for a new run id) is printed too.
   Target >= 0.8x.
5. The bytes one 64-token run holds in the cache (GET /healthz cache bytes, before and after).

Every measurement is interleaved with its baseline (the order rotates every repeat) and
summarised by medians: the machine is small and shared, so only ratios within one run count.
The server is killed at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkpoint import checkpoint_dir, median, spread  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_TOKENS = 64
NEW_TOKENS = 32
TARGET_ANALYZE = 1.3
TARGET_HIT_S = 0.030
TARGET_WIRE = 1_500_000
TARGET_GEN = 0.8
ANALYZE_BUDGET_S = 60  # the loops stop early (after at least 3 repeats) past these times
GENERATE_BUDGET_S = 150
IDENTITY = {"Accept-Encoding": "identity"}
GZIP = {"Accept-Encoding": "gzip"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m app.cli serve` in its own process group, killed on exit."""

    def __init__(self, model_dir: str, port: int, threads: int | None = None, env: dict | None = None):
        self.port = port
        env = {**os.environ, **(env or {})}
        if threads:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self.log = tempfile.NamedTemporaryFile(prefix="bench-api-server-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--model", model_dir, "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, client, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except Exception:
                pass
            time.sleep(0.5)
        raise SystemExit(f"the server was not ready within {timeout_s:.0f} s:\n{self.tail()}")

    def tail(self) -> str:
        with open(self.log.name, errors="replace") as f:
            return f.read()[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own process group only
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        os.unlink(self.log.name)


class Prompts:
    """Fresh prompts of exactly N_TOKENS tokens: random ' word' tokens, checked by re-encoding."""

    def __init__(self, seed: int = 0):
        from model.tokenizer import get_tokenizer

        self.tok = get_tokenizer()
        self.words = [i for i in range(self.tok.vocab_size)
                      if (b := self.tok.token_bytes(i)).startswith(b" ") and b[1:].isalpha() and b[1:].islower() and len(b) > 3]
        self.rng = random.Random(seed)

    def fresh(self, n: int = N_TOKENS) -> tuple[str, list[int]]:
        while True:
            ids = self.rng.sample(self.words, n)
            text = "".join(self.tok.token_bytes(i).decode() for i in ids)
            if self.tok.encode(text) == ids:
                return text, ids


def timed_post(client, path: str, body: dict, headers: dict) -> tuple[float, bytes, int, dict]:
    """(seconds, decoded body, raw bytes on the wire, headers) for one request."""
    t0 = time.perf_counter()
    with client.stream("POST", path, json=body, headers=headers) as response:
        raw = b"".join(response.iter_raw())
        elapsed = time.perf_counter() - t0
        response.raise_for_status()
        encoding = response.headers.get("content-encoding", "")
        resp_headers = dict(response.headers)
    data = gzip.decompress(raw) if encoding == "gzip" else raw
    return elapsed, data, len(raw), resp_headers


def stream_generate(client, body: dict) -> tuple[float, float, int, dict, list[float]]:
    """(seconds to the last token event, seconds to the done event, token events, done payload,
    arrival time of every token event)."""
    t0 = time.perf_counter()
    t_last = None
    stamps = []
    n_tokens = 0
    done = None
    event = None
    with client.stream("POST", "/api/generate", json=body, headers=IDENTITY) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                payload = json.loads(line[5:])
                if event is None:
                    n_tokens += 1
                    t_last = time.perf_counter() - t0
                    stamps.append(t_last)
                elif event == "done":
                    done = payload
                elif event == "error":
                    raise RuntimeError(f"generation failed: {payload}")
                event = None
    return t_last, time.perf_counter() - t0, n_tokens, done, stamps


class Stamps:
    """A `generate(streamer=...)` that notes when each new token arrives (the first put is the prompt)."""

    def __init__(self):
        self.times = []

    def put(self, value) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def gaps(stamps: list[float]) -> list[float]:
    return [b - a for a, b in zip(stamps, stamps[1:])]


def cache_stats(client) -> dict:
    return client.get("/healthz").json()["cache"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a GPT-2-small-shaped checkpoint directory (built if missing or not given)")
    parser.add_argument("--repeats", type=int, default=16, help="fresh-prompt analyze repeats per encoding")
    parser.add_argument("--gen-repeats", type=int, default=8, help="generation repeats per setting")
    parser.add_argument("--threads", type=int, help="torch threads for the server and the baseline alike "
                        "(default: torch's own choice, one per core); 1 is far less sensitive to other load")
    args = parser.parse_args()

    import httpx
    import torch
    from transformers import GPT2LMHeadModel

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model_dir = checkpoint_dir(args.model)
    print(f"GPT-2 small shapes, random weights, {model_dir}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    hf = {impl: GPT2LMHeadModel.from_pretrained(model_dir, attn_implementation=impl).eval() for impl in ("eager", "sdpa")}
    prompts = Prompts()

    server = Server(model_dir, free_port(), args.threads)
    client = httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=120, trust_env=False)
    try:
        server.wait_ready(client)
        print(f"server ready on 127.0.0.1:{server.port} after {time.perf_counter() - started:.0f} s")

        # -- 5. bytes one 64-token run holds in the cache (first thing: nothing evicted yet) --
        before = cache_stats(client)
        text, _ = prompts.fresh()
        _, body_bytes, _, _ = timed_post(client, "/api/analyze", {"text": text}, IDENTITY)
        after = cache_stats(client)
        run_cache_bytes = after["bytes"] - before["bytes"]
        assert after["entries"] - before["entries"] == 1, (before, after)

        # -- warm-up --
        with torch.inference_mode():
            for _ in range(3):
                text, ids = prompts.fresh()
                timed_post(client, "/api/analyze", {"text": text}, GZIP)
                for model in hf.values():
                    model(torch.tensor([ids]))
            stream_generate(client, {"text": prompts.fresh()[0], "max_new_tokens": 4, "temperature": 1.0})
            for model in hf.values():
                model.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=True, temperature=1.0, pad_token_id=50256)

        # -- 1-3. analyze: fresh prompts vs plain forward; cache hits; sizes --
        keys = ["api_identity", "api_gzip", "eager", "sdpa", "hit_identity", "hit_gzip"]
        t = {k: [] for k in keys}
        wire = {"identity": [], "gzip": []}
        n_seen = set()
        loop_start = time.perf_counter()
        for r in range(args.repeats):
            if r >= 3 and time.perf_counter() - loop_start > ANALYZE_BUDGET_S:
                break  # a heavily loaded machine: keep the script's runtime bounded
            (text_i, ids_i), (text_g, ids_g) = prompts.fresh(), prompts.fresh()
            steps = {
                "api_identity": lambda: timed_post(client, "/api/analyze", {"text": text_i}, IDENTITY),
                "api_gzip": lambda: timed_post(client, "/api/analyze", {"text": text_g}, GZIP),
                "eager": lambda: hf["eager"](torch.tensor([ids_i])),
                "sdpa": lambda: hf["sdpa"](torch.tensor([ids_i])),
            }
            order = list(steps)[r % 4:] + list(steps)[: r % 4]
            for name in order:
                with torch.inference_mode():
                    t0 = time.perf_counter()
                    out = steps[name]()
                    t[name].append(time.perf_counter() - t0)
                if name.startswith("api"):
                    _, data, n_raw, headers = out
                    wire["gzip" if name == "api_gzip" else "identity"].append(n_raw)
                    assert headers.get("content-encoding", "identity") == ("gzip" if name == "api_gzip" else "identity"), headers
                    n_seen.add(len(json.loads(data)["tokens"]))
            # the same prompts again: served from the cache
            for name, text, headers in (("hit_identity", text_i, IDENTITY), ("hit_gzip", text_g, GZIP)):
                elapsed, _, _, _ = timed_post(client, "/api/analyze", {"text": text}, headers)
                t[name].append(elapsed)
        assert n_seen == {N_TOKENS}, n_seen

        # -- 4. generation: streamed SSE vs model.generate --
        gen_keys = ["api_greedy", "api_sample", "eager_greedy", "sdpa_greedy", "eager_sample", "sdpa_sample"]
        g = {k: [] for k in gen_keys}
        g_done = {"api_greedy": [], "api_sample": []}
        g_gaps = {k: [] for k in gen_keys}  # seconds between consecutive new tokens, all repeats

        def hf_generate(impl: str, ids: list[int], sample: bool):
            def go():
                with torch.inference_mode():
                    # transformers 5 leaves top-k and top-p off unless asked: the full distribution.
                    extra = {"temperature": 1.0} if sample else {}
                    stamps = Stamps()
                    out = hf[impl].generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=sample,
                                            use_cache=True, pad_token_id=50256, streamer=stamps, **extra)
                assert out.shape[1] == len(ids) + NEW_TOKENS, out.shape
                return stamps.times[1:]  # the new tokens only
            return go

        loop_start = time.perf_counter()
        for r in range(args.gen_repeats):
            if r >= 3 and time.perf_counter() - loop_start > GENERATE_BUDGET_S:
                break
            text, ids = prompts.fresh()
            steps = {
                "api_greedy": {"text": text, "max_new_tokens": NEW_TOKENS, "temperature": 0.0},
                "api_sample": {"text": text, "max_new_tokens": NEW_TOKENS, "temperature": 1.0, "seed": r},
                "eager_greedy": hf_generate("eager", ids, False), "sdpa_greedy": hf_generate("sdpa", ids, False),
                "eager_sample": hf_generate("eager", ids, True), "sdpa_sample": hf_generate("sdpa", ids, True),
            }
            order = gen_keys[r % 6:] + gen_keys[: r % 6]
            for name in order:
                step = steps[name]
                if name.startswith("api"):
                    to_last, to_done, n_tok, done, stamps = stream_generate(client, step)
                    assert n_tok == NEW_TOKENS and done and done.get("run_id"), (n_tok, done)
                    g[name].append(to_last)
                    g_done[name].append(to_done)
                else:
                    t0 = time.perf_counter()
                    stamps = step()
                    g[name].append(time.perf_counter() - t0)
                g_gaps[name] += gaps(stamps)
        final_stats = cache_stats(client)
    finally:
        client.close()
        server.stop()

    # -- report --
    med = {k: median(v) for k, v in t.items()}
    base = min(("eager", "sdpa"), key=lambda k: med[k])
    print(f"\n== 1. POST /api/analyze, fresh {N_TOKENS}-token prompt, end to end ({len(t['eager'])} interleaved repeats) ==")
    for k in ("api_identity", "api_gzip", "eager", "sdpa"):
        print(f"  {k:14s} {spread(t[k])}{'  <- baseline (plain transformers forward)' if k == base else ''}")
    for enc in ("identity", "gzip"):
        api = f"api_{enc}"
        ratio = med[api] / med[base]
        paired = median([a / min(e, s) for a, e, s in zip(t[api], t["eager"], t["sdpa"])])
        best = min(t[api]) / min(min(t["eager"]), min(t["sdpa"]))
        print(f"  ratio analyze ({enc:8s}) / {base} = {ratio:.3f}   target <= {TARGET_ANALYZE}: "
              f"{'PASS' if ratio <= TARGET_ANALYZE else 'MISS'}   (median of paired ratios {paired:.3f}, best/best {best:.3f})")

    print("\n== 2. The same prompt again (run cache) ==")
    for k in ("hit_identity", "hit_gzip"):
        ok = med[k] <= TARGET_HIT_S
        print(f"  {k:14s} {spread(t[k])}   target <= {TARGET_HIT_S * 1e3:.0f} ms: {'PASS' if ok else 'MISS'}")

    print(f"\n== 3. Analyze response for {N_TOKENS} tokens on the wire ==")
    print(f"  JSON body (decoded)           {len(body_bytes):>10,d} B  ({len(body_bytes) / 2**20:.2f} MiB)")
    for enc in ("identity", "gzip"):
        n = int(median(wire[enc]))
        print(f"  on the wire, {enc:9s}        {n:>10,d} B  ({n / 2**20:.2f} MiB)   target <= {TARGET_WIRE:,d} B: "
              f"{'PASS' if n <= TARGET_WIRE else 'MISS'}")

    gm = {k: median(v) for k, v in g.items()}
    print(f"\n== 4. Generation, {NEW_TOKENS} new tokens after a {N_TOKENS}-token prompt ({len(g['api_greedy'])} interleaved repeats) ==")
    for kind in ("greedy", "sample"):
        hf_base = min((f"eager_{kind}", f"sdpa_{kind}"), key=lambda k: gm[k])
        api = f"api_{kind}"
        api_tps, hf_tps = NEW_TOKENS / gm[api], NEW_TOKENS / gm[hf_base]
        done_tps = NEW_TOKENS / median(g_done[api])
        for k in (api, f"eager_{kind}", f"sdpa_{kind}"):
            print(f"  {k:14s} {spread(g[k])}   {NEW_TOKENS / gm[k]:6.1f} tok/s{'  <- baseline' if k == hf_base else ''}")
        print(f"  {api + ' (to done)':14s} {spread(g_done[api])}   {done_tps:6.1f} tok/s  (includes analyzing the whole text for the new run id)")
        ratio = api_tps / hf_tps
        paired = median([min(e, s) / a for a, e, s in zip(g[api], g[f"eager_{kind}"], g[f"sdpa_{kind}"])])
        best = min(min(g[f"eager_{kind}"]), min(g[f"sdpa_{kind}"])) / min(g[api])
        print(f"  ratio {kind} stream / {hf_base} generate (tokens/s) = {ratio:.3f}   target >= {TARGET_GEN}: "
              f"{'PASS' if ratio >= TARGET_GEN else 'MISS'}   (median of paired ratios {paired:.3f}, best/best {best:.3f}, "
              f"to done: {done_tps / hf_tps:.3f})")
        gap = {k: median(g_gaps[k]) for k in (api, f"eager_{kind}", f"sdpa_{kind}")}
        gap_base = min(gap[f"eager_{kind}"], gap[f"sdpa_{kind}"])
        print(f"  per-token step, median over all steps (robust to bursts of load): "
              + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in gap.items())
              + f"; ratio {gap_base / gap[api]:.3f}")

    print(f"\n== 5. Cache memory ==")
    print(f"  one {N_TOKENS}-token run in the cache: {run_cache_bytes:,d} B ({run_cache_bytes / 2**20:.2f} MiB)"
          f" (the run's tensors plus its serialized response; that response is {len(body_bytes):,d} B as JSON,"
          f" {int(median(wire['gzip'])):,d} B gzipped)")
    print(f"  at the end: {final_stats}")
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
