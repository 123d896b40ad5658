"""Embedding space answers: nearest neighbours, word arithmetic, a dot product, the 3D map of
token embeddings and the similarity between positions. The answers are model/'s dataclasses,
written as JSON by their response models."""

from __future__ import annotations

from model.embedding_space import EmbeddingSpace

from app.errors import field_error
from app.runs import tensors
from app.runs.responses import model_bytes
from app.schemas import DotResponse, EmbeddingMapResponse, NeighboursResponse


def neighbours(space: EmbeddingSpace, word: str | None, token_id: int | None, k: int) -> bytes:
    if (word is None) == (token_id is None):
        raise field_error("word", "give either a word or a token_id", code="one_of")
    found = space.neighbours_of_word(word, k) if word is not None else space.neighbours_of_token(token_id, k)
    return model_bytes(NeighboursResponse, found)


def arithmetic(space: EmbeddingSpace, expression: str, k: int) -> bytes:
    return model_bytes(NeighboursResponse, space.arithmetic(expression, k))


def embedding_map(space: EmbeddingSpace, ids, words: list[str]) -> bytes:
    return model_bytes(EmbeddingMapResponse, space.map(ids, words))


def dot(space: EmbeddingSpace, a: str | None, b: str | None, a_id: int | None, b_id: int | None) -> DotResponse:
    terms = []
    for name, word, token_id in (("a", a, a_id), ("b", b, b_id)):
        if (word is None) == (token_id is None):
            raise field_error(name, f"give either {name} (a word) or {name}_id (a token id)", code="one_of")
        terms.append(space.term(word, name) if word is not None else space.token(token_id, f"{name}_id"))
    return DotResponse.model_validate(space.compare(*terms), from_attributes=True)


def positions(space: EmbeddingSpace, n_tokens: int) -> dict:
    """The prompt's position embeddings [pos, d_model] and their cosine similarities [pos, pos]."""
    W, cosine = space.positions(n_tokens)
    return {"tensors": {"hook_pos_embed": tensors.encode(W), "position_cosine": tensors.encode(cosine)}}
