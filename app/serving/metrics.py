"""Prometheus metrics, served as text at GET /metrics (routers/metrics.py).

- explainer_requests_total{method, route, status} and explainer_request_seconds{method, route}:
  every HTTP answer, labelled by its route template (`/api/runs/{run_id}/layers/{layer}`, never
  the raw path: run ids would make the series unbounded), "(unmatched)" for paths no route has;
- explainer_forward_waiting, explainer_forward_running and explainer_queue_wait_seconds: the
  forward limiter's queue;
- explainer_decode_batch_size and explainer_active_generations: set by the decode batcher;
- explainer_cache_bytes, explainer_cache_entries, explainer_cache_hits_total,
  explainer_cache_misses_total: the run cache;
- explainer_rooms: follow-the-teacher rooms open.

Gauges of the app's state are read when scraped, not kept up to date. The metrics live in a
registry of their own per app (tests build many apps in one process). They are per process:
under several workers or replicas each serves its own /metrics, and Prometheus scrapes each."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.routing import Mount

UNMATCHED = "(unmatched)"
GONE = "499"  # status label of a request whose client left before any answer (nginx's code)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # any other: "other"
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The app's metrics in their own registry. The batcher calls
    `decode_batch_size.observe(n)` once per batched decode step and `active_generations.set(n)`."""

    def __init__(self, app):
        self.registry = CollectorRegistry()
        self.requests = Counter("explainer_requests", "HTTP requests answered, by route template and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.request_seconds = Histogram("explainer_request_seconds",
                                         "Seconds to the start of the answer (for a stream: to its first byte).",
                                         ["method", "route"], buckets=SECONDS, registry=self.registry)
        self.queue_wait = Histogram("explainer_queue_wait_seconds", "Seconds a forward pass waited for a slot.",
                                    buckets=(0.001, *SECONDS), registry=self.registry)
        self.decode_batch_size = Histogram("explainer_decode_batch_size", "Generations advanced by one batched decode step.",
                                           buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)
        self.active_generations = Gauge("explainer_active_generations", "Generations being decoded now.",
                                        registry=self.registry)
        self.registry.register(StateCollector(app.state))


class StateCollector(Collector):
    """Gauges and counters read from app.state when scraped: nothing to keep in step."""

    def __init__(self, state):
        self.state = state

    def collect(self):
        limiter = getattr(self.state, "limiter", None)  # None until the lifespan has started
        yield GaugeMetricFamily("explainer_forward_waiting", "Forward passes waiting for a slot.",
                                value=limiter.waiting if limiter else 0)
        yield GaugeMetricFamily("explainer_forward_running", "Forward passes running.",
                                value=limiter.running if limiter else 0)
        cache = getattr(self.state, "cache", None)
        stats = cache.stats if cache else {}
        yield GaugeMetricFamily("explainer_cache_bytes", "Bytes held by the run cache.", value=stats.get("bytes", 0))
        yield GaugeMetricFamily("explainer_cache_entries", "Runs held by the run cache.", value=stats.get("entries", 0))
        yield CounterMetricFamily("explainer_cache_hits", "Run lookups the cache answered.", value=stats.get("hits", 0))
        yield CounterMetricFamily("explainer_cache_misses", "Run lookups the cache did not hold.", value=stats.get("misses", 0))
        rooms = getattr(self.state, "rooms", None)
        yield GaugeMetricFamily("explainer_rooms", "Follow-the-teacher rooms open.", value=rooms.active if rooms is not None else 0)


class RequestMetrics:
    """Pure ASGI middleware: counts and times each HTTP request under its route template, which
    the router leaves in scope["route"] (a mounted app such as /static: the mount's path).

    Both are recorded when the answer starts, so an open stream (server-sent events) costs
    nothing here beyond its own call, and its latency is the time to its first byte."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics
        self._mounts: list[str] | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        path = scope["path"]
        method = scope["method"] if scope["method"] in METHODS else "other"
        recorded = False

        def record(status: str) -> None:
            nonlocal recorded
            recorded = True
            route = self._route(scope, path)
            self.metrics.requests.labels(method, route, status).inc()
            self.metrics.request_seconds.labels(method, route).observe(time.perf_counter() - start)

        async def send_and_record(message):
            if message["type"] == "http.response.start" and not recorded:
                record(str(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        except Exception:
            if not recorded:  # logs.AccessLog, outside this, answers it with a 500
                record("500")
            raise
        finally:
            if not recorded:
                record(GONE)

    def _route(self, scope, path: str) -> str:
        route = getattr(scope.get("route"), "path", None)
        if route:
            return route
        # FastAPI does not put a mount in scope["route"]; the first mount whose prefix matches.
        if self._mounts is None:
            self._mounts = [r.path for r in scope["app"].routes if isinstance(r, Mount)] if "app" in scope else []
        return next((m for m in self._mounts if path == m or path.startswith(m + "/")), UNMATCHED)
