"""The README's API section lists every endpoint of the OpenAPI document (as `METHOD /path`) and
its Errors table every error code the API can answer."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from app.schemas import ErrorCode

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
API = README[README.index("\n## API\n"):README.index("\n## Tests and benchmarks\n")]
ERRORS = API[API.index("\n### Errors\n"):]


def test_the_readme_lists_every_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    endpoints = [f"{method.upper()} {path}" for path, operations in paths.items() for method in operations]
    assert len(endpoints) > 20
    assert [e for e in endpoints if e not in API] == []


def test_the_readme_lists_every_error_code():
    assert [code for code in get_args(ErrorCode) if f"`{code}`" not in ERRORS] == []
