"""Continuous batching of generation: every active sequence steps in one forward pass.

A decode step of GPT-2 small reads all of its weights to produce one token per sequence, so
sixteen sequences stepped together cost little more than one. Each sequence keeps its own
sampling settings and its own rows of the key/value cache; sequences join and leave between
steps.

How no number changes:
- A sequence's prompt runs alone (`prefill`), exactly as `generation.generate` runs it, so its
  first distribution is that path's, bit for bit.
- In the batch, sequences of different lengths share one cache tensor, left-padded. The padded
  key columns are masked (weight exactly 0 after softmax) and every sequence gets its own
  position ids, so a padded row computes what it computes alone, up to float rounding in the
  batched matrix products (tests/test_batching.py: probabilities within 1e-5, same tokens).
- Sampling is per sequence with its own seed (step i draws with seed + i), as in `generate`.

    batch = DecodeBatch(explainer)
    sequence, first = batch.prefill(request)      # the prompt alone: step 0
    batch.join(sequence)                          # between steps
    for sequence, step in batch.step(): ...       # one forward for every member: their next Step
    batch.leave(sequence)                         # done, or its client left

Not thread-safe: one thread steps the batch, and joins and leaves happen between steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers.cache_utils import Cache, DynamicLayer

from .explainer import Explainer
from .generation import Step
from .sampling import distribution, sample


@dataclass(frozen=True)
class Request:
    """One generation's prompt and settings (the same as `generation.generate`'s arguments)."""
    ids: tuple[int, ...]
    max_new_tokens: int
    temperature: float
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None


@dataclass(eq=False)
class Sequence:
    request: Request
    steps: int  # how many new tokens it will produce (max_new_tokens, cut at the context limit)
    done: int = 0  # tokens produced so far
    last: int = 0  # the token it feeds next
    pending: bytes = b""  # the tokenizer's incomplete UTF-8 bytes
    # Its own key/value cache until it joins: per layer ([1, head, pos, d_head], same)
    cache: list[tuple[torch.Tensor, torch.Tensor]] | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        return self.done >= self.steps

    @property
    def length(self) -> int:
        """Positions in its cache: the prompt and every token fed since."""
        return len(self.request.ids) + self.done - 1


class DecodeBatch:
    def __init__(self, explainer: Explainer):
        self.explainer = explainer
        self.members: list[Sequence] = []
        # The members' caches, one row each, left-padded: per layer, keys and values [batch, head, pos, d_head]
        self._kv: list[GrowingLayer] = []
        self._valid = torch.zeros(0, 0, dtype=torch.long)  # [batch, pos]: 1 where a cache column is real

    def __len__(self) -> int:
        return len(self.members)

    def _draw(self, sequence: Sequence, logits: torch.Tensor) -> Step:
        r = sequence.request
        dist = distribution(logits, r.temperature, r.top_k, r.top_p)
        token_id = sample(dist, None if r.seed is None else r.seed + sequence.done)
        (piece,), sequence.pending = self.explainer.tokenizer.stream_texts([token_id], sequence.pending)
        step = Step(step=sequence.done, token=piece, prob=float(dist.probs[token_id]), dist=dist)
        sequence.done += 1
        sequence.last = token_id
        return step

    @torch.inference_mode()
    def prefill(self, request: Request) -> tuple[Sequence, Step | None]:
        """Run the prompt alone and draw the first token: (the sequence, its step 0, or None when
        the prompt fills the context already)."""
        explainer = self.explainer
        steps = min(request.max_new_tokens, explainer.n_ctx - len(request.ids))
        sequence = Sequence(request=request, steps=max(0, steps),
                            pending=explainer.tokenizer.stream_texts(list(request.ids), b"")[1])
        if sequence.steps == 0:
            return sequence, None
        inputs = torch.tensor([request.ids], dtype=torch.long, device=explainer.loaded.device)
        out = explainer.model(input_ids=inputs, use_cache=True, logits_to_keep=1)
        sequence.cache = [(layer.keys, layer.values) for layer in out.cache.layers]
        return sequence, self._draw(sequence, out.logits[0, -1])

    def join(self, sequence: Sequence) -> None:
        """Add a prefilled sequence to the batch, padding on the left to a common length."""
        assert sequence.cache is not None and not sequence.finished
        own = sequence.cache
        sequence.cache = None
        mask = torch.ones(1, own[0][0].shape[2], dtype=torch.long, device=own[0][0].device)
        if not self.members:
            self._kv, self._valid = [GrowingLayer(k, v) for k, v in own], mask
        else:
            width = max(self._valid.shape[1], mask.shape[1])
            self._kv = [GrowingLayer(torch.cat([_pad(layer.keys, width), _pad(k, width)]),
                                     torch.cat([_pad(layer.values, width), _pad(v, width)]))
                        for layer, (k, v) in zip(self._kv, own)]
            self._valid = torch.cat([_pad(self._valid, width), _pad(mask, width)])
        self.members.append(sequence)

    def leave(self, sequence: Sequence) -> None:
        """Drop a member's rows (and the columns that were padding for everyone left)."""
        if sequence not in self.members:
            return
        index = self.members.index(sequence)
        self.members.pop(index)
        if not self.members:
            self._kv, self._valid = [], torch.zeros(0, 0, dtype=torch.long)
            return
        keep = torch.tensor([i for i in range(len(self.members) + 1) if i != index])
        valid = self._valid[keep]
        start = int(valid.any(dim=0).long().argmax())  # the first column someone still uses
        self._valid = valid[:, start:]
        self._kv = [GrowingLayer(layer.keys[keep, :, start:], layer.values[keep, :, start:]) for layer in self._kv]

    @torch.inference_mode()
    def step(self) -> list[tuple[Sequence, Step]]:
        """One forward pass for every member: each one's next token and distribution. A step
        that fails part-way leaves some layers a column longer than others: the batch is then
        dropped, not stepped again (app/batcher.py replaces it)."""
        if not self.members:
            return []
        device = self._valid.device
        inputs = torch.tensor([[s.last] for s in self.members], dtype=torch.long, device=device)
        positions = torch.tensor([[s.length] for s in self.members], dtype=torch.long, device=device)
        valid = torch.cat([self._valid, torch.ones(len(self.members), 1, dtype=torch.long, device=device)], dim=1)
        model = self.explainer.model
        out = model.transformer(input_ids=inputs, attention_mask=valid, position_ids=positions,
                                cache=Cache(layers=self._kv), use_cache=True)  # the layers grow in place
        self._valid = valid
        logits = unembed(out.last_hidden_state[:, -1], model.lm_head.weight)  # [batch, d_vocab]
        return [(s, self._draw(s, logits[i])) for i, s in enumerate(self.members)]


class GrowingLayer(DynamicLayer):
    """One layer's cached keys and values for the batch, [batch, head, pos, d_head] each, held in
    buffers with room for the next steps: a step writes its new column in place. transformers'
    DynamicLayer concatenates instead, copying the whole cache at every step, and so did building
    a DynamicCache from tensors: two copies of every member's cache per step, a quarter of the
    step's time at 16 sequences."""

    ROOM = 32  # columns added when the buffers are full: one copy every 32 steps

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.device, self.is_initialized = keys.device, True
        self._hold(keys, values)

    def _hold(self, keys: torch.Tensor, values: torch.Tensor, room: int = 0) -> None:
        """Copy keys and values into new buffers with max(room, ROOM) free columns after them."""
        batch, heads, width, d_head = keys.shape
        room = max(room, self.ROOM)
        self._keys = keys.new_empty(batch, heads, width + room, d_head)
        self._values = values.new_empty(batch, heads, width + room, d_head)
        self._keys[:, :, :width] = keys
        self._values[:, :, :width] = values
        self.keys, self.values = self._keys[:, :, :width], self._values[:, :, :width]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Append the step's keys and values [batch, head, new, d_head]: the whole cache after."""
        width, new = self.keys.shape[2], key_states.shape[2]
        # DynamicLayer's own methods (batch_select_indices and the like) replace self.keys with
        # a new tensor: hold that one, rather than write beside rows that are no longer the cache.
        if width + new > self._keys.shape[2] or self.keys.data_ptr() != self._keys.data_ptr():
            self._hold(self.keys, self.values, new)
        self._keys[:, :, width:width + new] = key_states
        self._values[:, :, width:width + new] = value_states
        self.keys, self.values = self._keys[:, :, :width + new], self._values[:, :, :width + new]
        return self.keys, self.values


# Up to this many rows, the unembedding is computed as W_U @ h^T: see `unembed`.
UNEMBED_AS_COLUMNS = 8


def unembed(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """hidden [batch, d_model] @ weight^T ([d_vocab, d_model], lm_head's) -> logits [batch, d_vocab].

    For a few rows, `hidden @ weight.T` takes MKL's small-batch sgemm, which on this kind of CPU
    (AMD EPYC, 1 thread) took 27 ms for 2 rows and 40 ms for 3 against 12 ms for one: the 154 MB
    matrix is streamed once per row. `weight @ hidden.T` (the matrix as the left operand, as
    stored) streams it once: 8 ms for 2 rows, 11 for 3, 14 for 4. From about 8 rows the plain
    product is as fast or faster (bench/bench_batching.py prints the step times per batch size).
    Either way the same sums, in another order: float rounding, as between any batch sizes."""
    if 1 < hidden.shape[0] <= UNEMBED_AS_COLUMNS:
        return (weight @ hidden.T).T
    return hidden @ weight.T


def _pad(x: torch.Tensor, width: int) -> torch.Tensor:
    """x with zero columns on the left of its position axis (the last for a mask [batch, pos],
    the third for keys and values [batch, head, pos, d_head]) up to `width`."""
    axis = 1 if x.dim() == 2 else 2
    missing = width - x.shape[axis]
    if missing == 0:
        return x
    shape = list(x.shape)
    shape[axis] = missing
    return torch.cat([x.new_zeros(shape), x], dim=axis)
