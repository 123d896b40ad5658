"""The logit lens of an analyzed run: every layer's residual stream through the final LayerNorm
and the unembedding, computed on demand for the positions asked for."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from app.deps import get_caller, get_lab
from app.errors import documented
from app.lab import Caller, Lab
from app.schemas import MAX_LENS_K, MAX_LENS_POSITIONS, Index, LogitLensResponse, whole_number

router = APIRouter(prefix="/api", responses=documented(400, 404, 422, 503))


@router.get("/runs/{run_id}/logit-lens", response_model=LogitLensResponse,
            summary="What the model would predict if it stopped after each layer (the logit lens)")
async def logit_lens_view(
    run_id: str,
    position: Annotated[list[Index] | None, Query(
        min_length=1, max_length=MAX_LENS_POSITIONS, json_schema_extra={"uniqueItems": True},
        description=f"Positions to read (repeat the parameter), at most {MAX_LENS_POSITIONS}; each once; all when omitted, "
                    f"for a prompt of at most {MAX_LENS_POSITIONS} tokens (else a 422 too_costly). A position beyond "
                    "the run's tokens is a 422 out_of_range.")] = None,
    k: Annotated[whole_number(ge=1, le=MAX_LENS_K), Query(description="Top tokens per cell.")] = 10,
    stream: Literal["resid_post", "resid_mid", "both"] = Query(
        "resid_post", description="After the MLP (hook_resid_post), after attention (hook_resid_mid), or both."),
    lab: Lab = Depends(get_lab),
    caller: Caller = Depends(get_caller),
) -> Response:
    return await lab.lens(run_id, position, k, stream, caller)
