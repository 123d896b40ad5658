"""Bounded forward passes: they run off the event loop, a few at a time, with a queue limit
(503 + Retry-After when full) and a time limit per request (503 as well)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from fastapi import HTTPException

T = TypeVar("T")
RETRY_AFTER_S = 2


class Busy(HTTPException):
    def __init__(self, detail: str):
        super().__init__(status_code=503, detail=detail, headers={"Retry-After": str(RETRY_AFTER_S)})


class ForwardLimiter:
    def __init__(self, max_concurrent: int, max_waiting: int, timeout_s: float):
        self.max_waiting = max_waiting
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(max_concurrent)
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="forward")
        self.waiting = 0
        self.running = 0

    def admit(self) -> None:
        """Busy (503 + Retry-After) if the queue is full."""
        if self.waiting >= self.max_waiting:
            raise Busy("The model is busy with other requests; try again in a few seconds.")

    async def run(self, fn: Callable[..., T], *args, admitted: bool = False) -> T:
        """Run fn(*args) in a worker thread once a slot is free. `admitted`: a later step of work
        already accepted through `admit()` (a generation that is streaming), which a full queue
        must not cut off halfway; it still waits its turn and counts as waiting, within the time limit."""
        if not admitted:
            self.admit()
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), self.timeout_s)
        except TimeoutError:
            raise Busy(f"No forward slot became free within {self.timeout_s:.0f} s; try again shortly.") from None
        finally:
            self.waiting -= 1
        self.running += 1
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, fn, *args)

        def release(_):
            # The slot is freed when the work really ends, even after a timeout or a
            # disconnect, so the number of passes running never exceeds the bound.
            self.running -= 1
            self._slots.release()

        future.add_done_callback(release)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except TimeoutError:
            raise Busy(f"The request took longer than {self.timeout_s:.0f} s and was abandoned.") from None

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class Coalescer:
    """Identical requests in flight share one computation: when a class presses Analyze on the
    same example at once, the model runs once and everyone gets that run."""

    def __init__(self):
        self._inflight: dict[object, asyncio.Future] = {}

    async def run(self, key: object, start: Callable[[], Awaitable[T]]) -> T:
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(start())
            self._inflight[key] = future
            future.add_done_callback(lambda _: self._inflight.pop(key, None))
        # Shielded: one client leaving must not cancel the work the others wait for.
        return await asyncio.shield(future)
