"""Decoding: every active sequence steps in one forward pass of the engine (model/engine.py).

A decode step of GPT-2 small reads all of its weights to produce one token per sequence, so
sixteen sequences stepped together cost little more than one. Each sequence keeps its own
sampling settings, its own interventions and its own rows of the key/value cache; sequences
join and leave between steps. A generation alone is a batch of one (model/generation.py).

How no number changes:
- A sequence's prompt runs alone (`prefill`), through the engine with its interventions, so its
  first distribution is that of the prompt's own pass.
- In the batch, sequences of different lengths share one cache, left-padded. The padded key
  columns are masked (weight exactly 0 after softmax) and every sequence gets its own
  positions, so a padded row computes what it computes alone, up to float rounding in the
  batched matrix products (tests/test_batching.py: probabilities within 1e-5, same tokens).
- A sequence's interventions edit its own row only, at the positions they name (or at every
  position, the new ones included, when they name none): a batch may mix generations with and
  without interventions.
- Sampling is per sequence with its own seed (step i draws with seed + i).

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

from . import engine
from .explainer import Explainer
from .interventions import Editor
from .sampling import Distribution, distribution, sample
from .tokenizer import TokenPiece

NO_EDITS = Editor(())


@dataclass
class Step:
    step: int
    token: TokenPiece
    prob: float
    dist: Distribution


@dataclass(frozen=True)
class Request:
    """One generation's prompt, settings and interventions (checked already, for a generation:
    interventions.check(..., generation=True))."""
    ids: tuple[int, ...]
    max_new_tokens: int
    temperature: float
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    editor: Editor = NO_EDITS


@dataclass(eq=False)
class Sequence:
    request: Request
    steps: int  # how many new tokens it will produce (max_new_tokens, cut at the context limit)
    done: int = 0  # tokens produced so far
    last: int = 0  # the token it feeds next
    pending: bytes = b""  # the tokenizer's incomplete UTF-8 bytes
    generated: list[int] = field(default_factory=list)  # the ids drawn so far
    cache: engine.KVCache | None = field(default=None, repr=False)  # its own, until it joins

    @property
    def finished(self) -> bool:
        return self.done >= self.steps

    @property
    def length(self) -> int:
        """Positions in its cache: the prompt and every token fed since; the next token's position."""
        return len(self.request.ids) + self.done - 1


def _editing(editors: list[tuple[int, Editor, int]]) -> engine.BatchRecord:
    """A record that applies each sequence's interventions to its own row: (row, editor, the
    position of the row's first new token)."""
    def record(name: str, tensor: torch.Tensor) -> torch.Tensor | None:
        out = None
        for row, editor, offset in editors:
            edited = editor(name, tensor[row], offset)
            if edited is not None:
                if out is None:
                    out = tensor.clone()
                out[row] = edited
        return out
    return record


class DecodeBatch:
    def __init__(self, explainer: Explainer):
        self.explainer = explainer
        self.members: list[Sequence] = []
        self._cache: engine.KVCache | None = None  # the members' rows, left-padded

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
        sequence.generated.append(token_id)
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
        ids = torch.tensor(request.ids, dtype=torch.long, device=explainer.loaded.device)
        editor = request.editor
        logits, sequence.cache = engine.prefill(explainer.model, ids, _editing([(0, editor, 0)]),
                                                fused=lambda layer: layer not in editor.pattern_layers)
        return sequence, self._draw(sequence, logits)

    def join(self, sequence: Sequence) -> None:
        """Add a prefilled sequence to the batch, padding on the left to a common length."""
        assert sequence.cache is not None and not sequence.finished
        own, sequence.cache = sequence.cache, None
        self._cache = own if self._cache is None else engine.KVCache.stacked([self._cache, own])
        self.members.append(sequence)

    def leave(self, sequence: Sequence) -> None:
        """Drop a member's rows (and the columns that were padding for everyone left)."""
        if sequence not in self.members:
            return
        index = self.members.index(sequence)
        self.members.pop(index)
        self._cache = self._cache.without(index) if self.members else None

    @torch.inference_mode()
    def step(self) -> list[tuple[Sequence, Step]]:
        """One forward pass for every member: each one's next token and distribution. A step
        that fails part-way leaves the cache as it was (its columns are counted only at the end):
        app/serving/batcher.py still replaces the batch, since the failure may recur."""
        if not self.members:
            return []
        device = self._cache.valid.device
        tokens = torch.tensor([s.last for s in self.members], dtype=torch.long, device=device)
        positions = torch.tensor([s.length for s in self.members], dtype=torch.long, device=device)
        editors = [(row, s.request.editor, s.length) for row, s in enumerate(self.members) if s.request.editor]
        # A decode step never edits a pattern: a generation's pattern patch names a prompt position.
        logits = engine.decode(self.explainer.model, tokens, positions, self._cache, _editing(editors))  # [batch, d_vocab]
        return [(s, self._draw(s, logits[i])) for i, s in enumerate(self.members)]
