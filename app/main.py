"""The app factory. The CLI and the tests call `create_app` with their own settings or an
already loaded explainer; `app.main:app`, for a bare uvicorn, is built on first use from the
EXPLAINER_* environment variables."""

from __future__ import annotations

import dataclasses
import os
import sys
from contextlib import asynccontextmanager

import plotly
import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles

from model import Explainer
from model.threads import ThreadShare

from app import contract, errors
from app.lab import Lab
from app.serving import disconnect, logs, security, startup
from app.serving.batcher import DecodeBatcher
from app.serving.budget import ByteBudget, tune_malloc
from app.runs.cache import RunCache
from app.rooms.classroom import Teacher
from app.serving.concurrency import Coalescer, ForwardLimiter
from app.serving.metrics import Metrics, RequestMetrics
from app.page.resources import data_dir, version
from app.rooms.store import Followers, LocalRoomStore
from app.routers import (
    anatomy,
    docs,
    embedding_space,
    experiments,
    heads,
    health,
    logit_lens,
    pages,
    rooms,
    runs,
    sampling,
    scenes,
)
from app.routers import metrics as metrics_router
from app.serving.settings import Settings, SettingsError

PLOTLY_DIR = os.path.join(os.path.dirname(plotly.__file__), "package_data")


def create_app(settings: Settings | None = None, explainer: Explainer | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.cache = RunCache(settings.cache_entries, settings.cache_bytes)
        app.state.budget = ByteBudget(settings.cache_bytes, settings.request_timeout_s, app.state.cache)  # bodies in flight
        tune_malloc()  # freed buffers go back to the system, from few arenas
        app.state.limiter = ForwardLimiter(settings.max_concurrent, settings.max_waiting, settings.request_timeout_s,
                                           ThreadShare(getattr(app.state, "cores", None)).pass_running)
        app.state.limiter.observe_wait = app.state.metrics.queue_wait.observe
        app.state.coalescer = Coalescer()
        if getattr(app.state, "rooms", None) is None:  # a deployment may have set its own store
            app.state.rooms = LocalRoomStore(settings.rooms_max, settings.room_idle_s, per_client=settings.rooms_per_client)
        app.state.room_followers = Followers(per_client=settings.followers_per_client)
        if explainer is None:
            try:
                app.state.explainer = startup.load_explainer(settings)
            except SystemExit as stop:
                # Under a bare uvicorn, an exception here would be printed as a traceback; the
                # one line is out already, and a person needs the non-zero exit.
                os._exit(stop.code)
        else:
            app.state.explainer = explainer
        app.state.batcher = DecodeBatcher(app.state.explainer, app.state.limiter, settings.decode_batch,
                                          getattr(app.state, "metrics", None))
        app.state.lab = Lab(app.state.explainer, app.state.cache, app.state.limiter, app.state.coalescer,
                            app.state.budget, app.state.batcher, settings)
        yield
        app.state.limiter.shutdown()

    app = FastAPI(
        title="GPT-2 explainer",
        summary="Every intermediate of GPT-2 small, captured from one forward pass, named by TransformerLens hook names.",
        version=version(),
        lifespan=lifespan,
        docs_url=None,  # served by routers/docs.py from local files
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.teacher = Teacher(settings)
    app.state.explainer = None
    app.state.lab = None  # the front door opens once the model is loaded
    app.state.metrics = Metrics(app)
    errors.install(app)
    contract.install(app)
    app.add_middleware(GZipMiddleware, minimum_size=2048, compresslevel=5)
    app.add_middleware(disconnect.CancelWhenGone)  # inside BodySizeLimit: it needs the body read
    app.add_middleware(errors.BodySizeLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(security.Security, allowed_hosts=settings.allowed_hosts, frame_ancestors=settings.frame_ancestors,
                       public_url=settings.public_url)
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)  # just inside AccessLog: every answer, Host refusals too
    app.add_middleware(logs.AccessLog)  # outermost of ours: it times and sees everything
    for router in (health.router, runs.router, experiments.router, heads.router, sampling.router, logit_lens.router, embedding_space.router,
                   anatomy.router, scenes.router, rooms.router, docs.router, pages.router):
        app.include_router(router)
    app.include_router(metrics_router.router)
    app.mount("/static/vendor", StaticFiles(directory=PLOTLY_DIR), name="vendor")
    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")
    app.mount("/static", StaticFiles(directory=data_dir("static")), name="static")
    return app


def __getattr__(name: str):
    if name == "app":  # `uvicorn app.main:app`: the same logging and start-up as `explainer serve`
        try:
            settings = Settings.from_env()
        except SettingsError as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        if "EXPLAINER_LOG_LEVEL" not in os.environ:  # then uvicorn's own --log-level decides
            settings = dataclasses.replace(settings, log_level=logs.uvicorn_level() or settings.log_level)
        logs.configure(settings.log_level)
        globals()["app"] = application = create_app(settings)
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
