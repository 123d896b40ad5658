"""Waiting for a condition instead of for a time: poll it until it holds, and fail after a
deadline (a bound that only a broken run reaches, never a measure)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

DEADLINE_S = 30.0


def wait_until(condition: Callable[[], object], what: str = "the condition never held",
               timeout_s: float = DEADLINE_S, every_s: float = 0.005) -> None:
    """Block this thread until `condition()` is true."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(every_s)


async def until(condition: Callable[[], object], what: str = "the condition never held",
                timeout_s: float = DEADLINE_S) -> None:
    """On the event loop: let other tasks run until `condition()` is true."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.001)


async def settle(turns: int = 20) -> None:
    """Let the tasks on this event loop run until they wait on something: a few turns of the
    loop, no wall time. For tasks of this loop only (a thread's progress needs `until`)."""
    for _ in range(turns):
        await asyncio.sleep(0)
