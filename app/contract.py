"""The OpenAPI document as the truth about the loaded model: FastAPI's schema, with the limits
that depend on the model filled in (the last layer, the context length, the vocabulary), so a
request the schema accepts is one the server accepts, and the other way round."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from model import Explainer
from model.embedding_space import MAX_K


def _limits(explainer: Explainer) -> dict[str, int]:
    """Parameter name -> its largest value in this model."""
    c = explainer.config
    return {"layer": c.n_layer - 1, "position": explainer.n_ctx - 1,
            "token_id": c.vocab_size - 1, "a_id": c.vocab_size - 1, "b_id": c.vocab_size - 1,
            "target": c.vocab_size - 1, "baseline": c.vocab_size - 1}


def _without_null(schema: dict) -> dict:
    """A query parameter is absent or has a value: FastAPI's `anyOf [T, null]` for an optional
    one would tell a client it may send the text "null"."""
    options = [s for s in schema.get("anyOf", ()) if s.get("type") != "null"]
    if len(options) == 1 and len(schema["anyOf"]) == 2:
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        return {**options[0], **rest}
    return schema


def document(app: FastAPI, explainer: Explainer) -> dict:
    schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    limits = _limits(explainer)
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", ()):
                if parameter["in"] == "query":
                    parameter["schema"] = _without_null(parameter["schema"])
                name, value = parameter["name"], parameter["schema"]
                if name == "k" and path.startswith("/api/embedding-space/"):  # all tokens but the query's
                    value["maximum"] = min(MAX_K, limits["token_id"])
                if name in limits:
                    target = value.get("items", value)
                    target["maximum"] = limits[name]
    return schema


def install(app: FastAPI) -> None:
    def openapi() -> dict:
        if app.openapi_schema is None:
            explainer = getattr(app.state, "explainer", None)
            if explainer is None:  # not loaded yet: the document without the model's limits, not kept
                return get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            app.openapi_schema = document(app, explainer)
        return app.openapi_schema

    app.openapi = openapi
