"""Bounded forward passes: they run off the event loop, a few at a time, with a queue limit
(503 + Retry-After when full) and a time limit per request (503 as well). Free slots go to the
waiting clients in turn, so one client's queue cannot starve another's single request."""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from model.cancellation import Cancelled, CancelToken

from .clients import client
from .errors import ApiError

T = TypeVar("T")
RETRY_AFTER_S = 2
STOPPING = "The server is stopping; try again in a moment."
MAX_WAITING_PER_CLIENT = 8  # a page asks for up to about six things at once


# The batched decode step's place in the queue (app/batcher.py): not an address, so no client has it.
DECODE = "\0decode"


class FairSlots:
    """Slots handed out in turn between clients: a free slot goes to the waiting client served
    longest ago (one never served first), and within a client in arrival order. A client with
    a queue of work therefore delays another's single request by at most the one it is running.

    The batched decode step (DECODE) counts as the generations it advances (`decode_weight`, set
    by the batcher): in a round of the other waiting clients and those generations, it gets one
    turn per generation, and at most every other turn. A lone generation among ten students'
    analyses is stepped once a round, as when each generation stepped alone; sixteen generations
    are stepped every other turn, and an analysis waits behind at most one step per turn."""

    def __init__(self, slots: int):
        self.free = slots
        self._queues: OrderedDict[str, deque[asyncio.Future]] = OrderedDict()
        self._served: dict[str, int] = {}  # client -> when it was last given a slot
        self._grants = 0
        self.decode_weight = 1  # generations one DECODE turn advances
        self._since_decode = 0  # turns given to others since DECODE's last

    def _next(self) -> str:
        """The waiting client to serve next."""
        others = [w for w in self._queues if w != DECODE]
        if DECODE in self._queues and (not others or self._since_decode * self.decode_weight >= len(others)):
            return DECODE
        return min(others, key=lambda w: self._served.get(w, 0))  # ties: the earliest queued

    def _grant(self, who: str, future: asyncio.Future) -> None:
        self._grants += 1
        self._since_decode = 0 if who == DECODE else self._since_decode + 1
        self._served[who] = self._grants
        if len(self._served) > 4096:  # forget the clients served longest ago
            for old in sorted(self._served, key=self._served.get)[:1024]:
                del self._served[old]
        future.set_result(None)

    def waiting_for(self, who: str) -> int:
        return sum(not f.done() for f in self._queues.get(who, ()))

    def acquire(self, who: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if self.free > 0 and not self._queues:
            self.free -= 1
            self._grant(who, future)
        else:
            self._queues.setdefault(who, deque()).append(future)
        return future

    def release(self) -> None:
        while self._queues:
            who = self._next()
            queue = self._queues[who]
            future = queue.popleft()
            if not queue:
                del self._queues[who]
            if not future.done():  # skip waiters that gave up (time limit, closing, client gone)
                self._grant(who, future)
                return
        self.free += 1


class Busy(ApiError):
    """503 + Retry-After. `code`: busy (a full queue), timeout, or stopping."""

    def __init__(self, detail: str, code: str = "busy"):
        super().__init__(503, code, detail, headers={"Retry-After": str(RETRY_AFTER_S)})


class ForwardLimiter:
    def __init__(self, max_concurrent: int, max_waiting: int, timeout_s: float,
                 pass_running: Callable[[], AbstractContextManager] = nullcontext):
        self.max_waiting = max_waiting
        self._pass_running = pass_running  # entered in the worker thread around each pass (model/threads.py)
        self.timeout_s = timeout_s
        self._slots = FairSlots(max_concurrent)
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="forward")
        self._closing = asyncio.Event()
        self._tokens: set[CancelToken] = set()  # of the work running now
        self.waiting = 0
        self.running = 0
        # Called with each grant's wait in seconds (app/metrics.py sets it); None: not measured.
        self.observe_wait: Callable[[float], None] | None = None

    def decode_weight(self, generations: int) -> None:
        """How many generations the next DECODE turn advances (its share of the queue's turns)."""
        self._slots.decode_weight = max(1, generations)

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def close(self) -> None:
        """The server is stopping: queued work is refused at once (503), new work too; long work
        already running stops at its next check, the rest finishes or ends with the process."""
        self._closing.set()
        for token in list(self._tokens):
            token.cancel()

    def admit(self) -> None:
        """Busy (503 + Retry-After) if the queue is full, this client has its share of it
        waiting already, or the server is stopping."""
        if self._closing.is_set():
            raise Busy(STOPPING, "stopping")
        if self.waiting >= self.max_waiting:
            raise Busy("The model is busy with other requests; try again in a few seconds.")
        if self._slots.waiting_for(client.get()) >= MAX_WAITING_PER_CLIENT:
            raise Busy(f"You have {MAX_WAITING_PER_CLIENT} requests waiting for the model already; "
                       "try again when they are answered.")

    async def run(self, fn: Callable[..., T], *args, admitted: bool = False, cancellable: bool = False) -> T:
        """Run fn(*args) in a worker thread once a slot is free. `admitted`: a later step of work
        already accepted through `admit()` (a generation that is streaming), which a full queue
        must not cut off halfway; it still waits its turn and counts as waiting, within the time limit.
        `cancellable`: long work, called as fn(*args, cancel=token) and checking the token
        between chunks; the token is cancelled when the caller leaves (its client went away),
        its time runs out, or the server stops, and the work ends at its next check."""
        if not admitted:
            self.admit()
        self.waiting += 1
        queued = time.perf_counter()
        try:
            await self._acquire()
        finally:
            self.waiting -= 1
        if self.observe_wait is not None:
            self.observe_wait(time.perf_counter() - queued)
        self.running += 1
        token = CancelToken()
        self._tokens.add(token)
        loop = asyncio.get_running_loop()
        work = functools.partial(fn, *args, cancel=token) if cancellable else functools.partial(fn, *args)
        future = loop.run_in_executor(self._executor, self._sharing, work)

        def release(_):
            # The slot is freed when the work really ends, even after a timeout or a
            # disconnect, so the number of passes running never exceeds the bound.
            self.running -= 1
            self._tokens.discard(token)
            self._slots.release()

        future.add_done_callback(release)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except TimeoutError:
            token.cancel()
            raise Busy(f"The request took longer than {self.timeout_s:.0f} s and was abandoned.", "timeout") from None
        except asyncio.CancelledError:  # the client left: long work stops at its next check
            token.cancel()
            raise
        except Cancelled:  # only close() cancels a token someone still waits on
            raise Busy(STOPPING, "stopping") from None

    def _sharing(self, work: Callable[[], T]) -> T:
        with self._pass_running():
            return work()

    async def _acquire(self) -> None:
        """A slot, or Busy when the time limit passes or the server starts stopping first."""
        if self._closing.is_set():
            raise Busy(STOPPING, "stopping")
        slot = self._slots.acquire(client.get())
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({slot, closing}, timeout=self.timeout_s, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the client left while waiting: its work is dropped before it runs
            self._give_up(slot, closing)
            raise
        if slot.done() and not slot.cancelled() and not self._closing.is_set():
            closing.cancel()
            return
        self._give_up(slot, closing)
        if self._closing.is_set():
            raise Busy(STOPPING, "stopping")
        raise Busy(f"No forward slot became free within {self.timeout_s:.0f} s; try again shortly.", "timeout")

    def _give_up(self, slot: asyncio.Future, closing: asyncio.Future) -> None:
        closing.cancel()
        if slot.done() and not slot.cancelled():
            self._slots.release()  # acquired after all: hand it to the next in line
        else:
            slot.cancel()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class Coalescer:
    """Identical requests in flight share one computation: when a class presses Analyze on the
    same example at once, the model runs once and everyone gets that run."""

    def __init__(self):
        self._inflight: dict[object, asyncio.Future] = {}
        self._waiters: dict[asyncio.Future, int] = {}

    async def run(self, key: object, start: Callable[[], Awaitable[T]]) -> T:
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(start())
            self._inflight[key] = future
            self._waiters[future] = 0

            def forget(done: asyncio.Future):
                self._inflight.pop(key, None)
                self._waiters.pop(done, None)

            future.add_done_callback(forget)
        self._waiters[future] += 1
        try:
            # Shielded: one client leaving must not cancel the work the others wait for...
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # ...but when the last one leaves, nobody wants it: dropped if still queued,
            # stopped at its next check if running.
            if future in self._waiters:
                self._waiters[future] -= 1
                if self._waiters[future] == 0:
                    future.cancel()
            raise
