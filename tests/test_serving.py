"""The run cache and the forward limiter: bounded memory, bounded queue, time limits, and a
health check that stays fast while the model is busy."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import httpx
import pytest
from fastapi.testclient import TestClient

from app.runs.cache import CachedRun, RunCache, pack_ids, unpack_ids
from app.serving.concurrency import Busy, ForwardLimiter
from app.main import create_app
from app.serving.settings import Settings

from .threaded_server import threaded_server
from .test_metrics import scrape, value
from .waiting import until, wait_until


def metric(text: str, sample_name: str) -> float:
    """One unlabelled sample of a /metrics page."""
    return value(scrape(text), sample_name)


class _FakeRun:
    """Only the size and the ids matter to the cache."""

    def __init__(self, nbytes: int, ids: list[int]):
        self.nbytes = nbytes
        self.ids = ids


def _ids(text: str) -> list[int]:
    return [ord(c) for c in text]


def _entry(cache: RunCache, text: str, nbytes: int) -> CachedRun:
    return CachedRun(run_id=cache.id_for("model", _ids(text)), run=_FakeRun(nbytes, _ids(text)), bodies={})


def _ids_of(cache: RunCache, run_id: str) -> list[int] | None:
    recipe = cache.recipe_of(run_id)
    return None if recipe is None else unpack_ids(recipe[0])


def test_cache_evicts_least_recently_used_by_entries():
    cache = RunCache(max_entries=2, max_bytes=10**9)
    a, b, c = (_entry(cache, t, 10) for t in "abc")
    cache.put(a)
    cache.put(b)
    assert cache.get(a.run_id) is a  # a is now more recent than b
    cache.put(c)
    assert cache.get(b.run_id) is None and _ids_of(cache, b.run_id) == _ids("b")  # evicted, but remembered
    assert cache.get(a.run_id) is a and cache.get(c.run_id) is c


def test_cache_evicts_by_bytes():
    cache = RunCache(max_entries=100, max_bytes=250)
    entries = [_entry(cache, str(i), 100) for i in range(3)]
    for entry in entries:
        cache.put(entry)
    assert cache.stats["bytes"] <= 250 and cache.stats["entries"] == 2
    assert cache.get(entries[0].run_id) is None


def test_cache_keeps_a_single_oversized_run():
    cache = RunCache(max_entries=4, max_bytes=50)
    big = _entry(cache, "big", 100)
    cache.put(big)
    assert cache.get(big.run_id) is big
    cache.put(_entry(cache, "next", 10))
    assert cache.get(big.run_id) is None


def test_run_ids_come_from_the_content_and_are_url_safe():
    ids = {RunCache.id_for("model", [i, 7]) for i in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 22 and i.replace("-", "").replace("_", "").isalnum() for i in ids)
    assert RunCache.id_for("model", [464, 3797]) == RunCache.id_for("model", (464, 3797))
    assert RunCache.id_for("model", [464, 3797]) != RunCache.id_for("other model", [464, 3797])
    assert RunCache.id_for("model", [46, 43797]) != RunCache.id_for("model", [464, 3797])  # ids, not their digits run together
    assert RunCache.id_for("model", [1]) != RunCache.id_for("model", [1], '[{"hook":"x"}]')


def test_packed_ids_round_trip():
    ids = [0, 1, 50256, 2**32 - 1, 464]
    assert unpack_ids(pack_ids(ids)) == ids and len(pack_ids(ids)) == 4 * len(ids)


def test_the_index_of_texts_is_bounded_in_bytes():
    cache = RunCache(max_entries=1, max_bytes=10**9, index_bytes=2000)
    entries = [_entry(cache, f"prompt number {i} " * 5, 1) for i in range(100)]
    for entry in entries:
        cache.put(entry)
    assert _ids_of(cache, entries[-1].run_id) == entries[-1].run.ids
    assert _ids_of(cache, entries[0].run_id) is None  # forgotten: an id never answered again
    assert 1 < cache.stats["known_runs"] < 100


def test_limiter_bounds_running_and_waiting():
    async def scenario():
        limiter = ForwardLimiter(max_concurrent=1, max_waiting=1, timeout_s=5)
        release = threading.Event()
        first = asyncio.create_task(limiter.run(release.wait, 5))
        await until(lambda: limiter.running == 1)
        second = asyncio.create_task(limiter.run(lambda: "second"))
        await until(lambda: limiter.waiting == 1)
        assert limiter.running == 1 and limiter.waiting == 1
        with pytest.raises(Busy) as busy:
            await limiter.run(lambda: "third")
        assert busy.value.status == 503 and busy.value.code == "busy" and busy.value.headers["Retry-After"]
        release.set()
        assert await first is True
        assert await second == "second"
        limiter.shutdown()

    asyncio.run(scenario())


def test_limiter_time_limit_answers_503_and_frees_the_slot_when_work_ends():
    async def scenario():
        limiter = ForwardLimiter(max_concurrent=1, max_waiting=4, timeout_s=0.2)
        work_ends = threading.Event()  # work that runs past the limit until the test lets it end
        with pytest.raises(Busy, match="longer than"):
            await limiter.run(work_ends.wait, 30)
        assert limiter.running == 1  # the thread still runs: the bound holds
        work_ends.set()
        await until(lambda: limiter.running == 0, "the slot is freed when the work ends")
        assert await limiter.run(lambda: 42) == 42
        limiter.shutdown()

    asyncio.run(scenario())


@contextlib.contextmanager
def queue_full(app, client):
    """Inside the block, the app's queue is full: every slot running, max_waiting waiting."""
    limiter, settings = app.state.limiter, app.state.settings
    full = (settings.max_concurrent, settings.max_waiting)
    release = threading.Event()
    blockers = [threading.Thread(target=lambda: client.portal.call(limiter.run, release.wait, 10)) for _ in range(sum(full))]
    for n, blocker in enumerate(blockers, 1):
        blocker.start()
        wait_until(lambda: limiter.running + limiter.waiting == n, "the blocker is in line")
    try:
        assert (limiter.running, limiter.waiting) == full
        yield
    finally:
        release.set()
        for blocker in blockers:
            blocker.join()


def test_busy_server_answers_503_and_healthz_stays_fast(explainer, checkpoint_dir):
    app = create_app(Settings(model=checkpoint_dir, max_waiting=1), explainer=explainer)
    with TestClient(app) as client:
        with queue_full(app, client):
            response = client.post("/api/analyze", json={"text": "a brand new prompt"})
            assert response.status_code == 503
            assert int(response.headers["Retry-After"]) > 0
            assert "busy" in response.json()["detail"]
            # /healthz needs no forward pass: answered while the queue is full (its speed then is
            # bench/bench_waits.py's, not asserted here).
            health = client.get("/healthz")
            assert health.status_code == 200
            assert health.json()["forward_passes"] == {"running": app.state.settings.max_concurrent, "waiting": 1}
        assert client.post("/api/analyze", json={"text": "a brand new prompt"}).status_code == 200


def test_generation_stops_when_the_client_disconnects(explainer, checkpoint_dir):
    with threaded_server(create_app(Settings(model=checkpoint_dir), explainer=explainer)) as server:
        url = server.url
        with httpx.Client(timeout=30) as http:
            request = {"text": "Once upon a time", "max_new_tokens": 256, "temperature": 1.0, "seed": 1}
            with http.stream("POST", f"{url}/api/generate", json=request) as response:
                assert response.status_code == 200
                seen = 0
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        seen += 1
                        if seen == 2:
                            break  # leave mid-stream
            # Had generation gone on, it would have finished all 256 tokens and issued the run
            # of the whole sequence, which puts its recipe in the cache's index. It ends instead:
            # no generation is active any more, after fewer than 256 decode steps.
            wait_until(lambda: metric(http.get(f"{url}/metrics").text, "explainer_active_generations") == 0,
                       "the generation never stopped", every_s=0.05)
            assert metric(http.get(f"{url}/metrics").text, "explainer_decode_batch_size_count") < 255
            health = http.get(f"{url}/healthz").json()
            assert health["forward_passes"] == {"running": 0, "waiting": 0}
            assert health["cache"]["entries"] == 0 and health["cache"]["known_runs"] == 0

            # The same generation left to run does finish and issue its run, computed only when asked for.
            request["max_new_tokens"] = 8
            events = http.post(f"{url}/api/generate", json=request).text
            assert "event: done" in events
            health = http.get(f"{url}/healthz").json()["cache"]
            assert health["known_runs"] == 1 and health["entries"] == 0


def test_identical_concurrent_analyses_share_one_run(explainer, checkpoint_dir):
    """A class pressing Analyze on the same example at once: one forward pass, one run."""
    from concurrent.futures import ThreadPoolExecutor

    with threaded_server(create_app(Settings(model=checkpoint_dir), explainer=explainer)) as server:
        url = server.url
        text = "Everybody analyzes this sentence at the same moment " * 20

        def analyze(_):
            with httpx.Client(timeout=60) as http:
                response = http.post(f"{url}/api/analyze", json={"text": text})
                assert response.status_code == 200, response.text
                return response.json()["run_id"]

        with ThreadPoolExecutor(12) as pool:
            run_ids = set(pool.map(analyze, range(12)))
        assert len(run_ids) == 1
        assert httpx.get(f"{url}/healthz").json()["cache"]["entries"] == 1


def test_generate_with_a_full_queue_answers_503_before_streaming(explainer, checkpoint_dir):
    """A refused generation must say so with a status the page can wait out (503 + Retry-After),
    not with a 200 stream whose only event is an error."""
    app = create_app(Settings(model=checkpoint_dir, max_waiting=1), explainer=explainer)
    with TestClient(app) as client:
        with queue_full(app, client):
            response = client.post("/api/generate", json={"text": "Once upon a time", "max_new_tokens": 2, "temperature": 0})
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) > 0


@pytest.mark.parametrize("decode_batch", [16, 1])
def test_a_generation_under_way_is_not_cut_off_when_the_queue_fills(explainer, checkpoint_dir, monkeypatch, decode_batch):
    """Once a generation streams (its 200 is sent), other students filling the queue must not
    end it with an error: its later steps and its final analysis wait their turn. Batched
    (the steps are the batcher's turns) and alone (each step its own turn)."""
    from app.runs import generation as sampling
    from model.batching import DecodeBatch

    app = create_app(Settings(model=checkpoint_dir, max_waiting=1, decode_batch=decode_batch), explainer=explainer)
    full = lambda: setattr(app.state.limiter, "waiting", app.state.limiter.waiting + 1)  # noqa: E731 - a student queued behind the first token
    if decode_batch == 1:
        real_steps = sampling.generate_steps

        def steps_then_a_full_queue(*args, **kwargs):
            for step in real_steps(*args, **kwargs):
                if step.step == 0:
                    full()
                yield step

        monkeypatch.setattr(sampling, "generate_steps", steps_then_a_full_queue)
    else:
        real_prefill = DecodeBatch.prefill

        def prefill_then_a_full_queue(self, request):
            answer = real_prefill(self, request)
            full()
            return answer

        monkeypatch.setattr(DecodeBatch, "prefill", prefill_then_a_full_queue)
    with TestClient(app) as client:
        try:
            response = client.post("/api/generate", json={"text": "Once upon a time", "max_new_tokens": 3, "temperature": 0})
        finally:
            app.state.limiter.waiting -= 1
        assert response.status_code == 200
        assert "event: error" not in response.text, response.text
        assert "event: done" in response.text
        assert sum(line.startswith("data:") for line in response.text.splitlines()) == 3 + 1
        assert client.get("/healthz").json()["forward_passes"] == {"running": 0, "waiting": 0}


class GatedJobs:
    """Forward passes that note when they start and then wait for their gate, each submitted as
    a given client: the order of service can be read off `started`."""

    def __init__(self, limiter: ForwardLimiter, names):
        self.limiter = limiter
        self.started: list[str] = []
        self.gates = {name: threading.Event() for name in names}

    def job(self, name: str) -> str:
        self.started.append(name)
        self.gates[name].wait(10)
        return name

    async def submit(self, who: str, name: str) -> str:
        from app.serving.concurrency import client

        client.set(who)
        return await self.limiter.run(self.job, name)

    async def queue(self, *requests: tuple[str, str]) -> list[asyncio.Task]:
        """Submit (client, name) pairs in this order, each once the one before is in line."""
        tasks = []
        for who, name in requests:
            tasks.append(asyncio.create_task(self.submit(who, name)))
            await until(lambda: self.limiter.running + self.limiter.waiting == len(tasks), f"{name} is in line")
        return tasks


def test_the_forward_queue_serves_clients_in_turn():
    """A flooder queues three requests, then another client one: the other client is served
    right after the flooder's running request, before the flooder's second starts. The order
    of service is checked, not a time."""
    async def scenario():
        limiter = ForwardLimiter(max_concurrent=1, max_waiting=16, timeout_s=30)
        jobs = GatedJobs(limiter, ("A1", "A2", "A3", "B1"))
        tasks = await jobs.queue(("10.0.0.1", "A1"), ("10.0.0.1", "A2"), ("10.0.0.1", "A3"), ("10.0.0.2", "B1"))
        for n, name in enumerate(("A1", "B1", "A2", "A3")):
            jobs.gates[name].set()
            await until(lambda: len(jobs.started) >= min(n + 2, 4), "the next job starts")
        assert await asyncio.gather(*tasks) == ["A1", "A2", "A3", "B1"]
        limiter.shutdown()
        return jobs.started

    assert asyncio.run(scenario()) == ["A1", "B1", "A2", "A3"]


def test_a_free_slot_goes_to_a_client_that_holds_none_first():
    """Two slots: A1 (10.0.0.1) runs on, C1 (10.0.0.3) runs and ends. A2 queued before C2, and A
    was served before C, yet the free slot goes to C2: A holds a slot already. The order of
    service is checked, not a time."""
    async def scenario():
        limiter = ForwardLimiter(max_concurrent=2, max_waiting=16, timeout_s=30)
        jobs = GatedJobs(limiter, ("A1", "C1", "A2", "C2"))
        tasks = await jobs.queue(("10.0.0.1", "A1"), ("10.0.0.3", "C1"), ("10.0.0.1", "A2"), ("10.0.0.3", "C2"))
        jobs.gates["C1"].set()
        await until(lambda: len(jobs.started) == 3, "C1's slot is taken again")
        started = list(jobs.started)
        for gate in jobs.gates.values():
            gate.set()
        await asyncio.gather(*tasks)
        limiter.shutdown()
        return started

    assert asyncio.run(scenario()) == ["A1", "C1", "C2"]


@pytest.mark.parametrize("weight, order", [
    (2, ["A1", "D1", "C1", "D2", "B1", "B2"]),  # two generations: every other turn
    (1, ["A1", "C1", "D1", "B1", "D2", "B2"]),  # one: a turn per round of the waiting clients
])
def test_the_batched_decode_step_gets_a_turn_per_generation_it_advances(weight, order):
    """With analyses of three students and two decode steps waiting, the decode step counts as
    the generations it advances: with two, it goes every other turn (no more: an analysis waits
    behind at most one step); with one, once per round of the waiting clients, like a student.
    The order of service is checked, not a time."""
    from app.serving.concurrency import DECODE

    async def scenario():
        limiter = ForwardLimiter(max_concurrent=1, max_waiting=16, timeout_s=30)
        limiter.decode_weight(weight)
        names = ("A1", "C1", "B1", "D1", "D2", "B2")
        jobs = GatedJobs(limiter, names)
        tasks = await jobs.queue(("10.0.0.1", "A1"), ("10.0.0.3", "C1"), ("10.0.0.2", "B1"), (DECODE, "D1"), (DECODE, "D2"),
                                 ("10.0.0.2", "B2"))
        for name in names:
            jobs.gates[name].set()
        await asyncio.gather(*tasks)
        limiter.shutdown()
        return jobs.started

    assert asyncio.run(scenario()) == order


def test_one_client_cannot_fill_the_whole_queue():
    from app.serving.concurrency import MAX_WAITING_PER_CLIENT, Busy, client

    async def scenario():
        limiter = ForwardLimiter(max_concurrent=1, max_waiting=16, timeout_s=30)
        release = threading.Event()
        client.set("10.0.0.1")
        running = asyncio.create_task(limiter.run(release.wait, 10))
        await until(lambda: limiter.running == 1)
        queued = [asyncio.create_task(limiter.run(lambda: "queued")) for _ in range(MAX_WAITING_PER_CLIENT)]
        await until(lambda: limiter.waiting == MAX_WAITING_PER_CLIENT)
        with pytest.raises(Busy, match="requests waiting"):
            await limiter.run(lambda: "one too many")
        client.set("10.0.0.2")
        other = asyncio.create_task(limiter.run(lambda: "other"))  # another client still gets in line
        await until(lambda: limiter.waiting == MAX_WAITING_PER_CLIENT + 1)
        release.set()
        results = await asyncio.gather(running, *queued, other)
        limiter.shutdown()
        return results

    assert asyncio.run(scenario())[-1] == "other"


def test_passes_running_at_once_share_the_cores():
    """Torch's threads follow the number of passes running: all the budget for one, half each for
    two. A thread's count is its own (OpenMP's per-thread setting), so the pass already running
    takes its new share at its next checkpoint, and its whole share back after the other leaves."""
    import threading

    import torch

    from model import threads
    from model.threads import ThreadShare

    before = torch.get_num_threads()
    try:
        share = ThreadShare(cores=4)
        seen: dict[str, int] = {}
        first_in, second_in, second_out = threading.Event(), threading.Event(), threading.Event()

        def first():
            with share.pass_running():
                seen["alone"] = torch.get_num_threads()
                first_in.set()
                assert second_in.wait(10)
                seen["first, second started"] = torch.get_num_threads()  # not yet: no checkpoint since
                threads.checkpoint()
                seen["first, at its checkpoint"] = torch.get_num_threads()
                assert second_out.wait(10)
                threads.checkpoint()
                seen["first, second gone"] = torch.get_num_threads()

        worker = threading.Thread(target=first)
        worker.start()
        assert first_in.wait(10)
        with share.pass_running():
            seen["second"] = torch.get_num_threads()
            second_in.set()
            wait_until(lambda: "first, at its checkpoint" in seen or not worker.is_alive(), "the first pass's checkpoint")
        second_out.set()
        worker.join(10)
        assert seen == {"alone": 4, "second": 2, "first, second started": 4, "first, at its checkpoint": 2,
                        "first, second gone": 4}
        assert share.running == 0
        threads.checkpoint()  # outside any pass: nothing changes
        assert torch.get_num_threads() == 2  # this thread's count, as its pass left it
    finally:
        torch.set_num_threads(before)
