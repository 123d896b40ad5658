"""The capture engine: GPT-2's forward pass written out step by step, nanoGPT-style, on the
weights of `transformers`' own modules, naming every intermediate with its TransformerLens hook
name. Tests prove each step equal to `transformers`' forward.

Shapes are written without the batch dimension: one prompt at a time.

`record(name, tensor)` sees every intermediate. It may return a replacement, which the rest of
the pass uses instead (an intervention, model/interventions.py), or None to leave it as it is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers import GPT2LMHeadModel
from transformers.models.gpt2.modeling_gpt2 import GPT2Block

from . import threads
from .cancellation import NEVER, CancelToken

# Per-layer hooks, in the order the computation produces them. Full name: f"blocks.{l}.{suffix}".
LAYER_HOOKS = (
    "hook_resid_pre",
    "ln1.hook_out",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_attn_scores",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "hook_resid_mid",
    "ln2.hook_out",
    "mlp.hook_pre",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
)
GLOBAL_HOOKS = ("hook_embed", "hook_pos_embed", "ln_final.hook_out", "logits")

Record = Callable[[str, torch.Tensor], "torch.Tensor | None"]


def layer_hook(layer: int, suffix: str) -> str:
    return f"blocks.{layer}.{suffix}"


def parse_hook(name: str) -> tuple[int | None, str]:
    """'blocks.3.attn.hook_q' -> (3, 'attn.hook_q'); 'hook_embed' -> (None, 'hook_embed')."""
    if name.startswith("blocks."):
        _, layer, suffix = name.split(".", 2)
        if layer.isdigit() and suffix in LAYER_HOOKS:
            return int(layer), suffix
    elif name in GLOBAL_HOOKS:
        return None, name
    raise KeyError(f"Unknown hook name {name!r}")


def _rec(record: Record, name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Record `tensor` under `name`; the tensor the pass goes on with (a replacement, if any)."""
    out = record(name, tensor)
    return tensor if out is None else out


def _conv1d(x: torch.Tensor, module: torch.nn.Module) -> torch.Tensor:
    """GPT-2's Conv1D is a linear layer stored as [d_in, d_out]: x @ W + b."""
    return torch.addmm(module.bias, x, module.weight)


def embed(model: GPT2LMHeadModel, ids: torch.Tensor, record: Record) -> torch.Tensor:
    """Token plus position embedding. ids [pos] -> resid_pre of block 0 [pos, d_model]."""
    wte, wpe = model.transformer.wte.weight, model.transformer.wpe.weight
    token = _rec(record, "hook_embed", wte[ids])  # [pos, d_model]
    position = _rec(record, "hook_pos_embed", wpe[: ids.shape[0]])  # [pos, d_model]
    return token + position


def block(layer: int, module: GPT2Block, resid_pre: torch.Tensor, record: Record) -> torch.Tensor:
    """One transformer block. resid_pre [pos, d_model] -> resid_post [pos, d_model]."""
    attn, mlp = module.attn, module.mlp
    n_pos, d_model = resid_pre.shape
    n_heads, d_head = attn.num_heads, attn.head_dim

    def rec(suffix: str, tensor: torch.Tensor) -> torch.Tensor:
        return _rec(record, layer_hook(layer, suffix), tensor)

    resid_pre = rec("hook_resid_pre", resid_pre)
    ln1 = rec("ln1.hook_out", F.layer_norm(resid_pre, (d_model,), module.ln_1.weight, module.ln_1.bias, module.ln_1.eps))

    q, k, v = _conv1d(ln1, attn.c_attn).split(d_model, dim=-1)
    q = q.view(n_pos, n_heads, d_head)  # [pos, head, d_head]
    k = k.view(n_pos, n_heads, d_head)
    v = v.view(n_pos, n_heads, d_head)
    q = rec("attn.hook_q", q)
    k = rec("attn.hook_k", k)
    v = rec("attn.hook_v", v)

    # attn.scaling is 1/sqrt(d_head), adjusted by the config's layer-index scaling if set.
    scores = torch.matmul(q.transpose(0, 1), k.permute(1, 2, 0)) * attn.scaling  # [head, q_pos, k_pos]
    future = torch.ones(n_pos, n_pos, dtype=torch.bool, device=q.device).triu_(1)
    scores = scores.masked_fill_(future, float("-inf"))
    scores = rec("attn.hook_attn_scores", scores)
    pattern = rec("attn.hook_pattern", torch.softmax(scores, dim=-1))  # [head, q_pos, k_pos]; exactly 0 where masked

    z = rec("attn.hook_z", torch.matmul(pattern, v.transpose(0, 1)).transpose(0, 1))  # [pos, head, d_head]
    attn_out = rec("hook_attn_out", _conv1d(z.reshape(n_pos, d_model), attn.c_proj))
    resid_mid = rec("hook_resid_mid", resid_pre + attn_out)

    ln2 = rec("ln2.hook_out", F.layer_norm(resid_mid, (d_model,), module.ln_2.weight, module.ln_2.bias, module.ln_2.eps))
    pre = rec("mlp.hook_pre", _conv1d(ln2, mlp.c_fc))  # [pos, d_mlp]
    post = rec("mlp.hook_post", mlp.act(pre))  # gelu_new for GPT-2
    mlp_out = rec("hook_mlp_out", _conv1d(post, mlp.c_proj))
    return rec("hook_resid_post", resid_mid + mlp_out)


def unembed(model: GPT2LMHeadModel, resid_final: torch.Tensor, record: Record) -> torch.Tensor:
    """Final LayerNorm over every position, then logits for the last position only. -> [d_vocab]"""
    ln_f = model.transformer.ln_f
    normalized = _rec(record, "ln_final.hook_out",
                      F.layer_norm(resid_final, (resid_final.shape[-1],), ln_f.weight, ln_f.bias, ln_f.eps))
    return _rec(record, "logits", model.lm_head(normalized[-1]))  # tied to the token embedding in GPT-2


def forward(model: GPT2LMHeadModel, ids: torch.Tensor, record: Record, cancel: CancelToken = NEVER) -> torch.Tensor:
    """The whole model, recording every hook once. ids [pos] -> last-position logits [d_vocab].
    `cancel` is checked before each block: a pass nobody waits for stops there (Cancelled); and
    the pass takes its share of the cores again there (model/threads.py)."""
    resid = embed(model, ids, record)
    for layer, module in enumerate(model.transformer.h):
        cancel.check()
        threads.checkpoint()
        resid = block(layer, module, resid, record)
    return unembed(model, resid, record)
