"""The logit lens of an analyzed run: every layer's residual stream through the final LayerNorm
and the unembedding, computed on demand for the positions asked for."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from model import Explainer, Run
from model.cancellation import NEVER, CancelToken
from model.logit_lens import PositionError, check_positions, lens_grain, lens_macs, logit_lens

from app.runs.answers import cached_answer
from app.serving.concurrency import Cost, Costed
from app.deps import get_explainer, run_of
from app.errors import documented, field_error
from app.runs.responses import json_response
from app.schemas import MAX_LENS_K, MAX_LENS_POSITIONS, Index, LogitLensResponse, whole_number

router = APIRouter(prefix="/api", responses=documented(400, 404, 422, 503))



def lens_body(explainer: Explainer, run: Run, positions: list[int] | None, k: int, stream: str,
              cancel: CancelToken = NEVER) -> bytes:
    lens = logit_lens(run, positions, k, stream, cancel)
    label = explainer.tokenizer.label
    body = {
        "stream": stream,
        "k": k,
        "positions": lens.positions,
        "rows": [{"hook": r.hook, "layer": r.layer, "label": r.label} for r in lens.rows],
        "final": [{"id": i, "text": label(i), "prob": p} for i, p in zip(lens.final_ids, lens.final_probs)],
        "first_top_row": [lens.first_top_row(j) for j in range(len(lens.positions))],
        "cells": [
            [{"top": [{"id": i, "text": label(i), "prob": p, "logit": lg}
                      for i, p, lg in zip(c.top_ids, c.top_probs, c.top_logits)],
              "final_rank": c.final_rank, "final_prob": c.final_prob}
             for c in row]
            for row in lens.cells
        ],
    }
    return json.dumps(body, separators=(",", ":")).encode()


@router.get("/runs/{run_id}/logit-lens", response_model=LogitLensResponse,
            summary="What the model would predict if it stopped after each layer (the logit lens)")
async def logit_lens_view(
    run_id: str,
    http: Request,
    position: Annotated[list[Index] | None, Query(
        min_length=1, max_length=MAX_LENS_POSITIONS, json_schema_extra={"uniqueItems": True},
        description=f"Positions to read (repeat the parameter), at most {MAX_LENS_POSITIONS}; each once; all when omitted, "
                    f"for a prompt of at most {MAX_LENS_POSITIONS} tokens (else a 422 too_costly). A position beyond "
                    "the run's tokens is a 422 out_of_range.")] = None,
    k: Annotated[whole_number(ge=1, le=MAX_LENS_K), Query(description="Top tokens per cell.")] = 10,
    stream: Literal["resid_post", "resid_mid", "both"] = Query(
        "resid_post", description="After the MLP (hook_resid_post), after attention (hook_resid_mid), or both."),
    explainer: Explainer = Depends(get_explainer),
) -> Response:
    run = (await run_of(http, run_id)).run
    try:
        positions = check_positions(run, position)  # all of them when none are given
    except PositionError as error:
        raise field_error("position", str(error), code="out_of_range" if error.beyond_run else "invalid") from None
    if len(positions) > MAX_LENS_POSITIONS:
        raise field_error("position", code="too_costly", message= f"the prompt has {len(positions)} tokens: name at most {MAX_LENS_POSITIONS} "
                                      "positions (repeat the parameter), a window at a time")
    cost = Cost("lens", lens_macs(explainer.config, len(positions), len(run), stream), "position",
                f"the logit lens over {len(positions)} positions ({stream})", "name fewer positions, a window at a time",
                grain=lens_grain(explainer.config, len(positions), stream))
    # A page toggling between streams asks the same things again; a class asks the same at once.
    body = await cached_answer(http, ("lens", run_id, tuple(positions), k, stream),
                               Costed(lens_body, cost), explainer, run, positions, k, stream, cancellable=True, run_id=run_id)
    return await json_response(http, body)
