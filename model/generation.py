"""Token-by-token generation of one sequence, one step at a time so that each step's
distribution can be shown while it streams. It is a decode batch of one (model/batching.py):
the same engine pass, with the same key/value cache and interventions, as a batched step."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from .batching import NO_EDITS, DecodeBatch, Request, Step
from .explainer import Explainer
from .interventions import Editor

__all__ = ["Generation", "Step", "generate"]


def generate(
    explainer: Explainer,
    ids: list[int],
    max_new_tokens: int,
    temperature: float,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    editor: Editor = NO_EDITS,
) -> Iterator[Step]:
    """Yield one Step per new token. The prompt runs once; each later step feeds only the new
    token and reuses the cached keys and values. Stops early at the context limit.
    With a seed, step i draws with seed + i, so the whole generation is reproducible.
    `editor`: the interventions, checked for a generation (interventions.check(..., generation=True))."""
    batch = DecodeBatch(explainer)
    sequence, step = batch.prefill(Request(tuple(ids), max_new_tokens, temperature, top_k, top_p, seed, editor))
    if step is None:
        return
    yield step
    if sequence.finished:
        return
    batch.join(sequence)
    while not sequence.finished:
        ((_, step),) = batch.step()
        yield step


class Generation:
    """A generation that one thread steps and any thread may cancel.

    The generator is only ever touched under a lock, so it is never closed while a step runs
    in another thread (the server did that from its event loop, and crashed). `cancel` closes
    it at once if no step is running; otherwise the running step closes it when it returns,
    so a client that leaves stops the work within one step."""

    def __init__(self, steps: Iterator[Step]):
        self._steps = steps
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def step(self) -> Step | None:
        """The next step, or None once the generation is over or cancelled."""
        with self._lock:
            if self._closed:
                return None
            try:
                step = None if self._cancelled.is_set() else next(self._steps, None)
            except BaseException:
                self._close()
                raise
            if step is None or self._cancelled.is_set():
                self._close()
                return None
            return step

    def cancel(self) -> bool:
        """Stop the generation; True if it was closed here, False if the step running now will."""
        self._cancelled.set()
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._close()
        finally:
            self._lock.release()
        return True

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._steps.close()
