"""Bounded forward passes: they run off the event loop, a few at a time, with a queue limit
(503 + Retry-After when full) and a time limit per request (503 as well). Free slots go to the
waiting clients in turn, so one client's queue cannot starve another's single request.

Long work never holds the model (in the spirit of chunked prefill in serving engines):
- Preemption. Work that checks a CancelToken between layers or chunks (the patching sweep, the
  logit lens, an analysis) gives its slot back at a check once it has held it for QUANTUM_S and
  someone else waits: the slot goes to the next client in turn, the work waits in its own
  client's line (behind that client's other requests) and goes on where it stopped. A small
  request therefore waits for at most one chunk of someone's long work, not for all of it.
- The time limit counts the work's running time, and each of its waits on its own: a job paused
  for others is never abandoned for having been polite.
- Too costly. A request says what its work costs (`Cost`, in multiply-adds); the server divides
  that by the speed it measured on its own passes of such work (`Speed`) and refuses at once,
  with a 422 too_costly naming the field, work that could not finish within the time limit.
- One long job per client. Work estimated at LONG_S or more (or not yet estimable) runs one job
  at a time per client; the next waits its turn rather than being refused (a page that asks for
  the lens and a patching sweep at once gets both), and gets it at the other's next check once
  that one has run QUANTUM_S: the two go on in turns, never at once."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from model import threads
from model.cancellation import Cancelled, CancelToken

from app.serving.clients import client
from app.errors import ApiError, field_error

T = TypeVar("T")
RETRY_AFTER_S = 2
STOPPING = "The server is stopping; try again in a moment."
MAX_WAITING_PER_CLIENT = 8  # a page asks for up to about six things at once
QUANTUM_S = 0.25  # what long work runs, at least, before it gives its slot to someone waiting
LONG_S = 0.5  # estimated running time from which work is long: one such job at a time per client
MIN_MEASURED_S = 0.001  # a shorter span between checks is too short to time


# The batched decode step's place in the queue (app/serving/batcher.py): not an address, so no client has it.
DECODE = "\0decode"


class FairSlots:
    """Slots handed out in turn between clients: a free slot goes to a waiting client that holds
    none now before one that does, and among those to the one served longest ago (one never
    served first; a client counts as served when it gets a slot and again when it gives one
    back); within a client, in arrival order. A client with a queue of work therefore delays
    another's single request by at most the one it is running, and long work that gives its
    slot back goes behind everyone waiting then.

    The batched decode step (DECODE) counts as the generations it advances (`decode_weight`, set
    by the batcher): in a round of the other waiting clients and those generations, it gets one
    turn per generation, and at most every other turn. A lone generation among ten students'
    analyses is stepped once a round, as when each generation stepped alone; sixteen generations
    are stepped every other turn, and an analysis waits behind at most one step per turn."""

    def __init__(self, slots: int):
        self.free = slots
        self.queued = 0  # futures in the queues (some perhaps given up): a cheap look from any thread
        self._queues: OrderedDict[str, deque[asyncio.Future]] = OrderedDict()
        self._served: dict[str, int] = {}  # client -> when it last got or gave back a slot
        self._holding: dict[str, int] = {}  # client -> slots it holds now
        self._clock = 0
        self.decode_weight = 1  # generations one DECODE turn advances
        self._since_decode = 0  # turns given to others since DECODE's last

    def _next(self) -> str:
        """The waiting client to serve next."""
        others = [w for w in self._queues if w != DECODE]
        if DECODE in self._queues and (not others or self._since_decode * self.decode_weight >= len(others)):
            return DECODE
        # ties: the earliest queued
        return min(others, key=lambda w: (self._holding.get(w, 0) > 0, self._served.get(w, 0)))

    def _stamp(self, who: str) -> None:
        self._clock += 1
        self._served[who] = self._clock
        if len(self._served) > 4096:  # forget the clients served longest ago
            for old in sorted(self._served, key=self._served.get)[:1024]:
                del self._served[old]

    def _grant(self, who: str, future: asyncio.Future) -> None:
        self._since_decode = 0 if who == DECODE else self._since_decode + 1
        self._holding[who] = self._holding.get(who, 0) + 1
        self._stamp(who)
        future.set_result(None)

    def waiting_for(self, who: str) -> int:
        return sum(not f.done() for f in self._queues.get(who, ()))

    def has_waiters(self) -> bool:
        return any(not f.done() for queue in self._queues.values() for f in queue)

    @property
    def idle(self) -> bool:
        """Nobody holds a slot or waits for one."""
        return not self._holding and not self.has_waiters()

    def acquire(self, who: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if self.free > 0 and not self._queues:
            self.free -= 1
            self._grant(who, future)
        else:
            self._queues.setdefault(who, deque()).append(future)
            self.queued += 1
        return future

    def release(self, who: str) -> None:
        """`who` gives a slot back: to the next waiting client in turn, or to the free ones."""
        held = self._holding.get(who, 0) - 1
        if held > 0:
            self._holding[who] = held
        else:
            self._holding.pop(who, None)
        self._stamp(who)
        while self._queues:
            next_who = self._next()
            queue = self._queues[next_who]
            future = queue.popleft()
            self.queued -= 1
            if not queue:
                del self._queues[next_who]
            if not future.done():  # skip waiters that gave up (time limit, closing, client gone)
                self._grant(next_who, future)
                return
        self.free += 1


class Busy(ApiError):
    """503 + Retry-After. `code`: busy (a full queue), timeout, or stopping."""

    def __init__(self, detail: str, code: str = "busy"):
        super().__init__(503, code, detail, headers={"Retry-After": str(RETRY_AFTER_S)})


@dataclass(frozen=True)
class Cost:
    """What a request's work costs, known before it is queued."""

    kind: str  # "analysis", "patching", "lens", "probe": each kind's speed is measured on its own
    macs: float  # multiply-adds (model/threads.py forward_macs and the like)
    field: str  # the request's field that sets it: a too_costly 422 names it
    what: str  # the work, in words: "patching 64 tokens at every layer and position"
    advice: str  # what to ask for instead
    # Multiply-adds between two of its checks (a block of the forward pass; a block for every
    # cell of a patching sweep; a chunk of the lens): work done in smaller grains is slower per
    # multiply-add (the fixed costs of each step weigh more), so it does not tell this one's speed.
    grain: float
    # Its checks do not say what they did (the engine's pass checks before each block): each
    # counts as one grain. Otherwise the work reports it (CancelToken.check(work)).
    counted: bool = False


@dataclass(frozen=True)
class Costed:
    """Work that says what it costs, for `ForwardLimiter.run`: called as fn(*args, **kwargs). It
    passes through whatever queues or shares the work (app/runs/answers.py, the Coalescer) unchanged."""

    fn: Callable
    cost: Cost

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


class Speed:
    """Multiply-adds a second, per kind of work, measured on this server's own passes: from a
    job's first check to its last, the work its checks report over the time between them (the
    time it spent paused for others left out; the fixed costs around a pass, parsing the request
    and encoding the answer, are not its speed), with the grain of that work (multiply-adds per
    check).

    A job is estimated from measurements of work of its grain or coarser (from half its grain
    on), of its own kind if there are some, else of any kind: finer work goes slower per
    multiply-add (a 10-token prompt's blocks are mostly fixed costs), and would make a long job
    look several times slower than it is. Of those, the fastest of the last RECENT: work is refused
    as too costly only when it could not finish even at that speed. A busy machine makes single
    measurements slow (on this 2-core machine, shared, the same 11-token analysis took 0.1 s to
    1.2 s); that may not refuse a request that would finish, but slowness that lasts does count.
    With nothing comparable measured there is no estimate, and nothing is refused on a guess: the
    first such job measures it."""

    RECENT = 16

    def __init__(self):
        # kind -> its last RECENT measurements: (multiply-adds per check, multiply-adds a second)
        self._recent: dict[str, deque[tuple[float, float]]] = {}

    def observe(self, kind: str, macs: float, seconds: float, grain: float) -> None:
        if macs > 0 and seconds >= MIN_MEASURED_S:
            self._recent.setdefault(kind, deque(maxlen=self.RECENT)).append((grain, macs / seconds))

    def rate(self, kind: str, grain: float) -> float | None:
        """Multiply-adds a second for work of `kind` and `grain`; None if nothing comparable was measured."""
        def comparable(measured) -> list[float]:
            return [rate for g, rate in measured if g >= grain / 2]

        rates = comparable(self._recent.get(kind, ())) or comparable(m for recent in self._recent.values() for m in recent)
        return max(rates, default=None)

    def seconds(self, cost: Cost) -> float | None:
        rate = self.rate(cost.kind, cost.grain)
        return None if rate is None else cost.macs / rate


class _Job:
    """One request's work, from its first slot until its thread ends."""

    def __init__(self, who: str, cost: Cost | None, long: bool):
        self.who, self.cost, self.long = who, cost, long
        self.token = CancelToken()
        self.holding = False  # one of the limiter's slots
        self.turn = False  # its client's turn for long work
        self.ran = 0.0  # seconds it held a slot before `since`
        self.since = 0.0  # loop time it last got its slot
        self.paused_at: float | None = None  # loop time it gave its slot back, while it waits
        self.pause_task: asyncio.Task | None = None
        self.resumed = 0.0  # perf_counter in its thread when it last started or went on
        # Its progress, in its thread (perf_counter, multiply-adds): at its first check and its
        # last, and the seconds it was paused between them.
        self.checks = 0
        self.first = self.last = (0.0, 0.0)
        self.paused_s = self.paused_s_at_last = 0.0

    def progress(self) -> None:
        """At a check: the work done so far (reported, or counted in grains) and when."""
        self.checks += 1
        counted = (self.checks - 1) * self.cost.grain if self.cost is not None and self.cost.counted else 0.0
        self.last = (time.perf_counter(), self.token.work + counted)
        self.paused_s_at_last = self.paused_s
        if self.checks == 1:
            self.first = self.last

    def measured(self) -> tuple[float, float, float]:
        """(multiply-adds, seconds running, multiply-adds per check) from its first check to its last."""
        macs = self.last[1] - self.first[1]
        return macs, self.last[0] - self.first[0] - self.paused_s_at_last, macs / max(1, self.checks - 1)


class ForwardLimiter:
    def __init__(self, max_concurrent: int, max_waiting: int, timeout_s: float,
                 pass_running: Callable[[], AbstractContextManager] = nullcontext):
        self.max_waiting = max_waiting
        self._pass_running = pass_running  # entered in the worker thread around each pass (model/threads.py)
        self.timeout_s = timeout_s
        self._slots = FairSlots(max_concurrent)
        self._turns: dict[str, FairSlots] = {}  # per client, one turn: its long work, one job at a time
        # Paused work waits in its thread: as many threads as slots, and one per job that may pause.
        self._max_paused = max_waiting
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent + max_waiting, thread_name_prefix="forward")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = asyncio.Event()
        self._jobs: set[_Job] = set()  # running or paused
        self._waiting_by: dict[str, int] = {}  # client -> its requests waiting to start
        self.waiting = 0
        self.running = 0
        self.paused = 0
        self.quantum_s = QUANTUM_S
        self.speed = Speed()
        # Called with each grant's wait in seconds (app/serving/metrics.py sets it); None: not measured.
        self.observe_wait: Callable[[float], None] | None = None

    def decode_weight(self, generations: int) -> None:
        """How many generations the next DECODE turn advances (its share of the queue's turns)."""
        self._slots.decode_weight = max(1, generations)

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def close(self) -> None:
        """The server is stopping: queued work is refused at once (503), new work too; long work
        already running or paused stops at its next check, the rest finishes or ends with the process."""
        self._closing.set()
        for job in list(self._jobs):
            job.token.cancel()

    def admit(self) -> None:
        """Busy (503 + Retry-After) if the queue is full, this client has its share of it
        waiting already, or the server is stopping."""
        if self._closing.is_set():
            raise Busy(STOPPING, "stopping")
        if self.waiting >= self.max_waiting:
            raise Busy("The model is busy with other requests; try again in a few seconds.")
        if self._waiting_by.get(client.get(), 0) >= MAX_WAITING_PER_CLIENT:
            raise Busy(f"You have {MAX_WAITING_PER_CLIENT} requests waiting for the model already; "
                       "try again when they are answered.")

    def estimate(self, cost: Cost) -> float | None:
        """Seconds `cost` would run on this server, or a 422 too_costly naming its field when
        that is more than the time limit; None while the server has measured nothing comparable."""
        seconds = self.speed.seconds(cost)
        if seconds is not None and seconds >= self.timeout_s:
            rate = self.speed.rate(cost.kind, cost.grain)
            raise field_error(cost.field, code="too_costly", message=(
                f"{cost.what} would take about {seconds:.0f} s here (this server does about {rate / 1e9:.1f} billion "
                f"multiply-adds a second of such work), and a request may run for at most {self.timeout_s:.0f} s "
                f"(EXPLAINER_REQUEST_TIMEOUT): {cost.advice}"))
        return seconds

    async def run(self, fn: Callable[..., T], *args, admitted: bool = False, cancellable: bool = False) -> T:
        """Run fn(*args) in a worker thread once a slot is free. `admitted`: a later step of work
        already accepted through `admit()` (a generation that is streaming), which a full queue
        must not cut off halfway; it still waits its turn and counts as waiting, within the time limit.
        `cancellable`: long work, called as fn(*args, cancel=token) and checking the token
        between chunks; the token is cancelled when the caller leaves (its client went away),
        its time runs out, or the server stops, and the work ends at its next check. At a check
        it may also be paused, its slot given to someone waiting (see the module's docstring).
        Work that says what it costs (`Costed`) is refused at once with a 422 too_costly if it
        could not finish in time, runs one job at a time per client if long (LONG_S), and
        measures the server's speed for its kind."""
        cost = fn.cost if isinstance(fn, Costed) else None
        seconds = None if cost is None else self.estimate(cost)
        if not admitted:
            self.admit()
        who = client.get()
        job = _Job(who, cost, long=cost is not None and (seconds is None or seconds >= LONG_S))
        loop = self._loop = asyncio.get_running_loop()
        self.waiting += 1
        self._waiting_by[who] = self._waiting_by.get(who, 0) + 1
        queued = time.perf_counter()
        try:
            await self._start(job)
        finally:
            self.waiting -= 1
            self._waiting_by[who] -= 1
            if not self._waiting_by[who]:
                del self._waiting_by[who]
        if self.observe_wait is not None:
            self.observe_wait(time.perf_counter() - queued)
        self.running += 1
        self._jobs.add(job)
        job.since = loop.time()
        if cancellable:
            job.token.pause = functools.partial(self._yield_point, job)
        work = functools.partial(fn, *args, cancel=job.token) if cancellable else functools.partial(fn, *args)
        future = loop.run_in_executor(self._executor, self._sharing, job, work)
        # The slot is freed when the work really ends, even after a timeout or a disconnect, so
        # the number of passes running never exceeds the bound.
        future.add_done_callback(functools.partial(self._ended, job))
        try:
            return await self._outcome(job, future)
        except asyncio.CancelledError:  # the client left: long work stops at its next check
            self._stop(job)
            raise
        except Cancelled:  # only close() cancels a token someone still waits on
            raise Busy(STOPPING, "stopping") from None

    async def _start(self, job: _Job) -> None:
        """Its client's turn for long work (if long), then a slot: within the time limit."""
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        if job.long:
            await self._take_turn(job, deadline)
        try:
            await self._wait(self._slots, job.who, deadline)
        except BaseException:
            self._end_turn(job)
            raise
        job.holding = True

    async def _outcome(self, job: _Job, future: asyncio.Future) -> T:
        """The work's result, or Busy (timeout) once it has run for the time limit, or waited
        that long for its turn again after a pause."""
        loop = asyncio.get_running_loop()
        while True:
            # A pause only moves the limit later: waking at this time and looking again is enough.
            limit = job.paused_at + self.timeout_s if job.paused_at is not None else job.since + self.timeout_s - job.ran
            if limit <= loop.time():
                self._stop(job)
                if job.paused_at is not None:
                    raise Busy(f"The request waited longer than {self.timeout_s:.0f} s for its turn to go on, and was "
                               "abandoned.", "timeout")
                raise Busy(f"The request ran for longer than {self.timeout_s:.0f} s and was abandoned.", "timeout")
            done, _ = await asyncio.wait({future}, timeout=limit - loop.time())
            if done:
                return future.result()

    def _stop(self, job: _Job) -> None:
        """Nobody waits for the job any more: it stops at its next check, or now if it is paused."""
        job.token.cancel()
        if job.pause_task is not None:
            job.pause_task.cancel()

    def _ended(self, job: _Job, future: asyncio.Future) -> None:
        """On the loop, when the job's thread is done with it."""
        self._jobs.discard(job)
        if job.holding:
            job.holding = False
            job.ran += asyncio.get_running_loop().time() - job.since
            self.running -= 1
            self._slots.release(job.who)
        self._end_turn(job)
        if not future.cancelled():
            future.exception()  # retrieved, also when nobody waits for it any more (a time limit, a client gone)
        if job.cost is not None:
            self.speed.observe(job.cost.kind, *job.measured())

    async def _take_turn(self, job: _Job, deadline: float | None = None) -> None:
        """Its client's turn for long work (Busy past `deadline`, or when the server stops)."""
        try:
            await self._wait(self._turns.setdefault(job.who, FairSlots(1)), job.who, deadline)
        finally:
            self._tidy_turns(job.who)
        job.turn = True

    def _end_turn(self, job: _Job) -> None:
        if job.turn:
            job.turn = False
            self._turns[job.who].release(job.who)
            self._tidy_turns(job.who)

    def _tidy_turns(self, who: str) -> None:
        """A client's turns are forgotten once nobody holds or waits for them."""
        if who in self._turns and self._turns[who].idle:
            del self._turns[who]

    def _sharing(self, job: _Job, work: Callable[[], T]) -> T:
        job.resumed = time.perf_counter()
        with self._pass_running():
            return work()

    def _yield_point(self, job: _Job) -> None:
        """At each of the job's checks, in its worker thread: its progress is noted (for Speed),
        and once it has held its slot for `quantum_s` and someone waits (for a slot, or, long work, for its client's turn), it gives
        them its place and waits here for its own turn again, its cores left to the others."""
        job.progress()
        if job.token.cancelled or time.perf_counter() - job.resumed < self.quantum_s:
            return
        turns = self._turns.get(job.who) if job.long else None
        if not self._slots.queued and not (turns is not None and turns.queued):
            return  # a glance from this thread; the loop looks again, exactly
        pause = self._pause(job)
        try:
            handle = asyncio.run_coroutine_threadsafe(pause, self._loop)
        except RuntimeError:  # the loop is closed: the server is gone
            pause.close()
            job.token.cancel()
            return
        paused = time.perf_counter()
        with threads.paused():
            while True:
                try:
                    handle.result(timeout=0.1)
                    break
                except concurrent.futures.TimeoutError:
                    if job.token.cancelled:  # stopped while paused (close(), a loop that is gone)
                        handle.cancel()
                        return
                except BaseException:  # it did not get its turn back: it must not go on without one
                    job.token.cancel()
                    return
        job.resumed = time.perf_counter()
        job.paused_s += job.resumed - paused

    async def _pause(self, job: _Job) -> None:
        """On the loop: the job gives its slot (and its client's turn, if another of its client's
        long jobs waits for it) to the next in line, then waits for them again, in that order."""
        turns = self._turns.get(job.who) if job.turn else None
        others = self._slots.has_waiters() or (turns is not None and turns.has_waiters())
        if not others or job.token.cancelled or self._closing.is_set() or self.paused >= self._max_paused:
            return
        loop = asyncio.get_running_loop()
        job.pause_task = asyncio.current_task()
        job.paused_at = loop.time()
        job.ran += job.paused_at - job.since
        job.holding = False
        self.running -= 1
        self.paused += 1
        self._slots.release(job.who)
        if turns is not None and turns.has_waiters():
            self._end_turn(job)
        try:
            if job.long and not job.turn:
                await self._take_turn(job)
            await self._wait(self._slots, job.who)
        finally:
            self.paused -= 1
            job.pause_task = None
        job.holding = True
        self.running += 1
        job.since, job.paused_at = loop.time(), None

    async def _wait(self, slots: FairSlots, who: str, deadline: float | None = None) -> None:
        """A slot of `slots`, or Busy when `deadline` passes or the server starts stopping first."""
        if self._closing.is_set():
            raise Busy(STOPPING, "stopping")
        slot = slots.acquire(who)
        closing = asyncio.ensure_future(self._closing.wait())
        timeout = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            await asyncio.wait({slot, closing}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the client left while waiting: its work is dropped before it runs
            self._give_up(slots, who, slot, closing)
            raise
        if slot.done() and not slot.cancelled() and not self._closing.is_set():
            closing.cancel()
            return
        self._give_up(slots, who, slot, closing)
        if self._closing.is_set():
            raise Busy(STOPPING, "stopping")
        raise Busy(f"No forward slot became free within {self.timeout_s:.0f} s; try again shortly.", "timeout")

    def _give_up(self, slots: FairSlots, who: str, slot: asyncio.Future, closing: asyncio.Future) -> None:
        closing.cancel()
        if slot.done() and not slot.cancelled():
            slots.release(who)  # acquired after all: hand it to the next in line
        else:
            slot.cancel()

    def shutdown(self) -> None:
        for job in list(self._jobs):  # paused work waits in its thread: it ends at once
            job.token.cancel()
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
