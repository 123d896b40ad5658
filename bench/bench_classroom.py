"""Benchmark: one laptop serving a classroom of 30 students, over loopback, bounded in time.

    python bench/bench_classroom.py [--model DIR] [--students 30] [--seed 0]
    EXPLAINER_MAX_WAITING=4 python bench/bench_classroom.py     # shows the 503 / Retry-After path

Starts the real server (`python -m app.cli serve`, GPT-2 small shapes, seeded random weights;
`Server` and `Prompts` from bench_api.py, the checkpoint from checkpoint.py) on 127.0.0.1. The
server inherits this process's environment, so EXPLAINER_* settings apply to it. Then:

0. Baseline, no load, in the same run: one of each request kind alone (analyze of a fresh
   64-token prompt, median of 3; a layer's q/k/v/z; embeddings; sample; generate 16 tokens;
   healthz), so that every figure below reads as a multiple of it.
1. All students press Analyze on the SAME example prompt at once (an asyncio barrier). The
   server coalesces identical analyses in flight: every student must get the same run_id.
2. Each student then analyzes an own fresh prompt of 30..64 tokens, starting at a random moment
   within STAGGER_S, then fetches `layers/{l}?fields=attn.hook_q,attn.hook_k,attn.hook_v,
   attn.hook_z` for 2 random layers, `embeddings`, one `POST /api/sample`; the first 5 students
   also `POST /api/generate` 16 new tokens (SSE, read to the `done` event).
3. Meanwhile a separate process polls /healthz every 200 ms on its own connection (a separate
   process, so that the students' JSON parsing in this event loop does not count as server
   latency) and records its latency and the forward-pass queue it reports.

Each student is one asyncio task with its own httpx.AsyncClient (its own connection, as a
browser tab), sending `Accept-Encoding: gzip`. A 503 is retried after its Retry-After (at most
10 s), up to 5 times, as static/api.js does; every 503 is counted. Errors are any 5xx other
than 503, any other unexpected status, an exception, a malformed answer or an SSE `event: error`:
they must be zero. Latencies include the waits of retries (what a student experiences).

The scenario is capped at WALL_CAP_S; a student still running then is reported as a hang. At
the end: /healthz must show no pass running or waiting, and the server's peak RSS is read from
/proc/<pid>/status (VmHWM). The server is killed at the end, whatever happens.

`--classes N` runs N classes one after the other on the same server (new own prompts each time,
so the run cache fills and evicts); the tables are the first class's, and each later class gets
one line with its errors, 503s and the server's RSS, to show whether memory levels off.

`--mix SECONDS` (issue 13) runs the realistic mix twice in one run, on two servers: before
(EXPLAINER_DECODE_BATCH=1: each generation steps alone, one turn of the forward queue per token)
and after (16: generations stepped together). Each student loops: analyze a fresh 20-64-token
prompt, a layer, a sample, and in `--gen-share` of the rounds (0.3) a generation of 16-48 tokens,
with 1-4 s of think time between. Per server: lone generations of 16, 32 and 48 tokens first
(nothing else running), then generation p50/p95 in seconds and as a multiple of a lone one of the
same length, the generated tokens per second of the whole class, and analyze p50/p95.
That loop is closed: a server that ends generations sooner is asked for more rounds in the same
time. `--scheduled` asks both servers for the same rounds instead: each student's rounds start at
times drawn from the seed (8-14 s apart, about the closed loop's pace), or when the round before
ends, if later. The same rounds, not the same texts: the prompts come from one shared stream in
the order asked. A server that falls behind by more than the wall cap has its last rounds cut
(students still running at the cap); compare the analyses done, which are printed.

`--soak SECONDS` (600 for the 10-minute soak) runs a different scenario instead: each student
loops for that long over a realistic mix with 1-4 s of think time between requests: analyze a
fresh prompt of 20-64 tokens (or, one time in four, go back to one of its earlier runs, long
since evicted from the 64-entry run cache: the server must recompute it, never 404), then a
layer's q/k/v/z, the embeddings, a sample, a logit-lens window of up to 16 positions, now and
then the 3D embedding map with a word, and one time in ten a 16-token generation. It reports
errors (must be 0, with no 404s), 503s waited out, p50/p95 per request kind, and the server's
RSS every 10 s, whose spread ((max - min) / min) over the soak's last half (`--rss-window` to
choose: the last 5 minutes of the 10-minute soak) must be at most 10%.

`--flood SECONDS` (issue 23) runs the soak's mix with 29 students (one less than --students) for
that long, and for that long again while one more client, from its own address, floods the
costliest requests it may send, FLOOD_WORKERS at once without waiting out its 503s: the
patching sweep at its maximum tokens (halved while the server refuses it as too_costly), fresh
1,024-token analyses, the logit lens of those runs (and of two analyzed just before the flood)
at its maximum positions and k over both streams, and every hook of one of their layers. The
two conditions are taken in turns, in --flood-rounds phases each (quiet, loud, loud, quiet: the
load of a shared machine drifts). Before them, a lone small analyze (20-64 tokens, nothing else
running) is timed. It prints the students' analyze p95 under the flood against the same
students' without it (target: at most 1 s more), their 503s, what the flooder got (answers,
503s, 422s, requests still unanswered when a phase ended) and the server's peak RSS in the
flood phases.

`--burst N` asks, from N clients at once, for every hook (float32) of a different layer of one
1,024-token run, and prints the server's RSS before and its peak (VmHWM, reset just before).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_api import Prompts, Server, free_port  # noqa: E402
from checkpoint import checkpoint_dir  # noqa: E402

EXAMPLE = "When Mary and John went to the store, John gave a drink to"  # one of the page's examples
STAGGER_S = 10.0
LAYER_FIELDS = "attn.hook_q,attn.hook_k,attn.hook_v,attn.hook_z"
N_LAYERS_FETCHED = 2
N_GENERATORS = 5
NEW_TOKENS = 16
HEALTHZ_PERIOD_S = 0.2
MAX_BUSY_RETRIES = 5
WALL_CAP_S = 180.0
CLIENT_TIMEOUT_S = 150.0  # above the server's own 120 s request limit
HEADERS = {"Accept-Encoding": "gzip"}
KINDS = ["analyze_same", "analyze_own", "layer", "embeddings", "sample", "generate", "generate_ttft"]


class Stats:
    def __init__(self):
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.busy: dict[str, int] = defaultdict(int)      # 503s received (retried or not)
        self.gave_up: dict[str, int] = defaultdict(int)   # still 503 after MAX_BUSY_RETRIES
        self.errors: dict[str, list[str]] = defaultdict(list)
        self.generations: list[tuple[int, float]] = []  # (tokens, seconds) of each complete generation

    def error(self, kind: str, what: str) -> None:
        self.errors[kind].append(what)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


async def call(client, stats: Stats, kind: str, method: str, url: str, **kwargs):
    """One request as the page makes it: 503 -> wait Retry-After, retry (up to 5 times).
    Returns (parsed JSON or None, seconds)."""
    t0 = time.perf_counter()
    for attempt in range(MAX_BUSY_RETRIES + 1):
        try:
            response = await client.request(method, url, **kwargs)
        except Exception as error:  # noqa: BLE001 - every exception is a reported error
            stats.error(kind, f"{type(error).__name__}: {error}")
            return None, time.perf_counter() - t0
        if response.status_code == 503:
            stats.busy[kind] += 1
            if attempt < MAX_BUSY_RETRIES:
                await asyncio.sleep(min(10.0, float(response.headers.get("Retry-After") or 2)))
                continue
            stats.gave_up[kind] += 1
            return None, time.perf_counter() - t0
        elapsed = time.perf_counter() - t0
        if response.status_code != 200:
            stats.error(kind, f"HTTP {response.status_code}: {response.text[:300]}")
            return None, elapsed
        stats.latency[kind].append(elapsed)
        return response.json(), elapsed
    raise AssertionError("unreachable")


async def generate(client, stats: Stats, body: dict):
    """POST /api/generate read to the end; 503 retried like the other calls. Returns the done
    payload or None. Its latency goes to stats.latency["generate"], and (tokens, seconds) to
    stats.generations."""
    expected = body.get("max_new_tokens", NEW_TOKENS)
    t0 = time.perf_counter()
    for attempt in range(MAX_BUSY_RETRIES + 1):
        try:
            async with client.stream("POST", "/api/generate", json=body) as response:
                if response.status_code == 503:
                    await response.aread()
                    stats.busy["generate"] += 1
                    if attempt < MAX_BUSY_RETRIES:
                        wait = min(10.0, float(response.headers.get("Retry-After") or 2))
                    else:
                        stats.gave_up["generate"] += 1
                        return None
                elif response.status_code != 200:
                    await response.aread()
                    stats.error("generate", f"HTTP {response.status_code}: {response.text[:300]}")
                    return None
                else:
                    n_tokens, first, done, event = 0, None, None, None
                    async for line in response.aiter_lines():
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:"):
                            payload = json.loads(line[5:])
                            if event is None:
                                n_tokens += 1
                                first = first or time.perf_counter() - t0
                            elif event == "done":
                                done = payload
                            elif event == "error":
                                stats.error("generate", f"SSE event: error after {n_tokens} tokens: {payload}")
                                return None
                            event = None
                    if n_tokens != expected or not (done and done.get("run_id")):
                        stats.error("generate", f"incomplete stream: {n_tokens} tokens, done={done}")
                        return None
                    stats.latency["generate"].append(time.perf_counter() - t0)
                    stats.generations.append((n_tokens, time.perf_counter() - t0))
                    stats.latency["generate_ttft"].append(first)
                    return done
        except Exception as error:  # noqa: BLE001
            stats.error("generate", f"{type(error).__name__}: {error}")
            return None
        await asyncio.sleep(wait)
    raise AssertionError("unreachable")


def poll_healthz(base_url: str, stop, out) -> None:
    """In its own process: GET /healthz every HEALTHZ_PERIOD_S until `stop` is set.
    Sends [(seconds since start, latency s or None, status, forward_passes)] to `out`."""
    import httpx

    samples = []
    with httpx.Client(base_url=base_url, timeout=30, trust_env=False, headers=HEADERS) as client:
        start = time.perf_counter()
        k = 0
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                response = client.get("/healthz")
                latency = time.perf_counter() - t0
                passes = response.json().get("forward_passes") if response.status_code == 200 else None
                samples.append((t0 - start, latency, response.status_code, passes))
            except Exception as error:  # noqa: BLE001
                samples.append((t0 - start, None, f"{type(error).__name__}: {error}", None))
            k += 1
            time.sleep(max(0.0, start + k * HEALTHZ_PERIOD_S - time.perf_counter()))
    out.send(samples)
    out.close()


async def student(i: int, base_url: str, stats: Stats, barrier: asyncio.Event, rng: random.Random,
                  own_text: str, n_layers: int, phase2_start: asyncio.Future, marks: dict) -> None:
    delay = rng.uniform(0, STAGGER_S)
    layers = rng.sample(range(n_layers), N_LAYERS_FETCHED)
    async with httpx_client(base_url, i) as client:
        # -- 1. the same example, everybody at once --
        await barrier.wait()
        data, _ = await call(client, stats, "analyze_same", "POST", "/api/analyze",
                             json={"text": EXAMPLE, "patterns": "auto"})
        marks["same_done"][i] = time.perf_counter()
        if data is not None:
            marks["same_run_ids"][i] = data["run_id"]
        # -- 2. an own prompt, staggered --
        start = await phase2_start
        await asyncio.sleep(max(0.0, start + delay - time.perf_counter()))
        data, _ = await call(client, stats, "analyze_own", "POST", "/api/analyze",
                             json={"text": own_text, "patterns": "auto"})
        marks["own_done"][i] = time.perf_counter()
        if data is None:
            return
        run_id = data["run_id"]
        if data.get("patterns") != "included" or f"blocks.{n_layers - 1}.attn.hook_pattern" not in data["tensors"]:
            stats.error("analyze_own", f"no patterns in the answer for {len(data['tokens'])} tokens")
        for layer in layers:
            got, _ = await call(client, stats, "layer", "GET", f"/api/runs/{run_id}/layers/{layer}",
                                params={"fields": LAYER_FIELDS})
            if got is not None and sorted(got["tensors"]) != sorted(f"blocks.{layer}.{f}" for f in LAYER_FIELDS.split(",")):
                stats.error("layer", f"wrong tensors {sorted(got['tensors'])}")
        got, _ = await call(client, stats, "embeddings", "GET", f"/api/runs/{run_id}/embeddings")
        if got is not None and len(got["tensors"]) != 3:
            stats.error("embeddings", f"wrong tensors {sorted(got['tensors'])}")
        got, _ = await call(client, stats, "sample", "POST", "/api/sample",
                            json={"run_id": run_id, "temperature": 1.0, "top_k": 40, "seed": i})
        if got is not None and "token" not in got:
            stats.error("sample", f"no token: {got}")
        if i < N_GENERATORS:
            await generate(client, stats, {"text": own_text, "max_new_tokens": NEW_TOKENS,
                                           "temperature": 1.0, "seed": i})
        marks["finished"][i] = time.perf_counter()


def httpx_client(base_url: str, student: int | None = None):
    """A student's own client. Each has its own loopback source address (127.0.1.N), as each
    laptop in a class has its own: the server's forward queue takes clients in turn by address."""
    import httpx

    transport = None if student is None else httpx.AsyncHTTPTransport(local_address=f"127.0.1.{student % 250 + 1}")
    return httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT_S, trust_env=False, headers=HEADERS,
                             transport=transport)


async def classroom(base_url: str, n_students: int, own_texts: list[str], n_layers: int, seed: int):
    stats = Stats()
    marks = {k: {} for k in ("same_done", "same_run_ids", "own_done", "finished")}
    barrier = asyncio.Event()
    phase2_start = asyncio.get_running_loop().create_future()
    rng = random.Random(seed)
    tasks = [asyncio.create_task(student(i, base_url, stats, barrier, random.Random(rng.random()), own_texts[i],
                                         n_layers, phase2_start, marks)) for i in range(n_students)]
    await asyncio.sleep(0.5)  # every client created and waiting at the barrier
    t_same = time.perf_counter()
    barrier.set()
    deadline = t_same + WALL_CAP_S
    # Phase 2 starts once every student has its first analysis (or after the wall cap).
    while len(marks["same_done"]) < n_students and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    t_own = time.perf_counter()
    phase2_start.set_result(t_own)
    done, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.perf_counter()))
    for task in pending:
        task.cancel()
    for task in done:
        if task.exception() is not None:
            stats.error("student", f"{type(task.exception()).__name__}: {task.exception()}")
    t_end = time.perf_counter()
    return stats, marks, t_same, t_own, t_end, len(pending)


SOAK_KINDS = ["analyze", "revisit", "layer", "embeddings", "sample", "logit_lens", "map", "generate", "generate_ttft"]
RSS_PERIOD_S = 10.0


async def soak_student(i: int, client, stats: Stats, rng: random.Random, prompts: Prompts, n_layers: int,
                       end: float, counts: dict) -> None:
    history: list[tuple[str, int]] = []  # (run_id, n_tokens) of this student's earlier runs

    async def think():
        await asyncio.sleep(rng.uniform(1.0, 4.0))

    await asyncio.sleep(rng.uniform(0, 5.0))
    while time.perf_counter() < end:
        if history and rng.random() < 0.25:  # back to an earlier run, likely evicted by now
            run_id, n_tokens = rng.choice(history)
            got, _ = await call(client, stats, "revisit", "GET", f"/api/runs/{run_id}/embeddings")
            if got is None:
                continue
        else:
            text = prompts.fresh(rng.randint(20, 64))[0]
            got, _ = await call(client, stats, "analyze", "POST", "/api/analyze", json={"text": text, "patterns": "auto"})
            if got is None:
                continue
            run_id, n_tokens = got["run_id"], len(got["tokens"])
            history.append((run_id, n_tokens))
            counts["runs"] += 1
        await think()
        layer = rng.randrange(n_layers)
        got, _ = await call(client, stats, "layer", "GET", f"/api/runs/{run_id}/layers/{layer}", params={"fields": LAYER_FIELDS})
        if got is not None and len(got["tensors"]) != 4:
            stats.error("layer", f"wrong tensors {sorted(got['tensors'])}")
        await think()
        await call(client, stats, "embeddings", "GET", f"/api/runs/{run_id}/embeddings")
        await think()
        await call(client, stats, "sample", "POST", "/api/sample",
                   json={"run_id": run_id, "temperature": rng.choice([0.5, 1.0, 1.5]), "top_k": 40, "seed": rng.randrange(1000)})
        await think()
        first = rng.randrange(max(1, n_tokens - 16))
        positions = list(range(first, min(n_tokens, first + 16)))
        got, _ = await call(client, stats, "logit_lens", "GET", f"/api/runs/{run_id}/logit-lens",
                            params={"position": positions, "k": 10, "stream": rng.choice(["resid_post", "both"])})
        if got is not None and got["positions"] != positions:
            stats.error("logit_lens", f"positions {got['positions']} for {positions}")
        if rng.random() < 0.2:
            await think()
            await call(client, stats, "map", "GET", f"/api/runs/{run_id}/embedding-space/map",
                       params={"word": rng.choice(["king", "queen", "Paris", "dog", "seven"])})
        if rng.random() < 0.1:
            await think()
            await generate(client, stats, {"text": prompts.fresh(rng.randint(20, 48))[0], "max_new_tokens": NEW_TOKENS,
                                           "temperature": 1.0, "seed": i})
        await think()


async def run_students(students: list, stats: Stats, cap_s: float) -> int:
    """Run the students' coroutines until done or `cap_s`; those still running then are cancelled
    and counted (the return value: hangs), and a student that raised is an error."""
    tasks = [asyncio.create_task(s) for s in students]
    done, pending = await asyncio.wait(tasks, timeout=cap_s)
    for task in pending:
        task.cancel()
    for task in done:
        if task.exception() is not None:
            stats.error("student", f"{type(task.exception()).__name__}: {task.exception()}")
    return len(pending)


async def soak(base_url: str, pid: int, n_students: int, seconds: float, n_layers: int, seed: int, flooder=None):
    """The students' realistic mix for `seconds`; with `flooder` (a coroutine function taking the
    end time), that client runs beside them until then."""
    stats = Stats()
    counts = {"runs": 0}
    rss: list[tuple[float, int]] = []  # (seconds since start, VmRSS kB)
    start = time.perf_counter()
    end = start + seconds
    prompts = Prompts(seed=seed + 1)

    async def sample_rss():
        while time.perf_counter() < end + 30:
            rss.append((time.perf_counter() - start, int(proc_status(pid)["VmRSS"].split()[0])))
            await asyncio.sleep(RSS_PERIOD_S)

    sampler = asyncio.create_task(sample_rss())
    clients = [httpx_client(base_url, i) for i in range(n_students)]
    rng = random.Random(seed)
    students = [soak_student(i, clients[i], stats, random.Random(rng.random()), prompts, n_layers, end, counts)
                for i in range(n_students)]
    hung = await run_students(students + ([flooder(end)] if flooder else []), stats, seconds + WALL_CAP_S)
    sampler.cancel()
    for client in clients:
        await client.aclose()
    return stats, counts, rss, time.perf_counter() - start, hung


def kinds_table(stats: Stats, kinds: list[str]) -> None:
    ms = lambda s: f"{s * 1e3:9.1f}"  # noqa: E731
    print(f"  {'kind':14s} {'count':>6s} {'p50 ms':>9s} {'p95 ms':>9s} {'max ms':>9s}   {'503s':>5s} {'gave up':>7s} {'errors':>6s}")
    for k in kinds:
        xs = stats.latency.get(k, [])
        if xs:
            print(f"  {k:14s} {len(xs):6d} {ms(pct(xs, 0.5))} {ms(pct(xs, 0.95))} {ms(max(xs))}   "
                  f"{stats.busy[k]:5d} {stats.gave_up[k]:7d} {len(stats.errors[k]):6d}")


def report_soak(stats: Stats, counts: dict, rss: list, wall: float, hung: int, health: dict, seconds: float,
                window: float) -> bool:
    print(f"\n== Soak: {wall:.0f} s, {counts['runs']} fresh runs analyzed ==")
    kinds_table(stats, SOAK_KINDS)
    errors = sum(len(v) for v in stats.errors.values())
    not_found = sum(e.startswith("HTTP 404") for v in stats.errors.values() for e in v)
    print(f"  errors {errors} (404s among them: {not_found}); 503s waited out {sum(stats.busy.values())}, "
          f"gave up {sum(stats.gave_up.values())}; students still running at the cap {hung}")
    for k, errs in stats.errors.items():
        for e in errs[:5]:
            print(f"    {k}: {e}")
    print(f"  RSS every {RSS_PERIOD_S:.0f} s (MB): " + " ".join(f"{kb / 1024:.0f}" for _, kb in rss))
    late = [kb for t, kb in rss if seconds - window <= t <= seconds]
    flat = True
    if late:
        spread = (max(late) - min(late)) / min(late)
        flat = spread <= 0.10
        print(f"  the last {window:.0f} s ({seconds - window:.0f}..{seconds:.0f} s, {len(late)} samples): RSS "
              f"{min(late) / 1024:.0f}..{max(late) / 1024:.0f} MB, spread {spread * 100:.1f}% "
              f"({'within 10%: PASS' if flat else 'over 10%: FAIL'})")
    print(f"  at the end, /healthz: forward_passes {health['forward_passes']}, cache {health['cache']}")
    return errors == 0 and hung == 0 and flat and health["forward_passes"] == {"running": 0, "waiting": 0}


MIX_CONFIGS = [("before: each generation steps alone", {"EXPLAINER_DECODE_BATCH": "1"}),
               ("after: generations stepped together", {"EXPLAINER_DECODE_BATCH": "16"})]
MIX_LENGTHS = (16, 32, 48)


async def mix_student(i: int, client, stats: Stats, rng: random.Random, prompts: Prompts, n_layers: int, end: float,
                      gen_share: float, schedule: list[float] | None = None) -> None:
    """The realistic mix with 1-4 s of think time: analyze a fresh prompt, a layer, a sample, and
    with probability gen_share a generation of 16-48 tokens. Rounds follow one another until
    `end`; or, with a `schedule` (perf_counter times), each round starts at its time (or when the
    one before ends, if later), so that the same rounds are asked of both servers."""
    async def think():
        await asyncio.sleep(rng.uniform(1.0, 4.0))

    async def one_round():
        got, _ = await call(client, stats, "analyze", "POST", "/api/analyze",
                            json={"text": prompts.fresh(rng.randint(20, 64))[0], "patterns": "auto"})
        if got is None:
            return
        await think()
        await call(client, stats, "layer", "GET", f"/api/runs/{got['run_id']}/layers/{rng.randrange(n_layers)}",
                   params={"fields": LAYER_FIELDS})
        await think()
        await call(client, stats, "sample", "POST", "/api/sample",
                   json={"run_id": got["run_id"], "temperature": 1.0, "top_k": 40, "seed": rng.randrange(1000)})
        if rng.random() < gen_share:
            await think()
            await generate(client, stats, {"text": prompts.fresh(rng.randint(20, 48))[0], "temperature": rng.choice([0.7, 1.0, 1.3]),
                                           "max_new_tokens": rng.randint(MIX_LENGTHS[0], MIX_LENGTHS[-1]), "seed": i})

    if schedule is not None:
        for start in schedule:
            await asyncio.sleep(max(0.0, start - time.perf_counter()))
            await one_round()
        return
    await asyncio.sleep(rng.uniform(0, 5.0))
    while time.perf_counter() < end:
        await one_round()
        await think()


SCHEDULE_GAP_S = (8.0, 14.0)  # between a student's round starts: about the closed loop's pace


async def mix(base_url: str, n_students: int, seconds: float, n_layers: int, seed: int, gen_share: float,
              scheduled: bool = False):
    stats = Stats()
    prompts = Prompts(seed=seed + 2)
    clients = [httpx_client(base_url, i) for i in range(n_students)]
    rng = random.Random(seed)
    start = time.perf_counter()
    end = start + seconds
    students = []
    for i in range(n_students):
        schedule = None
        if scheduled:  # drawn from the seed alone: the same rounds at the same times on both servers
            when, schedule, pace = random.Random(seed * 1000 + i).uniform(0, 5.0), [], random.Random(seed * 1000 + i + 500)
            while when < seconds:
                schedule.append(start + when)
                when += pace.uniform(*SCHEDULE_GAP_S)
        students.append(mix_student(i, clients[i], stats, random.Random(rng.random()), prompts, n_layers, end, gen_share, schedule))
    hung = await run_students(students, stats, seconds + WALL_CAP_S)
    wall = time.perf_counter() - start
    for client in clients:
        await client.aclose()
    return stats, wall, hung


def batch_sizes(text: str) -> tuple[float, float]:
    """(steps, generations stepped) from /metrics' explainer_decode_batch_size histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {s.name: s.value for f in text_string_to_metric_families(text) if f.name == "explainer_decode_batch_size"
             for s in f.samples}
    return found.get("explainer_decode_batch_size_count", 0.0), found.get("explainer_decode_batch_size_sum", 0.0)


def lone_generation(client, prompts: Prompts, n: int, repeats: int = 2) -> float:
    """Seconds for one n-token generation with nothing else running (median of `repeats`)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with client.stream("POST", "/api/generate", json={"text": prompts.fresh(32)[0], "max_new_tokens": n, "seed": 0}) as r:
            assert r.status_code == 200, r.status_code
            for line in r.iter_lines():
                assert not line.startswith("event: error"), line
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_mix(model_dir: str, n_students: int, seconds: float, seed: int, gen_share: float, scheduled: bool = False) -> int:
    """Before and after in one run: the same mix against a server that steps each generation
    alone, then one that steps them together."""
    import httpx

    rows = []
    for name, env in MIX_CONFIGS:
        server = Server(model_dir, free_port(), env=env)
        base_url = f"http://127.0.0.1:{server.port}"
        client = httpx.Client(base_url=base_url, timeout=120, trust_env=False, headers=HEADERS)
        try:
            server.wait_ready(client)
            n_layers = client.get("/api/model").json()["n_layers"]
            prompts = Prompts(seed=seed + 7)
            lone_generation(client, prompts, 4, repeats=1)  # warm-up
            lone = {n: lone_generation(client, prompts, n) for n in MIX_LENGTHS}
            t0 = time.perf_counter()
            client.post("/api/analyze", json={"text": prompts.fresh(64)[0], "patterns": "auto"}).raise_for_status()
            lone_analyze = time.perf_counter() - t0
            stats, wall, hung = asyncio.run(mix(base_url, n_students, seconds, n_layers, seed, gen_share, scheduled))
            steps = batch_sizes(client.get("/metrics").text)
        finally:
            client.close()
            server.stop()
        # Each generation against a lone one of its length (interpolated between 16, 32 and 48).
        xs = sorted(lone)
        lone_at = lambda n: float(np.interp(n, xs, [lone[x] for x in xs]))  # noqa: E731
        gens = stats.generations
        ratios = [t / lone_at(n) for n, t in gens]
        tokens = sum(n for n, _ in gens)
        rows.append((name, lone, lone_analyze, stats, wall, hung, ratios, tokens))
        stats.steps = steps

    pace = (f"rounds at the same scheduled times on both servers ({SCHEDULE_GAP_S[0]:.0f}-{SCHEDULE_GAP_S[1]:.0f} s apart)"
            if scheduled else "each student's next round when the last ends")
    print(f"\n== Realistic mix: {n_students} students, {seconds:.0f} s, {pace}, 1-4 s think time, "
          f"{gen_share:.0%} of rounds generate {MIX_LENGTHS[0]}-{MIX_LENGTHS[-1]} tokens ==")
    for name, lone, lone_analyze, stats, wall, hung, ratios, tokens in rows:
        gen = [t for _, t in stats.generations]
        analyze = stats.latency.get("analyze", [])
        errors = sum(len(v) for v in stats.errors.values())
        print(f"\n  {name}")
        print(f"    lone generation: " + ", ".join(f"{n} tokens {t:.2f} s" for n, t in lone.items()) +
              f"; lone analyze (64 tokens) {lone_analyze * 1e3:.0f} ms")
        if gen:
            print(f"    generation: {len(gen)} done, p50 {pct(gen, 0.5):.2f} s, p95 {pct(gen, 0.95):.2f} s; "
                  f"p50 {pct(ratios, 0.5):.1f}x a lone one of the same length (p95 {pct(ratios, 0.95):.1f}x)")
        print(f"    generated tokens/s, all students together: {tokens / wall:.1f}")
        count, total = stats.steps
        if count:
            print(f"    batched decode steps (from /metrics): {count:.0f}, {total / count:.1f} generations each on average")
        if analyze:
            print(f"    analyze: {len(analyze)} done, p50 {pct(analyze, 0.5) * 1e3:.0f} ms, p95 {pct(analyze, 0.95) * 1e3:.0f} ms")
        print(f"    errors {errors}, 503s waited out {sum(stats.busy.values())}, gave up {sum(stats.gave_up.values())}, "
              f"students still running at the cap {hung}")
        for k, errs in stats.errors.items():
            for e in errs[:3]:
                print(f"      {k}: {e}")
    (_, _, _, s0, w0, _, r0, t0), (_, _, _, s1, w1, _, r1, t1) = rows
    a0, a1 = s0.latency.get("analyze", [0]), s1.latency.get("analyze", [0])
    print("\n  after / before:")
    if r0 and r1:
        print(f"    generation p50, x a lone one: {pct(r0, 0.5):.1f}x -> {pct(r1, 0.5):.1f}x   target <= 3x")
    print(f"    generated tokens/s: {t0 / w0:.1f} -> {t1 / w1:.1f} ({(t1 / w1) / max(1e-9, t0 / w0):.2f}x)")
    print(f"    analyze p95: {pct(a0, 0.95) * 1e3:.0f} ms -> {pct(a1, 0.95) * 1e3:.0f} ms   target: no worse")
    ok = all(not sum(len(v) for v in s.errors.values()) and not hung for _, _, _, s, _, hung, _, _ in rows)
    return 0 if ok else 1


FLOOD_WORKERS = 8  # the flooder's requests at once: what the server lets one client queue
FLOOD_KINDS = ["patching", "analyze_1024", "lens", "layer_1024"]
FLOOD_ADDRESS = "127.0.2.1"  # not a student's (127.0.1.N)
LONE_ANALYZES = 12
MAX_PATCHING_TOKENS = 64  # app/schemas.py; halved while the server says too_costly


class Flood:
    """One client sending the costliest requests it may, FLOOD_WORKERS at once, without waiting
    out 503s (a pause of 0.5 s): POST /api/patching at its maximum tokens (halved while the server
    answers 422 too_costly), a fresh 1,024-token analysis (by ids), the logit lens of that run at
    its maximum positions, k and streams, and every hook of one of its layers."""

    def __init__(self, base_url: str, n_layers: int, limits: dict, n_ctx: int, seed: int):
        self.base_url, self.n_layers, self.n_ctx = base_url, n_layers, n_ctx
        self.lens_positions, self.lens_k = limits["max_lens_positions"], limits["max_lens_k"]
        self.patch_tokens = MAX_PATCHING_TOKENS
        self.status: dict[str, dict] = {k: defaultdict(int) for k in FLOOD_KINDS}
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.refused: list[str] = []  # the 422s' messages, to print one of each kind
        self.prompts = Prompts(seed=seed + 3)
        self.rng = random.Random(seed)
        self.runs: list[str] = []  # 1,024-token runs analyzed

    async def send(self, client, kind: str, method: str, url: str, **kw):
        t0 = time.perf_counter()
        self.status[kind]["unanswered at the end"] += 1  # until it is answered
        try:
            response = await client.request(method, url, **kw)
        except Exception as error:  # noqa: BLE001
            self.status[kind]["unanswered at the end"] -= 1
            self.status[kind][type(error).__name__] += 1
            return None
        self.status[kind]["unanswered at the end"] -= 1  # (a request cancelled at the end stays counted)
        self.status[kind][response.status_code] += 1
        if response.status_code == 200:
            self.latency[kind].append(time.perf_counter() - t0)
            return response.json()
        if response.status_code == 503:
            await asyncio.sleep(0.5)
        elif response.status_code == 422:
            self.refused.append(f"{kind}: {response.text[:240]}")
        return response

    async def worker(self, w: int, end: float) -> None:
        import httpx
        from checkpoint import prompt_ids

        async with httpx.AsyncClient(base_url=self.base_url, timeout=CLIENT_TIMEOUT_S, trust_env=False, headers=HEADERS,
                                     transport=httpx.AsyncHTTPTransport(local_address=FLOOD_ADDRESS)) as client:
            k = w
            while time.perf_counter() < end:
                kind = FLOOD_KINDS[k % len(FLOOD_KINDS)]
                k += 1
                if kind in ("lens", "layer_1024") and not self.runs:
                    kind = "analyze_1024"  # a run to read first
                if kind == "patching":
                    n = self.patch_tokens
                    clean, corrupted = self.prompts.fresh(n), self.prompts.fresh(n)
                    got = await self.send(client, kind, "POST", "/api/patching", json={
                        "clean": clean[0], "corrupted": corrupted[0], "target_token": clean[1][-1],
                        "baseline_token": corrupted[1][-1], "hook": "resid_pre"})
                    if getattr(got, "status_code", None) == 422 and "too_costly" in got.text and n > 2:
                        self.patch_tokens = min(self.patch_tokens, n // 2)
                elif kind == "analyze_1024":
                    got = await self.send(client, kind, "POST", "/api/analyze",
                                          json={"ids": prompt_ids(self.n_ctx, self.rng.randrange(1 << 30)), "patterns": "auto"})
                    if isinstance(got, dict):
                        self.runs.append(got["run_id"])
                elif self.runs:
                    run_id = self.rng.choice(self.runs[-4:])
                    if kind == "lens":
                        first = self.rng.randrange(self.n_ctx - self.lens_positions)
                        await self.send(client, kind, "GET", f"/api/runs/{run_id}/logit-lens", params={
                            "position": list(range(first, first + self.lens_positions)), "k": self.lens_k, "stream": "both"})
                    else:
                        await self.send(client, kind, "GET", f"/api/runs/{run_id}/layers/{self.rng.randrange(self.n_layers)}")

    async def prepare(self, n_runs: int = 2) -> None:
        """1,024-token runs analyzed before the flood (as a patient client would), so that the lens
        and layer requests start with it."""
        import httpx
        from checkpoint import prompt_ids

        async with httpx.AsyncClient(base_url=self.base_url, timeout=CLIENT_TIMEOUT_S, trust_env=False, headers=HEADERS,
                                     transport=httpx.AsyncHTTPTransport(local_address=FLOOD_ADDRESS)) as client:
            for _ in range(n_runs):
                got = await client.post("/api/analyze", json={"ids": prompt_ids(self.n_ctx, self.rng.randrange(1 << 30)),
                                                              "patterns": "auto"})
                got.raise_for_status()
                self.runs.append(got.json()["run_id"])

    async def __call__(self, end: float) -> None:
        workers = [asyncio.create_task(self.worker(w, end)) for w in range(FLOOD_WORKERS)]
        await asyncio.wait(workers, timeout=max(0.0, end - time.perf_counter()))
        for task in workers:  # what it still waits for is dropped: it is not a student
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def lone_analyzes(client, prompts: Prompts, rng: random.Random) -> list[float]:
    """Seconds for LONE_ANALYZES fresh 20-64-token analyses, one at a time, nothing else running."""
    times = []
    for _ in range(LONE_ANALYZES):
        t0 = time.perf_counter()
        client.post("/api/analyze", json={"text": prompts.fresh(rng.randint(20, 64))[0], "patterns": "auto"}).raise_for_status()
        times.append(time.perf_counter() - t0)
    return times


def merged(results: list[tuple]) -> tuple:
    """soak() results of several phases as one: (stats, counts, rss, wall, hung)."""
    stats, counts, rss, wall, hung = Stats(), {"runs": 0}, [], 0.0, 0
    for s, c, r, w, h in results:
        for k, xs in s.latency.items():
            stats.latency[k] += xs
        for k, n in s.busy.items():
            stats.busy[k] += n
        for k, n in s.gave_up.items():
            stats.gave_up[k] += n
        for k, errs in s.errors.items():
            stats.errors[k] += errs
        counts["runs"] += c["runs"]
        rss += r
        wall += w
        hung += h
    return stats, counts, rss, wall, hung


def run_flood(client, pid: int, base_url: str, n_students: int, seconds: float, n_layers: int, seed: int,
              rounds: int = 2) -> bool:
    """The students but one (each its own address) run the realistic mix for `seconds` without
    the flood and `seconds` with the last one flooding, in 2 x `rounds` phases taken in turns
    (quiet, loud, loud, quiet, ...: a shared machine's load drifts); their analyze p95 under the
    flood against without it."""
    info = client.get("/api/model").json()
    rng = random.Random(seed)
    lone = lone_analyzes(client, Prompts(seed=seed + 5), rng)
    flood = Flood(base_url, n_layers, info["limits"], info["n_ctx"], seed)
    asyncio.run(flood.prepare())
    phases: dict[bool, list] = {False: [], True: []}
    peak_kb = 0
    for r in range(rounds):
        for loud in ((False, True) if r % 2 == 0 else (True, False)):
            if loud:
                with open(f"/proc/{pid}/clear_refs", "w") as f:  # VmHWM of the flood phase alone
                    f.write("5")
            phases[loud].append(asyncio.run(soak(base_url, pid, n_students - 1, seconds / rounds, n_layers,
                                                 seed + 2 * r + loud, flooder=flood if loud else None)))
            if loud:
                peak_kb = max(peak_kb, int(proc_status(pid)["VmHWM"].split()[0]))
    quiet, loud = merged(phases[False]), merged(phases[True])
    health, status = client.get("/healthz").json(), proc_status(pid)

    print(f"\n== Flood: {n_students - 1} students' realistic mix for {seconds:.0f} s without and {seconds:.0f} s with "
          f"one client ({FLOOD_ADDRESS}) sending the costliest requests it may, {FLOOD_WORKERS} at once; "
          f"{2 * rounds} phases of {seconds / rounds:.0f} s in turns, quiet first ==")
    print(f"  lone small analyze (20-64 tokens, nothing else running), {len(lone)} in a row: p50 {pct(lone, 0.5) * 1e3:.0f} ms, "
          f"p95 {pct(lone, 0.95) * 1e3:.0f} ms")
    rows = []
    for name, (stats, counts, rss, wall, hung) in (("without the flood", quiet), ("under the flood", loud)):
        xs = stats.latency.get("analyze", [])
        errors = sum(len(v) for v in stats.errors.values())
        rows.append((pct(xs, 0.95) if xs else float("nan"), stats, errors, hung))
        print(f"\n  students {name}: {wall:.0f} s; analyze {len(xs)} done, p50 {pct(xs, 0.5) * 1e3:.0f} ms, "
              f"p95 {pct(xs, 0.95) * 1e3:.0f} ms; 503s {sum(stats.busy.values())} (gave up {sum(stats.gave_up.values())}), "
              f"errors {errors}, still running at the cap {hung}; RSS {min(kb for _, kb in rss) / 1024:.0f}.."
              f"{max(kb for _, kb in rss) / 1024:.0f} MB")
        kinds_table(stats, SOAK_KINDS)
        for k, errs in stats.errors.items():
            for e in errs[:3]:
                print(f"    {k}: {e}")
    print(f"\n  the flooder: patching at {flood.patch_tokens} tokens (hook resid_pre), analyses of {info['n_ctx']} tokens, "
          f"the lens at {flood.lens_positions} positions, k {flood.lens_k}, both streams, layers with every hook")
    for kind in FLOOD_KINDS:
        xs = flood.latency.get(kind, [])
        answered = ", ".join(f"{code}: {n}" for code, n in sorted(flood.status[kind].items(), key=str) if n)
        print(f"    {kind:13s} {answered or 'none sent'}" + (f"; 200s p50 {pct(xs, 0.5):.1f} s, max {max(xs):.1f} s" if xs else ""))
    for line in dict.fromkeys(r.split(":", 1)[0] + ": " + r.split('"message":"', 1)[-1][:160] for r in flood.refused):
        print(f"      refused, {line}")
    (quiet_p95, _, quiet_errors, quiet_hung), (loud_p95, loud_stats, loud_errors, loud_hung) = rows
    ok_latency = loud_p95 <= quiet_p95 + 1.0
    print(f"\n  students' analyze p95: {quiet_p95 * 1e3:.0f} ms without the flood -> {loud_p95 * 1e3:.0f} ms under it "
          f"(+{(loud_p95 - quiet_p95) * 1e3:.0f} ms; target <= +1000 ms: {'PASS' if ok_latency else 'FAIL'}); against a lone "
          f"analyze: +{(loud_p95 - pct(lone, 0.95)) * 1e3:.0f} ms")
    print(f"  students' 503s under the flood: {sum(loud_stats.busy.values())} "
          f"({', '.join(f'{k} {n}' for k, n in loud_stats.busy.items() if n) or 'none'})")
    print(f"  server peak RSS during the flood phases (VmHWM) {peak_kb / 1024:.0f} MB; at the end VmRSS {status['VmRSS']}; "
          f"/healthz forward_passes {health['forward_passes']}, cache in flight {health['cache'].get('in_flight')}")
    return (ok_latency and not quiet_errors and not loud_errors and not quiet_hung and not loud_hung
            and health["forward_passes"] == {"running": 0, "waiting": 0})


BURST_TOKENS = 1024


async def burst(base_url: str, pid: int, n: int, n_layers: int) -> tuple[list, int, list, float]:
    """`n` clients (own source addresses) each ask at once for every hook of a different layer of
    one 1,024-token run; VmRSS is sampled every 20 ms meanwhile. Returns ([(status, seconds,
    pattern shape or error)], VmRSS kB after the run's analysis, [VmRSS kB samples], wall seconds)."""
    from checkpoint import prompt_ids

    samples: list[int] = []
    done = asyncio.Event()

    async def sample():
        while not done.is_set():
            samples.append(int(proc_status(pid)["VmRSS"].split()[0]))
            await asyncio.sleep(0.02)

    async with httpx_client(base_url) as client:
        got = await client.post("/api/analyze", json={"ids": prompt_ids(BURST_TOKENS, 5), "patterns": "auto"})
        got.raise_for_status()
        run_id = got.json()["run_id"]
    rss_before = int(proc_status(pid)["VmRSS"].split()[0])
    with open(f"/proc/{pid}/clear_refs", "w") as f:  # VmHWM from here on
        f.write("5")

    async def one(i: int):
        t0 = time.perf_counter()
        async with httpx_client(base_url, i) as client:
            response = await client.get(f"/api/runs/{run_id}/layers/{i % n_layers}")
            if response.status_code != 200:
                return response.status_code, time.perf_counter() - t0, response.text[:200]
            pattern = response.json()["tensors"][f"blocks.{i % n_layers}.attn.hook_pattern"]["shape"]
            return 200, time.perf_counter() - t0, pattern

    sampler = asyncio.create_task(sample())
    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - t0
    done.set()
    await sampler
    return results, rss_before, samples, wall


def run_burst(client, pid: int, base_url: str, n: int, n_layers: int) -> bool:
    results, before, samples, wall = asyncio.run(burst(base_url, pid, n, n_layers))
    after = proc_status(pid)
    mb = lambda kb: f"{kb / 1024:.0f} MB"  # noqa: E731
    kb = lambda field: int(field.split()[0])  # noqa: E731
    print(f"\n== Burst: {n} concurrent GET layers/{{l}} (every hook, float32, gzip) of one {BURST_TOKENS}-token run ==")
    for i, (status, seconds, what) in enumerate(results):
        print(f"  layer {i % n_layers}: HTTP {status} in {seconds:.1f} s, {what}")
    print(f"  server VmRSS before {mb(before)} (after the {BURST_TOKENS}-token analyze), peak during the burst "
          f"{mb(kb(after['VmHWM']))} (VmHWM; sampled max {mb(max(samples))}), after {mb(kb(after['VmRSS']))}; "
          f"{wall:.1f} s for all")
    health = client.get("/healthz").json()
    print(f"  /healthz: {health}")
    return all(status == 200 and what == [12, BURST_TOKENS, BURST_TOKENS] for status, _, what in results)


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, v in (line.split(":", 1) for line in f if ":" in line)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a GPT-2-small-shaped checkpoint directory (built if missing or not given)")
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", type=int, default=1, help="classes in a row on the same server (memory check)")
    parser.add_argument("--soak", type=float, default=0, metavar="SECONDS",
                        help="instead: each student loops over a realistic mix for this long (600 for the soak)")
    parser.add_argument("--rss-window", type=float, metavar="SECONDS",
                        help="with --soak: the RSS spread is judged over the soak's last SECONDS (default: its last half)")
    parser.add_argument("--flood", type=float, default=0, metavar="SECONDS",
                        help="instead: the students but one run the realistic mix for SECONDS, then again for SECONDS "
                             "while one client floods the costliest requests it may send")
    parser.add_argument("--flood-rounds", type=int, default=2,
                        help="with --flood: each condition's time split into this many phases, taken in turns")
    parser.add_argument("--mix", type=float, default=0, metavar="SECONDS",
                        help="instead: the realistic mix for this long, before (EXPLAINER_DECODE_BATCH=1) and after (16)")
    parser.add_argument("--burst", type=int, default=0, metavar="N",
                        help="instead: N concurrent requests for every hook of a layer of one 1,024-token run; the "
                             "server's peak RSS")
    parser.add_argument("--gen-share", type=float, default=0.3, help="with --mix: the share of rounds that generate")
    parser.add_argument("--scheduled", action="store_true",
                        help="with --mix: each student's rounds start at times drawn from the seed, the same on both "
                             "servers (the same work asked of each), instead of each round when the last ends")
    args = parser.parse_args()
    if args.mix:
        return run_mix(checkpoint_dir(args.model), args.students, args.mix, args.seed, args.gen_share, args.scheduled)

    import httpx

    started = time.perf_counter()
    model_dir = checkpoint_dir(args.model)
    settings = {k: v for k, v in os.environ.items() if k.startswith("EXPLAINER_")}
    print(f"GPT-2 small shapes, random weights, {model_dir}")
    print(f"{args.students} students, cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}, "
          f"server settings: {settings or 'defaults'}")
    prompts = Prompts(seed=args.seed)
    rng = random.Random(args.seed)
    own_texts = [prompts.fresh(rng.randint(30, 64))[0] for _ in range(args.students)]
    own_lengths = [len(prompts.tok.encode(t)) for t in own_texts]

    server = Server(model_dir, free_port())
    base_url = f"http://127.0.0.1:{server.port}"
    client = httpx.Client(base_url=base_url, timeout=120, trust_env=False, headers=HEADERS)
    poller = None
    try:
        server.wait_ready(client)
        pid = server.proc.pid
        n_layers = client.get("/api/model").json()["n_layers"]
        print(f"server pid {pid} ready on {base_url} after {time.perf_counter() - started:.0f} s")
        if args.burst:
            ok = run_burst(client, pid, base_url, args.burst, n_layers)
            print(f"\n(total {time.perf_counter() - started:.0f} s) {'OK' if ok else 'FAIL'}")
            return 0 if ok else 1
        if args.flood:
            ok = run_flood(client, pid, base_url, args.students, args.flood, n_layers, args.seed, args.flood_rounds)
            print(f"\n(total {time.perf_counter() - started:.0f} s) {'OK' if ok else 'FAIL'}")
            return 0 if ok else 1
        if args.soak:
            result = asyncio.run(soak(base_url, pid, args.students, args.soak, n_layers, args.seed))
            ok = report_soak(*result, client.get("/healthz").json(), args.soak, args.rss_window or args.soak / 2)
            print(f"\n(total {time.perf_counter() - started:.0f} s) {'OK' if ok else 'FAIL'}")
            return 0 if ok else 1

        # -- 0. warm-up, then the baseline with no load --
        def one(kind: str, method: str, url: str, **kw) -> tuple[float, dict]:
            t0 = time.perf_counter()
            response = client.request(method, url, **kw)
            elapsed = time.perf_counter() - t0
            assert response.status_code == 200, (kind, response.status_code, response.text[:300])
            return elapsed, response.json()

        def gen_once(text: str, n: int) -> tuple[float, float]:
            t0, first = time.perf_counter(), None
            with client.stream("POST", "/api/generate", json={"text": text, "max_new_tokens": n, "temperature": 1.0, "seed": 0}) as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    if line.startswith("data:") and first is None:
                        first = time.perf_counter() - t0
                    assert not line.startswith("event: error"), line
            return time.perf_counter() - t0, first

        for _ in range(2):
            _, warm = one("analyze", "POST", "/api/analyze", json={"text": prompts.fresh()[0], "patterns": "auto"})
            one("layer", "GET", f"/api/runs/{warm['run_id']}/layers/0", params={"fields": LAYER_FIELDS})
        gen_once(prompts.fresh()[0], 4)
        base = {}
        analyzes = []
        for _ in range(3):
            elapsed, data = one("analyze", "POST", "/api/analyze", json={"text": prompts.fresh()[0], "patterns": "auto"})
            analyzes.append(elapsed)
        base["analyze"] = statistics.median(analyzes)
        run_id = data["run_id"]
        base["layer"] = one("layer", "GET", f"/api/runs/{run_id}/layers/5", params={"fields": LAYER_FIELDS})[0]
        base["embeddings"] = one("embeddings", "GET", f"/api/runs/{run_id}/embeddings")[0]
        base["sample"] = one("sample", "POST", "/api/sample", json={"run_id": run_id, "temperature": 1.0, "top_k": 40, "seed": 0})[0]
        base["generate"], base["generate_ttft"] = gen_once(prompts.fresh(48)[0], NEW_TOKENS)
        base["healthz"] = statistics.median([one("healthz", "GET", "/healthz")[0] for _ in range(5)])
        base["analyze_same"] = base["analyze_own"] = base["analyze"]
        before = proc_status(pid)
        cache_before = client.get("/healthz").json()["cache"]

        # -- 1-3. the classroom --
        ctx = multiprocessing.get_context("spawn")
        stop = ctx.Event()
        receive, send = ctx.Pipe(duplex=False)
        poller = ctx.Process(target=poll_healthz, args=(base_url, stop, send), daemon=True)
        poller.start()
        time.sleep(1.5)  # the poller's imports, before the class starts
        stats, marks, t_same, t_own, t_end, n_hung = asyncio.run(
            classroom(base_url, args.students, own_texts, n_layers, args.seed))
        stop.set()
        later = []
        for c in range(1, args.classes):
            texts = [prompts.fresh(rng.randint(30, 64))[0] for _ in range(args.students)]
            s, _, t0, _, t1, hung = asyncio.run(classroom(base_url, args.students, texts, n_layers, args.seed + c))
            later.append((c + 1, s, t1 - t0, hung, client.get("/healthz").json(), proc_status(pid)))
        health_samples = receive.recv() if receive.poll(30) else []
        poller.join(10)

        after_health = client.get("/healthz").json()
        after = proc_status(pid)
    finally:
        if poller is not None and poller.is_alive():
            poller.terminate()
        client.close()
        server.stop()

    # -- report --
    ms = lambda s: f"{s * 1e3:8.1f}"  # noqa: E731
    print(f"\n== 0. Baseline, no load (same run, same server) ==")
    print(f"  analyze, fresh 64-token prompt, gzip: {ms(base['analyze'])} ms (median of "
          f"{', '.join(f'{a * 1e3:.0f}' for a in analyzes)} ms)  <- the unit below")
    for k in ("layer", "embeddings", "sample", "generate", "generate_ttft", "healthz"):
        print(f"  {k:14s} {ms(base[k])} ms")

    print(f"\n== Classroom: {args.students} students (own prompts {min(own_lengths)}..{max(own_lengths)} tokens, "
          f"staggered over {STAGGER_S:.0f} s) ==")
    print(f"  {'kind':14s} {'count':>5s} {'p50 ms':>9s} {'p95 ms':>9s} {'max ms':>9s}   {'p50/base':>8s} "
          f"{'p50/analyze':>11s}   {'503s':>4s} {'gave up':>7s} {'errors':>6s}")
    total_errors = sum(len(v) for v in stats.errors.values())
    for k in KINDS:
        xs = stats.latency.get(k, [])
        if xs:
            p50, p95, mx = pct(xs, 0.5), pct(xs, 0.95), max(xs)
            print(f"  {k:14s} {len(xs):5d} {ms(p50):>9s} {ms(p95):>9s} {ms(mx):>9s}   {p50 / base[k]:7.1f}x "
                  f"{p50 / base['analyze']:10.2f}x   {stats.busy[k]:4d} {stats.gave_up[k]:7d} {len(stats.errors[k]):6d}")
        else:
            print(f"  {k:14s} {0:5d}   (none)   503s {stats.busy[k]} gave up {stats.gave_up[k]} errors {len(stats.errors[k])}")
    if stats.errors.get("student"):
        print(f"  student tasks that raised: {len(stats.errors['student'])}")

    lat = [s[1] for s in health_samples if s[1] is not None and s[2] == 200]
    bad = [s for s in health_samples if s[2] != 200]
    peak_waiting = max((s[3]["waiting"] for s in health_samples if s[3]), default=None)
    print(f"\n  healthz (separate process, every {HEALTHZ_PERIOD_S * 1e3:.0f} ms): {len(health_samples)} polls, "
          f"p50 {pct(lat, 0.5) * 1e3:.1f} ms, p95 {pct(lat, 0.95) * 1e3:.1f} ms, max {max(lat) * 1e3:.1f} ms "
          f"(baseline {base['healthz'] * 1e3:.1f} ms); not 200: {len(bad)}; peak forward passes waiting: {peak_waiting}")
    if bad:
        print(f"    first failures: {bad[:3]}")

    same_ids = set(marks["same_run_ids"].values())
    all_first = max(marks["same_done"].values()) - t_same if marks["same_done"] else float("nan")
    print(f"\n  1. same example at once: {len(marks['same_run_ids'])}/{args.students} answered, "
          f"{len(same_ids)} distinct run_id(s) {'(coalesced: PASS)' if len(same_ids) == 1 else '(MISS)'}")
    print(f"     all {args.students} students had their first analysis after {all_first * 1e3:.0f} ms "
          f"= {all_first / base['analyze']:.1f}x one plain analyze")
    own = [t - t_own for t in marks["own_done"].values()]
    if own:
        print(f"  2. own prompts: the last student's own analysis arrived {max(own):.1f} s after phase 2 began "
              f"(the stagger alone is up to {STAGGER_S:.0f} s); every student finished after {t_end - t_own:.1f} s")
    print(f"  scenario wall time {t_end - t_same:.1f} s (cap {WALL_CAP_S:.0f} s); students still running at the cap: {n_hung}")
    print(f"  at the end, /healthz: forward_passes {after_health['forward_passes']}, cache {after_health['cache']} "
          f"(before: {cache_before['entries']} entries, {cache_before['bytes']:,d} B)")
    print(f"  server memory: VmHWM (peak RSS) {after['VmHWM']} at the end ({before['VmHWM']} before the first class); "
          f"VmRSS {after['VmRSS']} (before {before['VmRSS']}); threads {after['Threads']}")

    for c, s, wall, hung, health, status in later:
        n_err = sum(len(v) for v in s.errors.values())
        total_errors += n_err
        n_hung += hung
        print(f"  class {c}: {sum(len(v) for v in s.latency.values())} answers in {wall:.1f} s, 503s {sum(s.busy.values())}, "
              f"gave up {sum(s.gave_up.values())}, errors {n_err}, still running {hung}; VmRSS {status['VmRSS']}, "
              f"VmHWM {status['VmHWM']}; cache {health['cache']['entries']} entries {health['cache']['bytes']:,d} B; "
              f"forward_passes {health['forward_passes']}")
        for k, errs in s.errors.items():
            stats.errors[k] += [f"(class {c}) {e}" for e in errs]

    print(f"\n  errors (5xx other than 503, other statuses, exceptions, SSE errors): {total_errors}")
    for k, errs in stats.errors.items():
        for e in errs[:5]:
            print(f"    {k}: {e}")
    failed = total_errors or n_hung or len(same_ids) != 1 or after_health["forward_passes"] != {"running": 0, "waiting": 0}
    print(f"\n(total {time.perf_counter() - started:.0f} s) {'FAIL' if failed else 'OK'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
