"""The event loop only routes: tokenizing a prompt, encoding tensors, gzip and its reverse run
in worker threads, where a megabyte prompt or a 200 MB layer cannot stall every other request.
Each such function is wrapped to record whether it ran on the thread of the event loop."""

from __future__ import annotations

import asyncio
import gzip

import pytest
from fastapi.testclient import TestClient

import app.runs.responses
import app.runs.tensors
from app.main import create_app
from app.serving.settings import Settings

PROMPT = "The event loop must only route requests"


def on_the_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


@pytest.fixture
def calls(monkeypatch, explainer):
    seen: dict[str, list[bool]] = {}

    def watch(owner, name, label):
        real = getattr(owner, name)

        def wrapped(*args, **kwargs):
            seen.setdefault(label, []).append(on_the_loop())
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapped)

    watch(explainer, "tokenize", "tokenize")
    watch(app.runs.tensors, "encode", "encode")
    watch(app.runs.responses, "gzipped", "gzip")
    watch(gzip, "decompress", "gunzip")
    return seen


def test_heavy_steps_run_off_the_event_loop(explainer, checkpoint_dir, calls):
    with TestClient(create_app(Settings(model=checkpoint_dir), explainer=explainer)) as client:
        run_id = client.post("/api/analyze", json={"text": PROMPT}).json()["run_id"]
        identity = client.post("/api/analyze", json={"text": PROMPT}, headers={"Accept-Encoding": "identity"})
        assert identity.json()["run_id"] == run_id
        layer = client.get(f"/api/runs/{run_id}/layers/1", headers={"Accept-Encoding": "gzip"})
        assert layer.status_code == 200 and set(layer.json()["tensors"]) >= {"blocks.1.attn.hook_q"}
        assert client.get(f"/api/runs/{run_id}/logit-lens", params={"k": 20}).status_code == 200
        assert "event: done" in client.post("/api/generate", json={"text": PROMPT, "max_new_tokens": 2,
                                                                    "temperature": 0}).text
    assert set(calls) == {"tokenize", "encode", "gzip", "gunzip"}, calls
    assert {label: any(flags) for label, flags in calls.items()} == dict.fromkeys(calls, False)
