"""The anatomy of the parameters: the loaded model counted from its tensors, and GPT-3 175B
from its hyperparameters by the same formulas."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.deps import get_lab
from app.errors import documented
from app.lab import Lab
from app.schemas import AnatomyResponse

router = APIRouter(prefix="/api", responses=documented(400, 503))


@router.get("/anatomy", response_model=AnatomyResponse, summary="Where the parameters sit, by kind of matrix")
def anatomy(lab: Lab = Depends(get_lab)) -> dict:
    return lab.anatomy()
