"""Stopping, and pausing, long work between chunks. A caller that no longer wants an answer (its
client left, its time ran out, the server is stopping) cancels the token; work that takes seconds
checks it between layers or chunks and raises Cancelled. Nothing is interrupted in the middle of
a step, and nothing is closed from another thread: the thread doing the work stops itself.

The same check is where the work may be paused: the server's forward queue sets `pause`, which
gives the work's slot to someone waiting and returns once the work has its turn again
(app/serving/concurrency.py). Work that knows how much it did since its last check says so (`work`, in
multiply-adds), which is how the server measures its own speed."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Cancelled(Exception):
    """The work was stopped between chunks because its caller cancelled it."""


class CancelToken:
    def __init__(self):
        self._event = threading.Event()
        self.pause: Callable[[], None] | None = None  # called at each check; may block, or raise Cancelled
        self.work = 0.0  # multiply-adds the work said it did, over all its checks

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self, work: float = 0.0) -> None:
        """Called by the work between chunks, with the multiply-adds done since its last check:
        Cancelled if the caller gave up (also while the work was paused here)."""
        if self._event.is_set():
            raise Cancelled("cancelled by its caller")
        self.work += work
        if self.pause is not None:
            self.pause()
            if self._event.is_set():
                raise Cancelled("cancelled by its caller")


NEVER = CancelToken()  # for work nobody will cancel (a notebook, a test)
