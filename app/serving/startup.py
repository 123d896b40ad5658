"""Bringing the model up for the server, the same way for `explainer serve` and for a bare
`uvicorn app.main:app`:
- a model named explicitly (--model, EXPLAINER_MODEL) that cannot be loaded ends the process
  with one line and status 2;
- without one, GPT-2 small comes from the Hugging Face cache or the Hub; if neither has it, the
  server starts anyway on random weights, and says so in one block on the terminal."""

from __future__ import annotations

import logging
import sys
import time

from model import DEFAULT_MODEL, Explainer, ModelLoadError, download_command

from app.serving.settings import Settings

log = logging.getLogger("explainer")


def load_explainer(settings: Settings) -> Explainer:
    """The explainer the settings ask for, or SystemExit(2) after one line on stderr."""
    name = settings.model or DEFAULT_MODEL
    start = time.perf_counter()
    try:
        explainer = Explainer.load(name, random_weights=settings.random_weights, device=settings.device,
                                   revision=settings.revision, fallback_to_random=settings.model is None)
    except ModelLoadError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    loaded = explainer.loaded
    if loaded.random_weights and not settings.random_weights:
        print(untrained_notice(loaded.reason, download_command(name, settings.revision)), file=sys.stderr, flush=True)
    elif loaded.random_weights:
        log.warning("Serving an UNTRAINED model with random weights, as asked: its predictions mean nothing.")
    else:
        log.info("Loaded %s from %s in %.1f s", name, loaded.folder, time.perf_counter() - start)
    return explainer


def untrained_notice(reason: str | None, command: str) -> str:
    rule = "-" * 72
    return "\n".join([
        rule,
        "  No trained GPT-2 weights here: serving an UNTRAINED model instead",
        "  (GPT-2 small's shapes, seeded random weights; every number is really",
        "  computed, but the predictions and attention patterns mean nothing).",
        f"  Why: {reason}",
        f"  Fix: run `{command}` (with network), then start the server again.",
        rule,
    ])
