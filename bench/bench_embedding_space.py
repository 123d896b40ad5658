"""Embedding-space query latency on GPT-2 small's shapes (50,257 x 768), offline.

    python bench/bench_embedding_space.py [--queries 200]

Loads GPT-2 small's exact shapes with seeded random weights (no download), then times, each
over distinct queries so that the cache never answers: a neighbour query (cosine over the whole
vocabulary + top 10, labels included), a word-arithmetic query, a cached repeat, a dot product,
the 3D map, and a neighbour query through the API; then, for reference, the logit lens. The baseline, measured in the same run, is one plain matrix-vector product of the
same size (W_E @ v), the least any exact neighbour query must do; a naive cosine that
re-normalises the matrix on every query is shown for comparison. Target: <= 50 ms per query.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import Explainer  # noqa: E402
from model.embedding_space import EmbeddingSpace  # noqa: E402

TARGET_MS = 50.0


def timed(fn, args_list) -> list[float]:
    out = []
    for args in args_list:
        start = time.perf_counter()
        fn(*args)
        out.append((time.perf_counter() - start) * 1000)
    return out


def summary(name: str, ms: list[float], baseline: float | None = None) -> float:
    median = statistics.median(ms)
    p95 = sorted(ms)[max(0, int(len(ms) * 0.95) - 1)]
    ratio = f"  {median / baseline:5.2f}x baseline" if baseline else ""
    print(f"{name:<44} median {median:8.3f} ms   p95 {p95:8.3f} ms   n={len(ms)}{ratio}")
    return median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    n = args.queries

    explainer = Explainer.load(random_weights=True)
    W = explainer.model.transformer.wte.weight.detach()
    print(f"token embedding {tuple(W.shape)} float32, torch {torch.__version__}, {torch.get_num_threads()} threads")

    start = time.perf_counter()
    space = EmbeddingSpace.of(explainer.model, explainer.tokenizer)
    print(f"{'build (normalise W_E once)':<44} {(time.perf_counter() - start) * 1000:8.1f} ms, once per model")

    generator = torch.Generator().manual_seed(0)
    ids = torch.randperm(W.shape[0], generator=generator)[: 3 * n].tolist()
    vectors = [W[i].clone() for i in ids[:n]]
    for v in vectors[:10]:  # warm-up
        torch.mv(W, v)
        space.nearest(v, 10, [0])

    # Baseline and neighbour queries interleaved, so that both see the same machine load.
    base_ms, query_ms = [], []
    with torch.inference_mode():
        for v, i in zip(vectors, ids[:n]):
            base_ms += timed(lambda: torch.mv(W, v), [()])
            query_ms += timed(space.neighbours_of_token, [(i, 10)])
        baseline = summary("baseline: one plain matvec W_E @ v", base_ms)
        summary("naive cosine (re-normalises W_E each time)",
                timed(lambda v: torch.topk(torch.nn.functional.cosine_similarity(W, v[None], dim=-1), 11),
                      [(v,) for v in vectors[: max(10, n // 5)]]), baseline)
    results = {}
    results["neighbours"] = summary("neighbour query, uncached (token id, k=10)", query_ms, baseline)
    words = [explainer.tokenizer.label(i) for i in space.sample_ids()]
    triples = [(f"{words[i]} - {words[i + 1]} + {words[i + 2]}", 10) for i in range(0, min(3 * n, len(words) - 3), 3)]
    results["arithmetic"] = summary("arithmetic a - b + c, uncached (k=10)", timed(space.arithmetic, triples[:n]), baseline)
    results["cached"] = summary("neighbour query, cached repeat", timed(space.neighbours_of_token, [(i, 10) for i in ids[:n]]), baseline)
    summary("dot product and cosine of two words",
            timed(lambda a, b: space.compare(space.term(a), space.term(b)), [(words[i], words[i + 1]) for i in range(n)]), baseline)
    prompt = explainer.tokenizer.encode("The quick brown fox jumps over the lazy dog because it was tired of running")
    summary("3D PCA map (1,000 sample + prompt), uncached",
            timed(lambda i: space.map(prompt + [i]), [(i,) for i in ids[:10]]), baseline)

    # The same query through the API (in-process ASGI client: routing, validation, JSON).
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.serving.settings import Settings

    with TestClient(create_app(Settings(random_weights=True), explainer=explainer)) as client:
        def http(token_id: int) -> None:
            assert client.get("/api/embedding-space/neighbours", params={"token_id": token_id, "k": 10}).status_code == 200
        results["http"] = summary("GET /api/embedding-space/neighbours, uncached", timed(http, [(i,) for i in ids[n:2 * n]]), baseline)

    # For reference: the logit lens on the same model (not an embedding query; no target here).
    from model.logit_lens import logit_lens

    short_run = explainer.analyze("When Mary and John went to the store, John gave a drink to")
    long_run = explainer.analyze(" the" * 100)
    for run, positions, stream, label in (
        (short_run, None, "resid_post", f"logit lens, {len(short_run)} tokens x 13 rows"),
        (short_run, None, "both", f"logit lens, {len(short_run)} tokens x 25 rows (with resid_mid)"),
        (long_run, list(range(68, 100)), "resid_post", "logit lens, 32 of 100 tokens x 13 rows (page window)"),
        (long_run, [99], "resid_post", "logit lens, 1 position x 13 rows"),
    ):
        summary(label, timed(lambda: logit_lens(run, positions, 10, stream), [()] * 5), baseline)

    worst = max(results["neighbours"], results["arithmetic"], results["http"])
    verdict = "PASS" if worst <= TARGET_MS else "FAIL"
    print(f"{verdict}: uncached neighbour/arithmetic/API median {worst:.2f} ms (target <= {TARGET_MS:.0f} ms per query)")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
