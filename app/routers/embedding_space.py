"""Embedding space: nearest neighbours, word arithmetic, dot products, the 3D map of token
embeddings and the similarity between positions. Answers depend only on the weights and the
query; the model layer caches them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import Field

from model import Explainer
from model.embedding_space import MAP_SAMPLE, MAX_K, MAX_TERM_TOKENS, MAX_TERMS, MAX_WORD_CHARS, EmbeddingQueryError, EmbeddingSpace, Neighbours, Term

from app.runs import tensors
from app.runs.answers import cached_answer
from app.deps import get_explainer, run_of
from app.errors import documented, field_error
from app.runs.responses import json_bytes, json_response
from app.schemas import (
    MAX_MAP_WORDS,
    NOT_BLANK,
    DotResponse,
    EmbeddingMapResponse,
    Index,
    whole_number,
    NeighboursResponse,
    TensorsResponse,
)

router = APIRouter(prefix="/api", responses=documented(400, 422, 503))



_SPACE_LOCK = threading.Lock()


def space_of(request: Request) -> EmbeddingSpace:
    """The server's EmbeddingSpace, built on first use (it normalises W_E: 150 MB in GPT-2
    small). Its own result cache is off: answers are cached as bodies in the run cache, under
    the server's one byte budget."""
    space = getattr(request.app.state, "space", None)
    if space is None:
        with _SPACE_LOCK:
            space = getattr(request.app.state, "space", None)
            if space is None:
                explainer = get_explainer(request)
                space = request.app.state.space = EmbeddingSpace(explainer.model, explainer.tokenizer, cache_entries=0)
    return space


async def answer(request: Request, key: tuple, compute: Callable[[], dict], run_id: str | None = None) -> Response:
    """The JSON body for `key`: cached, or computed once through the forward limiter (the map
    and a neighbour search each scan the whole vocabulary)."""
    try:
        body = await cached_answer(request, key, lambda: json_bytes(compute()), run_id=run_id)
    except EmbeddingQueryError as error:
        raise query_error(error) from None
    return await json_response(request, body)


def query_error(error: EmbeddingQueryError):
    """A token id or k out of range breaks the schema; anything else got past it, and is about
    what the tokenizer or the arithmetic made of the words."""
    schema_level = error.field in ("k", "token_id", "a_id", "b_id")
    return field_error(error.field, error.message, code="invalid" if schema_level else "bad_words")


# A word as the schema states it: at most MAX_WORD_CHARS with GPT-2's leading space. A blank
# word is a 422 bad_words: schemathesis 4.32's coverage phase makes strings one character too
# long for a maxLength beside a pattern, so the pattern stays off the words.
WORD = dict(min_length=1, max_length=MAX_WORD_CHARS - 1)


def term_json(term: Term) -> dict:
    return {"text": term.text, "ids": list(term.ids), "tokens": list(term.labels), "sign": term.sign, "note": term.note}


def neighbours_json(found: Neighbours) -> dict:
    return {
        "terms": [term_json(t) for t in found.terms],
        "neighbours": [{"id": n.id, "text": n.text, "cosine": n.cosine} for n in found.neighbours],
        "excluded": list(found.excluded),
        "notes": found.notes,
    }


# FastAPI reads a parameter's type metadata (the strict parsing, the bounds) only in this form:
# Annotated[type, Query(...)] = default.
Count = Annotated[whole_number(ge=1, le=MAX_K), Query(description="How many tokens to return (at most the vocabulary size - 1).")]
TokenId = Annotated[Index | None, Query(description="A token id, at most the vocabulary's last.")]


@router.get("/embedding-space/neighbours", response_model=NeighboursResponse,
            summary="The nearest tokens to a word or token by cosine similarity, over the whole vocabulary")
async def neighbours(
    http: Request,
    word: str | None = Query(None, **WORD, description="A word, read with a leading space ('king' is ' king'); in "
                                                        "double quotes, exactly as typed. Give a word or a token_id."),
    token_id: TokenId = None,
    k: Count = 10,
    space: EmbeddingSpace = Depends(space_of),
) -> Response:
    if (word is None) == (token_id is None):
        raise field_error("word", "give either a word or a token_id", code="one_of")
    return await answer(http, ("neighbours", word, token_id, k), lambda: neighbours_json(
        space.neighbours_of_word(word, k) if word is not None else space.neighbours_of_token(token_id, k)))


@router.get("/embedding-space/arithmetic", response_model=NeighboursResponse,
            summary="Word arithmetic: the nearest tokens to e.g. king - man + woman, leaving out the input words")
async def arithmetic(
    http: Request,
    expression: str = Query(..., max_length=MAX_TERMS * (MAX_WORD_CHARS + 3), pattern=NOT_BLANK,
                            description=f"Up to {MAX_TERMS} words joined by + and -; a word containing + or - goes "
                                        "in double quotes."),
    k: Count = 10,
    space: EmbeddingSpace = Depends(space_of),
) -> Response:
    return await answer(http, ("arithmetic", expression, k), lambda: neighbours_json(space.arithmetic(expression, k)))


@router.get("/embedding-space/dot", response_model=DotResponse, summary="Dot product and cosine of two embeddings")
def dot(
    a: str | None = Query(None, **WORD, description="A word (or a_id, a token id: exactly one of them)."),
    b: str | None = Query(None, **WORD, description="A word (or b_id, a token id: exactly one of them)."),
    a_id: TokenId = None,
    b_id: TokenId = None,
    space: EmbeddingSpace = Depends(space_of),
) -> dict:
    terms = []
    for name, word, token_id in (("a", a, a_id), ("b", b, b_id)):
        if (word is None) == (token_id is None):
            raise field_error(name, f"give either {name} (a word) or {name}_id (a token id)", code="one_of")
        try:
            terms.append(space.term(word, name) if word is not None else space.token(token_id, f"{name}_id"))
        except EmbeddingQueryError as error:
            raise query_error(error) from None
    c = space.compare(*terms)
    return {"a": term_json(c.a), "b": term_json(c.b), "dot": c.dot, "cosine": c.cosine, "norm_a": c.norm_a, "norm_b": c.norm_b}


@router.get("/runs/{run_id}/embedding-space/map", response_model=EmbeddingMapResponse, responses=documented(404),
            summary="Token embeddings on their top 3 principal directions, with the prompt's tokens and added words",
            description=f"A bounded cost: one principal-component analysis over at most {MAP_SAMPLE:,} sampled tokens "
                        f"plus the prompt's (at most the context), and up to {MAX_MAP_WORDS} words of at most "
                        f"{MAX_TERM_TOKENS} tokens each. Identical maps in flight are computed once; answers are cached.")
async def embedding_map(
    run_id: str,
    http: Request,
    word: list[Annotated[str, Field(**WORD)]] = Query(
        [], max_length=MAX_MAP_WORDS, description=f"Up to {MAX_MAP_WORDS} words to add to the map (repeat the parameter)."),
    space: EmbeddingSpace = Depends(space_of),
) -> Response:
    run = (await run_of(http, run_id)).run
    return await answer(http, ("map", run_id, tuple(word)), lambda: map_json(space, space.map(run.ids, word)),
                        run_id=run_id)


def map_json(space: EmbeddingSpace, found) -> dict:
    return {
        "d_model": space.d_model,
        "explained": list(found.explained),
        "points": [{"id": p.id, "text": p.text, "xyz": list(p.xyz), "group": p.group, "positions": list(p.positions)}
                   for p in found.points],
        "terms": [term_json(t) for t in found.terms],
        "notes": found.notes,
    }


@router.get("/runs/{run_id}/embedding-space/positions", response_model=TensorsResponse, responses=documented(404),
            summary="The prompt's position embeddings [pos, d_model] and their cosine similarities [pos, pos]")
async def positions(run_id: str, http: Request, space: EmbeddingSpace = Depends(space_of)) -> dict:
    run = (await run_of(http, run_id)).run

    def encoded() -> dict:
        W, cosine = space.positions(len(run))
        return {"tensors": {"hook_pos_embed": tensors.encode(W), "position_cosine": tensors.encode(cosine)}}

    return await run_in_threadpool(encoded)
