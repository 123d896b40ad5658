"""The anatomy of the parameters: where GPT-2's 124 million numbers sit, and GPT-3's 175 billion.

Two ways to the same breakdown, by kind of matrix:
- `count_model` reads the loaded model's own tensors (the fused c_attn matrix is split into its
  query, key and value columns), so its total is `sum(p.numel() for p in model.parameters())`;
- `from_hyperparameters` applies the formulas below to a model's shapes. For GPT-2 small the two
  agree part by part (a test checks it); for GPT-3 175B only the formulas are available.

Per block: W_Q, W_K, W_V [d_model, n_heads * d_head], W_O [n_heads * d_head, d_model],
W_in [d_model, d_mlp], W_out [d_mlp, d_model], two LayerNorms (a gain and a bias of d_model each),
and a bias for each of the six matrices. Once: W_E [d_vocab, d_model], W_pos [n_ctx, d_model],
the final LayerNorm, and the unembedding [d_model, d_vocab] unless it is tied to W_E.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from transformers import GPT2LMHeadModel


@dataclass(frozen=True)
class Hyperparameters:
    name: str
    d_model: int
    n_layers: int
    n_heads: int
    d_head: int
    d_mlp: int
    d_vocab: int
    n_ctx: int
    tied_embeddings: bool

    @classmethod
    def of(cls, model: GPT2LMHeadModel, name: str) -> Hyperparameters:
        c = model.config
        return cls(name=name, d_model=c.n_embd, n_layers=c.n_layer, n_heads=c.n_head, d_head=c.n_embd // c.n_head,
                   d_mlp=c.n_inner or 4 * c.n_embd, d_vocab=c.vocab_size, n_ctx=c.n_positions,
                   tied_embeddings=model.lm_head.weight is model.transformer.wte.weight)


GPT2_SMALL = Hyperparameters("GPT-2 small", d_model=768, n_layers=12, n_heads=12, d_head=64, d_mlp=3072,
                             d_vocab=50257, n_ctx=1024, tied_embeddings=True)
# Brown et al. 2020, table 2.1; the unembedding is a separate matrix.
GPT3 = Hyperparameters("GPT-3 175B", d_model=12288, n_layers=96, n_heads=96, d_head=128, d_mlp=49152,
                       d_vocab=50257, n_ctx=2048, tied_embeddings=False)

# kind -> (label, what it does)
KINDS: dict[str, tuple[str, str]] = {
    "token_embedding": ("Token embedding W_E", "one row of d_model numbers per token of the vocabulary"),
    "unembedding": ("Unembedding W_U", "turns the final vector back into one score per token"),
    "position_embedding": ("Position embedding W_pos", "one row per position in the context"),
    "query": ("Query W_Q", "what each token looks for, in every head of every layer"),
    "key": ("Key W_K", "what each token offers to be found by"),
    "value": ("Value W_V", "what each token passes on when attended to"),
    "attention_output": ("Attention output W_O", "mixes the heads' results back into the residual stream"),
    "mlp_up": ("MLP up-projection W_in", "d_model -> d_mlp, before the GELU"),
    "mlp_down": ("MLP down-projection W_out", "d_mlp -> d_model, after the GELU"),
    "layernorm": ("LayerNorm weights", "the gains of the two LayerNorms per block and the final one"),
    "biases": ("Biases", "of query, key, value, attention output, MLP up and down, and the LayerNorms"),
    "other": ("Other", "parameters of no kind above"),
}


@dataclass(frozen=True)
class Part:
    """Identical tensors of one kind: `copies` tensors of `shape` (one per layer, or one)."""

    name: str  # e.g. 'transformer.h.*.attn.c_attn.weight[:, 0:768]'
    shape: tuple[int, ...]
    copies: int

    @property
    def count(self) -> int:
        n = self.copies
        for s in self.shape:
            n *= s
        return n


@dataclass
class Kind:
    key: str
    label: str
    description: str
    parts: list[Part] = field(default_factory=list)
    note: str | None = None
    share: float = 0.0  # of the whole model's parameters (set by its Anatomy)

    @property
    def count(self) -> int:
        return sum(p.count for p in self.parts)


@dataclass
class Anatomy:
    name: str
    hyperparameters: Hyperparameters
    kinds: list[Kind]
    source: str  # 'model' (counted from the loaded tensors) or 'hyperparameters' (formulas)

    @property
    def total(self) -> int:
        return sum(k.count for k in self.kinds)

    def __post_init__(self) -> None:
        total = self.total
        for kind in self.kinds:
            kind.share = kind.count / total if total else 0.0

    def kind(self, key: str) -> Kind:
        return next(k for k in self.kinds if k.key == key)


def _empty_kinds(tied: bool) -> dict[str, Kind]:
    kinds = {key: Kind(key, label, description) for key, (label, description) in KINDS.items()}
    if tied:
        kinds["token_embedding"].note = ("Tied with the unembedding: the same matrix also turns the final vector "
                                         "into token scores, so it is counted once.")
        kinds["unembedding"].note = "Tied to the token embedding (counted there)."
    else:
        kinds["unembedding"].note = "A separate matrix of the same shape as the token embedding."
    return kinds


def _finish(kinds: dict[str, Kind]) -> list[Kind]:
    """Kinds in display order; 'other' only when something was unclassified."""
    return [k for k in kinds.values() if k.key != "other" or k.parts]


def from_hyperparameters(hp: Hyperparameters) -> Anatomy:
    """The breakdown by formula, named like GPT-2's tensors in `transformers`."""
    d, L, hd, m, V = hp.d_model, hp.n_layers, hp.n_heads * hp.d_head, hp.d_mlp, hp.d_vocab
    kinds = _empty_kinds(hp.tied_embeddings)

    def add(kind: str, name: str, shape: tuple[int, ...], copies: int = 1) -> None:
        kinds[kind].parts.append(Part(name, shape, copies))

    add("token_embedding", "transformer.wte.weight", (V, d))
    if not hp.tied_embeddings:
        add("unembedding", "lm_head.weight", (V, d))
    add("position_embedding", "transformer.wpe.weight", (hp.n_ctx, d))
    for i, kind in enumerate(("query", "key", "value")):
        add(kind, f"transformer.h.*.attn.c_attn.weight[:, {i * hd}:{(i + 1) * hd}]", (d, hd), L)
    add("attention_output", "transformer.h.*.attn.c_proj.weight", (hd, d), L)
    add("mlp_up", "transformer.h.*.mlp.c_fc.weight", (d, m), L)
    add("mlp_down", "transformer.h.*.mlp.c_proj.weight", (m, d), L)
    add("layernorm", "transformer.h.*.ln_1.weight", (d,), L)
    add("layernorm", "transformer.h.*.ln_2.weight", (d,), L)
    add("layernorm", "transformer.ln_f.weight", (d,))
    for i, what in enumerate(("query", "key", "value")):
        add("biases", f"transformer.h.*.attn.c_attn.bias[{i * hd}:{(i + 1) * hd}]", (hd,), L)
    add("biases", "transformer.h.*.attn.c_proj.bias", (d,), L)
    add("biases", "transformer.h.*.mlp.c_fc.bias", (m,), L)
    add("biases", "transformer.h.*.mlp.c_proj.bias", (d,), L)
    add("biases", "transformer.h.*.ln_1.bias", (d,), L)
    add("biases", "transformer.h.*.ln_2.bias", (d,), L)
    add("biases", "transformer.ln_f.bias", (d,))
    return Anatomy(hp.name, hp, _finish(kinds), "hyperparameters")


_SIMPLE = {
    "transformer.wte.weight": "token_embedding",
    "lm_head.weight": "unembedding",
    "transformer.wpe.weight": "position_embedding",
    "transformer.h.*.attn.c_proj.weight": "attention_output",
    "transformer.h.*.mlp.c_fc.weight": "mlp_up",
    "transformer.h.*.mlp.c_proj.weight": "mlp_down",
    "transformer.h.*.ln_1.weight": "layernorm",
    "transformer.h.*.ln_2.weight": "layernorm",
    "transformer.ln_f.weight": "layernorm",
}


def count_model(model: GPT2LMHeadModel, name: str) -> Anatomy:
    """The breakdown counted from the model's own tensors. `named_parameters` lists a tied
    matrix once, so the unembedding is counted only when it is a separate tensor."""
    hp = Hyperparameters.of(model, name)
    kinds = _empty_kinds(hp.tied_embeddings)
    found: dict[tuple[str, str, tuple[int, ...]], int] = {}

    def add(kind: str, pattern: str, shape: tuple[int, ...]) -> None:
        key = (kind, pattern, shape)
        found[key] = found.get(key, 0) + 1

    for param_name, param in model.named_parameters():
        pattern = re.sub(r"\.h\.\d+\.", ".h.*.", param_name)
        shape = tuple(param.shape)
        if pattern == "transformer.h.*.attn.c_attn.weight":  # [d_model, 3 * n_heads * d_head]: q | k | v
            width = shape[1] // 3
            for i, kind in enumerate(("query", "key", "value")):
                add(kind, f"{pattern}[:, {i * width}:{(i + 1) * width}]", (shape[0], width))
        elif pattern == "transformer.h.*.attn.c_attn.bias":
            width = shape[0] // 3
            for i in range(3):
                add("biases", f"{pattern}[{i * width}:{(i + 1) * width}]", (width,))
        elif pattern in _SIMPLE:
            add(_SIMPLE[pattern], pattern, shape)
        elif pattern.endswith(".bias"):
            add("biases", pattern, shape)
        else:
            add("other", pattern, shape)
    for (kind, pattern, shape), copies in found.items():
        kinds[kind].parts.append(Part(pattern, shape, copies))
    return Anatomy(name, hp, _finish(kinds), "model")
