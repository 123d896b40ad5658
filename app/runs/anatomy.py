"""The anatomy of the parameters: the loaded model counted from its tensors, and GPT-3 175B
from its hyperparameters by the same formulas."""

from __future__ import annotations

from dataclasses import asdict

from model import Explainer
from model.anatomy import GPT3, Anatomy, count_model, from_hyperparameters


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


def anatomy(explainer: Explainer) -> dict:
    loaded = count_model(explainer.model, explainer.loaded.name)
    return {
        "models": [anatomy_json(loaded), anatomy_json(from_hyperparameters(GPT3))],
        "n_params": sum(p.numel() for p in explainer.model.parameters()),
    }
