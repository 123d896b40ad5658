"""The anatomy of the parameters: the loaded model counted from its tensors, and GPT-3 175B
from its hyperparameters by the same formulas (model/anatomy.py's dataclasses, as the response
model reads them)."""

from __future__ import annotations

from model import Explainer
from model.anatomy import GPT3, count_model, from_hyperparameters

from app.schemas import AnatomyResponse


def anatomy(explainer: Explainer) -> AnatomyResponse:
    return AnatomyResponse(models=[count_model(explainer.model, explainer.loaded.name), from_hyperparameters(GPT3)],
                           n_params=sum(p.numel() for p in explainer.model.parameters()))
