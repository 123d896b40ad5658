"""Next-token distributions with temperature, top-k and top-p, and seeded sampling.

Semantics (the page's JavaScript implements the same):
p = softmax(logits / T) over the full vocabulary; T = 0 means greedy (all mass on the argmax).
top-k keeps the k most likely tokens; top-p keeps the smallest set, most likely first, whose
mass under p reaches top_p. Both filters are read off the full-vocabulary p; the kept mass is
renormalised to 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Distribution:
    probs: torch.Tensor  # [d_vocab], float64, sums to 1, zero outside the kept set
    n_kept: int  # tokens with non-zero probability after filtering

    @property
    def entropy_bits(self) -> float:
        kept = self.probs[self.probs > 0]
        return max(0.0, float(-(kept * torch.log2(kept)).sum()))  # +0.0, not -0.0, for a certain token

    def top(self, n: int) -> list[tuple[int, float]]:
        """The n most likely kept tokens, most likely first."""
        values, ids = torch.topk(self.probs, min(n, self.n_kept))
        # At a tiny temperature, kept tokens can underflow to exactly 0: they are not candidates.
        return [(int(i), float(v)) for i, v in zip(ids, values) if v > 0]


def distribution(logits: torch.Tensor, temperature: float, top_k: int | None = None, top_p: float | None = None) -> Distribution:
    """logits [d_vocab] -> the filtered, renormalised distribution."""
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError("temperature must be finite and >= 0")
    logits = logits.detach().to(torch.float64)
    if temperature == 0:
        probs = torch.zeros_like(logits)
        probs[int(torch.argmax(logits))] = 1.0
        return Distribution(probs=probs, n_kept=1)
    # Shifted by the max first, like the page: at a tiny T (5e-324) logits / T would overflow to inf.
    full = torch.softmax((logits - logits.max()) / temperature, dim=-1)
    if top_p is not None and top_p >= 1:
        top_p = None  # the mass reaches 1 only with the whole vocabulary (rounding must not cut the tail)
    if top_k is None and top_p is None:
        return Distribution(probs=full, n_kept=full.numel())  # no sort needed: the common case
    if top_p is None:
        k = min(top_k, full.numel())
        cut = torch.topk(full, k).values[-1]
        # Ties at the cut keep the lowest ids, like the page's stable sort (topk's choice is arbitrary).
        above = torch.nonzero(full > cut).flatten()
        tied = torch.nonzero(full == cut).flatten()[: k - above.numel()]
        kept_ids = torch.cat([above, tied])
        values = full[kept_ids]
    else:
        values, kept_ids = torch.sort(full, descending=True, stable=True)
        # Smallest prefix whose mass reaches top_p: keep i while the mass before it is < top_p.
        mass_before = torch.cumsum(values, dim=0) - values
        n_keep = max(1, int((mass_before < top_p).sum()))
        if top_k is not None:
            n_keep = min(n_keep, top_k)
        values, kept_ids = values[:n_keep], kept_ids[:n_keep]
    probs = torch.zeros_like(full)
    probs[kept_ids] = values / values.sum()
    return Distribution(probs=probs, n_kept=kept_ids.numel())


def sample(dist: Distribution, seed: int | None = None) -> int:
    """One token id drawn from `dist`; the same seed always draws the same token."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return int(torch.multinomial(dist.probs, 1, generator=generator))
