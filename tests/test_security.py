"""Security headers on every response (the page, the API, static files, errors) and the Host
check against DNS rebinding: IP addresses and loopback names pass, other names only if listed."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.serving.security import host_allowed
from app.serving.settings import Settings

PATHS = ["/", "/api/model", "/static/main.js", "/static/vendor/plotly.min.js", "/docs", "/api/runs/nope/embeddings",
         "/api/embedding-space/neighbours?k=0"]


@pytest.fixture(scope="module")
def app(explainer, checkpoint_dir):
    return create_app(Settings(model=checkpoint_dir, allowed_hosts=("explainer.school.example",)), explainer=explainer)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, base_url="http://localhost:8000") as client:
        yield client


@pytest.mark.parametrize("path", PATHS)
def test_every_response_carries_the_headers(client, path):
    response = client.get(path)
    assert response.status_code in (200, 404, 422)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp and "default-src 'self'" in csp
    # Inline scripts only for Swagger UI, which starts from one; never 'unsafe-eval'.
    script_src = csp.split("script-src ", 1)[1].split(";", 1)[0]
    assert script_src == ("'self' 'unsafe-inline'" if path == "/docs" else "'self'")


def test_frame_ancestors_can_allow_embedding(explainer, checkpoint_dir):
    settings = Settings(model=checkpoint_dir, frame_ancestors="https://lms.school.example")
    with TestClient(create_app(settings, explainer=explainer)) as client:
        assert "frame-ancestors https://lms.school.example" in client.get("/api/model").headers["content-security-policy"]


@pytest.mark.parametrize("host, allowed", [
    ("localhost:8000", True), ("127.0.0.1:8000", True), ("[::1]:8000", True), ("192.168.1.20:8000", True),
    ("10.0.0.7", True), ("explainer.school.example", True), ("EXPLAINER.school.example:8000", True),
    ("attacker.example:8000", False), ("localhost.attacker.example", False), ("", False),
])
def test_the_host_check_stops_dns_rebinding(client, host, allowed):
    response = client.get("/api/model", headers={"host": host})
    if allowed:
        assert response.status_code == 200
    else:
        assert response.status_code == 400
        body = response.json()
        assert body["code"] == "host_not_allowed" and body["errors"][0]["field"] == "host"
        assert "EXPLAINER_ALLOWED_HOSTS" in body["detail"]
        assert response.headers["x-content-type-options"] == "nosniff"


def test_a_star_allows_every_name():
    assert host_allowed("anything.example:1", ("*",))
    assert not host_allowed("anything.example:1", ())
