"""The API over HTTP against a tiny real checkpoint: the numbers are the engine's, the sampling
semantics hold, and bad input gets a clear 4xx."""

from __future__ import annotations

import json
import urllib.parse

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from transformers import GPT2LMHeadModel

from app.main import create_app
from app.serving.settings import Settings
from app.runs.tensors import decode
from model.engine import LAYER_HOOKS

PROMPT = "The teacher asked the students to open their"


@pytest.fixture(scope="module")
def analyzed(client):
    response = client.post("/api/analyze", json={"text": PROMPT})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def reference(explainer):
    return explainer.analyze(PROMPT, keep=["*"])


def sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        kind, data = "message", None
        for line in block.splitlines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        events.append((kind, data))
    return events


def test_healthz_and_model(client, explainer):
    assert client.get("/healthz").status_code == 200
    info = client.get("/api/model").json()
    assert info["n_layers"] == 2 and info["n_heads"] == 4 and info["d_head"] == 16 and info["d_vocab"] == 50257
    assert info["random_weights"] is False
    assert info["n_params"] == sum(p.numel() for p in explainer.model.parameters())


def test_analyze_matches_engine(analyzed, reference, explainer):
    assert [t["id"] for t in analyzed["tokens"]] == reference.ids
    assert "".join(t["text"] for t in analyzed["tokens"]) == PROMPT
    assert [t["position"] for t in analyzed["tokens"]] == list(range(len(reference.ids)))
    for layer in range(2):
        name = f"blocks.{layer}.attn.hook_pattern"
        wire = analyzed["tensors"][name]
        assert wire["dtype"] == "float16" and wire["shape"] == [4, len(reference.ids), len(reference.ids)]
        np.testing.assert_allclose(decode(wire), reference[name].numpy(), atol=1e-3)
    logits = decode(analyzed["tensors"]["logits"])
    assert np.array_equal(logits, reference["logits"].numpy())
    probs = torch.softmax(reference["logits"].double(), -1)
    top = torch.topk(probs, 10)
    assert [t["id"] for t in analyzed["top"]] == top.indices.tolist()
    np.testing.assert_allclose([t["prob"] for t in analyzed["top"]], top.values.numpy(), rtol=1e-9)
    assert analyzed["top"][0]["text"] == explainer.tokenizer.decode([analyzed["top"][0]["id"]])


def test_same_prompt_is_served_from_cache(client, analyzed):
    again = client.post("/api/analyze", json={"text": PROMPT}).json()
    assert again["run_id"] == analyzed["run_id"]


def test_embeddings_match_engine(client, analyzed, reference):
    tensors = client.get(f"/api/runs/{analyzed['run_id']}/embeddings").json()["tensors"]
    for name in ("hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre"):
        assert np.array_equal(decode(tensors[name]), reference[name].numpy()), name


@pytest.mark.parametrize("layer", [0, 1])
def test_layer_details_match_engine(client, analyzed, reference, layer):
    body = client.get(f"/api/runs/{analyzed['run_id']}/layers/{layer}").json()
    assert body["layer"] == layer
    assert set(body["tensors"]) == {f"blocks.{layer}.{s}" for s in LAYER_HOOKS}
    for name, wire in body["tensors"].items():
        assert np.array_equal(decode(wire), reference[name].numpy()), name
    scores = decode(body["tensors"][f"blocks.{layer}.attn.hook_attn_scores"])
    assert np.isneginf(scores[:, 0, 1:]).all()


def test_layer_fields_and_dtype(client, analyzed, reference):
    url = f"/api/runs/{analyzed['run_id']}/layers/1?fields=attn.hook_q,blocks.1.mlp.hook_pre&dtype=float16"
    tensors = client.get(url).json()["tensors"]
    assert set(tensors) == {"blocks.1.attn.hook_q", "blocks.1.mlp.hook_pre"}
    assert tensors["blocks.1.attn.hook_q"]["dtype"] == "float16"
    np.testing.assert_allclose(decode(tensors["blocks.1.attn.hook_q"]), reference["blocks.1.attn.hook_q"].numpy(), atol=2e-3, rtol=2e-3)


def _sample(client, run_id, **params):
    response = client.post("/api/sample", json={"run_id": run_id, **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_sample_greedy_at_zero_temperature(client, analyzed, reference):
    body = _sample(client, analyzed["run_id"], temperature=0)
    assert body["token"]["id"] == int(torch.argmax(reference["logits"]))
    assert body["token"]["prob"] == 1.0 and body["entropy"] == 0.0
    assert len(body["distribution"]) == 1


def test_sample_same_seed_same_token(client, analyzed):
    tokens = {_sample(client, analyzed["run_id"], temperature=1.5, seed=42)["token"]["id"] for _ in range(3)}
    assert len(tokens) == 1
    different = {_sample(client, analyzed["run_id"], temperature=1.5, seed=s)["token"]["id"] for s in range(20)}
    assert len(different) > 1  # the seed matters (the tiny model's distribution is nearly flat)


def test_sample_distribution_is_softmax_over_temperature(client, analyzed, reference):
    body = _sample(client, analyzed["run_id"], temperature=0.7)
    expected = torch.softmax(reference["logits"].double() / 0.7, -1)
    top = torch.topk(expected, 20)
    assert [d["id"] for d in body["distribution"]] == top.indices.tolist()
    np.testing.assert_allclose([d["prob"] for d in body["distribution"]], top.values.numpy(), rtol=1e-9)
    entropy = float(-(expected * torch.log2(expected)).sum())
    assert body["entropy"] == pytest.approx(entropy, rel=1e-9)


def test_top_k_keeps_k_and_renormalises(client, analyzed, reference):
    body = _sample(client, analyzed["run_id"], temperature=1.0, top_k=5, seed=1)
    expected = torch.topk(reference["logits"].double(), 5)
    assert [d["id"] for d in body["distribution"]] == expected.indices.tolist()
    probs = torch.softmax(expected.values, -1)
    np.testing.assert_allclose([d["prob"] for d in body["distribution"]], probs.numpy(), rtol=1e-9)
    assert sum(d["prob"] for d in body["distribution"]) == pytest.approx(1.0)
    assert body["token"]["id"] in expected.indices.tolist()


@pytest.mark.parametrize("k, nudge, n", [(5, 1e-9, 6), (5, -1e-9, 5), (1, -1e-9, 1), (1, 1e-9, 2)])
def test_top_p_keeps_smallest_set_reaching_p(client, analyzed, reference, k, nudge, n):
    """top_p just past or just short of the mass of the k most likely tokens (exactly at it,
    the float rounding of a cumulative sum decides, so that case is left out)."""
    full = torch.softmax(reference["logits"].double() / 0.5, -1)
    values, ids = torch.sort(full, descending=True, stable=True)
    top_p = float(values[:k].sum()) + nudge
    body = _sample(client, analyzed["run_id"], temperature=0.5, top_p=top_p, seed=3)
    assert [d["id"] for d in body["distribution"]] == ids[:n].tolist()
    assert sum(d["prob"] for d in body["distribution"]) == pytest.approx(1.0)
    np.testing.assert_allclose([d["prob"] for d in body["distribution"]], (values[:n] / values[:n].sum()).numpy(), rtol=1e-9)
    assert body["token"]["id"] in ids[:n].tolist()


def test_top_p_one_keeps_everything(client, analyzed):
    body = _sample(client, analyzed["run_id"], temperature=1.0, top_p=1.0)
    assert len(body["distribution"]) == 20


def test_generate_streams_greedy_tokens_like_transformers(client, checkpoint_dir, explainer):
    response = client.post("/api/generate", json={"text": PROMPT, "max_new_tokens": 6, "temperature": 0})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    steps = [data for kind, data in events if kind == "message"]
    assert [s["step"] for s in steps] == list(range(6))
    model = GPT2LMHeadModel.from_pretrained(checkpoint_dir).eval()
    ids = explainer.tokenize(PROMPT)
    expected = model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False)[0, len(ids):].tolist()
    assert [s["token"]["id"] for s in steps] == expected
    assert all(s["top"][0]["id"] == s["token"]["id"] for s in steps)
    kind, done = events[-1]
    assert kind == "done"
    assert done["text"] == PROMPT + "".join(s["token"]["text"] for s in steps)
    assert client.get(f"/api/runs/{done['run_id']}/embeddings").status_code == 200


def test_generate_with_seed_is_reproducible(client):
    request = {"text": PROMPT, "max_new_tokens": 4, "temperature": 1.2, "top_k": 40, "seed": 7}
    first = sse_events(client.post("/api/generate", json=request).text)
    second = sse_events(client.post("/api/generate", json=request).text)
    assert first == second


# Bad input: a clear 4xx naming the field, never a 5xx.

@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/api/analyze", {"text": ""}, "text"),
        ("/api/analyze", {"text": "  \n\t"}, "text"),
        ("/api/analyze", {"text": 5}, "text"),
        ("/api/analyze", {}, "text"),
        ("/api/sample", {"run_id": "x", "temperature": -0.1}, "temperature"),
        ("/api/sample", {"run_id": "x", "temperature": 10.5}, "temperature"),
        ("/api/sample", {"run_id": "x", "temperature": "hot"}, "temperature"),
        ("/api/sample", {"run_id": "x", "top_k": 0}, "top_k"),
        ("/api/sample", {"run_id": "x", "top_k": 50258}, "top_k"),
        ("/api/sample", {"run_id": "x", "top_k": 2.5}, "top_k"),
        ("/api/sample", {"run_id": "x", "top_p": 0}, "top_p"),
        ("/api/sample", {"run_id": "x", "top_p": 1.01}, "top_p"),
        ("/api/sample", {"temperature": 1}, "run_id"),
        ("/api/generate", {"text": "hi", "max_new_tokens": 0}, "max_new_tokens"),
        ("/api/generate", {"text": "hi", "max_new_tokens": 257}, "max_new_tokens"),
        ("/api/generate", {"text": " ", "max_new_tokens": 3}, "text"),
    ],
)
def test_bad_input_is_422_naming_the_field(client, path, body, field):
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(field) or f"{field}:" in detail


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_temperature_is_422(client, analyzed, raw):
    body = '{"run_id": "%s", "temperature": %s}' % (analyzed["run_id"], raw)
    response = client.post("/api/sample", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "temperature" in response.json()["detail"]


def test_malformed_json_is_400(client):
    response = client.post("/api/analyze", content=b'{"text": ', headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["code"] == "invalid_json"
    assert "JSON" in response.json()["detail"]


def test_too_many_tokens_states_limit_and_count(client):
    response = client.post("/api/analyze", json={"text": " a" * 1030})
    assert response.status_code == 422
    body = response.json()
    assert "1030" in body["detail"] and "1024" in body["detail"]
    assert body["n_tokens"] == 1030 and body["limit"] == 1024
    assert client.post("/api/generate", json={"text": " a" * 1030, "max_new_tokens": 2}).status_code == 422


def test_body_over_two_megabytes_is_413(client):
    big = json.dumps({"text": "a" * (2 << 20)})
    response = client.post("/api/analyze", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["code"] == "body_too_large"

    def chunks():  # no Content-Length: the limit still holds while streaming
        for _ in range(40):
            yield b"a" * 65536
    assert client.post("/api/analyze", content=chunks(), headers={"content-type": "application/json"}).status_code == 413


def test_the_largest_body_the_schema_allows_is_not_413(client):
    """100,000 astral characters, each escaped as a surrogate pair: 1.2 MB of JSON, read and
    then refused for its length in tokens (a 422), never for its size."""
    largest = json.dumps({"text": "\U0001F600" * 100_000})
    assert len(largest) > 1_200_000
    response = client.post("/api/analyze", content=largest, headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["code"] == "prompt_too_long"


@pytest.mark.parametrize("layer", ["2", "-1", "99", "x"])
def test_bad_layer_is_422(client, analyzed, layer):
    response = client.get(f"/api/runs/{analyzed['run_id']}/layers/{layer}")
    assert response.status_code == 422
    assert "layer" in response.json()["detail"]


def test_unknown_field_is_422(client, analyzed):
    response = client.get(f"/api/runs/{analyzed['run_id']}/layers/0?fields=attn.hook_nope")
    assert response.status_code == 422 and "fields" in response.json()["detail"]


@pytest.mark.parametrize("run_id", ["nope", "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "A" * 64])
def test_unknown_run_is_404_asking_to_analyze_again(client, run_id):
    """Run ids are looked up in memory only, never used as a path."""
    quoted = urllib.parse.quote(run_id, safe="")
    for response in (
        client.get(f"/api/runs/{quoted}/embeddings"),
        client.get(f"/api/runs/{quoted}/layers/0"),
        client.post("/api/sample", json={"run_id": run_id, "temperature": 1}),
    ):
        assert response.status_code == 404
        # An id that looks like a path may match no route at all in a URL: a plain 404 then.
        looks_like_path = "/" in run_id or "%" in run_id
        assert "nalyze" in response.json()["detail"] or (looks_like_path and response.request.method == "GET")


def test_server_answers_normally_after_bad_input(client, analyzed):
    client.post("/api/analyze", content=b"\xff\xfe garbage", headers={"content-type": "application/json"})
    client.post("/api/sample", json={"run_id": "x", "temperature": "NaN"})
    again = client.post("/api/analyze", json={"text": PROMPT})
    assert again.status_code == 200 and again.json()["run_id"] == analyzed["run_id"]


def test_responses_are_gzipped_when_asked(client):
    response = client.post("/api/analyze", json={"text": PROMPT + " books"}, headers={"Accept-Encoding": "gzip"})
    assert response.headers.get("content-encoding") == "gzip"


def test_a_run_evicted_long_ago_is_served_bitwise_identically(explainer, checkpoint_dir):
    """With room for 2 runs, the first of 12 is long gone from the cache; asked for by its id,
    it is recomputed, and every number is the same bytes as before."""
    app = create_app(Settings(model=checkpoint_dir, cache_entries=2), explainer=explainer)

    def everything(client, run_id):
        return [client.get(f"/api/runs/{run_id}/embeddings").json(),
                client.get(f"/api/runs/{run_id}/layers/1").json(),
                client.get(f"/api/runs/{run_id}/logit-lens", params={"k": 3}).json(),
                client.post("/api/sample", json={"run_id": run_id, "temperature": 0.8, "seed": 3}).json()]

    with TestClient(app) as client:
        first = client.post("/api/analyze", json={"text": "prompt number 0"}).json()
        before = everything(client, first["run_id"])
        for i in range(1, 12):
            client.post("/api/analyze", json={"text": f"prompt number {i}"})
        assert app.state.cache.get(first["run_id"]) is None  # really evicted
        after = everything(client, first["run_id"])
        again = client.post("/api/analyze", json={"text": "prompt number 0"}).json()
    assert after == before
    assert again == first  # the same id, the same body


def test_docs_are_served_without_a_cdn(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert "https://" not in page.text and "http://" not in page.text.replace("http://127.0.0.1", "")
    assert client.get("/static/swagger/swagger-ui-bundle.js").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/api/analyze", "/api/sample", "/api/generate", "/api/runs/{run_id}/layers/{layer}"} <= set(schema["paths"])


def test_auto_patterns_leave_long_prompts_to_the_layer_endpoint(explainer, checkpoint_dir):
    from app.runs.analysis import pattern_bytes

    text = "A longer prompt whose attention would be too big to send at once"
    n = len(explainer.tokenize(text))
    # Budget just under this prompt's patterns: 'auto' leaves them out, 'all' is refused.
    settings = Settings(model=checkpoint_dir, auto_pattern_bytes=pattern_bytes(explainer, n) - 1)
    with TestClient(create_app(settings, explainer=explainer)) as client:
        _check_auto_patterns(client, explainer, text)


def _check_auto_patterns(client, explainer, text):
    lean = client.post("/api/analyze", json={"text": text, "patterns": "auto"}).json()
    assert lean["patterns"] == "per-layer"
    assert set(lean["tensors"]) == {"logits"}
    # 'all' is bounded by the same budget: past it, a 422 that names the field and the way out.
    full = client.post("/api/analyze", json={"text": text, "patterns": "all"})
    assert full.status_code == 422 and full.json()["errors"][0]["field"] == "patterns"
    assert "auto" in full.json()["detail"]
    reference = explainer.analyze(text, keep=["attn.hook_pattern"])
    for layer in range(2):
        name = f"blocks.{layer}.attn.hook_pattern"
        per_layer = client.get(f"/api/runs/{lean['run_id']}/layers/{layer}?fields=attn.hook_pattern").json()["tensors"][name]
        assert np.array_equal(decode(per_layer), reference[name].numpy())
    short = client.post("/api/analyze", json={"text": "Short", "patterns": "auto"}).json()
    assert short["patterns"] == "included" and "blocks.0.attn.hook_pattern" in short["tensors"]


def test_a_generation_names_its_run_at_once_and_computes_it_when_asked(explainer, checkpoint_dir):
    # The done event comes with the last token: the run of the prompt's ids and the generated
    # ones is issued, not computed (a long text's analysis took seconds after the last token).
    settings = Settings(model=checkpoint_dir, auto_pattern_bytes=1)
    with TestClient(create_app(settings, explainer=explainer)) as client:
        events = sse_events(client.post("/api/generate", json={"text": PROMPT, "max_new_tokens": 3, "temperature": 0}).text)
        done = events[-1]
        assert done[0] == "done"
        streamed = [e[1]["token"]["id"] for e in events[:-1]]
        assert done[1]["ids"] == explainer.tokenize(PROMPT) + streamed and done[1]["n_tokens"] == len(done[1]["ids"])
        assert client.app.state.cache.get(done[1]["run_id"]) is None  # issued, not computed
        run = client.get(f"/api/runs/{done[1]['run_id']}").json()
        assert [t["id"] for t in run["tokens"]] == done[1]["ids"] and run["text"] == done[1]["text"]
        again = client.post("/api/analyze", json={"ids": done[1]["ids"], "patterns": "auto"}).json()
        assert again["run_id"] == done[1]["run_id"] and again["patterns"] == "per-layer"


@pytest.mark.parametrize("path, body, field", [
    ("/api/sample", {"run_id": "x", "temperature": "1"}, "temperature"),
    ("/api/sample", {"run_id": "x", "temperature": True}, "temperature"),
    ("/api/sample", {"run_id": "x", "top_k": 3.5}, "top_k"),
    ("/api/sample", {"run_id": "x", "top_p": "0.5"}, "top_p"),
    ("/api/sample", {"run_id": "x", "seed": "7"}, "seed"),
    ("/api/generate", {"text": "hi", "max_new_tokens": True}, "max_new_tokens"),
])
def test_wrong_types_are_422_not_coerced(client, path, body, field):
    # The contract: wrong types get a 422 naming the field (strings and booleans were coerced).
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


def test_integer_temperature_is_a_number(client, analyzed):
    assert _sample(client, analyzed["run_id"], temperature=1, top_k=3, seed=1)["token"]["id"] >= 0


@pytest.mark.parametrize("query, field", [("layers/7", "layer"), ("layers/0?fields=,,", "fields"),
                                          ("layers/0?fields=attn.hook_nope", "fields")])
def test_route_checks_answer_in_the_validation_format(client, analyzed, query, field):
    response = client.get(f"/api/runs/{analyzed['run_id']}/{query}")
    assert response.status_code == 422
    body = response.json()
    assert body["errors"][0]["field"] == field and body["detail"].startswith(f"{field}:")


def test_resid_norms_are_the_residual_streams_length_in_transformers(analyzed, hf_eager, explainer):
    """‖x‖ entering each block and leaving the last, against transformers' own hidden states
    (hidden_states[l] is block l's input; its last entry has ln_f applied, so the last block's
    raw output is taken with a forward hook instead)."""
    ids = torch.tensor([explainer.tokenize(PROMPT)])
    outputs = {}
    hook = hf_eager.transformer.h[-1].register_forward_hook(lambda m, i, o: outputs.setdefault("last", o[0] if isinstance(o, tuple) else o))
    try:
        with torch.no_grad():
            hidden = hf_eager(ids, output_hidden_states=True).hidden_states
    finally:
        hook.remove()
    n_layers = explainer.config.n_layer
    expected = [hidden[l][0].norm(dim=-1) for l in range(n_layers)] + [outputs["last"][0].norm(dim=-1)]
    norms = decode(analyzed["resid_norms"])
    assert norms.shape == (n_layers + 1, len(analyzed["tokens"]))
    np.testing.assert_allclose(norms, torch.stack(expected).numpy(), rtol=1e-4, atol=1e-4)
