"""The engine: GPT-2's forward pass written out step by step, nanoGPT-style, on the weights of
`transformers`' own modules, naming every intermediate with its TransformerLens hook name. It is
the only forward pass of the product: analysis, and generation's prefill and decode steps (alone
and batched), all run here, so an experiment applies wherever the model runs. Tests prove each
step equal to `transformers`' forward.

`record(name, tensor)` sees every intermediate. It may return a replacement, which the rest of
the pass uses instead (an intervention, model/interventions.py), or None to leave it as it is.
The public functions take one sequence, and shapes are written without the batch dimension;
inside, every tensor has a leading batch axis, which the decode batch (model/batching.py) uses.

Attention runs PyTorch's fused kernel (`scaled_dot_product_attention`), as `transformers` does:
at 1,024 tokens the explicit softmax was most of the difference in speed. Where a layer's scores
and pattern are wanted (`observe`), they are computed beside it, exactly, and recorded; the pass
goes on with the fused kernel's z all the same, so a run's numbers do not depend on what was
kept, and a layer recomputed for its pattern (model/run.py) is bitwise the original. Only a
layer whose pattern an intervention edits attends explicitly, z = pattern @ v (`fused` False).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers import GPT2LMHeadModel
from transformers.models.gpt2.modeling_gpt2 import GPT2Block

from . import threads
from .cancellation import NEVER, CancelToken
from .hooks import GLOBAL_HOOKS, LAYER_HOOKS, HookNameError, hook_name, parse_hook  # noqa: F401 (the engine's vocabulary)

Record = Callable[[str, torch.Tensor], "torch.Tensor | None"]
# The same, on tensors with a leading batch axis: [batch, ...].
BatchRecord = Callable[[str, torch.Tensor], "torch.Tensor | None"]
# A set of layers, as a predicate: which attend with the fused kernel, which record their pattern.
Layers = Callable[[int], bool]


def layer_hook(layer: int, suffix: str) -> str:
    return hook_name(suffix, layer)


def every_layer(layer: int) -> bool:
    return True


def no_layer(layer: int) -> bool:
    return False


def unbatched(record: Record) -> BatchRecord:
    """A one-sequence `record` applied to a batch of one: it sees and returns tensors without
    the batch axis."""
    def rec(name: str, tensor: torch.Tensor) -> torch.Tensor | None:
        out = record(name, tensor[0])
        return None if out is None else out.unsqueeze(0)
    return rec


def _rec(record: BatchRecord, name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Record `tensor` under `name`; the tensor the pass goes on with (a replacement, if any)."""
    out = record(name, tensor)
    return tensor if out is None else out


def _linear(x: torch.Tensor, module: torch.nn.Module) -> torch.Tensor:
    """GPT-2's Conv1D is a linear layer stored as [d_in, d_out]: x @ W + b. x [batch, pos, d_in]."""
    batch, n_pos, d_in = x.shape
    return torch.addmm(module.bias, x.reshape(batch * n_pos, d_in), module.weight).view(batch, n_pos, -1)


class LayerCache:
    """One layer's keys and values for a batch, [batch, head, pos, d_head] each, in buffers with
    room for the next steps: a step writes its new columns in place instead of copying the cache
    (transformers' DynamicLayer concatenates, a copy of every member's cache per step)."""

    ROOM = 32  # columns added when the buffers are full: one copy every 32 steps

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        self.width = keys.shape[2]
        self._hold(keys, values, 0)

    def _hold(self, keys: torch.Tensor, values: torch.Tensor, room: int) -> None:
        """Copy keys and values into new buffers with max(room, ROOM) free columns after them."""
        batch, heads, width, d_head = keys.shape
        room = max(room, self.ROOM)
        self._keys = keys.new_empty(batch, heads, width + room, d_head)
        self._values = values.new_empty(batch, heads, width + room, d_head)
        self._keys[:, :, :width] = keys
        self._values[:, :, :width] = values

    @property
    def keys(self) -> torch.Tensor:
        return self._keys[:, :, :self.width]

    @property
    def values(self) -> torch.Tensor:
        return self._values[:, :, :self.width]

    def extended(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The cache with a step's keys and values [batch, head, new, d_head] after it, written in
        place but not yet counted: `commit` counts them once every layer has its own. A step that
        fails part-way is thus simply written over by the next one."""
        width, new = self.width, keys.shape[2]
        if width + new > self._keys.shape[2]:
            self._hold(self.keys, self.values, new)
        self._keys[:, :, width:width + new] = keys
        self._values[:, :, width:width + new] = values
        return self._keys[:, :, :width + new], self._values[:, :, :width + new]

    def commit(self, new: int) -> None:
        self.width += new

    def select(self, rows: torch.Tensor, start: int) -> LayerCache:
        """Only these rows, from column `start` on."""
        return LayerCache(self.keys[rows, :, start:], self.values[rows, :, start:])

    @staticmethod
    def stacked(layers: list[LayerCache], width: int) -> LayerCache:
        """The rows of several caches in one, each left-padded with zeros to `width` columns."""
        return LayerCache(torch.cat([_pad(layer.keys, width) for layer in layers]),
                          torch.cat([_pad(layer.values, width) for layer in layers]))


class KVCache:
    """Every layer's keys and values for a batch of sequences that may differ in length:
    left-padded to one width, with `valid` [batch, pos] True where a column is a real token.
    A sequence alone has no padding, so its steps attend to every column without a mask."""

    def __init__(self, layers: list[LayerCache], valid: torch.Tensor):
        self.layers = layers
        self.valid = valid

    @property
    def width(self) -> int:
        return self.valid.shape[1]

    @property
    def padded(self) -> bool:
        return not bool(self.valid.all())

    def commit(self, new: int) -> None:
        for layer in self.layers:
            layer.commit(new)
        self.valid = torch.cat([self.valid, self.valid.new_ones(self.valid.shape[0], new)], dim=1)

    @staticmethod
    def stacked(caches: list[KVCache]) -> KVCache:
        """One batch of the rows of several caches (a sequence joining a batch)."""
        width = max(c.width for c in caches)
        layers = [LayerCache.stacked([c.layers[l] for c in caches], width) for l in range(len(caches[0].layers))]
        return KVCache(layers, torch.cat([_pad(c.valid, width) for c in caches]))

    def without(self, row: int) -> KVCache | None:
        """The cache without one row (and the columns that were padding for every row left)."""
        keep = torch.tensor([i for i in range(self.valid.shape[0]) if i != row], dtype=torch.long)
        if keep.numel() == 0:
            return None
        valid = self.valid[keep]
        start = int(valid.any(dim=0).long().argmax())  # the first column someone still uses
        return KVCache([layer.select(keep, start) for layer in self.layers], valid[:, start:])


def _pad(x: torch.Tensor, width: int) -> torch.Tensor:
    """x with zero (False) columns on the left of its position axis (the last for a mask
    [batch, pos], the third for keys and values [batch, head, pos, d_head]) up to `width`."""
    axis = 1 if x.dim() == 2 else 2
    missing = width - x.shape[axis]
    if missing == 0:
        return x
    shape = list(x.shape)
    shape[axis] = missing
    return torch.cat([x.new_zeros(shape), x], dim=axis)


def _attend_mask(n_new: int, n_keys: int, valid: torch.Tensor | None, device) -> torch.Tensor | None:
    """Where a query may look: [batch or 1, 1, new, keys], True for allowed; None when it may look
    at every key (one new token of a sequence without padding). The new tokens are the last
    `n_new` of the keys: causal among themselves, after everything cached."""
    allowed = None
    if n_new > 1:
        past = n_keys - n_new
        allowed = torch.ones(n_new, n_keys, dtype=torch.bool, device=device).tril_(past)[None, None]
    if valid is not None:
        columns = valid[:, None, None, :]  # [batch, 1, 1, keys]
        allowed = columns if allowed is None else allowed & columns
    return allowed


def embed(model: GPT2LMHeadModel, ids: torch.Tensor, positions: torch.Tensor, record: BatchRecord) -> torch.Tensor:
    """Token plus position embedding. ids, positions [batch, new] -> [batch, new, d_model]."""
    wte, wpe = model.transformer.wte.weight, model.transformer.wpe.weight
    token = _rec(record, "hook_embed", wte[ids])  # [batch, new, d_model]
    position = _rec(record, "hook_pos_embed", wpe[positions])
    return token + position


def batch_block(layer: int, module: GPT2Block, resid_pre: torch.Tensor, record: BatchRecord,
                cache: LayerCache | None = None, valid: torch.Tensor | None = None, fused: bool = True,
                observe: bool = True) -> torch.Tensor:
    """One transformer block. resid_pre [batch, new, d_model] -> resid_post [batch, new, d_model].
    With `cache`, the new positions come after the cached ones, and their keys and values are
    written after them (counted by KVCache.commit); `valid` [batch, keys] masks padded columns.
    `fused`: attend with the fused kernel (else z = pattern @ v, the pattern as recorded, edits
    included); `observe`: compute and record the scores and the pattern (always when not fused)."""
    attn, mlp = module.attn, module.mlp
    batch, n_new, d_model = resid_pre.shape
    n_heads, d_head = attn.num_heads, attn.head_dim

    def rec(suffix: str, tensor: torch.Tensor) -> torch.Tensor:
        return _rec(record, f"blocks.{layer}.{suffix}", tensor)

    resid_pre = rec("hook_resid_pre", resid_pre)
    ln1 = rec("ln1.hook_out", F.layer_norm(resid_pre, (d_model,), module.ln_1.weight, module.ln_1.bias, module.ln_1.eps))

    q, k, v = _linear(ln1, attn.c_attn).split(d_model, dim=-1)
    q = rec("attn.hook_q", q.view(batch, n_new, n_heads, d_head))  # [batch, pos, head, d_head]
    k = rec("attn.hook_k", k.view(batch, n_new, n_heads, d_head))
    v = rec("attn.hook_v", v.view(batch, n_new, n_heads, d_head))
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [batch, head, pos, d_head]
    if cache is not None:
        k, v = cache.extended(k, v)  # every key and value so far: [batch, head, keys, d_head]
    # A prompt alone is plain causal attention: the fused kernel takes its own mask (the same call
    # whether the pattern is observed or not, so the numbers are too), and the [new, keys] tensor is
    # built only for the explicit scores (a million entries a layer at 1,024 tokens).
    causal = fused and valid is None and n_new > 1 and n_new == k.shape[2]
    allowed = None if causal and not observe else _attend_mask(n_new, k.shape[2], valid, q.device)

    # attn.scaling is 1/sqrt(d_head), adjusted by the config's layer-index scaling if set.
    if observe or not fused:
        scores = torch.matmul(q, k.transpose(-1, -2)) * attn.scaling  # [batch, head, q_pos, k_pos]
        if allowed is not None:
            scores = scores.masked_fill_(~allowed, float("-inf"))
        scores = rec("attn.hook_attn_scores", scores)
        pattern = rec("attn.hook_pattern", torch.softmax(scores, dim=-1))  # exactly 0 where masked
    if fused:
        # A replacement of the pattern is ignored here: a layer whose pattern is edited is not fused.
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=None if causal else allowed, is_causal=causal,
                                           scale=attn.scaling)
    else:
        z = torch.matmul(pattern, v)
    z = rec("attn.hook_z", z.transpose(1, 2))  # [batch, pos, head, d_head]
    attn_out = rec("hook_attn_out", _linear(z.reshape(batch, n_new, d_model), attn.c_proj))
    resid_mid = rec("hook_resid_mid", resid_pre + attn_out)

    ln2 = rec("ln2.hook_out", F.layer_norm(resid_mid, (d_model,), module.ln_2.weight, module.ln_2.bias, module.ln_2.eps))
    pre = rec("mlp.hook_pre", _linear(ln2, mlp.c_fc))  # [batch, pos, d_mlp]
    post = rec("mlp.hook_post", mlp.act(pre))  # gelu_new for GPT-2
    mlp_out = rec("hook_mlp_out", _linear(post, mlp.c_proj))
    return rec("hook_resid_post", resid_mid + mlp_out)


def block(layer: int, module: GPT2Block, resid_pre: torch.Tensor, record: Record, fused: bool = True,
          observe: bool = True) -> torch.Tensor:
    """One block of one sequence, recording every hook by default. resid_pre [pos, d_model] ->
    resid_post [pos, d_model]."""
    return batch_block(layer, module, resid_pre.unsqueeze(0), unbatched(record), fused=fused, observe=observe)[0]


# Up to this many rows, the unembedding is computed as W_U @ h^T: see `unembed_rows`.
UNEMBED_AS_COLUMNS = 8


def unembed_rows(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
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


def unembed(model: GPT2LMHeadModel, resid_final: torch.Tensor, record: BatchRecord) -> torch.Tensor:
    """Final LayerNorm over every position, then logits for each sequence's last position only.
    resid_final [batch, pos, d_model] -> [batch, d_vocab]"""
    ln_f, lm_head = model.transformer.ln_f, model.lm_head
    normalized = _rec(record, "ln_final.hook_out",
                      F.layer_norm(resid_final, (resid_final.shape[-1],), ln_f.weight, ln_f.bias, ln_f.eps))
    logits = unembed_rows(normalized[:, -1], lm_head.weight)  # tied to the token embedding in GPT-2
    if lm_head.bias is not None:
        logits = logits + lm_head.bias
    return _rec(record, "logits", logits)


def run(model: GPT2LMHeadModel, ids: torch.Tensor, positions: torch.Tensor, record: BatchRecord,
        cache: KVCache | None = None, fused: Layers = every_layer, observe: Layers = no_layer,
        cancel: CancelToken = NEVER) -> torch.Tensor:
    """The whole model on a batch: ids, positions [batch, new] -> last-position logits [batch, d_vocab].
    With `cache`, the new tokens follow the cached ones and the cache takes their keys and values.
    `cancel` is checked before each block: a pass nobody waits for stops there (Cancelled); and
    the pass takes its share of the cores again there (model/threads.py)."""
    valid = None
    if cache is not None and cache.padded:
        valid = torch.cat([cache.valid, cache.valid.new_ones(cache.valid.shape[0], ids.shape[1])], dim=1)
    resid = embed(model, ids, positions, record)
    for layer, module in enumerate(model.transformer.h):
        cancel.check()
        threads.checkpoint()
        resid = batch_block(layer, module, resid, record, None if cache is None else cache.layers[layer], valid,
                            fused(layer), observe(layer))
    logits = unembed(model, resid, record)
    if cache is not None:
        cache.commit(ids.shape[1])
    return logits


def forward(model: GPT2LMHeadModel, ids: torch.Tensor, record: Record, cancel: CancelToken = NEVER,
            fused: Layers = every_layer, observe: Layers = every_layer) -> torch.Tensor:
    """One sequence, recording every hook once (the scores and patterns only of the layers
    observed). ids [pos] -> last-position logits [d_vocab]."""
    positions = torch.arange(ids.shape[0], device=ids.device)
    return run(model, ids[None], positions[None], unbatched(record), fused=fused, observe=observe, cancel=cancel)[0]


def prefill(model: GPT2LMHeadModel, ids: torch.Tensor, record: BatchRecord, fused: Layers = every_layer,
            cancel: CancelToken = NEVER) -> tuple[torch.Tensor, KVCache]:
    """A prompt's pass that keeps its keys and values: ids [pos] -> (logits [d_vocab], its cache).
    `record` sees tensors with a batch axis of one."""
    n_layers, device = len(model.transformer.h), ids.device
    config = model.config
    n_heads, d_head = config.n_head, config.n_embd // config.n_head
    empty = torch.empty(1, n_heads, 0, d_head, dtype=model.transformer.wte.weight.dtype, device=device)
    cache = KVCache([LayerCache(empty, empty) for _ in range(n_layers)], torch.ones(1, 0, dtype=torch.bool, device=device))
    positions = torch.arange(ids.shape[0], device=device)
    logits = run(model, ids[None], positions[None], record, cache, fused, no_layer, cancel)
    return logits[0], cache


def decode(model: GPT2LMHeadModel, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache,
           record: BatchRecord) -> torch.Tensor:
    """One step for every sequence of a cache: tokens, positions [batch] (each sequence's next
    token and its position) -> logits [batch, d_vocab]. The cache grows by one column."""
    return run(model, tokens[:, None], positions[:, None], record, cache)
