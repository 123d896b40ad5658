"""Activation patching, the field's basic causal experiment: for every layer and every position
(or head, for z), copy the clean run's activation into the corrupted run and measure how much of
the clean behaviour comes back:

    cell = (LD_patched − LD_corrupted) / (LD_clean − LD_corrupted),  LD = logit(target) − logit(baseline)

at the last position. 1: that activation alone restores the clean answer; 0: it does nothing.

The patched passes of one layer are one batched pass (torch.func.vmap over the cells, each with
its own mask), from that layer on: the layers before it are the corrupted run's, already known.
The clean and corrupted LDs are measured inside the same batched computation (a cell that
patches nothing, and one that patches everything at layer 0), so a cell that restores the exact
clean input reads exactly 1, and one that changes nothing exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import engine, threads
from .cancellation import NEVER, CancelToken

# The sweep's hook -> (the engine's suffix, the axis swept).
HOOKS = {
    "resid_pre": ("hook_resid_pre", "position"),
    "attn_out": ("hook_attn_out", "position"),
    "mlp_out": ("hook_mlp_out", "position"),
    "z": ("attn.hook_z", "head"),
}


# The smallest |LD_clean − LD_corrupted| for which the grid is called reliable, in logits. An LD is a
# log-odds (of the target against the baseline), so 1 logit means the two prompts change those odds
# by a factor of e ≈ 2.7: below it, the prompts barely differ in their answer, and a patch's side
# effects on the LD (easily a few tenths of a logit anywhere in the model) read as large fractions
# of a difference that is hardly there. Absolute, not relative to |LD|: the cells are ratios of
# log-odds changes, which mean the same at any level of the LDs (a difference of 2 logits between
# LDs of 30 and 28 is as real as one between 1 and −1), and float32 error on the LDs (~1e-6 of a
# logit per unit of LD) stays far below 1 logit for any logits a GPT-2 produces.
RELIABLE_LOGITS = 1.0


@dataclass
class Sweep:
    hook: str
    axis: str
    ld_clean: float
    ld_corrupted: float
    grid: list[list[float]]  # [layer][position or head]

    @property
    def denominator(self) -> float:
        """LD_clean − LD_corrupted: what every cell is divided by."""
        return self.ld_clean - self.ld_corrupted

    @property
    def reliable(self) -> bool:
        """Whether the two prompts differ in their answer by at least RELIABLE_LOGITS."""
        return abs(self.denominator) >= RELIABLE_LOGITS


def _cells(axis: str, n_pos: int, n_heads: int) -> int:
    """Cells of one layer's row: a position each, or a head each (z)."""
    return n_heads if axis == "head" else n_pos


# The parts of a block (model/threads.py block_parts) computed before each hook the sweep patches.
_BEFORE = {"resid_pre": (), "z": ("qkv", "attend"), "attn_out": ("qkv", "attend", "attn_out"),
           "mlp_out": ("qkv", "attend", "attn_out", "mlp_out")}


def _block_costs(config, n_pos: int, hook: str) -> tuple[int, int, int]:
    """(cells with the two reference cells, multiply-adds of a block, of its part before the hook)."""
    parts = threads.block_parts(config, n_pos)
    return (_cells(HOOKS[hook][1], n_pos, config.n_head) + 2, sum(parts.values()),
            sum(parts[p] for p in _BEFORE[hook]))


def sweep_macs(config, n_pos: int, hook: str) -> int:
    """Multiply-adds of a sweep over prompts of `n_pos` tokens. At each layer, the part of its
    block before the hook runs once (the cells differ only from the hook on: vmap leaves it
    unbatched); the rest of that block and the blocks after it run for every cell and the two
    reference cells. A hook a Run does not keep (all but resid_pre) is recomputed from the clean
    run, a block a layer (model/run.py, its pattern observed)."""
    cells, block, before = _block_costs(config, n_pos, hook)
    n_layers = config.n_layer
    recomputed = 0 if hook == "resid_pre" else n_layers * threads.block_macs(config, n_pos, observed=True)
    return recomputed + n_layers * before + cells * (n_layers * (block - before) + block * n_layers * (n_layers - 1) // 2)


def sweep_grain(config, n_pos: int, hook: str) -> int:
    """Multiply-adds between two of the sweep's checks: a block for every cell and the two
    reference cells."""
    cells, block, _ = _block_costs(config, n_pos, hook)
    return cells * block


def _masks(suffix: str, axis: str, n_pos: int, n_heads: int) -> torch.Tensor:
    """One boolean mask per cell, shaped to broadcast over the hook's tensor: [cells, ...]."""
    if axis == "head":  # z: [pos, head, d_head]
        return torch.eye(n_heads, dtype=torch.bool)[:, None, :, None]
    return torch.eye(n_pos, dtype=torch.bool)[:, :, None]  # [pos, d_model] hooks


@torch.inference_mode()
def sweep(model, clean, corrupted, target: int, baseline: int, hook: str, cancel: CancelToken = NEVER) -> Sweep:
    """`clean` and `corrupted`: Runs of two prompts with the same number of tokens."""
    suffix, axis = HOOKS[hook]
    n_layers, n_pos = clean.n_layers, len(clean)
    n_heads = model.config.n_head
    ln_f = model.transformer.ln_f
    direction = model.lm_head.weight[target] - model.lm_head.weight[baseline]  # [d_model]
    bias = 0.0 if model.lm_head.bias is None else float(model.lm_head.bias[target] - model.lm_head.bias[baseline])

    def logit_diff(resid: torch.Tensor) -> torch.Tensor:
        final = F.layer_norm(resid[-1], (resid.shape[-1],), ln_f.weight, ln_f.bias, ln_f.eps)
        return final @ direction + bias

    # Multiply-adds of one block for every cell of a layer and the two reference cells, and of the
    # first block at a layer, whose part before the hook runs once (as sweep_macs counts them).
    cells, block, before = _block_costs(model.config, n_pos, hook)
    batched_block, first_block = cells * block, before + cells * (block - before)
    done = 0  # multiply-adds since the last check

    def run_from(layer: int, start: torch.Tensor, clean_value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        nonlocal done
        name = engine.layer_hook(layer, suffix)

        def record(hook_name: str, tensor: torch.Tensor):
            return torch.where(mask, clean_value, tensor) if hook_name == name else None

        resid = start
        for l in range(layer, n_layers):
            # Between blocks (run once for all the cells: vmap calls this with batched tensors), so
            # that a sweep stops, or gives its turn to someone waiting, within one block's time.
            cancel.check(done)
            threads.checkpoint()  # this pass's share of the cores, if passes started or ended
            resid = engine.block(l, model.transformer.h[l], resid, record, fused=False)
            done = first_block if l == layer else batched_block
        return logit_diff(resid)

    grid = []
    ld_clean = ld_corrupted = None
    for layer in range(n_layers):
        start = corrupted[engine.layer_hook(layer, "hook_resid_pre")]
        clean_value = clean[engine.layer_hook(layer, suffix)]
        masks = _masks(suffix, axis, n_pos, n_heads)
        # Two more cells: nothing patched (the corrupted LD), everything (the clean LD at layer 0).
        masks = torch.cat([masks, torch.zeros_like(masks[:1]), torch.ones_like(masks[:1])])
        lds = torch.func.vmap(lambda m: run_from(layer, start, clean_value, m))(masks)
        if layer == 0:
            ld_corrupted, ld_clean = float(lds[-2]), float(lds[-1]) if suffix == "hook_resid_pre" else None
        grid.append(lds[:-2])
    if ld_clean is None:  # only patching all of resid_pre at layer 0 gives the clean input exactly
        ld_clean = float(_clean_ld(model, clean, logit_diff))
    scale = ld_clean - ld_corrupted
    cells = [[float((v - ld_corrupted) / scale) if scale != 0 else float("nan") for v in row.tolist()] for row in grid]
    return Sweep(hook=hook, axis=axis, ld_clean=ld_clean, ld_corrupted=ld_corrupted, grid=cells)


def _clean_ld(model, clean, logit_diff) -> torch.Tensor:
    last = clean[engine.layer_hook(clean.n_layers - 1, "hook_resid_post")]
    return logit_diff(last)
