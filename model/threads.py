"""The machine's cores, shared between the forward passes running at once.

A pass alone runs fastest on every core; two passes at once, each on every core, oversubscribe
them (on 2 cores a 64-token analysis beside a stream of decode steps took 346 ms instead of
277 ms with one thread each, and each step took 157 ms instead of 90 ms). So a pass uses
cores // passes running.

Torch's intra-op thread count belongs to the thread that sets it (OpenMP's per-thread setting):
one pass cannot change another's. So each pass sets its own as it starts, and again at its
checkpoints (`checkpoint()`, between the engine's blocks) when the number of passes running has
changed since: an analysis that started alone gives up a core within one block of a decode step
starting beside it, and takes it back after.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_local = threading.local()  # .share: the ThreadShare of the pass this thread runs; .threads: its count


class ThreadShare:
    def __init__(self, cores: int | None = None):
        self.cores = max(1, cores or torch.get_num_threads())  # the budget torch was given at start
        self.running = 0
        self._lock = threading.Lock()

    def threads(self) -> int:
        """A pass's share now: cores // passes running."""
        return max(1, self.cores // max(1, self.running))

    def refresh(self) -> None:
        """In the pass's own thread: take its share, if it changed."""
        want = self.threads()
        if getattr(_local, "threads", None) != want:
            torch.set_num_threads(want)
            _local.threads = want

    @contextmanager
    def pass_running(self) -> Iterator[None]:
        """Around one pass, in the thread that runs it."""
        with self._lock:
            self.running += 1
        outer, _local.share = getattr(_local, "share", None), self
        try:
            self.refresh()
            yield
        finally:
            _local.share = outer
            with self._lock:
                self.running -= 1


def checkpoint() -> None:
    """Between chunks of a long pass: take the pass's share of the cores again, if it changed.
    Nothing outside a ThreadShare's pass (a notebook, a test)."""
    share = getattr(_local, "share", None)
    if share is not None:
        share.refresh()
