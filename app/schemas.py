"""The API contract, as pydantic models (they document /docs). Tensor names are the engine's
TransformerLens hook names; positions, layers and heads are 0-based."""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from model.anatomy import Hyperparameters
from model.hooks import LAYER_HOOKS
from model.embedding_space import MAP_SAMPLE, MAX_K, MAX_TERM_TOKENS, MAX_TERMS, MAX_WORD_CHARS  # noqa: F401 (the routes' bounds)
from model.patching import RELIABLE_LOGITS
from model.interventions import EDITABLE, Intervention
from model.tokenizer import BLANK, is_blank

MAX_TOP_K = 50257
MAX_NEW_TOKENS = 256
MAX_LENS_K = 50
MAX_LENS_POSITIONS = 64  # with k <= 50 and 2 x 13 rows: a bounded cost per request
MAX_MAP_WORDS = 20
MAX_SEED = 2**53 - 1  # exact in a JSON number (a double): the schema states it without rounding
MAX_PROMPT_CHARS = 100_000
NOT_BLANK = f"^[\\s\\S]*[^{BLANK}][\\s\\S]*$"  # a JSON Schema pattern (ECMA and Python agree on these escapes)

# --- Errors: one body for every 4xx and 5xx ---------------------------------------------------

ErrorCode = Literal[
    # the request does not fit this schema
    "invalid", "invalid_json", "empty_prompt", "body_too_large", "host_not_allowed",
    # it fits the schema, but the prompt, the run or the model cannot take it (see the 422 description)
    "prompt_too_long", "too_costly", "out_of_range", "unknown_hook", "one_of", "bad_words", "not_applicable",
    "unknown_source",
    # the connection: a body that stalls, more connections than one client (or the server) may hold
    "body_timeout", "too_many_connections",
    # addresses
    "unknown_run", "unknown_scene", "unknown_room", "room_expired", "not_found", "method_not_allowed",
    # a room's publisher (the teacher's page holds its secret); the teacher token; another web site
    "not_teacher", "teacher_only", "cross_site",
    # one client address holds as many rooms or follow streams as one computer may
    "client_limit",
    # the server
    "loading", "busy", "timeout", "stopping", "too_many_rooms", "room_full", "internal",
]
# 422s for requests that fit the schema but not the prompt, the run or the model: no JSON Schema
# can state them (a prompt's length in tokens, a position beyond a run's tokens, one of two
# parameters...). The 422 description in the OpenAPI document lists them.
CONTEXT_CODES = ("prompt_too_long", "too_costly", "out_of_range", "unknown_hook", "one_of", "bad_words", "not_applicable",
                 "unknown_source")


class FieldProblem(BaseModel):
    field: str = Field(description="The request field at fault, e.g. text, layer, word[0]; 'body' for the whole body.")
    message: str
    code: ErrorCode = Field(description="What is wrong with this field (the body's code, for its first field).")


class ErrorBody(BaseModel):
    detail: str = Field(description="What went wrong, for a person, in English.")
    code: ErrorCode = Field(description="Stable: a page keys its own (translated) message on it.")
    field: str | None = Field(description="The first field at fault (errors[0].field), or null when the fault is no "
                                          "field's (a full queue, an unknown path).")
    errors: list[FieldProblem] = Field(default_factory=list, description="One entry per field at fault (422 and 400).")
    n_tokens: int | None = Field(None, description="prompt_too_long: the prompt's length in tokens.")
    limit: int | None = Field(None, description="prompt_too_long: the most the model takes.")


def _digits(value: object) -> object:
    if isinstance(value, str) and not re.fullmatch(r"-?(0|[1-9][0-9]{0,18})", value):
        raise ValueError(f"must be a whole number written in digits, got {value!r}")
    return value


def _integral(value: object) -> object:
    if isinstance(value, float) and value.is_integer():  # JSON Schema's integer: 3.0 is one
        return int(value)
    return value


def whole_number(ge: int | None = None, le: int | None = None):
    """An integer in a path or a query, parsed strictly: '1.0', ' 1', '+1' and '01' are refused.
    (The bounds go before the validator, or pydantic leaves them out of the JSON Schema.)"""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_digits)]


def body_integer(ge: int | None = None, le: int | None = None):
    """An integer in a strict JSON body: 3 and 3.0 (the same JSON Schema integer), not "3" or true."""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_integral)]


Index = whole_number(ge=0)


class Tensor(BaseModel):
    dtype: Literal["float32", "float16"]
    shape: list[int]
    data: str = Field(description="base64 of the little-endian, C-order bytes")


class Limits(BaseModel):
    """The request limits the page states and enforces in its own inputs (never copied into JS)."""
    max_prompt_chars: int
    max_new_tokens: int
    max_top_k: int
    max_seed: int
    max_lens_positions: int
    max_lens_k: int
    max_map_words: int
    max_word_chars: int = Field(description="A word in the embedding-space queries, as typed.")
    max_expression_chars: int


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
    end_of_text_id: int | None = Field(description="The id of <|endoftext|>: a prompt holds it only when given as ids "
                                       "(typed, the text is ordinary tokens).")
    dropout: str
    device: str
    version: str = Field(description="The explainer package's version.")
    limits: Limits


class Health(BaseModel):
    status: Literal["ok", "loading"]
    cache: dict[str, int] | None = Field(None, description="The run cache's entries and bytes, against its limits.")
    forward_passes: dict[str, int] | None = Field(None, description="Forward passes running and waiting now.")


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
    if is_blank(text):
        raise PydanticCustomError("empty_prompt", "the prompt is empty: type some text to analyze")
    return text


def _not_blank_string(schema: dict) -> None:
    """The pattern on the string branch of an optional prompt (`text` or `ids`)."""
    schema["anyOf"][0]["pattern"] = NOT_BLANK


def _prompt(description: str, default=...):
    # No min_length: "" is blank, and gets the same empty_prompt as "   " (the pattern implies a character).
    return Field(default, max_length=MAX_PROMPT_CHARS, description=description,
                 json_schema_extra={"pattern": NOT_BLANK} if default is ... else _not_blank_string)


MAX_IDS = 16384  # far beyond any GPT-2's context: the model's own n_ctx is checked when the request is served


def _ids(description: str):
    return Field(None, min_length=1, max_length=MAX_IDS, description=description)


class PromptInput(BaseModel):
    """A prompt as text (tokenized by the server) or as token ids (taken as they are): exactly
    one of the two, else a 422 one_of. Ids are how a generated sequence is named exactly: its
    text does not always tokenize back to the same ids."""
    model_config = ConfigDict(strict=True)  # wrong types are a 422, not coerced ("1", true)

    text: str | None = _prompt("The prompt; at most the model's context in tokens (1,024 in GPT-2 small), else a 422 "
                               "prompt_too_long. Blank means only whitespace characters. Give this or `ids`.", None)
    ids: list[body_integer(ge=0)] | None = _ids(
        "The prompt as token ids (e.g. 50256 for <|endoftext|>, which typed text never gives); each below the "
        "model's vocabulary size, at most its context. Give this or `text`.")

    @field_validator("text")
    @classmethod
    def not_blank(cls, text: str | None) -> str | None:
        return None if text is None else _check_prompt(text)


MAX_INTERVENTIONS = 32
# The hook grammar (model/hooks.py) for the hooks an experiment can edit, as the schema states it:
# a name of another spelling is a schema 422 ("invalid"); only the layer's range depends on the model.
EDITABLE_HOOK = f"^blocks\\.(0|[1-9][0-9]{{0,5}})\\.({'|'.join(re.escape(s) for s in EDITABLE)})$"


class InterventionSpec(BaseModel):
    """An experiment on the model, applied where `hook` records (model/interventions.py)."""
    model_config = ConfigDict(strict=True, extra="forbid")

    hook: str = Field(min_length=1, max_length=64, pattern=EDITABLE_HOOK, description=(
        "A full hook name blocks.L.<suffix>, for the hooks an experiment can edit: "
        + ", ".join(f"blocks.L.{suffix}" + (" (op patch only)" if suffix == "attn.hook_pattern" else "") for suffix in EDITABLE)
        + ". L in ASCII decimal without a leading zero, at most the model's last layer (else 422 out_of_range); "
        "any other name does not fit this pattern (422 invalid)."))
    op: Literal["zero", "mean", "patch"] = Field(description=(
        "zero: the selection set to 0. mean: to its mean over this run's positions (of the values before any edit "
        "at this hook). patch: to the same selection in the run source_run_id (same number of tokens)."))
    head: body_integer(ge=0, le=1023) | None = Field(None, description="Index on the head axis (q, k, v, z, pattern); all when omitted.")
    neuron: body_integer(ge=0, le=65535) | None = Field(None, description="Index of mlp.hook_post's neuron axis; all when omitted.")
    position: body_integer(ge=0, le=65535) | None = Field(None, description="One position (the query position for the pattern); all when omitted.")
    source_run_id: str | None = Field(None, min_length=1, max_length=64, description="patch only: the run to copy from.")

    def intervention(self) -> Intervention:
        """model/'s Intervention: the one converter from the request's shape to the engine's."""
        return Intervention(**self.model_dump(exclude_none=True))


class AnalyzeRequest(PromptInput):
    patterns: Literal["all", "auto"] = Field(
        "all",
        description="'all': every layer's attention pattern in the response, up to 16 MB of them "
        "(EXPLAINER_AUTO_PATTERN_BYTES; 241 tokens in GPT-2 small), beyond which it is a 422. 'auto': only when they "
        "take at most 16 MB (float16; 241 tokens in GPT-2 small); otherwise the response says "
        "\"patterns\": \"per-layer\" and GET /api/runs/{run_id}/layers/{l}?fields=attn.hook_pattern serves them.",
    )

    interventions: list[InterventionSpec] = Field(
        default_factory=list, max_length=MAX_INTERVENTIONS,
        description="Experiments applied in this order during the pass: the response is the intervened run's, with "
        "its own run_id (a run is identified by the model, its token ids and its interventions).")


class AnalyzeResponse(BaseModel):
    run_id: str
    model: ModelInfo
    text: str = Field(description="The tokens' texts joined: the prompt, for a prompt given as text.")
    tokens: list[Token]
    tensors: dict[str, Tensor] = Field(
        description="blocks.{l}.attn.hook_pattern [head, q_pos, k_pos] (float16) for every layer; "
        "logits [d_vocab] (float32) for the last position."
    )
    top: list[TopToken] = Field(description="The 10 most likely next tokens at temperature 1.")
    resid_norms: Tensor = Field(description="The residual stream's length ‖x‖ at each position entering each block "
                                "(blocks.l.hook_resid_pre), then leaving the last (hook_resid_post). [n_layers + 1, pos]")
    patterns: Literal["included", "per-layer"] = Field(
        description="'per-layer': the patterns were left out (a long prompt with patterns='auto')."
    )
    interventions: list[InterventionSpec] = Field(description="The run's interventions, as applied; [] for a plain run.")


class RunResponse(BaseModel):
    run_id: str
    model: str = Field(description="The model's name (a Hub id or a folder), as /api/model gives it.")
    text: str = Field(description="The tokens' texts joined.")
    tokens: list[Token] = Field(description="Exactly the token ids the run was computed on, with their texts.")
    interventions: list[InterventionSpec] = Field(description="The run's interventions; [] for a plain run.")


class TensorsResponse(BaseModel):
    tensors: dict[str, Tensor]


_HOOK = f"(blocks\\.(0|[1-9][0-9]*)\\.)?({'|'.join(h.replace('.', chr(92) + '.') for h in LAYER_HOOKS)})"
LAYER_FIELDS_PATTERN = f"^ *{_HOOK} *(, *{_HOOK} *)*$"  # the layer route's `fields`: the known hooks, comma-separated


class LayerResponse(BaseModel):
    layer: int
    tensors: dict[str, Tensor]


def _check_temperature(value: float) -> float:
    if not math.isfinite(value) or not 0 <= value <= 10:
        raise ValueError("temperature must be a finite number from 0 to 10")
    return value


class SamplingParams(BaseModel):
    model_config = ConfigDict(strict=True)  # an int is still a valid float; "1", true and 3.0 for an int are not

    temperature: float = Field(1.0, ge=0, le=10, description="0 = greedy; at most 10.")
    top_k: body_integer(ge=1, le=MAX_TOP_K) | None = None
    top_p: float | None = Field(None, gt=0, le=1)
    seed: body_integer(ge=0, le=MAX_SEED) | None = None

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


class GenerateRequest(SamplingParams, PromptInput):
    max_new_tokens: body_integer(ge=1, le=MAX_NEW_TOKENS) = 32
    interventions: list[InterventionSpec] = Field(
        default_factory=list, max_length=MAX_INTERVENTIONS,
        description="The same experiments as in /api/analyze, applied at every step: one without a position at "
        "every position, generated ones included. 'mean' is refused (it averages over positions not generated yet), "
        "and a patch names a position inside the prompt.")


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
    model_config = ConfigDict(from_attributes=True)
    name: str
    shape: list[int]
    copies: int
    count: int


class AnatomyKind(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    key: str
    label: str
    description: str
    count: int
    share: float
    note: str | None
    parts: list[AnatomyPart]


class AnatomyModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    source: Literal["model", "hyperparameters"]
    hyperparameters: Hyperparameters
    total: int
    kinds: list[AnatomyKind]


class AnatomyResponse(BaseModel):
    models: list[AnatomyModel] = Field(description="The loaded model, counted from its tensors; then GPT-3 175B by the same formulas.")
    n_params: int = Field(description="sum(p.numel() for p in model.parameters()) of the loaded model.")


class ComparedToken(BaseModel):
    id: int
    text: str
    prob_a: float
    prob_b: float
    logprob_a: float
    logprob_b: float
    change: float = Field(description="logprob_b − logprob_a (natural log).")


class CompareResponse(BaseModel):
    a: str
    b: str
    top_a: list[ComparedToken] = Field(description="The 10 most likely next tokens of run a, with their probability in both.")
    top_b: list[ComparedToken] = Field(description="The same for run b.")
    biggest_changes: list[ComparedToken] = Field(
        description="The 10 largest changes of log-probability, among the 200 tokens most likely in either run.")
    kl_a_b: float | None = Field(description="KL(a‖b) of the two next-token distributions, in nats (null if infinite).")


MAX_PATCHING_TOKENS = 64


class PatchingRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    clean: str = _prompt(f"The clean prompt; at most {MAX_PATCHING_TOKENS} tokens, as many as the corrupted one.")
    corrupted: str = _prompt("The corrupted prompt: the clean one with the detail that changes the answer altered.")
    target_token: body_integer(ge=0) = Field(description="The token the clean prompt should predict (an id).")
    baseline_token: body_integer(ge=0) = Field(description="The token the corrupted prompt pushes towards (an id).")
    hook: Literal["resid_pre", "attn_out", "mlp_out", "z"] = Field(
        "resid_pre", description="What is patched: the residual stream entering each block, the attention or MLP "
        "output of each block (per position), or each head's z (per head, all positions).")

    @field_validator("clean", "corrupted")
    @classmethod
    def not_blank(cls, text: str) -> str:
        return _check_prompt(text)


class PatchingResponse(BaseModel):
    hook: str
    axis: Literal["position", "head"]
    clean_run_id: str
    corrupted_run_id: str
    tokens: list[Token] = Field(description="The corrupted prompt's tokens (the position axis).")
    ld_clean: float = Field(description="logit(target) − logit(baseline) at the last position of the clean run.")
    ld_corrupted: float = Field(description="The same for the corrupted run.")
    denominator: float = Field(description="LD_clean − LD_corrupted: what the two prompts differ by in their answer, "
                               "in logits, and what every cell of the grid is divided by.")
    reliable: bool = Field(description="Whether |denominator| ≥ threshold. When false, the two prompts barely differ "
                           "in their answer: every cell is a small change divided by almost nothing (it can read ±100), "
                           "so the grid says nothing about where the answer comes from.")
    threshold: float = Field(description=f"The smallest |denominator| called reliable, in logits: {RELIABLE_LOGITS:g} (the "
                             f"prompts change the odds of the target against the baseline by e^{RELIABLE_LOGITS:g}). Absolute, not relative "
                             "to the LDs: a cell is a ratio of log-odds changes, which means the same at any level of them.")
    grid: list[list[float | None]] = Field(
        description="[layer][position or head]: (LD_patched − LD_corrupted) / (LD_clean − LD_corrupted); 1 restores "
        "the clean answer, 0 changes nothing; null when LD_clean = LD_corrupted. Read it only when `reliable`.")


MAX_PROBE_LENGTH = 256


class HeadScoresResponse(BaseModel):
    previous_token: list[list[float | None]] = Field(description="[layer][head], in [0, 1]; null when no query has such a key.")
    duplicate_token: list[list[float | None]]
    induction: list[list[float | None]]
    definitions: dict[str, str] = Field(description="What each score measures, in words the page can show.")


class InductionProbeRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    length: body_integer(ge=2, le=MAX_PROBE_LENGTH) = Field(
        50, description=f"Random tokens in each half (the sequence is twice as long); at most {MAX_PROBE_LENGTH}, and "
                        "twice it at most the model's context.")
    seed: body_integer(ge=0, le=MAX_SEED) = Field(0, description="The same seed gives the same tokens on any server.")
    interventions: list[InterventionSpec] = Field(
        default_factory=list, max_length=MAX_INTERVENTIONS,
        description="Applied during the probe's pass, as in /api/analyze (zero and mean: the probe has no source run "
        "to patch from); e.g. the induction heads switched off, to see the second half's loss rise.")


class InductionProbeResponse(BaseModel):
    length: int
    seed: int
    tokens: list[int] = Field(description="The probe: `length` random token ids, then the same again.")
    induction: list[list[float | None]] = Field(description="[layer][head] induction score on the probe.")
    loss: list[float] = Field(description="−log p(token p+1) at every position p (2·length − 1 values), in nats.")
    loss_first_half: float = Field(description="Mean loss predicting tokens 1 … length − 1 (loss[:length − 1]; no copy seen yet).")
    loss_second_half: float = Field(description="Mean loss predicting tokens length + 1 … 2·length − 1 (loss[length:]): "
                                    "the repeated half but its first token, which has no earlier copy to follow; lower "
                                    "when induction heads copy.")
    interventions: list[InterventionSpec] = Field(description="The interventions applied, as in /api/analyze.")


class AttributionResponse(BaseModel):
    target: int
    baseline: int
    logit_diff: float = Field(description="logit(target) − logit(baseline) at the last position, from the run's logits.")
    embed: float
    pos_embed: float
    heads: list[list[float]] = Field(description="[layer][head]: each head's output z · W_O (its slice).")
    attn_bias: list[float] = Field(description="[layer]: each attention layer's output bias b_O.")
    mlp: list[float] = Field(description="[layer]: each MLP's output.")
    ln_final_bias: float
    total: float = Field(description="The sum of every part: equal to logit_diff, to float error.")
    note: str


# --- Issue 13: follow the teacher (app/rooms/store.py) ----------------------------------------------

# The page's stages (the data-stage of each card): a scene's step and a room's state name one.
from app.page.stages import stages as _stages  # noqa: E402 (the one list of stages: static/stages.json)
STAGES = _stages().ids
SCENE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
MAX_SCENE_STEPS = 20
MAX_ROOM_INDEX = 1023  # a layer or head: GPT-2 XL has 48 x 25, far below


class RoomScene(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    id: str = Field(max_length=64, pattern=SCENE_ID.pattern, description="A scene's id (GET /api/scenes).")
    step: body_integer(ge=0, le=MAX_SCENE_STEPS - 1) = Field(description="0-based: the step shown.")


# The hooks an experiment can edit (EDITABLE_HOOK) at a layer a room takes: 0 to MAX_ROOM_INDEX (1023).
ROOM_HOOK = f"^blocks\\.(0|[1-9][0-9]{{0,2}}|10[01][0-9]|102[0-3])\\.({'|'.join(re.escape(s) for s in EDITABLE)})$"


class RoomIntervention(InterventionSpec):
    """An intervention of the teacher's view, as POST /api/analyze takes it. The room knows no
    model: its layer is bounded like the state's `layer`, in the schema; one past the model's last
    layer is left out by the students' pages."""

    hook: str = Field(min_length=1, max_length=64, pattern=ROOM_HOOK, description=(
        "A full hook name, as in InterventionSpec, at a layer from 0 to 1023 (ASCII decimal, no leading zero)."))


class RoomState(BaseModel):
    """What the teacher's page shows, and every student's follows: nothing else can be stored."""
    model_config = ConfigDict(strict=True, extra="forbid")

    # An example, so that a generator of test cases (schemathesis) has a text that fits NOT_BLANK.
    text: str = Field(max_length=MAX_PROMPT_CHARS, description="The prompt shown.",
                      json_schema_extra={"pattern": NOT_BLANK, "examples": ["The cat sat on the mat"]})
    ids: list[body_integer(ge=0)] | None = Field(
        None, max_length=MAX_IDS, description="The prompt's token ids when the run shown was asked for by ids (a "
        "generation's, the real <|endoftext|>): students show exactly those tokens, not `text` tokenized again.")
    stage: Literal[tuple(sorted(STAGES))] | None = Field(None, description="The stage card scrolled to.")
    layer: body_integer(ge=0, le=MAX_ROOM_INDEX) = 0
    head: body_integer(ge=0, le=MAX_ROOM_INDEX) = 0
    pinned: body_integer(ge=0, le=65535) | None = Field(None, description="The pinned token's position, if any.")
    temperature: float = Field(1.0, ge=0, le=10)
    scene: RoomScene | None = Field(None, description="The guided scene playing, and its step.")
    interventions: list[RoomIntervention] = Field(
        default_factory=list, max_length=MAX_INTERVENTIONS,
        description="What the teacher's page has switched off (heads, a layer's attention or MLP...), as "
        "POST /api/analyze takes them: students analyze the prompt with the same list, so they see the same "
        "numbers.")

    @field_validator("text")
    @classmethod
    def not_blank(cls, text: str) -> str:
        return _check_prompt(text)

    @field_validator("temperature")
    @classmethod
    def finite_temperature(cls, value: float) -> float:
        return _check_temperature(value)


class RoomOpened(BaseModel):
    code: str = Field(description="6 characters (no 0, O, 1, I or L): what students type after /r/.")
    secret: str = Field(description="Only the teacher's page has it: PUT /api/rooms/{code}/state needs it in X-Room-Secret.")
    follow_url: str = Field(description="The students' page, /r/{code}.")
    students_url: str = Field(description="The students' page as an absolute URL another computer can open: on "
                              "EXPLAINER_PUBLIC_URL, else this server's LAN address (never 127.0.0.1 while it is reachable).")
    reachable: bool = Field(description="false: the server listens on loopback only, so students' computers cannot "
                            "open students_url; `explainer serve --classroom` makes it reachable.")
    expires_in: float = Field(description="Seconds without a publish before the room expires (EXPLAINER_ROOM_IDLE).")


class Classroom(BaseModel):
    teacher: bool = Field(description="This browser may open and close rooms: the server is loopback-only, or the "
                          "request carries the teacher token (cookie or Authorization: Bearer).")
    token_required: bool = Field(description="Teacher actions need the teacher token here (a non-loopback bind, or "
                                 "EXPLAINER_TEACHER_TOKEN set).")
    reachable: bool = Field(description="Students' computers can reach this server.")
    students_base: str | None = Field(description="The address students open (EXPLAINER_PUBLIC_URL, else the LAN "
                                      "address); null when the server listens on loopback only.")
    command: str = Field(description="The command that serves a reachable classroom.")


class RoomVersion(BaseModel):
    version: int = Field(description="Bumped by each publish that changes the state.")


class RoomSnapshot(RoomVersion):
    state: RoomState | None = Field(description="null until the teacher's page first publishes.")
