"""The app factory. `app.main:app` is configured from EXPLAINER_* environment variables; the
CLI and the tests call `create_app` with their own settings or an already loaded explainer."""

from __future__ import annotations

import logging
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import plotly
import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles

from model import Explainer, ModelLoadError

from . import errors
from .cache import RunCache
from .concurrency import Coalescer, ForwardLimiter
from .routers import anatomy, docs, embedding_space, health, logit_lens, pages, runs, sampling
from .settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PLOTLY_DIR = Path(plotly.__file__).parent / "package_data"
log = logging.getLogger("explainer")


def create_app(settings: Settings | None = None, explainer: Explainer | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.cache = RunCache(settings.cache_entries, settings.cache_bytes)
        app.state.limiter = ForwardLimiter(settings.max_concurrent, settings.max_waiting, settings.request_timeout_s)
        app.state.coalescer = Coalescer()
        if explainer is None:
            try:
                app.state.explainer = Explainer.load(settings.model, random_weights=settings.random_weights,
                                                     device=settings.device)
            except ModelLoadError as error:
                # Under a bare `uvicorn app.main:app`, any exception raised here is printed
                # as a traceback; a person needs the one-line message and a non-zero exit.
                print(f"error: {error}", file=sys.stderr, flush=True)
                os._exit(2)
        else:
            app.state.explainer = explainer
        if app.state.explainer.loaded.random_weights:
            log.warning("Serving an UNTRAINED model with random weights: its predictions mean nothing.")
        yield
        app.state.limiter.shutdown()

    app = FastAPI(
        title="GPT-2 explainer",
        summary="Every intermediate of GPT-2 small, captured from one forward pass, named by TransformerLens hook names.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served by routers/docs.py from local files
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.explainer = None
    errors.install(app)
    app.add_middleware(GZipMiddleware, minimum_size=2048, compresslevel=5)
    app.add_middleware(errors.BodySizeLimit, max_bytes=settings.max_body_bytes)
    for router in (health.router, runs.router, sampling.router, logit_lens.router, embedding_space.router, anatomy.router, docs.router, pages.router):
        app.include_router(router)
    app.mount("/static/vendor", StaticFiles(directory=PLOTLY_DIR), name="vendor")
    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")
    app.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")
    return app


app = create_app()
