"""Embedding space answers as JSON: nearest neighbours, word arithmetic, a dot product, the 3D
map of token embeddings and the similarity between positions."""

from __future__ import annotations

from model.embedding_space import EmbeddingSpace, Neighbours, Term

from app.errors import field_error
from app.runs import tensors


def term_json(term: Term) -> dict:
    return {"text": term.text, "ids": list(term.ids), "tokens": list(term.labels), "sign": term.sign, "note": term.note}


def neighbours_json(found: Neighbours) -> dict:
    return {
        "terms": [term_json(t) for t in found.terms],
        "neighbours": [{"id": n.id, "text": n.text, "cosine": n.cosine} for n in found.neighbours],
        "excluded": list(found.excluded),
        "notes": found.notes,
    }


def neighbours(space: EmbeddingSpace, word: str | None, token_id: int | None, k: int) -> dict:
    if (word is None) == (token_id is None):
        raise field_error("word", "give either a word or a token_id", code="one_of")
    return neighbours_json(space.neighbours_of_word(word, k) if word is not None else space.neighbours_of_token(token_id, k))


def dot(space: EmbeddingSpace, a: str | None, b: str | None, a_id: int | None, b_id: int | None) -> dict:
    terms = []
    for name, word, token_id in (("a", a, a_id), ("b", b, b_id)):
        if (word is None) == (token_id is None):
            raise field_error(name, f"give either {name} (a word) or {name}_id (a token id)", code="one_of")
        terms.append(space.term(word, name) if word is not None else space.token(token_id, f"{name}_id"))
    c = space.compare(*terms)
    return {"a": term_json(c.a), "b": term_json(c.b), "dot": c.dot, "cosine": c.cosine, "norm_a": c.norm_a, "norm_b": c.norm_b}


def map_json(space: EmbeddingSpace, found) -> dict:
    return {
        "d_model": space.d_model,
        "explained": list(found.explained),
        "points": [{"id": p.id, "text": p.text, "xyz": list(p.xyz), "group": p.group, "positions": list(p.positions)}
                   for p in found.points],
        "terms": [term_json(t) for t in found.terms],
        "notes": found.notes,
    }


def positions(space: EmbeddingSpace, n_tokens: int) -> dict:
    """The prompt's position embeddings [pos, d_model] and their cosine similarities [pos, pos]."""
    W, cosine = space.positions(n_tokens)
    return {"tensors": {"hook_pos_embed": tensors.encode(W), "position_cosine": tensors.encode(cosine)}}
