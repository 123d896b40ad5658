"""The bytes of responses being built and sent, inside the server's one memory budget.

A layer of a 1,024-token run is 155 MB of float32 tensors and 207 MB of JSON: eight such
requests at once, each encoded in its own worker thread, once took the process from 1.3 to
4 GB. So a request that builds a big body first reserves what it will hold (its estimate),
waits for room if the budget is full, and gives it back once its answer has been sent.

The budget is EXPLAINER_CACHE_BYTES, shared with the run cache: what is reserved is room the
cache gives up (its least recently used runs and answers leave, to be recomputed if asked
for), so runs, answers and bodies in flight stay within one number. Room goes to the waiting
clients in turn, as forward slots do (app/serving/concurrency.py): a client holding none first, then
the one served longest ago, in arrival order within a client. A client holding nothing whose
request does not fit yet holds the line until it does, so a big request is never starved by a
stream of small ones; a client that holds room already is passed over, so that one client's
queue of big requests (waiting, say, for the forward queue with room reserved) never holds up
another's small one. A request larger than the whole budget runs alone. A request that gets no room within the request time limit is a 503 busy with
Retry-After."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import threading
import weakref
from collections import OrderedDict, deque

from app.serving.clients import client
from app.serving.concurrency import Busy


class ByteBudget:
    def __init__(self, max_bytes: int, timeout_s: float, cache=None):
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.cache = cache  # a RunCache that gives up room for what is reserved; None: a budget of its own
        self.reserved = 0
        self.peak = 0  # the most reserved at once
        self.waited = 0  # reservations that had to wait for room
        self._queues: OrderedDict[str, deque[tuple[int, asyncio.Future]]] = OrderedDict()
        self._holding: dict[str, int] = {}  # client -> bytes it holds now
        self._served: dict[str, int] = {}  # client -> when it was last given room
        self._grants = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    @property
    def waiting(self) -> int:
        """Reservations waiting for room now."""
        return sum(not granted.done() for queue in self._queues.values() for _, granted in queue)

    async def reserve(self, nbytes: int) -> Reservation:
        """Room for `nbytes` (at most the whole budget: a larger request runs alone), or Busy
        (503 + Retry-After) if none comes within the time limit."""
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        nbytes = max(0, min(int(nbytes), self.max_bytes))
        who = client.get()
        granted = self._loop.create_future()
        self._queues.setdefault(who, deque()).append((nbytes, granted))
        self._wake()
        if not granted.done():
            self.waited += 1
            try:
                await asyncio.wait({granted}, timeout=self.timeout_s)
            except BaseException:  # the client left while waiting
                self._give_up(who, granted, nbytes)
                raise
            if not granted.done():
                self._give_up(who, granted, nbytes)
                raise Busy(f"The server's memory for answers ({self.max_bytes / 2**20:.0f} MB) stayed full for "
                           f"{self.timeout_s:.0f} s; try again shortly.")
        return Reservation(self, who, nbytes)

    def _give_up(self, who: str, granted: asyncio.Future, nbytes: int) -> None:
        if granted.done():  # granted after all: pass the room on
            self._release(who, nbytes)
        else:
            granted.cancel()  # skipped when its turn comes
            self._wake()

    def _take(self, who: str, nbytes: int) -> None:
        self.reserved += nbytes
        self.peak = max(self.peak, self.reserved)
        self._holding[who] = self._holding.get(who, 0) + nbytes
        self._grants += 1
        self._served[who] = self._grants
        if len(self._served) > 4096:  # forget the clients served longest ago
            for old in sorted(self._served, key=self._served.get)[:1024]:
                del self._served[old]
        if self.cache is not None:
            self.cache.make_room(self.reserved)

    def _release(self, who: str, nbytes: int) -> None:
        self.reserved -= nbytes
        left = self._holding.get(who, 0) - nbytes
        if left > 0:
            self._holding[who] = left
        else:
            self._holding.pop(who, None)
        if self.cache is not None:
            self.cache.make_room(self.reserved)
        self._wake()

    def _wake(self) -> None:
        """Grant the waiting requests in turn: clients holding no room first, then the one
        served longest ago. A client holding nothing whose request does not fit holds the line
        until it does (nothing starves it); one that holds room already is passed over (it can
        wait for its own room to come back)."""
        while True:
            for who, queue in list(self._queues.items()):  # drop those that gave up
                while queue and queue[0][1].done():
                    queue.popleft()
                if not queue:
                    del self._queues[who]
            turns = sorted(self._queues, key=lambda w: (w in self._holding, self._served.get(w, 0)))  # ties: queued first
            for who in turns:
                nbytes, granted = self._queues[who][0]
                if self.reserved + nbytes <= self.max_bytes:
                    self._queues[who].popleft()
                    self._take(who, nbytes)
                    granted.set_result(None)
                    break
                if who not in self._holding:
                    return
            else:
                return

    def _release_from_any_thread(self, who: str, nbytes: int) -> None:
        if self._loop is None or self._loop.is_closed():
            self.reserved -= nbytes
        elif threading.get_ident() == self._loop_thread:
            self._release(who, nbytes)
        else:
            self._loop.call_soon_threadsafe(self._release, who, nbytes)


class Reservation:
    """Bytes held in a ByteBudget by a client until `release()` (idempotent)."""

    def __init__(self, budget: ByteBudget, who: str, nbytes: int):
        self.budget = budget
        self.who = who
        self.nbytes = nbytes

    def shrink(self, nbytes: int) -> None:
        """Keep only `nbytes` (what the built body really holds), giving back the rest."""
        if nbytes < self.nbytes:
            give, self.nbytes = self.nbytes - nbytes, nbytes
            self.budget._release_from_any_thread(self.who, give)

    def release(self) -> None:
        give, self.nbytes = self.nbytes, 0
        if give:
            self.budget._release_from_any_thread(self.who, give)

    def until_collected(self, owner: object) -> None:
        """Release when `owner` (a response never sent) is garbage, at the latest."""
        weakref.finalize(owner, self.release)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8


def tune_malloc(arenas: int = 2, mmap_threshold: int = 1 << 20, trim_threshold: int = 64 << 20) -> bool:
    """glibc's allocator, set for a server whose big buffers come and go in many threads.

    - At most `arenas` arenas (by default one per thread, up to 8 per core, each keeping what
      was freed in it).
    - Every allocation from `mmap_threshold` bytes up is mapped on its own and returned to the
      system when freed. By default the threshold rises to the largest block freed, up to 32 MB,
      after which such blocks are carved from the heaps, fragment them and are never returned:
      in a 4-minute soak of 30 students RSS climbed past 4.5 GB and was still rising, with 200 MB
      in the run cache.
    - Free memory at the top of a heap is returned beyond `trim_threshold`. Left low (128 KB
      once the mmap threshold is fixed), the heaps are trimmed and grown again all the time: a
      64-token analysis of GPT-2 small page-faulted 1,007 times with 2 MB, 71 times with 64 MB
      (720 with glibc's defaults).

    False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    ok = mallopt(M_ARENA_MAX, arenas) == 1
    ok &= mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1
    ok &= mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1
    return bool(ok)
