"""The decode batcher: concurrent generations stepped together, one forward pass per step for
all of them (model/batching.py), in turn with everyone else's work in the forward queue.

A generation's prompt runs alone, in its client's own turn (`prefill`). Its sequence then waits
to join the batch, which a single task steps for as long as it has members: between two steps,
finished sequences and those whose client left are dropped and waiting ones join (at most
`max_batch`; the rest join as places free up). Each step takes one turn of the forward queue
under the name DECODE, which counts there as the generations it advances (concurrency.FairSlots).

    batcher = DecodeBatcher(explainer, limiter, max_batch=16, metrics=None)
    async with contextlib.aclosing(batcher.generate(request)) as steps:
        async for step in steps: ...     # model.generation.Step, the first one from the prefill
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from model import Explainer
from model.batching import DecodeBatch, Request, Sequence, Step

from app.serving.clients import client
from app.serving.concurrency import DECODE, ForwardLimiter

_END = None  # put on a member's queue when its sequence is complete


@dataclass(eq=False)
class _Member:
    sequence: Sequence
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)  # Step | BaseException | _END
    gone: bool = False  # its client stopped reading


class DecodeBatcher:
    def __init__(self, explainer: Explainer, limiter: ForwardLimiter, max_batch: int, metrics=None):
        self.explainer = explainer
        self.limiter = limiter
        self.max_batch = max_batch
        self.metrics = metrics  # app/serving/metrics.py Metrics, or None
        self._batch = DecodeBatch(explainer)
        self._members: list[_Member] = []  # in the batch, in its order
        self._joining: deque[_Member] = deque()
        self._task: asyncio.Task | None = None

    @property
    def active(self) -> int:
        """Generations past their prompt: in the batch or waiting to join it."""
        return len(self._members) + len(self._joining)

    async def generate(self, request: Request) -> AsyncIterator[Step]:
        """The generation's steps as they come. Closing the iterator early (the client left)
        drops the sequence before the next step."""
        sequence, first = await self.limiter.run(self._batch.prefill, request, admitted=True)
        if first is None:
            return
        yield first
        if sequence.finished:
            return
        member = _Member(sequence)
        self._joining.append(member)
        self._start()
        try:
            while (item := await member.queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            member.gone = True

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="decode-batcher")

    def _regroup(self) -> tuple[list[Sequence], list[Sequence]]:
        """Between steps: who leaves (finished or abandoned) and who joins. The caches are
        regrouped by `_advance`, in the worker thread: padding a long prompt against sixteen rows
        copies hundreds of MB, which must not hold up the event loop."""
        leaving = [m for m in self._members if m.gone or m.sequence.finished]
        for member in leaving:
            self._members.remove(member)
            member.queue.put_nowait(_END)
        joining = []
        while self._joining and len(self._members) < self.max_batch:
            member = self._joining.popleft()
            if not member.gone:
                self._members.append(member)
                joining.append(member.sequence)
        if self.metrics is not None:
            self.metrics.active_generations.set(self.active)
        return [m.sequence for m in leaving], joining

    def _advance(self, batch: DecodeBatch, leaving: list[Sequence], joining: list[Sequence]):
        """In the worker thread: regroup the caches, then one step for every member."""
        for sequence in leaving:
            batch.leave(sequence)
        for sequence in joining:
            batch.join(sequence)
        return batch.step()

    async def _run(self) -> None:
        client.set(DECODE)  # this task's turns in the forward queue are the batch's, not a client's
        try:
            while True:
                leaving, joining = self._regroup()
                if not self._members:
                    # Nobody left to step: the batch is emptied with the next one (or now, if idle).
                    self._batch = DecodeBatch(self.explainer)
                    return
                if self.metrics is not None:
                    self.metrics.decode_batch_size.observe(len(self._members))
                self.limiter.decode_weight(len(self._members))
                try:
                    results = await self.limiter.run(self._advance, self._batch, leaving, joining, admitted=True)
                except Exception as error:  # a time limit, the server stopping, a failed pass
                    self._fail(error)
                    continue
                members = {id(m.sequence): m for m in self._members}
                for sequence, step in results:
                    members[id(sequence)].queue.put_nowait(step)
        finally:
            self._task = None

    def _fail(self, error: Exception) -> None:
        """Every member gets the error. The batch is replaced, not reused: after a time limit its
        step may still be running in a worker thread, writing into the same cache."""
        for member in self._members:
            member.queue.put_nowait(error)
        self._members = []
        self._batch = DecodeBatch(self.explainer)
