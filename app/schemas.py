"""The API contract, as pydantic models (they document /docs). Tensor names are the engine's
TransformerLens hook names; positions, layers and heads are 0-based."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_TOP_K = 50257


class Tensor(BaseModel):
    dtype: Literal["float32", "float16"]
    shape: list[int]
    data: str = Field(description="base64 of the little-endian, C-order bytes")


class ModelInfo(BaseModel):
    name: str
    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    n_ctx: int
    d_vocab: int
    random_weights: bool
    reason: str | None = Field(description="Why the weights are random (asked for, or the trained ones could not be "
                               "found or downloaded); null for trained weights.")
    n_params: int
    activation_function: str
    layer_norm_epsilon: float
    tied_embeddings: bool
    dropout: str
    device: str
    version: str = Field(description="The explainer package's version.")


class Token(BaseModel):
    position: int
    id: int
    text: str = Field(description="The decoded text, with its leading space; the texts join back to the prompt.")
    partial: bool = Field(False, description="The token carries only part of a multi-byte character.")


class TokenProb(BaseModel):
    id: int
    text: str
    prob: float


class TopToken(TokenProb):
    logit: float


def _check_prompt(text: str) -> str:
    if not text.strip():
        raise ValueError("the prompt is empty: type some text to analyze")
    return text


class AnalyzeRequest(BaseModel):
    model_config = ConfigDict(strict=True)  # wrong types are a 422, not coerced ("1", true)

    text: str = Field(min_length=1, max_length=100_000, description="The prompt; at most 1,024 tokens.")
    patterns: Literal["all", "auto"] = Field(
        "all",
        description="'all': every layer's attention pattern in the response, up to 16 MB of them "
        "(EXPLAINER_AUTO_PATTERN_BYTES; 241 tokens in GPT-2 small), beyond which it is a 422. 'auto': only when they "
        "take at most 16 MB (float16; 241 tokens in GPT-2 small); otherwise the response says "
        "\"patterns\": \"per-layer\" and GET /api/runs/{run_id}/layers/{l}?fields=attn.hook_pattern serves them.",
    )

    @field_validator("text")
    @classmethod
    def not_blank(cls, text: str) -> str:
        return _check_prompt(text)


class AnalyzeResponse(BaseModel):
    run_id: str
    model: ModelInfo
    tokens: list[Token]
    tensors: dict[str, Tensor] = Field(
        description="blocks.{l}.attn.hook_pattern [head, q_pos, k_pos] (float16) for every layer; "
        "logits [d_vocab] (float32) for the last position."
    )
    top: list[TopToken] = Field(description="The 10 most likely next tokens at temperature 1.")
    patterns: Literal["included", "per-layer"] = Field(
        description="'per-layer': the patterns were left out (a long prompt with patterns='auto')."
    )


class TensorsResponse(BaseModel):
    tensors: dict[str, Tensor]


class LayerResponse(BaseModel):
    layer: int
    tensors: dict[str, Tensor]


def _check_temperature(value: float) -> float:
    if not math.isfinite(value) or not 0 <= value <= 10:
        raise ValueError("temperature must be a finite number from 0 to 10")
    return value


class SamplingParams(BaseModel):
    model_config = ConfigDict(strict=True)  # an int is still a valid float; "1", true and 3.0 for an int are not

    temperature: float = Field(1.0, description="0 = greedy; at most 10.")
    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)

    @field_validator("temperature")
    @classmethod
    def finite_temperature(cls, value: float) -> float:
        return _check_temperature(value)


class SampleRequest(SamplingParams):
    run_id: str = Field(min_length=1, max_length=64)


class SampleResponse(BaseModel):
    distribution: list[TokenProb] = Field(description="The 20 most likely tokens after temperature and filtering.")
    token: TokenProb
    entropy: float = Field(description="Shannon entropy of the filtered distribution, in bits.")


class GenerateRequest(SamplingParams):
    text: str = Field(min_length=1, max_length=100_000)
    max_new_tokens: int = Field(32, ge=1, le=256)

    @field_validator("text")
    @classmethod
    def not_blank(cls, text: str) -> str:
        return _check_prompt(text)


# --- Issue 5: embedding space, logit lens, anatomy of the parameters -------------------------

class LensRow(BaseModel):
    hook: str = Field(description="The residual stream read, e.g. blocks.3.hook_resid_post; blocks.0.hook_resid_pre is the embedding.")
    layer: int
    label: str


class LensCell(BaseModel):
    top: list[TopToken] = Field(description="The k most likely next tokens if the model stopped here.")
    final_rank: int = Field(description="1-based rank here of the token the model finally predicts at this position.")
    final_prob: float


class LogitLensResponse(BaseModel):
    stream: Literal["resid_post", "resid_mid", "both"]
    k: int
    positions: list[int]
    rows: list[LensRow]
    final: list[TokenProb] = Field(description="Per position: the model's own top prediction and its probability.")
    first_top_row: list[int | None] = Field(description="Per position: the first row where the final answer is the top guess.")
    cells: list[list[LensCell]] = Field(description="[row][position index]")


class EmbeddingTerm(BaseModel):
    text: str = Field(description="Exactly the text tokenized: words get a leading space unless quoted.")
    ids: list[int]
    tokens: list[str]
    sign: int = 1
    note: str | None = Field(None, description="Set when the word is several tokens: its vector is their average.")


class Neighbour(BaseModel):
    id: int
    text: str
    cosine: float


class NeighboursResponse(BaseModel):
    terms: list[EmbeddingTerm]
    neighbours: list[Neighbour]
    excluded: list[int] = Field(description="The query's own token ids, left out of the answer.")
    notes: list[str]


class DotResponse(BaseModel):
    a: EmbeddingTerm
    b: EmbeddingTerm
    dot: float
    cosine: float
    norm_a: float
    norm_b: float


class MapPoint(BaseModel):
    id: int | None = Field(description="None for a multi-token word, placed at the average of its tokens.")
    text: str
    xyz: list[float]
    group: Literal["sample", "prompt", "word"]
    positions: list[int] = Field(description="For the prompt's tokens: where they occur.")


class EmbeddingMapResponse(BaseModel):
    d_model: int
    explained: list[float] = Field(description="Share of the points' variance along each of the 3 axes.")
    points: list[MapPoint]
    terms: list[EmbeddingTerm]
    notes: list[str]


class AnatomyPart(BaseModel):
    name: str
    shape: list[int]
    copies: int
    count: int


class AnatomyKind(BaseModel):
    key: str
    label: str
    description: str
    count: int
    share: float
    note: str | None
    parts: list[AnatomyPart]


class AnatomyModel(BaseModel):
    name: str
    source: Literal["model", "hyperparameters"]
    hyperparameters: dict[str, int | bool | str]
    total: int
    kinds: list[AnatomyKind]


class AnatomyResponse(BaseModel):
    models: list[AnatomyModel] = Field(description="The loaded model, counted from its tensors; then GPT-3 175B by the same formulas.")
    n_params: int = Field(description="sum(p.numel() for p in model.parameters()) of the loaded model.")
