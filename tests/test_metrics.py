"""GET /metrics: Prometheus text that parses, requests counted under their route template and
status, the cache's hits and misses, the forward queue's waits, and gauges read from app.state
when scraped."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from app.serving.metrics import Metrics
from app.serving.settings import Settings

ANALYZE = ("POST", "/api/analyze")


def scrape(text: str) -> dict[str, list]:
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(families: dict, sample_name: str, **labels) -> float:
    """The sample `sample_name` with exactly these labels; 0 when the series does not exist yet."""
    found = [s.value for samples in families.values() for s in samples if s.name == sample_name and s.labels == labels]
    assert len(found) <= 1
    return found[0] if found else 0.0


def metrics(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return scrape(response.text)


def requests(families, method, route, status) -> float:
    return value(families, "explainer_requests_total", method=method, route=route, status=str(status))


def test_metrics_parse_and_name_every_series(client):
    families = metrics(client)
    for name in ("explainer_requests", "explainer_request_seconds", "explainer_queue_wait_seconds",
                 "explainer_forward_waiting", "explainer_forward_running", "explainer_decode_batch_size",
                 "explainer_active_generations", "explainer_cache_bytes", "explainer_cache_entries",
                 "explainer_cache_hits", "explainer_cache_misses", "explainer_rooms"):
        assert name in families, name
    buckets = [s.labels["le"] for s in families["explainer_decode_batch_size"] if s.name.endswith("_bucket")]
    assert buckets == ["1.0", "2.0", "4.0", "8.0", "16.0", "32.0", "64.0", "+Inf"]
    assert value(families, "explainer_forward_running") == 0 and value(families, "explainer_forward_waiting") == 0


def test_requests_are_counted_by_route_template_and_status(client):
    before = metrics(client)
    for i in range(3):
        assert client.post("/api/analyze", json={"text": f"Counting request number {i}"}).status_code == 200
    assert client.post("/api/analyze", json={"text": ""}).status_code == 422
    assert client.get("/api/runs/NoSuchRunId123/embeddings").status_code == 404
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/static/main.js").status_code == 200
    after = metrics(client)

    def moved(method, route, status):
        return requests(after, method, route, status) - requests(before, method, route, status)

    assert moved(*ANALYZE, 200) == 3
    assert moved(*ANALYZE, 422) == 1
    assert moved("GET", "/api/runs/{run_id}/embeddings", 404) == 1
    assert moved("GET", "(unmatched)", 404) == 1
    assert moved("GET", "/static", 200) == 1
    seconds = "explainer_request_seconds_count"
    assert value(after, seconds, method="POST", route="/api/analyze") - value(before, seconds, method="POST", route="/api/analyze") == 4
    routes = {s.labels.get("route") for samples in after.values() for s in samples}
    assert not any("NoSuchRunId123" in r or "/no/such" in r for r in routes if r)


def test_a_stream_is_counted_once(client):
    before = metrics(client)
    response = client.post("/api/generate", json={"text": "Once upon", "max_new_tokens": 3, "temperature": 0})
    assert response.status_code == 200 and "event: done" in response.text
    after = metrics(client)
    assert requests(after, "POST", "/api/generate", 200) - requests(before, "POST", "/api/generate", 200) == 1


def test_cache_hits_and_misses_move(client):
    before = metrics(client)
    text = "The cache counts this prompt"
    run_id = client.post("/api/analyze", json={"text": text}).json()["run_id"]  # a miss: computed
    assert client.post("/api/analyze", json={"text": text}).json()["run_id"] == run_id  # a hit
    assert client.get(f"/api/runs/{run_id}/layers/0", params={"fields": "attn.hook_q"}).status_code == 200  # a hit
    after = metrics(client)
    assert value(after, "explainer_cache_hits_total") - value(before, "explainer_cache_hits_total") == 2
    assert value(after, "explainer_cache_misses_total") - value(before, "explainer_cache_misses_total") == 1
    stats = client.app.state.cache.stats
    assert value(after, "explainer_cache_entries") == stats["entries"] >= 1
    assert value(after, "explainer_cache_bytes") == stats["bytes"] > 0


def test_forward_passes_observe_their_queue_wait(client):
    before = metrics(client)
    assert client.post("/api/analyze", json={"text": "A forward pass waits its turn"}).status_code == 200
    after = metrics(client)
    count = "explainer_queue_wait_seconds_count"
    assert value(after, count) - value(before, count) >= 1
    assert value(after, "explainer_queue_wait_seconds_sum") >= value(before, "explainer_queue_wait_seconds_sum")


def test_state_gauges_are_read_at_scrape_time():
    app = FastAPI()  # no rooms, no limiter, no cache yet: zeros, not an error
    registry = Metrics(app).registry
    families = scrape(generate_latest(registry).decode())
    assert value(families, "explainer_rooms") == 0 and value(families, "explainer_cache_bytes") == 0
    app.state.rooms = SimpleNamespace(active=3)
    app.state.limiter = SimpleNamespace(waiting=5, running=1)
    families = scrape(generate_latest(registry).decode())
    assert value(families, "explainer_rooms") == 3
    assert value(families, "explainer_forward_waiting") == 5 and value(families, "explainer_forward_running") == 1


def test_batcher_hooks_record(client):
    metrics_ = client.app.state.metrics
    before = metrics(client)
    metrics_.decode_batch_size.observe(5)
    metrics_.active_generations.set(2)
    after = metrics(client)
    bucket = "explainer_decode_batch_size_bucket"
    assert value(after, bucket, le="8.0") - value(before, bucket, le="8.0") == 1
    assert value(after, bucket, le="4.0") - value(before, bucket, le="4.0") == 0
    assert value(after, "explainer_active_generations") == 2
    metrics_.active_generations.set(0)


@pytest.fixture(scope="module")
def guarded(explainer, checkpoint_dir):
    app = create_app(Settings(model=checkpoint_dir, allowed_hosts=("explainer.school.example",)), explainer=explainer)
    with TestClient(app, base_url="http://localhost:8000") as client:
        yield client


def test_metrics_obeys_the_host_check_and_counts_the_refusal(guarded):
    assert guarded.get("/metrics", headers={"host": "evil.example"}).status_code == 400
    families = metrics(guarded)
    assert requests(families, "GET", "(unmatched)", 400) == 1
    assert guarded.get("/metrics").headers["x-content-type-options"] == "nosniff"
