"""Embedding space: nearest neighbours, word arithmetic, dot products, the 3D map of token
embeddings and the similarity between positions. Answers depend only on the weights and the
query; they are cached as bodies under the server's byte budget."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import Field

from app.deps import get_caller, get_lab
from app.errors import documented
from app.lab import Caller, Lab
from app.schemas import (
    MAP_SAMPLE,
    MAX_K,
    MAX_MAP_WORDS,
    MAX_TERM_TOKENS,
    MAX_TERMS,
    MAX_WORD_CHARS,
    NOT_BLANK,
    DotResponse,
    EmbeddingMapResponse,
    Index,
    NeighboursResponse,
    TensorsResponse,
    whole_number,
)

router = APIRouter(prefix="/api", responses=documented(400, 422, 503))

# A word as the schema states it: at most MAX_WORD_CHARS with GPT-2's leading space. A blank
# word is a 422 bad_words: schemathesis 4.32's coverage phase makes strings one character too
# long for a maxLength beside a pattern, so the pattern stays off the words.
WORD = dict(min_length=1, max_length=MAX_WORD_CHARS - 1)

# FastAPI reads a parameter's type metadata (the strict parsing, the bounds) only in this form:
# Annotated[type, Query(...)] = default.
Count = Annotated[whole_number(ge=1, le=MAX_K), Query(description="How many tokens to return (at most the vocabulary size - 1).")]
TokenId = Annotated[Index | None, Query(description="A token id, at most the vocabulary's last.")]


@router.get("/embedding-space/neighbours", response_model=NeighboursResponse,
            summary="The nearest tokens to a word or token by cosine similarity, over the whole vocabulary")
async def neighbours(
    word: str | None = Query(None, **WORD, description="A word, read with a leading space ('king' is ' king'); in "
                                                        "double quotes, exactly as typed. Give a word or a token_id."),
    token_id: TokenId = None,
    k: Count = 10,
    lab: Lab = Depends(get_lab),
    caller: Caller = Depends(get_caller),
) -> Response:
    return await lab.neighbours(word, token_id, k, caller)


@router.get("/embedding-space/arithmetic", response_model=NeighboursResponse,
            summary="Word arithmetic: the nearest tokens to e.g. king - man + woman, leaving out the input words")
async def arithmetic(
    expression: str = Query(..., max_length=MAX_TERMS * (MAX_WORD_CHARS + 3), pattern=NOT_BLANK,
                            description=f"Up to {MAX_TERMS} words joined by + and -; a word containing + or - goes "
                                        "in double quotes."),
    k: Count = 10,
    lab: Lab = Depends(get_lab),
    caller: Caller = Depends(get_caller),
) -> Response:
    return await lab.arithmetic(expression, k, caller)


@router.get("/embedding-space/dot", response_model=DotResponse, summary="Dot product and cosine of two embeddings")
async def dot(
    a: str | None = Query(None, **WORD, description="A word (or a_id, a token id: exactly one of them)."),
    b: str | None = Query(None, **WORD, description="A word (or b_id, a token id: exactly one of them)."),
    a_id: TokenId = None,
    b_id: TokenId = None,
    lab: Lab = Depends(get_lab),
) -> dict:
    return await lab.dot(a, b, a_id, b_id)


@router.get("/runs/{run_id}/embedding-space/map", response_model=EmbeddingMapResponse, responses=documented(404),
            summary="Token embeddings on their top 3 principal directions, with the prompt's tokens and added words",
            description=f"A bounded cost: one principal-component analysis over at most {MAP_SAMPLE:,} sampled tokens "
                        f"plus the prompt's (at most the context), and up to {MAX_MAP_WORDS} words of at most "
                        f"{MAX_TERM_TOKENS} tokens each. Identical maps in flight are computed once; answers are cached.")
async def embedding_map(
    run_id: str,
    word: list[Annotated[str, Field(**WORD)]] = Query(
        [], max_length=MAX_MAP_WORDS, description=f"Up to {MAX_MAP_WORDS} words to add to the map (repeat the parameter)."),
    lab: Lab = Depends(get_lab),
    caller: Caller = Depends(get_caller),
) -> Response:
    return await lab.embedding_map(run_id, word, caller)


@router.get("/runs/{run_id}/embedding-space/positions", response_model=TensorsResponse, responses=documented(404),
            summary="The prompt's position embeddings [pos, d_model] and their cosine similarities [pos, pos]")
async def positions(run_id: str, lab: Lab = Depends(get_lab)) -> dict:
    return await lab.positions(run_id)
