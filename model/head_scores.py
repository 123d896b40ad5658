"""Head detectors: how much each head attends the way a known kind of head does, for one prompt.

For a query position i, the keys of a kind are:
- previous_token: the key i − 1;
- duplicate_token: every key j < i with the same token id as i;
- induction: every key j + 1 ≤ i − 1 where token j equals token i (and j < i − 1): the token
  after an earlier copy of the current one, which an induction head predicts comes next.

A head's score is the mean, over the query positions that have at least one key of that kind,
of the total attention weight those keys receive: in [0, 1], or None when no position has one.

The induction probe: `length` random tokens (seeded), repeated twice. In the second half every
token has an earlier copy, so induction heads light up, and the loss of predicting the next
token drops when the model has them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import engine

KINDS = ("previous_token", "duplicate_token", "induction")
DEFINITIONS = {
    "previous_token": "the attention weight on the key just before the query (i − 1), averaged over positions 1…n−1",
    "duplicate_token": "the total weight on earlier keys with the same token as the query, averaged over the "
                       "queries that have one",
    "induction": "the total weight on keys right after an earlier copy of the query's token (key j + 1 where token j "
                 "= token i, j + 1 < i), averaged over the queries that have one",
}


def key_masks(ids: list[int]) -> dict[str, torch.Tensor]:
    """For each kind, which keys of each query are of that kind. [q_pos, k_pos] booleans"""
    t = torch.tensor(ids)
    n = len(ids)
    q, k = torch.arange(n)[:, None], torch.arange(n)[None, :]
    same = t[:, None] == t[None, :]  # [i, j]: token i equals token j
    induction = torch.zeros(n, n, dtype=torch.bool)
    # key j + 1 is induction for query i when token j = token i and j + 1 < i
    induction[:, 1:] = same[:, :-1] & (k[:, 1:] < q)
    return {
        "previous_token": k == q - 1,
        "duplicate_token": same & (k < q),
        "induction": induction,
    }


def scores(pattern: torch.Tensor, mask: torch.Tensor) -> list[float | None]:
    """One layer's heads' scores for one kind. pattern [head, q_pos, k_pos], mask [q_pos, k_pos]"""
    rows = mask.any(dim=-1)  # [q_pos]: the queries that have a key of this kind
    if not rows.any():
        return [None] * pattern.shape[0]
    weight = (pattern.double() * mask).sum(dim=-1)  # [head, q_pos]
    return [float(v) for v in weight[:, rows].mean(dim=-1).clamp(0, 1)]


@torch.inference_mode()
def head_scores(run) -> dict:
    """{kind: [[score per head] per layer]} for a Run, from its own attention patterns."""
    masks = key_masks(run.ids)
    out: dict[str, list] = {kind: [] for kind in KINDS}
    for layer in range(run.n_layers):
        name = engine.layer_hook(layer, "attn.hook_pattern")
        pattern = run.stored[name] if name in run.stored else run.layer(layer, until="attn.hook_pattern")["attn.hook_pattern"]
        for kind in KINDS:
            out[kind].append(scores(pattern, masks[kind]))
    return out


def probe_ids(length: int, seed: int, vocab: int) -> list[int]:
    """`length` random token ids (seeded, the same on any machine), then the same ids again."""
    generator = torch.Generator().manual_seed(seed)
    half = torch.randint(0, vocab, (length,), generator=generator).tolist()
    return half + half


@torch.inference_mode()
def next_token_loss(model, run) -> list[float]:
    """The loss of predicting token p + 1 at every position p: −log p(ids[p+1]). [pos − 1]"""
    final = run["ln_final.hook_out"]  # [pos, d_model]
    logits = model.lm_head(final[:-1])  # [pos − 1, d_vocab]
    targets = torch.tensor(run.ids[1:], device=logits.device)
    return F.cross_entropy(logits.float(), targets, reduction="none").tolist()
