"""Stopping long work between chunks. A caller that no longer wants an answer (its client left,
its time ran out, the server is stopping) cancels the token; work that takes seconds checks it
between layers or chunks and raises Cancelled. Nothing is interrupted in the middle of a step,
and nothing is closed from another thread: the thread doing the work stops itself."""

from __future__ import annotations

import threading


class Cancelled(Exception):
    """The work was stopped between chunks because its caller cancelled it."""


class CancelToken:
    def __init__(self):
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Called by the work between chunks: Cancelled if the caller gave up."""
        if self._event.is_set():
            raise Cancelled("cancelled by its caller")


NEVER = CancelToken()  # for work nobody will cancel (a notebook, a test)
