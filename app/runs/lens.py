"""The logit lens of a run: every layer's residual stream through the final LayerNorm and the
unembedding, for the positions asked for, as a JSON body and its cost."""

from __future__ import annotations

from model import Explainer, Run
from model.cancellation import NEVER, CancelToken
from model.logit_lens import lens_grain, lens_macs, logit_lens

from app.errors import field_error
from app.runs.tokens import token_prob
from app.runs.responses import model_bytes
from app.schemas import MAX_LENS_POSITIONS, LogitLensResponse
from app.serving.concurrency import Cost


def lens_cost(explainer: Explainer, run: Run, positions: list[int], stream: str) -> Cost:
    """Bounded: at most MAX_LENS_POSITIONS positions (else a 422 too_costly naming position)."""
    if len(positions) > MAX_LENS_POSITIONS:
        raise field_error("position", code="too_costly", message=f"the prompt has {len(positions)} tokens: name at most "
                          f"{MAX_LENS_POSITIONS} positions (repeat the parameter), a window at a time")
    return Cost("lens", lens_macs(explainer.config, len(positions), len(run), stream), "position",
                f"the logit lens over {len(positions)} positions ({stream})", "name fewer positions, a window at a time",
                grain=lens_grain(explainer.config, len(positions), stream))


def lens_body(explainer: Explainer, run: Run, positions: list[int], k: int, stream: str,
              cancel: CancelToken = NEVER) -> bytes:
    lens = logit_lens(run, positions, k, stream, cancel)
    tokenizer = explainer.tokenizer
    body = {
        "stream": stream,
        "k": k,
        "positions": lens.positions,
        "rows": [{"hook": r.hook, "layer": r.layer, "label": r.label} for r in lens.rows],
        "final": [token_prob(tokenizer, i, p) for i, p in zip(lens.final_ids, lens.final_probs)],
        "first_top_row": [lens.first_top_row(j) for j in range(len(lens.positions))],
        "cells": [
            [{"top": [token_prob(tokenizer, i, p, logit=lg) for i, p, lg in zip(c.top_ids, c.top_probs, c.top_logits)],
              "final_rank": c.final_rank, "final_prob": c.final_prob}
             for c in row]
            for row in lens.cells
        ],
    }
    return model_bytes(LogitLensResponse, body)
