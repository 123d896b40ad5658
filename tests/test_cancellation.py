"""Work nobody waits for stops: long work checks a token between chunks, the limiter cancels
the token when its caller leaves or its time runs out, shared work stops only when its last
waiter leaves, and a request whose client disconnects while queued never runs."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
import torch

from app.serving.concurrency import Busy, Coalescer, ForwardLimiter
from app.main import create_app
from app.serving.settings import Settings
from model import engine
from model.cancellation import Cancelled, CancelToken
from model.logit_lens import CHUNK, logit_lens

from .waiting import settle, until


class CancelAt(CancelToken):
    """Cancels itself at its n-th check, and counts the checks."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.checks = n, 0

    def check(self, work: float = 0.0) -> None:
        self.checks += 1
        if self.checks == self.n:
            self.cancel()
        super().check(work)


def test_the_forward_pass_stops_between_blocks(explainer):
    token, recorded = CancelAt(2), []
    ids = explainer.tokenize("The cat sat on the mat")
    with pytest.raises(Cancelled):
        engine.forward(explainer.model, torch.tensor(ids), lambda name, t: recorded.append(name), token)
    assert "blocks.0.hook_resid_post" in recorded and not any(n.startswith("blocks.1.") for n in recorded)
    assert "logits" not in recorded


def test_the_logit_lens_stops_between_rows_and_chunks(explainer):
    run = explainer.analyze(" one" * 64)
    # 64 positions x (1 + 2 x 2) rows = 320 vectors: 3 chunks of at most 128
    rows = 1 + 2 * explainer.config.n_layer
    assert 64 * rows > 2 * CHUNK
    full = CancelAt(10**6)
    logit_lens(run, None, 3, "both", full)
    assert full.checks == rows + 3  # before each row is read (a resid_mid row recomputes its block), each chunk
    token = CancelAt(rows + 2)
    with pytest.raises(Cancelled):
        logit_lens(run, None, 3, "both", token)
    assert token.checks == rows + 2  # stopped before the second chunk's unembedding
    token = CancelAt(3)
    with pytest.raises(Cancelled):
        logit_lens(run, None, 3, "both", token)
    assert token.checks == 3  # or before the third row: its block not recomputed


def _long_work(chunks: list[int], started: threading.Event, cancel: CancelToken) -> str:
    started.set()
    for i in range(2000):
        cancel.check()
        chunks.append(i)
        threading.Event().wait(0.005)
    return "finished"


async def _start_long_work(limiter: ForwardLimiter) -> tuple[asyncio.Task, list[int]]:
    """Long cancellable work, running in the limiter's only slot."""
    chunks, started = [], threading.Event()
    task = asyncio.create_task(limiter.run(_long_work, chunks, started, cancellable=True))
    await asyncio.get_running_loop().run_in_executor(None, started.wait)
    return task, chunks


def test_a_caller_leaving_stops_its_running_work_and_frees_the_slot():
    async def scenario():
        limiter = ForwardLimiter(max_concurrent=1, max_waiting=4, timeout_s=60)
        first, chunks = await _start_long_work(limiter)
        second = asyncio.create_task(limiter.run(lambda: "second"))
        await until(lambda: limiter.waiting == 1, "the second request is in line")
        first.cancel()
        assert await second == "second"  # the slot came free because the work stopped
        assert len(chunks) < 2000
        limiter.shutdown()

    asyncio.run(scenario())


@pytest.mark.parametrize("how, code", [("time limit", "timeout"), ("server stopping", "stopping")])
def test_work_past_its_time_limit_or_at_shutdown_is_stopped_not_abandoned(how, code):
    async def scenario():
        limiter = ForwardLimiter(max_concurrent=1, max_waiting=4, timeout_s=0.3 if how == "time limit" else 60)
        task, chunks = await _start_long_work(limiter)
        if how == "server stopping":
            limiter.close()
        with pytest.raises(Busy) as busy:
            await task
        assert busy.value.code == code
        await until(lambda: limiter.running == 0, "the work itself ended")
        assert len(chunks) < 2000  # stopped, not run to its end
        limiter.shutdown()

    asyncio.run(scenario())


def test_shared_work_stops_only_when_its_last_waiter_leaves():
    async def scenario():
        coalescer, started, release = Coalescer(), asyncio.Event(), asyncio.Event()
        runs = []

        async def work():
            runs.append("started")
            started.set()
            try:
                await release.wait()
                return "answer"
            except asyncio.CancelledError:
                runs.append("cancelled")
                raise

        a = asyncio.create_task(coalescer.run("key", work))
        b = asyncio.create_task(coalescer.run("key", work))
        await started.wait()
        a.cancel()
        await settle()
        assert runs == ["started"]  # b still waits: the work goes on
        release.set()
        assert await b == "answer"

        started.clear()
        release.clear()
        c = asyncio.create_task(coalescer.run("key2", work))
        d = asyncio.create_task(coalescer.run("key2", work))
        await started.wait()
        c.cancel()
        d.cancel()
        await until(lambda: runs[-1] == "cancelled", "the work itself was cancelled")
        assert runs[-1] == "cancelled"  # nobody left: the work itself was cancelled

    asyncio.run(scenario())


def test_a_request_whose_client_left_while_queued_never_runs(explainer, checkpoint_dir, monkeypatch):
    """Through the whole app (middleware, router, limiter): the only forward slot is held; a
    logit-lens request queues behind it; its client disconnects; the lens is never computed."""
    import app.runs.lens as lens_router

    computed = []
    real = lens_router.lens_body
    monkeypatch.setattr(lens_router, "lens_body", lambda *a, **k: computed.append(1) or real(*a, **k))

    async def scenario():
        application = create_app(Settings(model=checkpoint_dir, max_concurrent=1), explainer=explainer)  # one slot, held below
        async with application.router.lifespan_context(application):
            state = application.state
            from app.runs.analysis import analyze_and_cache
            entry = analyze_and_cache(explainer, state.cache, explainer.tokenize("The cat sat on the mat"))
            run_id = entry.run_id
            hold = threading.Event()
            holder = asyncio.create_task(state.limiter.run(hold.wait, 30))
            await until(lambda: state.limiter.running == 1, "the holder has the slot")

            disconnect = asyncio.Event()
            sent = []

            async def receive():
                if not sent:
                    sent.append("body")
                    return {"type": "http.request", "body": b"", "more_body": False}
                await disconnect.wait()
                return {"type": "http.disconnect"}

            responses = []

            async def send(message):
                responses.append(message)

            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                     "scheme": "http", "path": f"/api/runs/{run_id}/logit-lens", "raw_path": b"",
                     "query_string": b"k=3", "root_path": "", "headers": [(b"host", b"127.0.0.1")],
                     "client": ("127.0.0.9", 5000), "server": ("127.0.0.1", 80)}
            request = asyncio.create_task(application(scope, receive, send))
            await until(lambda: state.limiter.waiting == 1, "queued behind the holder")
            disconnect.set()
            await asyncio.wait_for(request, 5)
            assert state.limiter.waiting == 0  # dropped from the queue at once...
            hold.set()
            await holder
            # The slot is free and nobody is in line: had the request still been queued, it would run now.
            await until(lambda: state.limiter.running == 0 and state.limiter.waiting == 0)
            await settle()
            assert computed == [] and not responses  # ...and never run, and nothing answered

            # The same request from a client that stays is answered.
            sent.clear()
            disconnect.clear()
            await asyncio.wait_for(application(scope, receive, send), 30)
            assert computed == [1] and responses[0]["status"] == 200
            assert json.loads(b"".join(m.get("body", b"") for m in responses[1:]))["k"] == 3

    asyncio.run(scenario())


def test_identical_expensive_requests_in_flight_are_computed_once(explainer, checkpoint_dir, monkeypatch):
    import httpx

    import app.runs.embedding_space as space_router
    import app.runs.lens as lens_router

    computed = {"lens": 0, "map": 0}
    real_lens, real_map = lens_router.lens_body, space_router.embedding_map

    def counting_lens(*args, **kwargs):
        computed["lens"] += 1
        return real_lens(*args, **kwargs)

    def counting_map(*args, **kwargs):
        computed["map"] += 1
        return real_map(*args, **kwargs)

    monkeypatch.setattr(lens_router, "lens_body", counting_lens)
    monkeypatch.setattr(space_router, "embedding_map", counting_map)

    async def scenario():
        application = create_app(Settings(model=checkpoint_dir, max_concurrent=1), explainer=explainer)  # one slot, held below
        async with application.router.lifespan_context(application):
            state = application.state
            from app.runs.analysis import analyze_and_cache
            run_id = analyze_and_cache(explainer, state.cache, explainer.tokenize("The cat sat on the mat")).run_id
            hold = threading.Event()
            holder = asyncio.create_task(state.limiter.run(hold.wait, 30))
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                urls = [f"/api/runs/{run_id}/logit-lens?k=4&stream=both"] * 3 + \
                       [f"/api/runs/{run_id}/embedding-space/map?word=king"] * 3
                requests = [asyncio.create_task(client.get(url)) for url in urls]
                # All six in the handlers, two of them queued for the slot.
                await until(lambda: state.limiter.waiting == 2, "two requests queued for the slot")
                hold.set()
                await holder
                answers = await asyncio.gather(*requests)
            assert [a.status_code for a in answers] == [200] * 6
            assert answers[0].content == answers[1].content == answers[2].content
            assert answers[3].content == answers[4].content == answers[5].content
            assert computed == {"lens": 1, "map": 1}

    asyncio.run(scenario())
