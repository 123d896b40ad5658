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
    order: torch.Tensor  # [n_kept] token ids, most likely first

    @property
    def entropy_bits(self) -> float:
        kept = self.probs[self.order]
        kept = kept[kept > 0]
        return float(-(kept * torch.log2(kept)).sum()) if kept.numel() else 0.0

    def top(self, n: int) -> list[tuple[int, float]]:
        ids = self.order[:n]
        return [(int(i), float(self.probs[i])) for i in ids]


def distribution(logits: torch.Tensor, temperature: float, top_k: int | None = None, top_p: float | None = None) -> Distribution:
    """logits [d_vocab] -> the filtered, renormalised distribution."""
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError("temperature must be finite and >= 0")
    logits = logits.detach().to(torch.float64)
    if temperature == 0:
        probs = torch.zeros_like(logits)
        best = int(torch.argmax(logits))
        probs[best] = 1.0
        return Distribution(probs=probs, order=torch.tensor([best]))
    full = torch.softmax(logits / temperature, dim=-1)
    sorted_probs, sorted_ids = torch.sort(full, descending=True, stable=True)
    n_keep = sorted_ids.numel()
    if top_k is not None:
        n_keep = min(n_keep, top_k)
    if top_p is not None:
        # Smallest prefix whose mass reaches top_p: keep i while the mass before it is < top_p.
        mass_before = torch.cumsum(sorted_probs, dim=0) - sorted_probs
        n_keep = min(n_keep, max(1, int((mass_before < top_p).sum())))
    kept_ids = sorted_ids[:n_keep]
    probs = torch.zeros_like(full)
    probs[kept_ids] = sorted_probs[:n_keep] / sorted_probs[:n_keep].sum()
    return Distribution(probs=probs, order=kept_ids)


def sample(dist: Distribution, seed: int | None = None) -> int:
    """One token id drawn from `dist`; the same seed always draws the same token."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    kept = dist.probs[dist.order]
    return int(dist.order[torch.multinomial(kept, 1, generator=generator)])
