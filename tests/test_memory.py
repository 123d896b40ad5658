"""One memory budget: runs, analyze bodies, logit-lens bodies and embedding-space answers all
count against EXPLAINER_CACHE_BYTES and are evicted least recently used first, whatever mix of
requests comes in. 1,500 distinct map requests (which once grew RSS by 1.1 GB, never released)
leave the accounting within the budget."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import httpx
import numpy as np
import torch
from fastapi.testclient import TestClient

from app.runs import tensors
from app.runs.cache import CachedRun
from app.main import create_app
from app.serving.settings import Settings
from app.runs.tensors import decode
from model.hooks import LAYER_HOOKS

from .waiting import settle, until

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
        assert len(app.state.lab.space.cache) == 0  # the model's own result cache is not a second, unbudgeted one
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


# -- Response bodies in the byte budget (app/serving/budget.py) --

LONG_IDS = [(i * 7919) % 50000 + 100 for i in range(200)]


def wire_bytes(tensor: torch.Tensor) -> int:
    """What an encoding of `tensor` holds at most, counted here: its float32 values and their base64."""
    return 4 * tensor.numel() + 4 * math.ceil(4 * tensor.numel() / 3)


def held_encodings(monkeypatch):
    """Encodings (app/tensors.body_pieces, in their worker threads) held before their first
    piece until `go` is set; `started` gets what each one holds, counted independently."""
    started: list[int] = []
    go = threading.Event()
    real = tensors.body_pieces

    def held(head, found, dtype):
        started.append(sum(wire_bytes(t) for t in found.values()))
        go.wait(60)
        yield from real(head, found, dtype)

    monkeypatch.setattr(tensors, "body_pieces", held)
    return started, go


def test_concurrent_big_encodings_stay_within_the_budget(explainer, checkpoint_dir, hf_eager, monkeypatch):
    """Six layer requests of a 200-token run at once, each holding ~6 MB while encoded, under a
    16 MB budget: the encodings running at once hold no more than the budget, and the room
    reserved covers what they hold (counted here from the tensors themselves)."""
    started, go = held_encodings(monkeypatch)
    reference = explainer.analyze_ids(LONG_IDS, keep=["*"])
    with torch.no_grad():
        attentions = hf_eager(torch.tensor([LONG_IDS]), output_attentions=True).attentions
    budget_bytes = 16 << 20

    async def scenario():
        application = create_app(Settings(model=checkpoint_dir, cache_bytes=budget_bytes), explainer=explainer)
        async with application.router.lifespan_context(application):
            budget, cache = application.state.budget, application.state.cache
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=120) as client:
                run_id = (await client.post("/api/analyze", json={"ids": LONG_IDS})).json()["run_id"]
                asks = [client.get(f"/api/runs/{run_id}/layers/{i % 2}", headers={"Accept-Encoding": "gzip" if i % 3 else "identity"})
                        for i in range(6)]
                requests = [asyncio.create_task(ask) for ask in asks]
                await until(lambda: len(started) + budget.waiting == 6)  # each encoding, or waiting for room
                held = {"encodings": len(started), "bytes": sum(started), "reserved": budget.reserved,
                        "cache": accounted(cache), "in_flight": cache.in_flight}
                go.set()
                answers = await asyncio.gather(*requests)
            after = (budget.reserved, budget.waiting, cache.in_flight)
        return held, answers, after

    held, answers, after = asyncio.run(scenario())
    print(f"while held: {held}; every encoding: {started}")
    assert 2 <= held["encodings"] < 6 and sum(started) > budget_bytes  # together they would not fit
    assert held["bytes"] <= held["reserved"] <= budget_bytes  # the room covers them, within the budget
    assert held["cache"] + held["in_flight"] <= budget_bytes and held["in_flight"] == held["reserved"]
    assert after == (0, 0, 0)  # every room given back once its answer was sent
    for i, answer in enumerate(answers):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert set(body["tensors"]) == {f"blocks.{i % 2}.{s}" for s in LAYER_HOOKS}
        for name, wire in body["tensors"].items():
            assert np.array_equal(decode(wire), reference[name].numpy()), name
        np.testing.assert_allclose(decode(body["tensors"][f"blocks.{i % 2}.attn.hook_pattern"]), attentions[i % 2][0].numpy(),
                                   atol=1e-6)


def test_a_body_larger_than_the_budget_still_answers_alone(explainer, checkpoint_dir, monkeypatch):
    started, go = held_encodings(monkeypatch)
    reference = explainer.analyze_ids(LONG_IDS, keep=["*"])
    budget_bytes = 1 << 20  # a layer of 200 tokens holds ~6 MB

    async def scenario():
        application = create_app(Settings(model=checkpoint_dir, cache_bytes=budget_bytes), explainer=explainer)
        async with application.router.lifespan_context(application):
            budget = application.state.budget
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=120) as client:
                run_id = (await client.post("/api/analyze", json={"ids": LONG_IDS})).json()["run_id"]
                requests = [asyncio.create_task(client.get(f"/api/runs/{run_id}/layers/1")) for _ in range(2)]
                await until(lambda: len(started) + budget.waiting == 2)
                held = (len(started), budget.reserved, budget.waiting)
                go.set()
                answers = await asyncio.gather(*requests)
            return held, answers, budget.reserved

    held, answers, after = asyncio.run(scenario())
    assert started[0] > budget_bytes and held == (1, budget_bytes, 1)  # one at a time, each with the whole budget
    assert after == 0
    for answer in answers:
        assert answer.status_code == 200
        for name, wire in answer.json()["tensors"].items():
            assert np.array_equal(decode(wire), reference[name].numpy()), name


def test_no_room_within_the_time_limit_is_503_busy(explainer, checkpoint_dir):
    async def scenario():
        application = create_app(Settings(model=checkpoint_dir, request_timeout_s=0.5), explainer=explainer)
        async with application.router.lifespan_context(application):
            budget = application.state.budget
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=60) as client:
                run_id = (await client.post("/api/analyze", json={"text": "The budget is full"})).json()["run_id"]
                everything = await budget.reserve(budget.max_bytes)
                refused = await client.get(f"/api/runs/{run_id}/embeddings")
                state = (budget.reserved, budget.waiting)
                everything.release()
                served = await client.get(f"/api/runs/{run_id}/embeddings")
            return refused, state, served, budget.reserved

    refused, state, served, after = asyncio.run(scenario())
    assert refused.status_code == 503 and refused.json()["code"] == "busy" and int(refused.headers["Retry-After"]) > 0
    assert state[1] == 0  # the request that gave up left the line
    assert served.status_code == 200 and len(served.json()["tensors"]) == 3 and after == 0


def asking(budget, order: list):
    """ask(who, nbytes): a reservation in `budget` as client `who`, noted in `order` once granted."""
    from app.serving.clients import client

    async def ask(who: str, nbytes: int):
        client.set(who)
        reservation = await budget.reserve(nbytes)
        order.append((who, nbytes))
        return reservation

    return ask


def test_room_goes_to_the_clients_in_turn():
    """A client with a queue of big requests does not starve another's small one: the room
    freed goes to the client served longest ago; and a turn that does not fit holds the line."""
    from app.serving.budget import ByteBudget

    async def scenario():
        budget = ByteBudget(10, timeout_s=10)
        order = []
        ask = asking(budget, order)
        first = await ask("flood", 10)
        tasks = [asyncio.create_task(ask("flood", 10)) for _ in range(3)] + [asyncio.create_task(ask("student", 1))]
        await until(lambda: budget.waiting == 4)
        first.release()
        await until(lambda: len(order) == 2)
        assert order[1] == ("student", 1) and budget.reserved == 1
        await settle()
        assert len(order) == 2 and budget.waiting == 3  # the flood's next needs all 10: it waits for the student's 1
        done = [await t for t in tasks[3:]]
        done[0].release()
        for task in tasks[:3]:
            (await task).release()
        return order, budget.reserved, budget.peak

    order, reserved, peak = asyncio.run(scenario())
    assert order == [("flood", 10), ("student", 1), ("flood", 10), ("flood", 10), ("flood", 10)]
    assert reserved == 0 and peak == 10


def test_a_client_holding_room_does_not_hold_up_another():
    """A client with room reserved (a big body waiting for the forward queue, say) whose next
    request does not fit waits for its own room to come back, while another's request that
    fits is served at once."""
    from app.serving.budget import ByteBudget

    async def scenario():
        budget = ByteBudget(10, timeout_s=10)
        order = []
        ask = asking(budget, order)
        held = await ask("flood", 6)
        second = asyncio.create_task(ask("flood", 6))
        await until(lambda: budget.waiting == 1)
        student = asyncio.create_task(ask("student", 3))
        await until(lambda: len(order) == 2, timeout_s=5)
        assert order[1] == ("student", 3) and budget.reserved == 9 and budget.waiting == 1
        held.release()  # the flood's own room back: its second request fits beside the student's
        (await second).release()
        (await student).release()
        return order, budget.reserved, budget.peak

    order, reserved, peak = asyncio.run(scenario())
    assert order == [("flood", 6), ("student", 3), ("flood", 6)] and reserved == 0 and peak == 9
