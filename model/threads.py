"""The machine's cores, shared between the forward passes running at once.

A pass alone runs fastest on every core; two passes at once, each on every core, oversubscribe
them (on 2 cores a 64-token analysis beside a stream of decode steps took 346 ms instead of
277 ms with one thread each, and each step took 157 ms instead of 90 ms). So a pass uses
cores // passes running.

Torch's intra-op thread count belongs to the thread that sets it (OpenMP's per-thread setting):
one pass cannot change another's. So each pass sets its own as it starts, and again at its
checkpoints (`checkpoint()`, between the engine's blocks) when the number of passes running has
changed since: an analysis that started alone gives up a core within one block of a decode step
starting beside it, and takes it back after. A pass paused by the forward queue (its slot given
to someone waiting, app/serving/concurrency.py) does not count as running while it waits (`paused()`).

What a pass costs is counted in multiply-adds (`block_macs`, `forward_macs`): the arithmetic of
its matrix products, from the model's shapes. The server divides it by the speed it measured on
its own passes to estimate how long a request would take.
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


@contextmanager
def paused() -> Iterator[None]:
    """In a pass's thread, while it waits for its turn again: the other passes get its cores, and
    it takes its share back after. Nothing outside a ThreadShare's pass."""
    share = getattr(_local, "share", None)
    if share is None:
        yield
        return
    with share._lock:
        share.running -= 1
    try:
        yield
    finally:
        with share._lock:
            share.running += 1
        share.refresh()


def block_parts(config, n_new: int, n_keys: int | None = None, observed: bool = False) -> dict[str, int]:
    """Multiply-adds of one block's parts, in the order it computes them, for `n_new` positions
    attending to `n_keys` (all of them, for a prompt): Q, K and V; the scores and z; the output
    projection (hook_attn_out); the MLP's two products (hook_mlp_out). `observed`: the pattern
    kept, its scores computed again beside the fused kernel (model/engine.py)."""
    d, d_mlp = config.n_embd, config.n_inner or 4 * config.n_embd
    n_keys = n_new if n_keys is None else n_keys
    return {"qkv": 3 * n_new * d * d, "attend": (3 if observed else 2) * n_new * n_keys * d, "attn_out": n_new * d * d,
            "mlp_out": 2 * n_new * d * d_mlp}


def block_macs(config, n_new: int, n_keys: int | None = None, observed: bool = False) -> int:
    """Multiply-adds of one block (`block_parts`, all of them)."""
    return sum(block_parts(config, n_new, n_keys, observed).values())


def forward_macs(config, n_tokens: int, observed: bool = False) -> int:
    """Multiply-adds of a prompt's whole pass: every block, and the last position's unembedding;
    `observed`: with every layer's attention pattern kept."""
    return config.n_layer * block_macs(config, n_tokens, observed=observed) + config.n_embd * config.vocab_size


def checkpoint() -> None:
    """Between chunks of a long pass: take the pass's share of the cores again, if it changed.
    Nothing outside a ThreadShare's pass (a notebook, a test)."""
    share = getattr(_local, "share", None)
    if share is not None:
        share.refresh()
