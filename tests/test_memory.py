"""One memory budget: runs, analyze bodies, logit-lens bodies and embedding-space answers all
count against EXPLAINER_CACHE_BYTES and are evicted least recently used first, whatever mix of
requests comes in. 1,500 distinct map requests (which once grew RSS by 1.1 GB, never released)
leave the accounting within the budget."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from app.cache import CachedRun
from app.main import create_app
from app.settings import Settings

BUDGET = 400_000


def accounted(cache) -> int:
    """The bytes the cache's items really hold, counted independently of its own tally."""
    return sum(item.nbytes if isinstance(item, CachedRun) else len(item) for item in cache._items.values())


def test_every_cache_counts_against_one_budget(explainer, checkpoint_dir):
    app = create_app(Settings(model=checkpoint_dir, cache_bytes=BUDGET), explainer=explainer)
    with TestClient(app) as client:
        cache = app.state.cache
        first = client.post("/api/analyze", json={"text": "The first prompt of the lesson"}).json()["run_id"]
        idle = client.post("/api/analyze", json={"text": "A prompt nobody reads again"}).json()["run_id"]
        words = ["cat", "dog", "king", "queen", "apple", "river", "music", "green", "seven", "house"]
        start = time.monotonic()
        peak = 0
        for i in range(1500):
            chosen = [words[i % 10], words[(i // 10) % 10], words[(i // 100) % 10 + 0]] + ([f"w{i}"] if i % 3 else [])
            response = client.get(f"/api/runs/{first}/embedding-space/map", params={"word": chosen})
            assert response.status_code == 200, response.text
            if i % 100 == 0:
                client.get(f"/api/runs/{first}/logit-lens", params={"k": 1 + i % 50})
                client.get("/api/embedding-space/neighbours", params={"word": words[i % 10], "k": 1 + i % 40})
            peak = max(peak, cache.stats["bytes"])
            assert cache.stats["bytes"] == accounted(cache)
        stats = cache.stats
        print(f"1,500 maps in {time.monotonic() - start:.1f} s; peak {peak:,} bytes of {BUDGET:,}; {stats}")
        assert peak <= BUDGET and stats["answers"] > 0
        assert len(app.state.space.cache) == 0  # the model's own result cache is not a second, unbudgeted one
        # The answers pushed the idle run out of the shared budget; it is recomputed when asked for.
        assert cache.get(idle) is None
        assert client.get(f"/api/runs/{idle}/embeddings").status_code == 200


def test_answers_about_a_run_leave_with_it(explainer, checkpoint_dir):
    """Memory levels off at the run limit: a run's lens and map bodies do not outlive it."""
    app = create_app(Settings(model=checkpoint_dir, cache_entries=2), explainer=explainer)
    with TestClient(app) as client:
        cache = app.state.cache
        ids = [client.post("/api/analyze", json={"text": f"Prompt number {i} of the day"}).json()["run_id"]
               for i in range(2)]
        for run_id in ids:
            assert client.get(f"/api/runs/{run_id}/logit-lens", params={"k": 3}).status_code == 200
            assert client.get(f"/api/runs/{run_id}/embedding-space/map", params={"word": "cat"}).status_code == 200
        assert client.get("/api/embedding-space/neighbours", params={"word": "cat"}).status_code == 200
        assert cache.stats["entries"] == 2 and cache.stats["answers"] == 5
        third = client.post("/api/analyze", json={"text": "A third prompt pushes the first out"}).json()["run_id"]
        assert cache.get(ids[0]) is None
        assert cache.stats["answers"] == 3  # the first run's lens and map went with it; neighbours stay
        assert not any(ids[0] in key[1] for key in cache._items if key[0] == "answer")
        assert cache.stats["bytes"] == accounted(cache)
        # Asked again, the evicted run is recomputed and its lens is the same as before.
        again = client.get(f"/api/runs/{ids[0]}/logit-lens", params={"k": 3})
        assert again.status_code == 200 and third != ids[0]
        assert cache.stats["bytes"] == accounted(cache)
