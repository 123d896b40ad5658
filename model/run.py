"""A Run: the captured internals of one prompt, as a dictionary from hook names to tensors.

To bound memory, a Run keeps only the residual stream at the start of every block (plus the
embeddings, the final LayerNorm and the logits, and whatever extra hooks were asked to be
kept). Any other hook is recomputed on demand from that block's `hook_resid_pre`, with the
same code on the same input, so the numbers are bitwise the ones of the original pass.

A run made with interventions keeps them (`editor`): a recomputed layer applies them again, so
every number read from the run is that run's own. The stored block inputs are the ones before
any edit at hook_resid_pre, which the recompute applies.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from transformers import GPT2LMHeadModel

from . import engine
from .hooks import HookNameError, parse_hook
from .interventions import Editor
from .tokenizer import TokenPiece


class _Reached(Exception):
    """Raised inside a recompute once the hook asked for is there: the rest of the block is skipped."""


class Run:
    def __init__(self, model: GPT2LMHeadModel, ids: list[int], tokens: list[TokenPiece], stored: dict[str, torch.Tensor],
                 editor: Editor | None = None):
        self.model = model
        self.ids = ids
        self.tokens = tokens
        self.stored = stored
        self.editor = editor or Editor(())
        self.n_layers = len(model.transformer.h)

    @property
    def interventions(self) -> tuple:
        return self.editor.interventions

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, name: str) -> torch.Tensor:
        if name in self.stored and name not in self.editor.hooks:
            return self.stored[name]
        try:
            layer, suffix = parse_hook(name, self.n_layers)
        except HookNameError as error:
            raise KeyError(str(error)) from None  # a Run reads like a dictionary
        if layer is None:
            raise KeyError(f"{name!r} was not kept")
        if suffix == "hook_resid_post" and layer + 1 < self.n_layers and name not in self.editor.hooks:
            return self.stored[engine.layer_hook(layer + 1, "hook_resid_pre")]
        return self.layer(layer)[suffix]

    def __contains__(self, name: object) -> bool:
        try:
            parse_hook(name, self.n_layers)
        except HookNameError:
            return False
        return True

    def keys(self) -> Iterator[str]:
        yield "hook_embed"
        yield "hook_pos_embed"
        for layer in range(self.n_layers):
            for suffix in engine.LAYER_HOOKS:
                yield engine.layer_hook(layer, suffix)
        yield "ln_final.hook_out"
        yield "logits"

    @torch.inference_mode()
    def layer(self, layer: int, until: str | None = None) -> dict[str, torch.Tensor]:
        """Every hook of one block, by suffix ('attn.hook_q', ...), recomputed from its input;
        with `until`, only the hooks up to that one (the attention pattern costs a third of a block)."""
        if not 0 <= layer < self.n_layers:
            raise IndexError(f"layer must be in 0..{self.n_layers - 1}, got {layer}")
        captured: dict[str, torch.Tensor] = {}
        prefix = len(f"blocks.{layer}.")

        def record(name: str, tensor: torch.Tensor) -> torch.Tensor | None:
            out = self.editor(name, tensor)
            captured[name[prefix:]] = tensor if out is None else out
            if name[prefix:] == until:
                raise _Reached
            return out

        resid_pre = self.stored[engine.layer_hook(layer, "hook_resid_pre")]
        try:
            engine.block(layer, self.model.transformer.h[layer], resid_pre, record,
                         fused=layer not in self.editor.pattern_layers)  # as the run's own pass
        except _Reached:
            pass
        return captured

    @torch.inference_mode()
    def resid_norms(self) -> torch.Tensor:
        """The residual stream's length at each position, entering each block and leaving the
        last: ‖blocks.l.hook_resid_pre‖ for l < n_layers, then ‖blocks.{n_layers-1}.hook_resid_post‖.
        [n_layers + 1, pos]"""
        names = [engine.layer_hook(l, "hook_resid_pre") for l in range(self.n_layers)]
        names.append(engine.layer_hook(self.n_layers - 1, "hook_resid_post"))
        return torch.stack([self[name].norm(dim=-1) for name in names])

    @property
    def nbytes(self) -> int:
        """Memory held by this run's stored tensors."""
        return sum(t.numel() * t.element_size() for t in self.stored.values())
