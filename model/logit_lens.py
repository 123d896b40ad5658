"""The logit lens: what would GPT-2 predict if it stopped after layer l?

Read the residual stream at some point, apply the model's own final LayerNorm (`ln_f`) and the
unembedding (`lm_head`, tied to the token embedding), and softmax over the vocabulary. For the
stream after the last block this is exactly the model's output; earlier, it shows how the guess
is refined layer by layer (nostalgebraist, "interpreting GPT: the logit lens", 2020).

Computed on demand from a Run's residual stream, one row (layer) at a time and a chunk of
positions at a time, so only the positions asked for ever meet the 50,257-wide unembedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import GPT2LMHeadModel

from . import threads
from .cancellation import NEVER, CancelToken
from .errors import FieldError
from .engine import layer_hook
from .run import Run

STREAMS = ("resid_post", "resid_mid", "both")
CHUNK = 128  # vectors unembedded at once: [CHUNK, d_vocab] float32 is 26 MB for GPT-2


@dataclass(frozen=True)
class LensRow:
    """One row of the grid: a point of the residual stream."""

    hook: str  # e.g. 'blocks.3.hook_resid_post'
    layer: int  # the block it belongs to (the embedding row is block 0's input)
    label: str  # how the page names it: 'embed', 'L3 attn' (after attention), 'L3' (after the MLP)


@dataclass(frozen=True)
class LensCell:
    """One (row, position) of the grid."""

    top_ids: list[int]  # the k most likely next tokens, most likely first
    top_probs: list[float]
    top_logits: list[float]
    final_rank: int  # 1-based rank here of the token the model finally predicts at this position
    final_prob: float  # its probability here


@dataclass(frozen=True)
class Lens:
    rows: list[LensRow]
    positions: list[int]
    final_ids: list[int]  # per position: the model's own top prediction (argmax of its logits)
    final_probs: list[float]  # its probability in the model's own output
    cells: list[list[LensCell]]  # [row][position index]

    def first_top_row(self, index: int) -> int | None:
        """The first row at which the final answer is the top guess at positions[index]."""
        return next((r for r, row in enumerate(self.cells) if row[index].final_rank == 1), None)


def rows_for(n_layers: int, stream: str = "resid_post") -> list[LensRow]:
    """The embedding (block 0's input), then each block's stream after attention
    (`hook_resid_mid`), after the MLP (`hook_resid_post`), or both in computation order."""
    if stream not in STREAMS:
        raise ValueError(f"stream must be one of {', '.join(STREAMS)}, got {stream!r}")
    rows = [LensRow(layer_hook(0, "hook_resid_pre"), 0, "embed")]
    for layer in range(n_layers):
        if stream in ("resid_mid", "both"):
            rows.append(LensRow(layer_hook(layer, "hook_resid_mid"), layer, f"L{layer} attn"))
        if stream in ("resid_post", "both"):
            rows.append(LensRow(layer_hook(layer, "hook_resid_post"), layer, f"L{layer}"))
    return rows


def lens_logits(model: GPT2LMHeadModel, resid: torch.Tensor) -> torch.Tensor:
    """Final LayerNorm, then the unembedding. resid [..., d_model] -> logits [..., d_vocab]"""
    ln_f = model.transformer.ln_f
    normalized = F.layer_norm(resid, (resid.shape[-1],), ln_f.weight, ln_f.bias, ln_f.eps)
    return model.lm_head(normalized)


class PositionError(FieldError):
    """A bad list of positions; `beyond_run` when it is valid in itself but past this run's tokens."""

    def __init__(self, message: str, beyond_run: bool = False):
        super().__init__(message, "position", "out_of_range" if beyond_run else "invalid")
        self.beyond_run = beyond_run


def check_positions(run: Run, positions: Sequence[int] | None) -> list[int]:
    """The positions to read (all when None), or a PositionError naming the bad one."""
    n = len(run)
    if positions is None:
        return list(range(n))
    positions = list(positions)
    if not positions:
        raise PositionError("give at least one position, or none for all")
    for p in positions:
        if not 0 <= p < n:
            raise PositionError(f"must be from 0 to {n - 1} (the prompt has {n} tokens), got {p}", beyond_run=p >= 0)
    if len(set(positions)) < len(positions):
        repeated = next(p for i, p in enumerate(positions) if p in positions[:i])
        raise PositionError(f"{repeated} is asked for more than once; give each position once")
    return positions


def lens_macs(config, n_positions: int, n_tokens: int, stream: str = "resid_post") -> int:
    """Multiply-adds of the lens over `n_positions` of a run of `n_tokens`: every row's vectors
    and the final prediction's, each through the unembedding (the LayerNorms and the top k are
    far less); and for hook_resid_mid, which a Run does not keep, each block of the run again."""
    vectors = (len(rows_for(config.n_layer, stream)) + 1) * n_positions
    recomputed = 0 if stream == "resid_post" else config.n_layer * threads.block_macs(config, n_tokens, observed=True)
    return vectors * config.n_embd * config.vocab_size + recomputed


def lens_grain(config, n_positions: int, stream: str = "resid_post") -> int:
    """Multiply-adds between two of the lens's checks, mostly: a chunk of vectors unembedded."""
    vectors = len(rows_for(config.n_layer, stream)) * n_positions
    return min(CHUNK, vectors) * config.n_embd * config.vocab_size


@torch.inference_mode()
def logit_lens(run: Run, positions: Sequence[int] | None = None, k: int = 10, stream: str = "resid_post",
               cancel: CancelToken = NEVER) -> Lens:
    """The lens grid, rows x positions, each cell with its top k. `positions` default to all.
    `cancel` is checked before each row is read and each chunk (Cancelled when the caller gave up)."""
    model = run.model
    d_vocab = model.lm_head.weight.shape[0]
    if not 1 <= k <= d_vocab:
        raise ValueError(f"k must be from 1 to {d_vocab}, got {k}")
    positions = check_positions(run, positions)
    rows = rows_for(run.n_layers, stream)
    index = torch.tensor(positions, dtype=torch.long)

    # The model's own final prediction at each position: its logits are the lens of the last
    # block's output, which the run keeps after ln_f as ln_final.hook_out.
    final_ids, final_probs = [], []
    for start in range(0, len(positions), CHUNK):
        probs = torch.softmax(model.lm_head(run["ln_final.hook_out"][index[start:start + CHUNK]]), dim=-1)
        best, ids = probs.max(-1)
        final_ids.append(ids)
        final_probs.append(best)
    final_ids = torch.cat(final_ids)

    # Every (row, position) vector in one matrix, unembedded a chunk at a time: the 50,257-row
    # unembedding is read once per chunk, not once per row. A row the run does not keep
    # (hook_resid_mid) is its block recomputed: checked before each row, as before each chunk,
    # with the multiply-adds done since the last check.
    recompute = threads.block_macs(model.config, len(run), observed=True)
    vectors, done = [], 0
    for row in rows:
        cancel.check(done)
        threads.checkpoint()  # this pass's share of the cores, if passes started or ended
        vectors.append(run[row.hook][index])
        done = recompute if row.hook.endswith("hook_resid_mid") else 0
    resid = torch.stack(vectors).reshape(-1, model.config.n_embd)  # [row * pos, d_model]
    n_pos = len(positions)
    flat_final = final_ids.repeat(len(rows))  # the final answer for each (row, position)
    flat_cells: list[LensCell] = []
    unembed_one = model.config.n_embd * d_vocab  # multiply-adds of one vector's unembedding
    for start in range(0, resid.shape[0], CHUNK):
        cancel.check(done)
        threads.checkpoint()
        logits = lens_logits(model, resid[start:start + CHUNK])  # [chunk, d_vocab]
        done = logits.shape[0] * unembed_one
        log_probs = torch.log_softmax(logits, dim=-1)
        top_logits, top_ids = torch.topk(logits, k, dim=-1)
        top_probs = log_probs.gather(-1, top_ids).exp()
        final = flat_final[start:start + CHUNK, None]
        ranks = (logits > logits.gather(-1, final)).sum(-1) + 1
        final_prob = log_probs.gather(-1, final).exp()[:, 0]
        for j in range(logits.shape[0]):
            flat_cells.append(LensCell(top_ids[j].tolist(), top_probs[j].tolist(), top_logits[j].tolist(),
                                       int(ranks[j]), float(final_prob[j])))
        # Freed before the next check, which may pause this job for others' turns: a paused lens
        # must not hold its chunk's [chunk, d_vocab] logits (about 51 MB) while it waits.
        del logits, log_probs
    cells = [flat_cells[r * n_pos:(r + 1) * n_pos] for r in range(len(rows))]
    return Lens(rows=rows, positions=positions, final_ids=final_ids.tolist(),
                final_probs=torch.cat(final_probs).tolist(), cells=cells)


@torch.inference_mode()
def lens_probs(run: Run, hook: str, positions: Sequence[int] | None = None) -> torch.Tensor:
    """The full lens distribution of one row, for checks and notebooks. [pos, d_vocab]"""
    index = torch.tensor(check_positions(run, positions), dtype=torch.long)
    return torch.softmax(lens_logits(run.model, run[hook][index]), dim=-1)
