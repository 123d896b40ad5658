"""Embedding space: nearest neighbours, word arithmetic, dot products, the 3D map of token
embeddings and the similarity between positions. Answers depend only on the weights and the
query; the model layer caches them."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from model import Explainer
from model.embedding_space import MAX_K, EmbeddingQueryError, EmbeddingSpace, Neighbours, Term

from .. import tensors
from ..deps import get_explainer, run_of
from ..errors import field_error
from ..schemas import DotResponse, EmbeddingMapResponse, NeighboursResponse, TensorsResponse

router = APIRouter(prefix="/api")

MAX_MAP_WORDS = 20


def space_of(explainer: Explainer = Depends(get_explainer)) -> EmbeddingSpace:
    return EmbeddingSpace.of(explainer.model, explainer.tokenizer)


def term_json(term: Term) -> dict:
    return {"text": term.text, "ids": list(term.ids), "tokens": list(term.labels), "sign": term.sign, "note": term.note}


def neighbours_json(found: Neighbours) -> dict:
    return {
        "terms": [term_json(t) for t in found.terms],
        "neighbours": [{"id": n.id, "text": n.text, "cosine": n.cosine} for n in found.neighbours],
        "excluded": list(found.excluded),
        "notes": found.notes,
    }


K = Query(10, ge=1, le=MAX_K, description="How many tokens to return.")


@router.get("/embedding-space/neighbours", response_model=NeighboursResponse,
            summary="The nearest tokens to a word or token by cosine similarity, over the whole vocabulary")
def neighbours(
    word: str | None = Query(None, max_length=200, description="A word, read with a leading space ('king' is ' king'); in double quotes, exactly as typed."),
    token_id: int | None = Query(None, description="A token id, instead of a word."),
    k: int = K,
    space: EmbeddingSpace = Depends(space_of),
) -> dict:
    if (word is None) == (token_id is None):
        raise field_error("word", "give either a word or a token_id")
    try:
        found = space.neighbours_of_word(word, k) if word is not None else space.neighbours_of_token(token_id, k)
    except EmbeddingQueryError as error:
        raise field_error(error.field, error.message) from None
    return neighbours_json(found)


@router.get("/embedding-space/arithmetic", response_model=NeighboursResponse,
            summary="Word arithmetic: the nearest tokens to e.g. king - man + woman, leaving out the input words")
def arithmetic(
    expression: str = Query(..., max_length=1000, description="Words joined by + and -; a word containing + or - goes in double quotes."),
    k: int = K,
    space: EmbeddingSpace = Depends(space_of),
) -> dict:
    try:
        return neighbours_json(space.arithmetic(expression, k))
    except EmbeddingQueryError as error:
        raise field_error(error.field, error.message) from None


@router.get("/embedding-space/dot", response_model=DotResponse, summary="Dot product and cosine of two embeddings")
def dot(
    a: str | None = Query(None, max_length=200, description="A word (or a_id, a token id)."),
    b: str | None = Query(None, max_length=200, description="A word (or b_id, a token id)."),
    a_id: int | None = Query(None),
    b_id: int | None = Query(None),
    space: EmbeddingSpace = Depends(space_of),
) -> dict:
    terms = []
    for name, word, token_id in (("a", a, a_id), ("b", b, b_id)):
        if (word is None) == (token_id is None):
            raise field_error(name, f"give either {name} (a word) or {name}_id (a token id)")
        try:
            terms.append(space.term(word, name) if word is not None else space.token(token_id, f"{name}_id"))
        except EmbeddingQueryError as error:
            raise field_error(error.field, error.message) from None
    c = space.compare(*terms)
    return {"a": term_json(c.a), "b": term_json(c.b), "dot": c.dot, "cosine": c.cosine, "norm_a": c.norm_a, "norm_b": c.norm_b}


@router.get("/runs/{run_id}/embedding-space/map", response_model=EmbeddingMapResponse,
            summary="Token embeddings on their top 3 principal directions, with the prompt's tokens and added words")
async def embedding_map(
    run_id: str,
    http: Request,
    word: list[str] = Query([], description="Words to add to the map (repeat the parameter)."),
    space: EmbeddingSpace = Depends(space_of),
) -> dict:
    if len(word) > MAX_MAP_WORDS:
        raise field_error("word", f"at most {MAX_MAP_WORDS} words on the map, got {len(word)}")
    run = (await run_of(http, run_id)).run
    try:
        found = await run_in_threadpool(space.map, run.ids, word)
    except EmbeddingQueryError as error:
        raise field_error(error.field, error.message) from None
    return {
        "d_model": space.d_model,
        "explained": list(found.explained),
        "points": [{"id": p.id, "text": p.text, "xyz": list(p.xyz), "group": p.group, "positions": list(p.positions)}
                   for p in found.points],
        "terms": [term_json(t) for t in found.terms],
        "notes": found.notes,
    }


@router.get("/runs/{run_id}/embedding-space/positions", response_model=TensorsResponse,
            summary="The prompt's position embeddings [pos, d_model] and their cosine similarities [pos, pos]")
async def positions(run_id: str, http: Request, space: EmbeddingSpace = Depends(space_of)) -> dict:
    run = (await run_of(http, run_id)).run
    W, cosine = await run_in_threadpool(space.positions, len(run))
    return {"tensors": {"hook_pos_embed": tensors.encode(W), "position_cosine": tensors.encode(cosine)}}
