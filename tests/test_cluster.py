"""Scale-out: any replica answers any run id, and rooms are shared, through one Ray actor
(app/cluster.py). First the hook without Ray (two RunCaches sharing an index), then two real
replicas of the app under Ray Serve on this machine, told apart by their X-Replica header."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from app.runs import analysis
from app.runs.cache import RunCache, pack_ids
from app.serving.concurrency import Coalescer, ForwardLimiter
from app.errors import ApiError
from app.serving.settings import Settings
from app.runs.tensors import decode

from . import ci
from .live_server import free_port

TEXT = "The teacher opened the book and the class"
TRUSTED_PROXY = "127.0.0.2"  # the cluster fixture's EXPLAINER_TRUSTED_PROXIES
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ the hook, without Ray ----

class DictShared:
    """A shared recipe index in this process: what SharedRecipes does through the actor."""

    def __init__(self):
        self.recipes, self.lookups = {}, []

    def remember(self, run_id, recipe):
        self.recipes[run_id] = recipe

    async def lookup(self, run_id):
        self.lookups.append(run_id)
        return self.recipes.get(run_id)


def test_a_run_id_issued_by_one_cache_is_recomputed_by_another_through_the_shared_index(explainer):
    shared = DictShared()
    first, second = RunCache(8, 1 << 30), RunCache(8, 1 << 30)
    first.shared = second.shared = shared
    ids = explainer.tokenize(TEXT)
    entry, _ = analysis.analyze_into_cache(explainer, first, ids, include=False)
    assert shared.recipes == {entry.run_id: (pack_ids(ids), "")}

    async def resolve(run_id):
        return await analysis.resolve(run_id, explainer, second, ForwardLimiter(1, 8, 30), Coalescer())

    again = asyncio.run(resolve(entry.run_id))
    assert shared.lookups == [entry.run_id]
    assert second.recipe_of(entry.run_id) == (pack_ids(ids), "")
    for hook in ("blocks.1.attn.hook_q", "blocks.0.mlp.hook_post", "logits"):
        assert torch.equal(again.run[hook], entry.run[hook]), hook

    with pytest.raises(ApiError) as unknown:
        asyncio.run(resolve("A" * 22))
    assert (unknown.value.status, unknown.value.code) == (404, "unknown_run")
    # A recipe whose content does not hash to the id (another model's run) is not recomputed.
    shared.recipes["B" * 22] = (pack_ids(ids), "")
    with pytest.raises(ApiError) as foreign:
        asyncio.run(resolve("B" * 22))
    assert foreign.value.code == "unknown_run"


def test_api_errors_cross_processes_whole():
    import pickle

    from app.serving.concurrency import Busy

    error = pickle.loads(pickle.dumps(ApiError(403, "wrong_secret", "room: not yours", field="secret", room="ABC")))
    assert (type(error), error.status, error.code, error.detail, error.extra) == (ApiError, 403, "wrong_secret", "room: not yours", {"room": "ABC"})
    assert error.body() == {"detail": "room: not yours", "code": "wrong_secret", "room": "ABC", "field": "secret",
                            "errors": [{"field": "secret", "message": "room: not yours", "code": "wrong_secret"}]}
    busy = pickle.loads(pickle.dumps(Busy("full")))
    assert (type(busy), busy.status, busy.headers) == (Busy, 503, {"Retry-After": "2"})


def test_explainer_serve_goes_to_ray_only_with_replicas_or_the_flag(monkeypatch, checkpoint_dir):
    from app import cli, cluster
    from app.serving import logs

    calls = []
    monkeypatch.setattr(cluster, "serve_on_ray", lambda *args: calls.append(args) or 0)
    # In this process, the command's logging set-up (its own, and the one uvicorn.Config applies)
    # would outlive the test: the "explainer" logger stops propagating, and later tests' caplog sees nothing.
    monkeypatch.setattr(logs, "configure", lambda level="info": None)
    monkeypatch.setattr(logs, "config", lambda level="info": {"version": 1, "disable_existing_loggers": False})
    assert cli.main(["serve", "--model", checkpoint_dir, "--replicas", "3", "--port", "9001", "--cpus-per-replica", "0.5"]) == 0
    [(settings, host, port, replicas, address, cpus)] = calls
    assert (settings.model, host, port, replicas, address, cpus) == (checkpoint_dir, "127.0.0.1", 9001, 3, None, 0.5)
    assert cli.main(["serve", "--model", checkpoint_dir, "--ray-address", "auto"]) == 0
    assert calls[-1][3:5] == (1, "auto")

    class NoServer:  # the plain path: uvicorn, never Ray
        def __init__(self, config):
            self.config = config

        def run(self, sockets=None):
            calls.append("uvicorn")
            for sock in sockets or ():  # bound by the command before the model loads
                sock.close()

    monkeypatch.setattr(cli, "_stopping_server", lambda: NoServer)
    assert cli.main(["serve", "--model", checkpoint_dir, "--port", "0"]) == 0
    assert calls[-1] == "uvicorn" and len(calls) == 3
    with pytest.raises(SystemExit):
        cli.main(["serve", "--replicas", "0"])


def test_the_readme_serve_config_builds_the_deployment():
    """The `serve run` config in the README is valid for Ray Serve, and names a builder that
    accepts its args."""
    yaml = ci.importorskip("yaml", reason="PyYAML comes with the cluster extra (ray)")
    ci.importorskip("ray.serve", reason='the cluster extra is not installed: pip install -e ".[cluster]"')
    from ray.serve.schema import ServeDeploySchema

    readme = (ROOT / "README.md").read_text()
    [block] = [b.split("```", 1)[0] for b in readme.split("```yaml\n")[1:] if b.startswith("# serve.yaml")]
    config = yaml.safe_load(block)
    ServeDeploySchema.model_validate(config)  # Ray's own schema of a config file
    [application] = config["applications"]
    module, name = application["import_path"].split(":")
    builder = getattr(__import__(module, fromlist=[name]), name)
    built = builder(application["args"])
    assert built._bound_deployment.num_replicas == application["args"]["replicas"]
    assert built._bound_deployment.ray_actor_options["num_cpus"] == application["args"]["num_cpus"]


# ------------------------------------------------------------ two replicas on Ray Serve ----

@pytest.fixture(scope="module")
def cluster(checkpoint_dir):
    """http://127.0.0.1:PORT of two replicas of the app on the tiny checkpoint, one CPU each."""
    ray = ci.importorskip("ray", reason='the cluster extra is not installed: pip install -e ".[cluster]"')
    serve = ci.importorskip("ray.serve", reason='the cluster extra is not installed: pip install -e ".[cluster]"')
    from app import cluster

    sigterm = signal.getsignal(signal.SIGTERM)  # ray.init sets its own in this process: put back after
    # As `explainer serve --replicas` does: Ray's proxy believes X-Forwarded-For from the trusted proxies only.
    environment = cluster.proxy_environment(Settings(trusted_proxies=(TRUSTED_PROXY,)))
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 << 20, namespace=cluster.NAMESPACE,
                 logging_level=logging.WARNING, log_to_driver=False)
    except Exception as error:  # noqa: BLE001
        ci.skip(f"Ray cannot start on this machine: {type(error).__name__}: {error}")
    finally:
        for name, value in saved.items():  # Ray's processes have it now; this process need not keep it
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(cluster.deployment(Settings(model=checkpoint_dir), replicas=2, num_cpus=1), name=cluster.APP_NAME, route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
        signal.signal(signal.SIGTERM, sigterm)


def shared_stats() -> dict:
    import ray

    from app import cluster

    return ray.get(ray.get_actor(cluster.actor_name(cluster.APP_NAME), namespace=cluster.NAMESPACE).stats.remote())


def by_replica(send, want: int = 2, tries: int = 60) -> dict[str, httpx.Response]:
    """The first response of each of `want` replicas to the same request, sent again until as
    many different X-Replica headers have answered (the proxy picks a replica per request)."""
    answers = {}
    for _ in range(tries):
        response = send()
        answers.setdefault(response.headers["x-replica"], response)
        if len(answers) == want:
            return answers
    raise AssertionError(f"only replicas {sorted(answers)} answered in {tries} requests")


def q_from_transformers(hf_eager, checkpoint_text_ids, layer: int) -> np.ndarray:
    """blocks.{layer}.attn.hook_q [pos, head, d_head] from transformers' own modules."""
    block = hf_eager.transformer.h[layer]
    with torch.no_grad():
        hidden = hf_eager(torch.tensor([checkpoint_text_ids]), output_hidden_states=True).hidden_states[layer]
        q = block.attn.c_attn(block.ln_1(hidden))[0, :, : hf_eager.config.n_embd]
    return q.reshape(len(checkpoint_text_ids), hf_eager.config.n_head, -1).numpy()


@pytest.mark.timeout(300)
def test_a_run_analyzed_on_one_replica_is_read_from_the_other(cluster, explainer, hf_eager):
    with httpx.Client(base_url=cluster, timeout=60) as http:
        analyzed = http.post("/api/analyze", json={"text": TEXT})
        assert analyzed.status_code == 200, analyzed.text
        first, run_id = analyzed.headers["x-replica"], analyzed.json()["run_id"]

        def layer():
            return http.get(f"/api/runs/{run_id}/layers/1", params={"fields": "attn.hook_q"})

        answers = by_replica(layer)
        [other] = set(answers) - {first}
        # It never saw the text: it recomputed the run from the recipe the shared actor holds.
        assert answers[other].status_code == 200, (answers[other].text, shared_stats())
        q = {replica: decode(answers[replica].json()["tensors"]["blocks.1.attn.hook_q"]) for replica in answers}
        assert np.array_equal(q[other], q[first])  # bitwise: the same forward pass code
        expected = q_from_transformers(hf_eager, explainer.tokenize(TEXT), 1)
        np.testing.assert_allclose(q[other], expected, rtol=1e-5, atol=1e-5)

        # A run with interventions: the recipe carries them, and the other replica applies them again.
        ablated = http.post("/api/analyze", json={"text": TEXT, "interventions": [
            {"hook": "blocks.0.attn.hook_z", "op": "zero", "head": 1}]})
        assert ablated.status_code == 200, ablated.text
        ablated_id = ablated.json()["run_id"]
        assert ablated_id != run_id
        answers = by_replica(lambda: http.get(f"/api/runs/{ablated_id}/layers/1", params={"fields": "attn.hook_q"}))
        assert {r.status_code for r in answers.values()} == {200}
        q_ablated = [decode(r.json()["tensors"]["blocks.1.attn.hook_q"]) for r in answers.values()]
        assert np.array_equal(q_ablated[0], q_ablated[1])
        assert not np.allclose(q_ablated[0], q[first])  # the head's zeroing reached layer 1

        # An id no replica issued is still a 404 everywhere.
        unknown = by_replica(lambda: http.get(f"/api/runs/{'A' * 22}/layers/1", params={"fields": "attn.hook_q"}))
        assert {(r.status_code, r.json()["code"]) for r in unknown.values()} == {(404, "unknown_run")}


def sse_events(lines):
    """(version, state) of each `data:` line of a server-sent event stream."""
    import json

    for line in lines:
        if line.startswith("data: "):
            data = json.loads(line[len("data: "):])
            yield data["version"], data["state"]


@pytest.mark.timeout(300)
def test_a_room_opened_on_one_replica_is_published_and_followed_through_the_other(cluster):
    with httpx.Client(base_url=cluster, timeout=60) as http:
        opened = http.post("/api/rooms")
        assert opened.status_code == 201, opened.text
        first, code, secret = opened.headers["x-replica"], opened.json()["code"], opened.json()["secret"]

        with http.stream("GET", f"/api/rooms/{code}/events") as stream:  # a follower, on some replica
            assert stream.status_code == 200
            events = sse_events(stream.iter_lines())
            assert next(events) == (0, None)

            # Publish until a replica other than the stream's answers: each try publishes its own
            # text, so the state the follower and the snapshot end with is the one that replica wrote.
            for attempt in range(60):
                state = {"text": f"Published through another replica, try {attempt}", "layer": 1, "head": 2}
                published = http.put(f"/api/rooms/{code}/state", json=state, headers={"X-Room-Secret": secret})
                assert published.status_code == 200, published.text
                if published.headers["x-replica"] != stream.headers["x-replica"]:
                    break
            else:
                raise AssertionError("every publish landed on the follower's replica")
            version = published.json()["version"]
            assert version == attempt + 1
            for seen in events:  # the follower wakes on every version; the last one is the other replica's
                if seen[0] == version:
                    break
            assert seen[1]["text"] == state["text"] and (seen[1]["layer"], seen[1]["head"]) == (1, 2)

        snapshots = by_replica(lambda: http.get(f"/api/rooms/{code}"))
        assert {replica: (r.status_code, r.json()["version"], r.json()["state"]["text"]) for replica, r in snapshots.items()} \
            == dict.fromkeys(snapshots, (200, version, state["text"]))
        assert first in snapshots  # the replica the room was opened on reads what the other one published

        # The actor's errors come back as the app's own, with their status, code and field.
        wrong = by_replica(lambda: http.put(f"/api/rooms/{code}/state", json=state, headers={"X-Room-Secret": "guess"}))
        assert {(r.status_code, r.json()["code"], r.json()["errors"][0]["field"]) for r in wrong.values()} \
            == {(403, "not_teacher", "x-room-secret")}
        unknown = by_replica(lambda: http.get("/api/rooms/ZZZZZZ"))
        assert {(r.status_code, r.json()["code"]) for r in unknown.values()} == {(404, "unknown_room")}


@pytest.mark.timeout(300)
def test_rays_proxy_believes_x_forwarded_for_only_from_the_trusted_proxies(cluster):
    """Ray's HTTP proxy (its own uvicorn) reads X-Forwarded-For as `explainer serve` does, and a
    replica still sees the client's address."""
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Echo:
        async def __call__(self, request) -> dict:
            return {"client": request.client.host if request.client else None}

    serve.run(Echo.bind(), name="echo", route_prefix="/echo")
    try:
        def seen(source: str, headers: dict | None = None) -> str | None:
            transport = httpx.HTTPTransport(local_address=source)
            with httpx.Client(base_url=cluster, transport=transport, timeout=60) as http:
                return http.get("/echo", headers=headers).json()["client"]

        forwarded = {"X-Forwarded-For": "203.0.113.7"}
        assert seen("127.0.0.1") == "127.0.0.1"
        assert seen("127.0.0.1", forwarded) == "127.0.0.1"  # Ray's own default would believe this machine
        assert seen(TRUSTED_PROXY, forwarded) == "203.0.113.7"
    finally:
        serve.delete("echo")
