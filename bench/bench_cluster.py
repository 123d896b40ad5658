"""Benchmark: 2 replicas against 1 under Ray Serve (app/cluster.py), on this machine, in one run.

    python bench/bench_cluster.py [--model DIR] [--requests 30] [--rounds 3]

GPT-2 small shapes with seeded random weights (checkpoint.py). Four configurations, all up at
once, the machine's cores given to each in turn:

- plain, 1 pass at a time: `explainer serve` (one uvicorn process, no Ray) with
  EXPLAINER_MAX_CONCURRENT=1, torch on every core;
- plain, 2 passes at once: `explainer serve` as it comes (two passes, each on cores // passes
  running: model/threads.py; one process: the rooms and the run index stay whole without Ray);
- Ray Serve, 1 replica of all the cores (torch threads: as many), behind Ray's HTTP proxy;
- Ray Serve, 2 replicas of half the cores each (ray_actor_options num_cpus, torch threads: as many).

The two Ray deployments are two Serve applications (/one, /two) on one local Ray started here
with twice the cores as logical CPUs, so that both fit; only the one under load does any work.
After a warm-up until every replica has answered, `--rounds` bursts per configuration,
interleaved and in a rotated order (load from elsewhere on the machine falls on all alike), each
of `--requests` concurrent POST /api/analyze of fresh 64-token prompts (no cache hit, no
coalescing), each from its own loopback address (127.0.1.N: a student of its own, as the forward
queue's fairness sees it) and its own connection, with Accept-Encoding: gzip as a browser sends.
Reported per configuration: throughput (requests / wall time of the bursts), p50 / p95 / max
latency, errors and 503s (both must be 0), the spread over the replicas, the time of one request
on one replica (busy wall time x replicas / requests) and the load average; then the ratios, and
a 16-core server extrapolated from the figures per replica.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench_api import Prompts, Server, free_port  # noqa: E402
from checkpoint import checkpoint_dir  # noqa: E402

N_TOKENS = 64
HEADERS = {"Accept-Encoding": "gzip"}


async def one(base_url: str, i: int, text: str) -> tuple[float, int, str, int]:
    """(seconds, status, replica, bytes on the wire) of one analyze from its own address."""
    import httpx

    transport = httpx.AsyncHTTPTransport(local_address=f"127.0.1.{i % 250 + 1}")
    async with httpx.AsyncClient(base_url=base_url, timeout=300, trust_env=False, headers=HEADERS, transport=transport) as client:
        t0 = time.perf_counter()
        async with client.stream("POST", "/api/analyze", json={"text": text}) as response:
            size = 0
            async for chunk in response.aiter_raw():  # not decoded: the client's CPU is the server's too
                size += len(chunk)
        return time.perf_counter() - t0, response.status_code, response.headers.get("x-replica", "plain"), size


async def burst(base_url: str, texts: list[str]) -> tuple[float, list[tuple[float, int, str, int]]]:
    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(base_url, i, text) for i, text in enumerate(texts)))
    return time.perf_counter() - t0, results


def warm_up(base_url: str, prompts: Prompts, replicas: int) -> None:
    """Until every replica has answered an analyze (its first forward pass pays one-off costs)."""
    seen: set[str] = set()
    for _ in range(20 * replicas):
        texts = [prompts.fresh(N_TOKENS)[0] for _ in range(2 * replicas)]
        _, results = asyncio.run(burst(base_url, texts))
        bad = [r for r in results if r[1] != 200]
        if bad:
            raise SystemExit(f"warm-up failed: {bad[:3]}")
        seen |= {r[2] for r in results}
        if len(seen) >= replicas:
            return
    raise SystemExit(f"only {len(seen)} of {replicas} replicas answered the warm-up")


def summary(name: str, replicas: int, walls: list[float], results: list, loads: list[float]) -> dict:
    statuses = Counter(r[1] for r in results)
    latencies = sorted(r[0] for r in results if r[1] == 200)
    spread = Counter(r[2] for r in results if r[1] == 200)
    row = {
        "name": name, "replicas": replicas, "throughput": len(results) / sum(walls),
        "p50": statistics.median(latencies), "p95": latencies[max(0, round(0.95 * len(latencies)) - 1)],
        "max": latencies[-1], "errors": len(results) - statuses[200], "503": statuses[503],
        "spread": sorted(spread.values(), reverse=True), "kb": statistics.mean(r[3] for r in results) / 1024,
    }
    row["service"] = replicas / row["throughput"]  # one request on one replica, the replicas busy throughout
    print(f"{name:<24} {row['throughput']:5.2f} req/s   p50 {row['p50']:5.2f} s   p95 {row['p95']:5.2f} s   "
          f"max {row['max']:5.2f} s   errors {row['errors']} (503: {row['503']})   per replica {row['spread']}   "
          f"{row['service'] * 1e3:4.0f} ms a request per replica   load average {statistics.mean(loads):.1f}", flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a GPT-2-small-shaped checkpoint directory (built if missing or not given)")
    parser.add_argument("--requests", type=int, default=30, help="concurrent analyze requests per burst")
    parser.add_argument("--rounds", type=int, default=3, help="bursts per configuration, interleaved")
    args = parser.parse_args()

    import httpx
    import ray
    from ray import serve

    from app import cluster
    from app.serving.settings import Settings

    cores = os.cpu_count() or 1
    model_dir = checkpoint_dir(args.model)
    prompts = Prompts(seed=13)
    print(f"GPT-2 small shapes, random weights; {cores} cores; {args.rounds} interleaved bursts of {args.requests} "
          f"concurrent analyze requests of fresh {N_TOKENS}-token prompts per configuration", flush=True)
    server = Server(model_dir, free_port(), env={"EXPLAINER_MAX_CONCURRENT": "1"})
    # One process, several passes at once, each on its share of the cores (the default): the rooms
    # and the run index stay whole without Ray, but the passes' Python (hooks, encoding answers)
    # shares one GIL.
    side_by_side = Server(model_dir, free_port())
    try:
        # Logical CPUs for both deployments at once (only one is loaded at a time): 1 x all cores, 2 x half.
        ray.init(num_cpus=2 * cores, include_dashboard=False, object_store_memory=200 << 20, namespace=cluster.NAMESPACE,
                 logging_level=logging.WARNING, log_to_driver=False)
        for process in (server, side_by_side):
            with httpx.Client(base_url=f"http://127.0.0.1:{process.port}", timeout=120, trust_env=False) as client:
                process.wait_ready(client)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        settings = Settings(model=model_dir, log_level="warning")
        configs = [("plain uvicorn (no Ray), 1 pass at a time", 1, f"http://127.0.0.1:{server.port}"),
                   ("plain, 2 passes sharing the cores", 1, f"http://127.0.0.1:{side_by_side.port}")]
        for name, replicas in (("one", 1), ("two", 2)):
            share = cores / replicas
            serve.run(cluster.deployment(settings, replicas, share), name=name, route_prefix=f"/{name}")
            configs.append((f"Ray Serve, {replicas} x {share:g} CPU", replicas, f"http://127.0.0.1:{port}/{name}"))
        for _, replicas, url in configs:
            warm_up(url, prompts, replicas)
        walls = {name: [] for name, _, _ in configs}
        results = {name: [] for name, _, _ in configs}
        loads = {name: [] for name, _, _ in configs}
        for round_ in range(args.rounds):
            # Interleaved, the order rotated each round: other load on the machine falls on all alike.
            for name, _, url in configs[round_ % len(configs):] + configs[:round_ % len(configs)]:
                texts = [prompts.fresh(N_TOKENS)[0] for _ in range(args.requests)]
                loads[name].append(os.getloadavg()[0])
                wall, got = asyncio.run(burst(url, texts))
                walls[name].append(wall)
                results[name].extend(got)
        rows = [summary(name, replicas, walls[name], results[name], loads[name]) for name, replicas, _ in configs]
    finally:
        server.stop()
        side_by_side.stop()
        serve.shutdown()
        ray.shutdown()

    plain, side, one, two = rows
    print()
    print(f"2 replicas / 1 replica under Ray Serve: throughput x{two['throughput'] / one['throughput']:.2f}, "
          f"p50 x{two['p50'] / one['p50']:.2f}, p95 x{two['p95'] / one['p95']:.2f}")
    print(f"1 replica under Ray Serve / plain uvicorn: throughput x{one['throughput'] / plain['throughput']:.2f}, "
          f"p50 x{one['p50'] / plain['p50']:.2f} (the proxy's hop, the shared actor's calls)")
    print(f"2 replicas under Ray Serve / one process with 2 passes at once: throughput x{two['throughput'] / side['throughput']:.2f}, "
          f"p50 x{two['p50'] / side['p50']:.2f}, p95 x{two['p95'] / side['p95']:.2f}")
    # Extrapolation to a 16-core server from the figures per replica measured here: replicas scale
    # with the cores as long as memory bandwidth and the proxy keep up (an upper bound).
    for row in (two, one):
        share = cores / row["replicas"]
        per_replica = row["throughput"] / row["replicas"]
        n = int(16 // share)
        print(f"per replica of {share:g} CPU: {per_replica:.2f} req/s ({row['service'] * 1e3:.0f} ms a request); "
              f"16 cores as {n} such replicas: about {n * per_replica:.1f} req/s, a burst of {args.requests} in "
              f"{args.requests / (n * per_replica):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
