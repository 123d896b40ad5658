"""Hook names: one grammar, one parser and one builder for every part of the server.

A hook name is TransformerLens's: `hook_embed`, or `blocks.3.attn.hook_q` for a layer's hook.
The canonical form is the only one accepted: the layer in ASCII decimal with no leading zero
(`blocks.03`, `blocks.３` and `blocks.३` are refused, not read as layer 3), a known suffix, and
nothing around it. What is stored, echoed and hashed into a run id is therefore always the name
as written, and two spellings can never name one tensor.

    hook_name("attn.hook_q", 3)      -> "blocks.3.attn.hook_q"   (TransformerLens's get_act_name)
    parse_hook("blocks.3.attn.hook_q", n_layers=12) -> (3, "attn.hook_q")
    parse_hook("hook_embed")         -> (None, "hook_embed")
"""

from __future__ import annotations

import re

from .errors import FieldError

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

# re.ASCII: without it, [0-9] is still ASCII, but \d would take any script's digits.
_LAYER_NAME = re.compile(r"blocks\.(0|[1-9][0-9]{0,5})\.(.+)", re.ASCII)


class HookNameError(FieldError):
    """A name that is not a canonical hook name (or names a layer the model lacks)."""

    field = "hook"


def hook_name(suffix: str, layer: int | None = None) -> str:
    """The canonical name of a hook: a layer's (`layer` given) or a global one."""
    if layer is None:
        if suffix not in GLOBAL_HOOKS:
            raise HookNameError(f"{suffix!r} is not a hook outside the blocks; those are {', '.join(GLOBAL_HOOKS)}")
        return suffix
    if suffix not in LAYER_HOOKS:
        raise HookNameError(f"{suffix!r} is not a hook of a block; known: {', '.join(LAYER_HOOKS)}")
    if type(layer) is not int or layer < 0:  # bool is an int subclass: True is not layer 1
        raise HookNameError(f"a layer is a whole number from 0, got {layer!r}")
    return f"blocks.{layer}.{suffix}"


def parse_hook(name: str, n_layers: int | None = None) -> tuple[int | None, str]:
    """'blocks.3.attn.hook_q' -> (3, 'attn.hook_q'); 'hook_embed' -> (None, 'hook_embed').
    With `n_layers`, a layer beyond the model's last is refused too. HookNameError otherwise."""
    if not isinstance(name, str):
        raise HookNameError(f"a hook name is a string, got {type(name).__name__}")
    if name in GLOBAL_HOOKS:
        return None, name
    match = _LAYER_NAME.fullmatch(name)
    if match is None:
        raise HookNameError(f"{name!r} is not a hook name: write blocks.L.<hook> with L in plain digits and no "
                            f"leading zero (e.g. blocks.3.attn.hook_z), or one of {', '.join(GLOBAL_HOOKS)}")
    layer, suffix = int(match[1]), match[2]
    if suffix not in LAYER_HOOKS:
        raise HookNameError(f"{suffix!r} is not a hook of a block; known: {', '.join(LAYER_HOOKS)}")
    if n_layers is not None and layer >= n_layers:
        raise HookNameError(f"layer {layer} does not exist: the model has layers 0 to {n_layers - 1}")
    return layer, suffix
