"""Interventions: experiments on the model, applied where a hook records, as TransformerLens's
`run_with_hooks` does with a hook that edits its activation.

    Intervention(hook="blocks.9.attn.hook_z", op="zero", head=9)

- `hook`: a full hook name; the ones an experiment can edit are EDITABLE below.
- selection: `head` (q, k, v, z, pattern), `neuron` (mlp.hook_post), `position` (any; for the
  pattern, the query position). Omitted means all.
- `op`: "zero" sets the selection to 0; "mean" to its mean over this run's positions, computed on
  the values the hook would have had before any replacement at that hook; "patch" to the same
  selection in another run (`source_run_id`), computed with that run's own interventions.
  The pattern takes "patch" only (a zeroed or averaged row would no longer sum to 1).
- Several apply in the order given.

`check` says what is wrong with a list, field by field (InterventionError); `Editor` applies a
checked list inside the forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

from . import hooks
from .hooks import HookNameError
from .errors import FieldError

if TYPE_CHECKING:
    from .run import Run

OPS = ("zero", "mean", "patch")
# suffix -> the axes of its tensor that a selection can name, in order (None: not selectable).
EDITABLE: dict[str, tuple[str, ...]] = {
    "hook_resid_pre": ("position", "d_model"),
    "hook_resid_mid": ("position", "d_model"),
    "hook_resid_post": ("position", "d_model"),
    "attn.hook_q": ("position", "head", "d_head"),
    "attn.hook_k": ("position", "head", "d_head"),
    "attn.hook_v": ("position", "head", "d_head"),
    "attn.hook_z": ("position", "head", "d_head"),
    "attn.hook_pattern": ("head", "position", "k_pos"),
    "hook_attn_out": ("position", "d_model"),
    "mlp.hook_post": ("position", "neuron"),
    "hook_mlp_out": ("position", "d_model"),
}


@dataclass(frozen=True)
class Intervention:
    hook: str
    op: str
    head: int | None = None
    neuron: int | None = None
    position: int | None = None
    source_run_id: str | None = None

    def as_dict(self) -> dict:
        """The JSON form, without the fields left out (so equal interventions serialize equally)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


class InterventionError(FieldError):
    """What is wrong with one field of one intervention: `field` is e.g. 'interventions.0.head'."""

    def __init__(self, field: str, message: str, code: str = "out_of_range"):
        super().__init__(message, field, code)


def check(interventions: Sequence[Intervention], n_layers: int, n_heads: int, d_mlp: int, n_tokens: int,
          source_lengths: Mapping[str, int | None], generation: bool = False) -> None:
    """Raise InterventionError for the first wrong field. `source_lengths`: the number of tokens
    of each source run this server can find (None: unknown run). `generation`: the list is for
    a generation of a prompt of `n_tokens`, whose later positions do not exist yet."""
    for i, it in enumerate(interventions):
        def fail(field: str, message: str, code: str = "out_of_range") -> None:
            raise InterventionError(f"interventions.{i}.{field}", message, code)

        try:
            layer, suffix = hooks.parse_hook(it.hook)
        except HookNameError as error:
            fail("hook", str(error), code="invalid")
        if layer is None or suffix not in EDITABLE:
            fail("hook", f"{it.hook!r} cannot be edited; use blocks.L.<{'|'.join(EDITABLE)}> with L from 0 to {n_layers - 1}",
                 code="unknown_hook")
        if layer >= n_layers:
            fail("hook", f"layer {layer} does not exist: the model has layers 0 to {n_layers - 1}")
        if it.op not in OPS:
            fail("op", f"must be one of {', '.join(OPS)}", code="one_of")
        axes = EDITABLE[suffix]
        if it.head is not None:
            if "head" not in axes:
                fail("head", f"{suffix} has no head axis: a head can be chosen on q, k, v, z and the pattern", code="not_applicable")
            if not 0 <= it.head < n_heads:
                fail("head", f"must be from 0 to {n_heads - 1}, got {it.head}")
        if it.neuron is not None:
            if "neuron" not in axes:
                fail("neuron", f"{suffix} has no neuron axis: a neuron is chosen on mlp.hook_post", code="not_applicable")
            if not 0 <= it.neuron < d_mlp:
                fail("neuron", f"must be from 0 to {d_mlp - 1}, got {it.neuron}")
        if it.position is not None and not 0 <= it.position < n_tokens:
            fail("position", f"must be from 0 to {n_tokens - 1} (the prompt has {n_tokens} tokens), got {it.position}")
        if suffix == "attn.hook_pattern" and it.op != "patch":
            fail("op", "the attention pattern takes 'patch' only: a zeroed or averaged row would not sum to 1", code="not_applicable")
        if generation and it.op == "mean":
            fail("op", "'mean' averages over every position of the run, and a generation's later positions do not exist "
                       "yet: generation cannot apply it; use 'zero'", code="not_applicable")
        if it.op == "patch":
            if it.source_run_id is None:
                fail("source_run_id", "a patch needs the run to copy from: analyze the source prompt first and give its run_id",
                     code="not_applicable")
            if generation and it.position is None:
                fail("position", "a patch in a generation names its position in the prompt: the generated positions have "
                                 "nothing to copy from", code="not_applicable")
            length = source_lengths.get(it.source_run_id)
            if length is None:
                fail("source_run_id", f"unknown run {it.source_run_id!r}: analyze the source prompt again and use its run_id",
                     code="unknown_source")
            if it.position is not None:
                if it.position >= length:
                    fail("position", f"the source run has {length} tokens: position {it.position} is not one of them")
            elif length != n_tokens:
                fail("source_run_id", f"the source run has {length} tokens and this prompt {n_tokens}: "
                                      "a patch copies position by position, so both must have the same number", code="not_applicable")
        elif it.source_run_id is not None:
            fail("source_run_id", f"only a patch reads another run; {it.op!r} does not", code="not_applicable")


def _index(suffix: str, it: Intervention, offset: int, n_pos: int) -> tuple | None:
    """The selection as an index into the hook's tensor (no batch dimension), whose position axis
    holds positions offset .. offset + n_pos − 1 (a decode step holds only the newest); None when
    the selected position is not among them."""
    index = []
    for axis in EDITABLE[suffix]:
        if axis == "position":
            if it.position is None:
                index.append(slice(None))
            elif offset <= it.position < offset + n_pos:
                index.append(it.position - offset)
            else:
                return None
        else:
            value = {"head": it.head, "neuron": it.neuron}.get(axis)
            index.append(slice(None) if value is None else value)
    return tuple(index)


class Editor:
    """Applies checked interventions where the hooks record: `editor(name, tensor)` returns the
    replacement, or None where nothing is edited. `sources` maps a run id to its Run.

    `offset`: the position of the tensor's first row, for a pass that computes only the newest
    positions (a decode step after a key/value cache). A selection at another position leaves
    the tensor as it is; one without a position applies to every position, new ones included."""

    def __init__(self, interventions: Sequence[Intervention], sources: Mapping[str, Run] | None = None):
        self.interventions = tuple(interventions)
        self.sources = dict(sources or {})
        self.by_hook: dict[str, list[Intervention]] = {}
        for it in self.interventions:
            self.by_hook.setdefault(it.hook, []).append(it)
        self.hooks = frozenset(self.by_hook)  # the hooks it edits: a Run reads these through a recompute
        # Only these layers need the explicit attention (model/engine.py): a pattern is edited there.
        self.pattern_layers = frozenset(hooks.parse_hook(h)[0] for h in self.hooks if h.endswith(".attn.hook_pattern"))

    def __bool__(self) -> bool:
        return bool(self.interventions)

    def __call__(self, name: str, tensor: torch.Tensor, offset: int = 0) -> torch.Tensor | None:
        edits = self.by_hook.get(name)
        if not edits:
            return None
        suffix = hooks.parse_hook(name)[1]
        axes = EDITABLE[suffix]
        n_pos = tensor.shape[axes.index("position")]
        out = None
        for it in edits:
            index = _index(suffix, it, offset, n_pos)
            if index is None:
                continue
            if out is None:
                out = tensor.clone()
            if it.op == "zero":
                out[index] = 0
            elif it.op == "mean":
                # Over the positions (axis 0), of the values before any edit at this hook. Never
                # in a decode step (interventions.check refuses it for a generation).
                mean = tensor.mean(dim=0)
                out[index] = mean[index[1:]]
            else:
                source = self.sources[it.source_run_id][name]
                at = list(index)
                at[axes.index("position")] = it.position if it.position is not None else slice(offset, offset + n_pos)
                if suffix == "attn.hook_pattern":
                    # A query row of another length: its columns past the shorter one are masked
                    # (exactly 0) in both, since the query is inside both runs.
                    width = min(tensor.shape[-1], source.shape[-1])
                    index, at = (*index[:-1], slice(0, width)), (*at[:-1], slice(0, width))
                out[index] = source[tuple(at)]
        return out
