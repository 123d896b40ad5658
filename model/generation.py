"""Token-by-token generation with the KV cache of `transformers`' GPT-2, one step at a time so
that each step's distribution can be shown while it streams."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .explainer import Explainer
from .sampling import Distribution, distribution, sample
from .tokenizer import TokenPiece


@dataclass
class Step:
    step: int
    token: TokenPiece
    prob: float
    dist: Distribution


def generate(
    explainer: Explainer,
    ids: list[int],
    max_new_tokens: int,
    temperature: float,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
) -> Iterator[Step]:
    """Yield one Step per new token. The prompt runs once; each later step feeds only the new
    token and reuses the cached keys and values. Stops early at the context limit.
    With a seed, step i draws with seed + i, so the whole generation is reproducible."""
    model = explainer.model
    device = explainer.loaded.device
    room = explainer.n_ctx - len(ids)
    cache = None
    inputs = torch.tensor([ids], dtype=torch.long, device=device)
    pending = explainer.tokenizer.stream_texts(ids, b"")[1]
    for step in range(min(max_new_tokens, room)):
        with torch.inference_mode():
            out = model(input_ids=inputs, cache=cache, use_cache=True, logits_to_keep=1)
        cache = out.cache
        dist = distribution(out.logits[0, -1], temperature, top_k, top_p)
        token_id = sample(dist, None if seed is None else seed + step)
        (piece,), pending = explainer.tokenizer.stream_texts([token_id], pending)
        yield Step(step=step, token=piece, prob=float(dist.probs[token_id]), dist=dist)
        inputs = torch.tensor([[token_id]], dtype=torch.long, device=device)


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
