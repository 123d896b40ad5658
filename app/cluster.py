"""Scale-out on Ray Serve: N replicas of the same FastAPI app (`create_app`), each loading the
model itself, behind Ray's HTTP proxy, and the little state they must share in one Ray actor.

Why an actor. A run id is content (model, token ids, interventions), so any replica can recompute any
run, but only if it knows the ids: each replica's RunCache keeps that recipe index for itself,
and a replica that never saw the prompt would answer 404 for an id another replica issued. The
follow-the-teacher rooms are worse: the teacher publishes through one replica while each
student's follow stream (server-sent events) sits on whichever replica the proxy chose, so a room
must be visible to every replica at once. A sticky route (teacher and followers pinned to one
replica by a cookie or a hash of the room code) would avoid sharing, but it breaks exactly when
it matters: a replica restarted, or removed by a scale-down, takes its rooms and its recipes with
it. So both live in one named actor, `ExplainerShared`, which every replica finds by name:
- the recipe index: run id -> (packed token ids, interventions JSON), bounded in bytes like RunCache's own
  (64 MB by default: hundreds of thousands of prompts). A replica tells it each run id that is
  new to its own index, and asks it when a run id misses locally (analysis.resolve), before 404;
- the rooms: one LocalRoomStore (app/rooms/store.py), reached through RayRoomStore, which has the same
  methods and raises the same ApiError (status, code, detail) on the replica's side.

The cost: one actor call per run id new to a replica (sent from the forward thread and waited
for, at most REMEMBER_WAIT_S, so an id is known cluster-wide before its response leaves: about a
millisecond beside a forward pass of tens), one per local miss, and one per room operation. The
actor is a single point: all replicas wait on it for those calls (an async actor serves
thousands at once, and each call is a dictionary operation), and if its process dies, Ray
restarts it empty: rooms must be opened again, and run ids only the actor knew answer 404 until
analyzed again (the page does that by itself). Batching stays inside each replica; nothing about
a forward pass crosses processes.

Ray is an optional extra (`pip install "explainer[cluster]"`): nothing else in `app/` imports
this module, and `explainer serve` imports it only for --replicas N > 1 or --ray.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from contextlib import asynccontextmanager

from app.runs.cache import INDEX_BYTES, Recipe, RecipeIndex
from app.errors import ApiError
from app.serving.settings import Settings

log = logging.getLogger("explainer")

NAMESPACE = "explainer"
APP_NAME = "explainer"
REMEMBER_WAIT_S = 5.0  # at most, for the actor to confirm a new run id (from the forward thread)
ACTOR_CONCURRENCY = 4096  # room waits (long polls of SSE followers) held at once
# Requests one replica takes at once from the proxy: above its own forward queue (max_waiting)
# and its followers' streams, so that its limiter (fair queue, 503 + Retry-After) decides, not
# Ray's backpressure (Serve's default of 5 would hold a classroom's streams at the proxy).
MAX_ONGOING_REQUESTS = 1024
GRACEFUL_SHUTDOWN_S = 5
SHARED_UNAVAILABLE = "The state shared by the server's replicas is unreachable for a moment; try again."


def _missing_ray() -> SystemExit:
    return SystemExit('error: serving on Ray needs the cluster extra: pip install "explainer[cluster]"')


# ---------------------------------------------------------------- the actor (plain Python) ----

class ExplainerShared:
    """The state every replica shares (made a Ray actor by `shared_actor`): the recipe index and
    the rooms. Async: a room's `wait` (a follower's long poll) does not hold up other calls."""

    def __init__(self, index_bytes: int = INDEX_BYTES, rooms_max: int = 64, room_idle_s: float = 7200.0,
                 rooms_per_client: int | None = None):
        from app.rooms.store import LocalRoomStore

        self.recipes = RecipeIndex(index_bytes)
        self.rooms = LocalRoomStore(rooms_max, room_idle_s, per_client=rooms_per_client)

    async def remember(self, run_id: str, ids: bytes, interventions: str) -> None:
        self.recipes.remember(run_id, (ids, interventions))

    async def lookup(self, run_id: str) -> Recipe | None:
        return self.recipes.lookup(run_id)

    async def stats(self) -> dict:
        return {"known_runs": len(self.recipes), "index_bytes": self.recipes.bytes, "max_index_bytes": self.recipes.max_bytes,
                "rooms": self.rooms.active, "pid": os.getpid()}

    # The rooms: LocalRoomStore's methods, by the same names.
    async def open(self, *args, **kwargs):
        return await self.rooms.open(*args, **kwargs)

    async def publish(self, *args, **kwargs):
        return await self.rooms.publish(*args, **kwargs)

    async def close(self, *args, **kwargs):
        return await self.rooms.close(*args, **kwargs)

    async def snapshot(self, *args, **kwargs):
        return await self.rooms.snapshot(*args, **kwargs)

    async def wait(self, *args, **kwargs):
        return await self.rooms.wait(*args, **kwargs)

    async def active(self) -> int:
        return self.rooms.active


def actor_name(app_name: str) -> str:
    return f"shared-{app_name}"


def shared_actor(settings: Settings, app_name: str = APP_NAME, index_bytes: int = INDEX_BYTES):
    """The named actor of this Serve application, created by whichever replica comes first
    (with its settings' room limits: EXPLAINER_ROOMS_MAX, EXPLAINER_ROOM_IDLE).
    Detached: it belongs to no replica (a replica that dies or is scaled down must not take it
    along) and so it outlives a redeployment; `explainer serve` kills it when it stops. No CPU
    reserved: it only moves dictionaries. Restarted by Ray if its process dies (empty)."""
    import ray

    return ray.remote(ExplainerShared).options(
        name=actor_name(app_name), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=ACTOR_CONCURRENCY,
    ).remote(index_bytes, settings.rooms_max, settings.room_idle_s, settings.rooms_per_client)


# ------------------------------------------------------------ the replica's side of it ----

class _Proxy:
    """Calls to the actor, with Ray's errors translated: an ApiError raised in the actor is raised
    again as itself; the actor unreachable is a 503."""

    def __init__(self, actor):
        self.actor = actor

    async def _call(self, method: str, *args, **kwargs):
        import ray

        ref = getattr(self.actor, method).remote(*args, **kwargs)
        try:
            return await ref
        except asyncio.CancelledError:  # the client left: a room wait need not run to its timeout
            ray.cancel(ref)
            raise
        except ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, ApiError):
                raise error.cause from None
            raise
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as error:
            log.warning("the shared actor is unreachable: %s", error)
            raise ApiError(503, "busy", SHARED_UNAVAILABLE, headers={"Retry-After": "2"}) from None


class SharedRecipes(_Proxy):
    """RunCache.shared: the recipe index every replica reads (duck-typed for app/runs/cache.py)."""

    def remember(self, run_id: str, recipe: Recipe) -> None:
        """Sent to the actor; from a worker thread (a forward pass's), waited for up to
        REMEMBER_WAIT_S, so that the id is known to every replica before its response leaves.
        A failure is logged, not raised: the local index still has the recipe."""
        import ray

        ref = self.actor.remember.remote(run_id, *recipe)
        try:
            asyncio.get_running_loop()
            return  # on an event loop: never block it
        except RuntimeError:
            pass
        try:
            ray.get(ref, timeout=REMEMBER_WAIT_S)
        except Exception as error:  # noqa: BLE001 (GetTimeoutError, RayActorError...)
            log.warning("the shared recipe index did not confirm %s: %s", run_id, error)

    async def lookup(self, run_id: str) -> Recipe | None:
        recipe = await self._call("lookup", run_id)
        return tuple(recipe) if recipe is not None else None


class RayRoomStore(_Proxy):
    """The rooms of every replica, in the actor: LocalRoomStore's interface, proxied."""

    def __init__(self, actor):
        super().__init__(actor)
        self._active = 0

    async def open(self, *args, **kwargs):
        return await self._call("open", *args, **kwargs)

    async def publish(self, code, secret, state):
        return await self._call("publish", code, secret, state)

    async def close(self, code, secret):
        return await self._call("close", code, secret)

    async def snapshot(self, code):
        return await self._call("snapshot", code)

    async def wait(self, code, after, timeout):
        return await self._call("wait", code, after, timeout)

    @property
    def active(self) -> int:
        """Rooms open in the whole cluster, as of the last look (a property may not wait on the
        actor from the event loop): the count is refreshed in the background on each read."""
        ref = self.actor.active.remote()

        def done(future):
            if not future.cancelled() and future.exception() is None:
                self._active = future.result()

        ref.future().add_done_callback(done)
        return self._active


def attach(app, actor) -> None:
    """Make a FastAPI app from `create_app`, not started yet, use the shared actor: for its rooms
    (app.state.rooms, which the lifespan then keeps) and its RunCache's recipe index (the cache
    is made by the lifespan: this wraps it, and hooks the index in before the first request)."""
    app.state.rooms = RayRoomStore(actor)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app):
        async with inner(app) as state:
            app.state.cache.shared = SharedRecipes(actor)
            yield state

    app.router.lifespan_context = lifespan


class ReplicaHeader:
    """Pure ASGI middleware: `X-Replica: <Serve's replica id>` on every response, so a person (or
    a test) can see which replica answered."""

    def __init__(self, app, replica: str):
        self.app, self.replica = app, replica.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def tagged(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-replica", self.replica)]}
            await send(message)

        await self.app(scope, receive, tagged)


# ------------------------------------------------------------------- the deployment ----

class ExplainerReplica:
    """One replica: the model loaded in its own process, `create_app` around it, the shared
    actor attached. Made a Serve deployment by `deployment()` (serve.ingress, late-bound)."""

    def __init__(self, settings: Settings, threads: int):
        import torch

        from app.serving import logs, startup

        logs.configure(settings.log_level)
        self.threads = max(1, threads)
        torch.set_num_threads(self.threads)  # this replica's share of the cores, not all of them
        try:
            self.explainer = startup.load_explainer(settings)  # load here: a failure fails the deployment
        except SystemExit as stop:  # ... rather than os._exit() in the app's lifespan
            raise RuntimeError(f"the model could not be loaded (exit status {stop.code}): see the line above") from None
        self.settings = settings

    async def __serve_build_asgi_app__(self):
        from ray import serve

        from app.main import create_app

        context = serve.get_replica_context()
        actor = shared_actor(self.settings, context.app_name)
        await actor.stats.remote()  # up before this replica takes requests (its first start takes seconds)
        app = create_app(self.settings, self.explainer)
        # The passes' thread budget: torch's count belongs to the thread that set it (this
        # constructor's), and the app's forward threads are others.
        app.state.cores = self.threads
        attach(app, actor)
        app.add_middleware(ReplicaHeader, replica=context.replica_id.unique_id)
        return app


def deployment(settings: Settings, replicas: int, num_cpus: float, threads: int | None = None):
    """The Serve application: `replicas` copies of the app, each reserving `num_cpus` and running
    torch on `threads` (default: its CPUs, at least one)."""
    try:
        from ray import serve
    except ImportError:
        raise _missing_ray() from None

    ingress = serve.deployment(serve.ingress()(ExplainerReplica), name="Explainer")
    return ingress.options(
        num_replicas=replicas,
        ray_actor_options={"num_cpus": num_cpus},
        max_ongoing_requests=MAX_ONGOING_REQUESTS,
        graceful_shutdown_timeout_s=GRACEFUL_SHUTDOWN_S,  # as `explainer serve`: running work gets 5 s
    ).bind(settings, threads if threads is not None else max(1, int(num_cpus)))


def build_app(args: dict):
    """The application builder for `serve run` / `serve deploy` / KubeRay's RayService:
    `import_path: app.cluster:build_app`, with `args` {replicas, num_cpus, threads?}; the model
    and every other setting come from the EXPLAINER_* variables (put them in runtime_env.env_vars)."""
    replicas = int(args.get("replicas", 2))
    num_cpus = float(args.get("num_cpus", 1))
    threads = args.get("threads")
    return deployment(Settings.from_env(), replicas, num_cpus, int(threads) if threads is not None else None)


def proxy_environment(settings: Settings) -> dict[str, str]:
    """The environment Ray's processes need from these settings. Ray's HTTP proxy runs its own
    uvicorn, which app/serving/connections.py does not reach and which reads FORWARDED_ALLOW_IPS for the
    addresses whose X-Forwarded-For it believes (unset: 127.0.0.1, so a client on the proxy's
    machine could name itself any client and escape the per-client limits). So: the operator's
    EXPLAINER_TRUSTED_PROXIES, or none. The replicas then see the client address the proxy read."""
    return {"FORWARDED_ALLOW_IPS": ",".join(settings.trusted_proxies)}


def serve_on_ray(settings: Settings, host: str, port: int, replicas: int, address: str | None = None,
                 num_cpus: float | None = None) -> int:
    """`explainer serve --replicas N` (or --ray): start Ray on this machine (or join `address`),
    deploy N replicas behind Ray's HTTP proxy on host:port, and stop on SIGTERM or Ctrl-C
    (deleting the application and the shared actor; a Ray started here is shut down)."""
    try:
        import ray
        from ray import serve
    except ImportError:
        raise _missing_ray() from None

    if address:
        ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING)
        cores = int(ray.cluster_resources().get("CPU", 1))
        log.info("Ray's HTTP proxies on a cluster this command joins believe X-Forwarded-For from the addresses in "
                 "FORWARDED_ALLOW_IPS of their own environment (unset: 127.0.0.1): set it where the nodes start")
    else:
        os.environ.update(proxy_environment(settings))  # the Ray started here, proxy included, inherits it
        cores = os.cpu_count() or 1
        ray.init(num_cpus=cores, namespace=NAMESPACE, include_dashboard=False, logging_level=logging.WARNING)
    per_replica = num_cpus if num_cpus is not None else max(cores / replicas, 0.5)
    threads = max(1, int(per_replica))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": host, "port": port})
        log.info("Ray Serve: %d replica(s) of %.3g CPUs, %d torch thread(s) each; loading the model in each", replicas,
                 per_replica, threads)
        try:
            serve.run(deployment(settings, replicas, per_replica, threads), name=APP_NAME, route_prefix="/")
        except Exception as error:  # noqa: BLE001 (a replica that cannot load the model fails the deployment)
            print(f"error: the deployment failed: {error}", file=sys.stderr, flush=True)
            return 2
        log.info("Serving on http://%s:%d through Ray Serve's proxy (Ctrl-C to stop)", host, port)
        stop.wait()
    finally:
        try:
            serve.delete(APP_NAME)
            ray.kill(ray.get_actor(actor_name(APP_NAME), namespace=NAMESPACE))
        except Exception:  # noqa: BLE001 (nothing deployed, or gone already)
            pass
        if not address:
            serve.shutdown()
        ray.shutdown()
    return 0
