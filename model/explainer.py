"""The notebook-facing entry point: `explainer = Explainer.load(...)`, then
`run = explainer.analyze("The cat sat")` and `run["blocks.3.attn.hook_pattern"]`."""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch

from . import engine
from .cancellation import NEVER, CancelToken
from .errors import FieldError
from .interventions import Editor, Intervention
from .loading import DEFAULT_MODEL, RANDOM_WEIGHTS_SEED, LoadedModel, load_model
from .run import Run
from .tokenizer import Tokenizer, get_tokenizer, is_blank


class PromptError(FieldError):
    """The prompt cannot be analyzed; the message says why, in words a student understands."""

    field, code, prefixed = "text", "empty_prompt", False


class EmptyPromptError(PromptError):
    pass


class PromptTooLongError(PromptError):
    code = "prompt_too_long"

    def __init__(self, n_tokens: int, limit: int, field: str = "text"):
        self.n_tokens = n_tokens
        self.limit = limit
        super().__init__(f"The prompt has {n_tokens} tokens; GPT-2 reads at most {limit}. Shorten it by {n_tokens - limit}.",
                         field, n_tokens=n_tokens, limit=limit)


class TokenIdError(FieldError, IndexError):
    """A token id outside the vocabulary; `index` is its place in the list."""

    code = "out_of_range"

    def __init__(self, index: int, token_id: int, vocab_size: int):
        self.index = index
        super().__init__(f"must be a token id from 0 to {vocab_size - 1}, got {token_id}", f"ids.{index}")


class Explainer:
    def __init__(self, loaded: LoadedModel, tokenizer: Tokenizer | None = None):
        self.loaded = loaded
        self.model = loaded.model
        self.config = loaded.model.config
        self.tokenizer = tokenizer or get_tokenizer()
        if self.tokenizer.vocab_size != self.config.vocab_size:
            raise ValueError(f"The tokenizer has {self.tokenizer.vocab_size} tokens but the model {self.config.vocab_size}.")

    @classmethod
    def load(cls, name: str = DEFAULT_MODEL, *, random_weights: bool = False, device: str = "cpu",
             revision: str | None = None, fallback_to_random: bool = False) -> Explainer:
        """See `load_model`. In a notebook, `Explainer.load()` is GPT-2 small from the Hugging
        Face cache or Hub; without `fallback_to_random` it never silently gives an untrained model."""
        return cls(load_model(name, random_weights=random_weights, device=device, revision=revision,
                              fallback_to_random=fallback_to_random))

    @property
    def identity(self) -> str:
        """What the numbers of a run depend on besides its text: the checkpoint (its name and,
        for a Hub snapshot, the commit folder) or the seeded random weights in its shapes."""
        loaded = self.loaded
        if loaded.random_weights:
            return f"random:{loaded.name}:{RANDOM_WEIGHTS_SEED}"
        return f"{loaded.name}:{os.path.basename(os.path.normpath(loaded.folder or loaded.name))}"

    @property
    def n_ctx(self) -> int:
        return self.config.n_positions

    @property
    def info(self) -> dict:
        c = self.config
        return {
            "name": self.loaded.name,
            "n_layers": c.n_layer,
            "n_heads": c.n_head,
            "d_model": c.n_embd,
            "d_head": c.n_embd // c.n_head,
            "d_mlp": c.n_inner or 4 * c.n_embd,
            "n_ctx": c.n_positions,
            "d_vocab": c.vocab_size,
            "random_weights": self.loaded.random_weights,
            "reason": self.loaded.reason,
            "n_params": sum(p.numel() for p in self.model.parameters()),
            "activation_function": c.activation_function,
            "layer_norm_epsilon": c.layer_norm_epsilon,
            "tied_embeddings": self.model.lm_head.weight is self.model.transformer.wte.weight,
            "end_of_text_id": self.tokenizer.end_of_text,
            "dropout": (
                f"Dropout is the identity at inference: GPT-2 was trained with dropout p = {c.resid_pdrop} "
                "on embeddings, attention weights and residual branches, but no dropout is applied here."
            ),
            "device": str(self.loaded.device),
        }

    def tokenize(self, text: str) -> list[int]:
        """GPT-2 ids for `text`, or a PromptError (empty, or longer than the context)."""
        if is_blank(text):
            raise EmptyPromptError("The prompt is empty: type some text to analyze.")
        ids = self.tokenizer.encode(text)
        if len(ids) > self.n_ctx:
            raise PromptTooLongError(len(ids), self.n_ctx)
        return ids

    def check_ids(self, ids: list[int]) -> list[int]:
        """`ids` as given, or a PromptError (none, more than the context) or a TokenIdError naming
        the first id outside the vocabulary."""
        if not ids:
            raise EmptyPromptError("The prompt is empty: give at least one token id.", "ids")
        if len(ids) > self.n_ctx:
            raise PromptTooLongError(len(ids), self.n_ctx, "ids")
        for i, token_id in enumerate(ids):
            if not 0 <= token_id < self.config.vocab_size:
                raise TokenIdError(i, token_id, self.config.vocab_size)
        return list(ids)

    def analyze(self, text: str, keep: Iterable[str] = (), interventions: Iterable[Intervention] = (),
                sources: dict[str, Run] | None = None) -> Run:
        """The run of `text`; with `interventions` (model/interventions.py), the run with those
        experiments applied. A patch reads its source run from `sources` (run id -> Run)."""
        return self.analyze_ids(self.tokenize(text), keep, editor=Editor(tuple(interventions), sources))

    @torch.inference_mode()
    def analyze_ids(self, ids: list[int], keep: Iterable[str] = (), cancel: CancelToken = NEVER,
                    editor: Editor | None = None) -> Run:
        """One forward pass. Keeps the residual stream and final outputs, plus the hooks in
        `keep`: full names ('blocks.3.attn.hook_q'), per-layer suffixes ('attn.hook_pattern'
        keeps it for every layer) or '*' for everything. `editor` applies interventions (checked
        beforehand: interventions.check)."""
        editor = editor or Editor(())
        keep = set(keep)
        keep_all = "*" in keep
        n_layers = self.config.n_layer
        always = {"hook_embed", "hook_pos_embed", "ln_final.hook_out", "logits",
                  engine.layer_hook(n_layers - 1, "hook_resid_post")}
        stored: dict[str, torch.Tensor] = {}

        def record(name: str, tensor: torch.Tensor) -> torch.Tensor | None:
            out = editor(name, tensor)
            if name.endswith(".hook_resid_pre"):
                stored[name] = tensor  # the block's input before any edit there: a recompute applies it
            elif keep_all or name in always or name in keep or (name.startswith("blocks.") and name.split(".", 2)[2] in keep):
                stored[name] = tensor if out is None else out
            return out

        # Scores and patterns are computed where they are kept: every layer attends with the fused
        # kernel whatever is kept (but where a pattern is edited), so a run's numbers are its own.
        observed = {layer for layer in range(n_layers)
                    if keep_all or {"attn.hook_pattern", "attn.hook_attn_scores"} & keep
                    or {engine.layer_hook(layer, "attn.hook_pattern"), engine.layer_hook(layer, "attn.hook_attn_scores")} & keep}
        tensor_ids = torch.tensor(ids, dtype=torch.long, device=self.loaded.device)
        engine.forward(self.model, tensor_ids, record, cancel, fused=lambda layer: layer not in editor.pattern_layers,
                       observe=observed.__contains__)
        return Run(self.model, ids, self.tokenizer.token_texts(ids), stored, editor)
