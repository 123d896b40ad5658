"""What /api/model (and every analyze response) says about the server: the loaded model's shapes
and provenance, and the product's version."""

from __future__ import annotations

from model import Explainer

from .resources import version


def model_info(explainer: Explainer) -> dict:
    return {**explainer.info, "version": version()}
