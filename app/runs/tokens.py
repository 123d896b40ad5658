"""A token as the API shows it, built in one place: its id and text, with its probability (and
logit) when it is a candidate for the next token. schemas.TokenProb and TopToken are its shapes."""

from __future__ import annotations

from model.sampling import Distribution
from model.tokenizer import Tokenizer


def token_prob(tokenizer: Tokenizer, token_id: int, prob: float, **more) -> dict:
    """{"id", "text", "prob", **more} (more: e.g. logit)."""
    return {"id": token_id, "text": tokenizer.label(token_id), "prob": prob, **more}


def top_tokens(tokenizer: Tokenizer, dist: Distribution, n: int) -> list[dict]:
    """The `n` most likely tokens of `dist`, most likely first."""
    return [token_prob(tokenizer, i, p) for i, p in dist.top(n)]
