"""The contract is the truth: every status a route answers is documented with the body it
really has; every error carries a stable code; limits enforced in code are in the schema;
path and query integers are as strict as a JSON body's."""

from __future__ import annotations

import pytest

from app.schemas import CONTEXT_CODES, MAX_SEED, ErrorBody

ERROR_STATUSES = {"400", "404", "413", "422", "503"}


@pytest.fixture(scope="module")
def schema(client):
    return client.get("/openapi.json").json()


@pytest.fixture(scope="module")
def run_id(client):
    return client.post("/api/analyze", json={"text": "The cat sat on the mat"}).json()["run_id"]


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    ErrorBody.model_validate(body)  # the documented shape, field by field
    assert body["code"] == code, body
    return body


def test_every_route_documents_its_error_statuses_with_the_error_body(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            documented = set(operation["responses"])
            assert {"400", "503"} <= documented, (method, path)
            if "{run_id}" in path or path == "/api/sample":
                assert "404" in documented, (method, path)
            if method == "post":
                assert "413" in documented, (method, path)
            for status in documented & ERROR_STATUSES:
                content = operation["responses"][status]["content"]["application/json"]["schema"]
                if path != "/healthz" or status != "503":
                    assert content == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
    codes = schema["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"]
    assert set(CONTEXT_CODES) < set(codes) and "unknown_run" in codes and "empty_prompt" in codes


def test_model_dependent_limits_are_in_the_schema(schema, explainer):
    c = explainer.config
    layer = next(p for p in schema["paths"]["/api/runs/{run_id}/layers/{layer}"]["get"]["parameters"] if p["name"] == "layer")
    assert layer["schema"]["minimum"] == 0 and layer["schema"]["maximum"] == c.n_layer - 1
    lens = {p["name"]: p["schema"] for p in schema["paths"]["/api/runs/{run_id}/logit-lens"]["get"]["parameters"]}
    assert lens["position"]["items"]["maximum"] == explainer.n_ctx - 1 and lens["position"]["maxItems"] == 64
    assert lens["position"]["uniqueItems"] is True and lens["k"]["maximum"] == 50
    neighbours = {p["name"]: p["schema"] for p in schema["paths"]["/api/embedding-space/neighbours"]["get"]["parameters"]}
    assert neighbours["token_id"]["maximum"] == c.vocab_size - 1 and neighbours["word"]["maxLength"] == 99
    assert "anyOf" not in neighbours["word"]  # absent or a string: never the text "null"
    words = {p["name"]: p["schema"] for p in schema["paths"]["/api/runs/{run_id}/embedding-space/map"]["get"]["parameters"]}
    assert words["word"]["maxItems"] == 20 and words["word"]["items"]["maxLength"] == 99


def test_the_seed_maximum_is_exact_and_is_accepted(schema, client, run_id):
    seed = schema["components"]["schemas"]["SampleRequest"]["properties"]["seed"]["anyOf"][0]
    assert seed["maximum"] == MAX_SEED and int(float(seed["maximum"])) == MAX_SEED  # a double holds it exactly
    assert client.post("/api/sample", json={"run_id": run_id, "seed": MAX_SEED}).status_code == 200
    _error(client.post("/api/sample", json={"run_id": run_id, "seed": MAX_SEED + 1}), 422, "invalid")
    # JSON Schema's integer: 3.0 is one, "3" and true are not
    assert client.post("/api/sample", json={"run_id": run_id, "seed": 3.0, "top_k": 2.0}).status_code == 200
    for bad in ("3", True, 3.5):
        _error(client.post("/api/sample", json={"run_id": run_id, "seed": bad}), 422, "invalid")


@pytest.mark.parametrize("layer", ["1.0", "%201", "01", "+1", "1e0", "0x1"])
def test_path_integers_are_strict(client, run_id, layer):
    body = _error(client.get(f"/api/runs/{run_id}/layers/{layer}"), 422, "invalid")
    assert body["errors"][0]["field"] == "layer"


@pytest.mark.parametrize("query, field", [("k=1.0", "k"), ("k=%201", "k"), ("position=0.0", "position.0"),
                                          ("position=1&position=1", "position")])
def test_query_integers_are_strict(client, run_id, query, field):
    body = _error(client.get(f"/api/runs/{run_id}/logit-lens?{query}"), 422, "invalid")
    assert body["errors"][0]["field"] == field


def test_context_422s_carry_their_codes(client, run_id):
    _error(client.get(f"/api/runs/{run_id}/logit-lens?position=500"), 422, "out_of_range")
    _error(client.get(f"/api/runs/{run_id}/layers/1?fields=blocks.0.attn.hook_q"), 422, "out_of_range")
    _error(client.get("/api/embedding-space/dot?a=king&a_id=3&b=queen"), 422, "one_of")
    _error(client.get("/api/embedding-space/neighbours"), 422, "one_of")
    _error(client.get("/api/embedding-space/arithmetic?expression=king%20%2B%20%2B%20man"), 422, "bad_words")
    _error(client.get("/api/embedding-space/neighbours?word=%20"), 422, "bad_words")
    body = _error(client.post("/api/analyze", json={"text": " a" * 1030}), 422, "prompt_too_long")
    assert body["n_tokens"] == 1030 and body["limit"] == 1024


def test_blank_is_whitespace_only_and_record_separators_are_text(client):
    for blank in (" ", "\t\n", "\u3000", "\ufeff \u00a0"):
        _error(client.post("/api/analyze", json={"text": blank}), 422, "empty_prompt")
    answer = client.post("/api/analyze", json={"text": "\u001e"})  # a control character GPT-2 reads as a token
    assert answer.status_code == 200 and [t["text"] for t in answer.json()["tokens"]] == ["\u001e"]


def test_every_error_has_the_one_body(client, run_id):
    _error(client.post("/api/analyze", content=b"{nope", headers={"content-type": "application/json"}), 400, "invalid_json")
    _error(client.post("/api/analyze", content=b"[1]", headers={"content-type": "application/json"}), 422, "invalid")
    _error(client.get("/api/runs/never-issued/embeddings"), 404, "unknown_run")
    _error(client.get("/api/nowhere"), 404, "not_found")
    response = client.delete("/api/analyze")
    _error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


def test_the_limits_the_page_reads_are_the_schemas_own(schema, client):
    """/api/model `limits` are what the page puts in its inputs: each equals the schema's bound."""
    limits = client.get("/api/model").json()["limits"]
    components = schema["components"]["schemas"]
    params = lambda path: {p["name"]: p["schema"] for p in schema["paths"][path]["get"]["parameters"]}  # noqa: E731
    assert limits["max_prompt_chars"] == components["AnalyzeRequest"]["properties"]["text"]["anyOf"][0]["maxLength"]
    assert limits["max_new_tokens"] == components["GenerateRequest"]["properties"]["max_new_tokens"]["maximum"]
    assert limits["max_top_k"] == components["SampleRequest"]["properties"]["top_k"]["anyOf"][0]["maximum"]
    assert limits["max_seed"] == components["SampleRequest"]["properties"]["seed"]["anyOf"][0]["maximum"]
    assert limits["max_lens_positions"] == params("/api/runs/{run_id}/logit-lens")["position"]["maxItems"]
    assert limits["max_lens_k"] == params("/api/runs/{run_id}/logit-lens")["k"]["maximum"]
    assert limits["max_map_words"] == params("/api/runs/{run_id}/embedding-space/map")["word"]["maxItems"]
    assert limits["max_word_chars"] == params("/api/embedding-space/neighbours")["word"]["maxLength"]
    assert limits["max_expression_chars"] == params("/api/embedding-space/arithmetic")["expression"]["maxLength"]
