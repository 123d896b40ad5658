"""What /api/model (and every analyze response) says about the server: the loaded model's shapes
and provenance, and the product's version."""

from __future__ import annotations

from model import Explainer, download_command
from model.embedding_space import MAX_TERMS, MAX_WORD_CHARS

from app import schemas
from app.page.resources import version


def limits(explainer: Explainer) -> dict:
    return {
        "max_prompt_chars": schemas.MAX_PROMPT_CHARS,
        "max_new_tokens": schemas.MAX_NEW_TOKENS,
        "max_top_k": min(schemas.MAX_TOP_K, explainer.config.vocab_size),
        "max_seed": schemas.MAX_SEED,
        "max_lens_positions": schemas.MAX_LENS_POSITIONS,
        "max_lens_k": schemas.MAX_LENS_K,
        "max_map_words": schemas.MAX_MAP_WORDS,
        "max_word_chars": MAX_WORD_CHARS - 1,  # GPT-2's leading space is the hundredth
        "max_expression_chars": MAX_TERMS * (MAX_WORD_CHARS + 3),
    }


def model_info(explainer: Explainer) -> dict:
    return {**explainer.info, "version": version(), "limits": limits(explainer)}


def download_hint(revision: str | None) -> str:
    """The command that downloads GPT-2 small's weights: only GPT-2 small falls back to random
    weights, so that is what the page asks to download."""
    return download_command(revision=revision)
