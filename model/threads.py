"""The machine's cores, shared between the forward passes running at once.

Torch's intra-op threads are one process-wide setting. A pass alone runs fastest on every core;
two passes at once, each on every core, oversubscribe them (on 2 cores a 64-token analysis
beside a decode step took 346 ms instead of 277 ms with one thread each, and the step twice as
long). So each pass, as it starts and ends, sets the threads to cores // passes running; the
passes already running pick the new number up at their next operation.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class ThreadShare:
    def __init__(self, cores: int | None = None):
        self.cores = max(1, cores or torch.get_num_threads())  # the budget torch was given at start
        self.running = 0
        self._lock = threading.Lock()

    def _set(self) -> None:
        torch.set_num_threads(max(1, self.cores // max(1, self.running)))

    @contextmanager
    def pass_running(self) -> Iterator[None]:
        with self._lock:
            self.running += 1
            self._set()
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1
                self._set()
