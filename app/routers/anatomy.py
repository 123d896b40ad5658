"""The anatomy of the parameters: the loaded model counted from its tensors, and GPT-3 175B
from its hyperparameters by the same formulas."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends

from model import Explainer
from model.anatomy import GPT3, Anatomy, count_model, from_hyperparameters

from app.deps import get_explainer
from app.errors import documented
from app.schemas import AnatomyResponse

router = APIRouter(prefix="/api", responses=documented(400, 503))


def anatomy_json(anatomy: Anatomy) -> dict:
    total = anatomy.total
    return {
        "name": anatomy.name,
        "source": anatomy.source,
        "hyperparameters": asdict(anatomy.hyperparameters),
        "total": total,
        "kinds": [
            {"key": k.key, "label": k.label, "description": k.description, "count": k.count,
             "share": k.count / total if total else 0.0, "note": k.note,
             "parts": [{"name": p.name, "shape": list(p.shape), "copies": p.copies, "count": p.count} for p in k.parts]}
            for k in anatomy.kinds
        ],
    }


@router.get("/anatomy", response_model=AnatomyResponse, summary="Where the parameters sit, by kind of matrix")
def anatomy(explainer: Explainer = Depends(get_explainer)) -> dict:
    loaded = count_model(explainer.model, explainer.loaded.name)
    return {
        "models": [anatomy_json(loaded), anatomy_json(from_hyperparameters(GPT3))],
        "n_params": sum(p.numel() for p in explainer.model.parameters()),
    }
