"""Property-based testing of the API from its own OpenAPI schema: whatever schemathesis sends,
the server never answers 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from app.main import create_app
from app.settings import Settings


@pytest.fixture(scope="module")
def live_app(explainer, checkpoint_dir):
    app = create_app(Settings(model=checkpoint_dir), explainer=explainer)
    with TestClient(app):  # runs the lifespan: cache and limiter in place
        yield app


@pytest.fixture(scope="module")
def api_schema(live_app):
    return schemathesis.openapi.from_asgi("/openapi.json", live_app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    if case.path == "/api/generate" and isinstance(case.body, dict):
        # Keep streamed generations short: the property is about status codes, not length.
        case.body["max_new_tokens"] = min(case.body.get("max_new_tokens", 1) if isinstance(case.body.get("max_new_tokens"), int) else 1, 4)
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}"
    case.validate_response(response, checks=[not_a_server_error])
