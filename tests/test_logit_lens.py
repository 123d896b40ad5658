"""The logit lens against an independent computation: transformers' own hidden states and
logits, and plain torch for the final LayerNorm and the (tied) unembedding."""

from __future__ import annotations

import pytest
import torch

from model.logit_lens import lens_probs, logit_lens, rows_for

PROMPT = "The quick brown fox jumps over the lazy dog because it"


def _layer_norm(x, ln):
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


@pytest.fixture(scope="module")
def run(explainer):
    return explainer.analyze(PROMPT)


@pytest.fixture(scope="module")
def hf(hf_eager, run):
    """transformers' forward with the residual stream after each attention block captured by hooks."""
    attn_out = {}
    handles = [block.attn.register_forward_hook(lambda mod, args, out, l=l: attn_out.__setitem__(l, out[0][0]))
               for l, block in enumerate(hf_eager.transformer.h)]
    try:
        with torch.no_grad():
            out = hf_eager(torch.tensor([run.ids]), output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()
    return out, attn_out


def independent_stream(hf, hf_eager, hook: str) -> torch.Tensor:
    """The residual stream named `hook`, read from transformers' forward. [pos, d_model]"""
    out, attn_out = hf
    layer, suffix = int(hook.split(".")[1]), hook.split(".", 2)[2]
    n_layers = len(hf_eager.transformer.h)
    if suffix == "hook_resid_pre":
        return out.hidden_states[layer][0]
    if suffix == "hook_resid_mid":
        return out.hidden_states[layer][0] + attn_out[layer]
    assert suffix == "hook_resid_post"
    if layer + 1 < n_layers:
        return out.hidden_states[layer + 1][0]
    return None  # transformers' last hidden state is after ln_f; the logits stand for it


def independent_logits(hf, hf_eager, hook: str) -> torch.Tensor:
    resid = independent_stream(hf, hf_eager, hook)
    if resid is None:
        return hf[0].logits[0]
    with torch.no_grad():
        return _layer_norm(resid, hf_eager.transformer.ln_f) @ hf_eager.transformer.wte.weight.T


def test_last_layer_lens_equals_final_logits(run, hf, explainer):
    last = f"blocks.{explainer.config.n_layer - 1}.hook_resid_post"
    probs = lens_probs(run, last)
    # The lens of the last block's output is the model's own output, at every position.
    torch.testing.assert_close(probs, torch.softmax(hf[0].logits[0], -1), atol=1e-6, rtol=1e-4)
    from model.logit_lens import lens_logits
    with torch.inference_mode():
        lens_last = lens_logits(explainer.model, run[last][-1])
    torch.testing.assert_close(lens_last, run["logits"], atol=1e-4, rtol=0)
    torch.testing.assert_close(lens_last, hf[0].logits[0, -1], atol=1e-4, rtol=0)


@pytest.mark.parametrize("stream", ["resid_post", "resid_mid", "both"])
def test_every_cell_is_a_distribution_and_matches_plain_torch(run, hf, hf_eager, explainer, stream):
    k = 5
    lens = logit_lens(run, k=k, stream=stream)
    assert [r.hook for r in lens.rows] == [r.hook for r in rows_for(explainer.config.n_layer, stream)]
    assert len(lens.cells) == len(lens.rows) and all(len(row) == len(run) for row in lens.cells)
    final_logits = hf[0].logits[0]
    final_ids = final_logits.argmax(-1)
    assert lens.final_ids == final_ids.tolist()
    torch.testing.assert_close(torch.tensor(lens.final_probs), torch.softmax(final_logits, -1).max(-1).values,
                               atol=1e-5, rtol=0)
    for r, row in enumerate(lens.rows):
        probs = lens_probs(run, row.hook)
        torch.testing.assert_close(probs.sum(-1), torch.ones(len(run)), atol=1e-5, rtol=0)
        expected_logits = independent_logits(hf, hf_eager, row.hook)
        expected = torch.softmax(expected_logits, -1)
        torch.testing.assert_close(probs, expected, atol=1e-5, rtol=1e-3)
        for p, cell in enumerate(lens.cells[r]):
            top_probs, top_ids = torch.topk(expected[p], k)
            assert cell.top_ids == top_ids.tolist(), (row.hook, p)
            torch.testing.assert_close(torch.tensor(cell.top_probs), top_probs, atol=1e-5, rtol=1e-3)
            torch.testing.assert_close(torch.tensor(cell.top_logits), expected_logits[p, top_ids], atol=1e-4, rtol=1e-4)
            rank = int((expected_logits[p] > expected_logits[p, final_ids[p]]).sum()) + 1
            assert cell.final_rank == rank
            assert cell.final_prob == pytest.approx(float(expected[p, final_ids[p]]), abs=1e-5)
    if stream != "resid_mid":  # the last row is the model's output: its top guess is the final answer
        assert all(cell.final_rank == 1 for cell in lens.cells[-1])
        for p in range(len(run)):
            first = lens.first_top_row(p)
            assert lens.cells[first][p].final_rank == 1
            assert all(lens.cells[r][p].final_rank > 1 for r in range(first))


def test_positions_subset_equals_the_full_grid(run):
    full = logit_lens(run, k=3, stream="both")
    some = logit_lens(run, positions=[4, 0, 9], k=3, stream="both")
    assert some.positions == [4, 0, 9]
    for r in range(len(full.rows)):
        for j, p in enumerate(some.positions):
            assert some.cells[r][j].top_ids == full.cells[r][p].top_ids
            assert some.cells[r][j].final_rank == full.cells[r][p].final_rank


def test_embedding_row_is_the_token_plus_position_embedding(run, explainer):
    model = explainer.model
    resid = model.transformer.wte.weight[run.ids] + model.transformer.wpe.weight[: len(run)]
    expected = torch.softmax(_layer_norm(resid, model.transformer.ln_f) @ model.transformer.wte.weight.T, -1)
    torch.testing.assert_close(lens_probs(run, "blocks.0.hook_resid_pre"), expected, atol=1e-6, rtol=1e-3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(k=0), "k must be"), (dict(k=50258), "k must be"), (dict(positions=[11]), "from 0 to 10"),
    (dict(positions=[-1]), "from 0 to 10"), (dict(positions=[]), "at least one"), (dict(stream="resid_pre"), "stream"),
])
def test_bad_arguments(run, kwargs, message):
    with pytest.raises(ValueError, match=message):
        logit_lens(run, **kwargs)


# --- over HTTP -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_id(client):
    response = client.post("/api/analyze", json={"text": PROMPT})
    assert response.status_code == 200, response.text
    return response.json()["run_id"]


def test_api_lens_equals_the_model(client, run_id, run, explainer):
    body = client.get(f"/api/runs/{run_id}/logit-lens", params={"k": 4, "stream": "both"}).json()
    lens = logit_lens(run, k=4, stream="both")
    assert body["positions"] == list(range(len(run)))
    assert [r["hook"] for r in body["rows"]] == [r.hook for r in lens.rows]
    assert body["rows"][0]["label"] == "embed"
    assert [f["id"] for f in body["final"]] == lens.final_ids
    assert body["final"][0]["text"] == explainer.tokenizer.label(lens.final_ids[0])
    for r, row in enumerate(body["cells"]):
        for p, cell in enumerate(row):
            assert [t["id"] for t in cell["top"]] == lens.cells[r][p].top_ids
            assert [t["prob"] for t in cell["top"]] == pytest.approx(lens.cells[r][p].top_probs, abs=1e-6)
            assert cell["final_rank"] == lens.cells[r][p].final_rank
    assert body["first_top_row"] == [lens.first_top_row(p) for p in range(len(run))]


def test_api_last_row_at_last_position_is_the_analyze_top(client, run_id):
    analyzed = client.post("/api/analyze", json={"text": PROMPT}).json()
    body = client.get(f"/api/runs/{run_id}/logit-lens", params={"position": 10, "k": 10}).json()
    assert body["positions"] == [10]
    last = body["cells"][-1][0]["top"]
    assert [t["id"] for t in last] == [t["id"] for t in analyzed["top"]]
    assert [t["prob"] for t in last] == pytest.approx([t["prob"] for t in analyzed["top"]], abs=1e-5)
    assert [t["logit"] for t in last] == pytest.approx([t["logit"] for t in analyzed["top"]], abs=1e-4)


def test_api_repeated_positions(client, run_id):
    body = client.get(f"/api/runs/{run_id}/logit-lens?position=3&position=1&k=2&stream=resid_mid").json()
    assert body["positions"] == [3, 1] and body["stream"] == "resid_mid"
    assert all(len(row) == 2 for row in body["cells"])
    assert [r["label"] for r in body["rows"]] == ["embed", "L0 attn", "L1 attn"]


@pytest.mark.parametrize("query, field", [
    ("position=11", "position"), ("position=-1", "position"), ("position=abc", "position"),
    ("position=1&position=99", "position"), ("k=0", "k"), ("k=51", "k"), ("k=1.5", "k"), ("stream=mlp", "stream"),
])
def test_api_bad_input_is_422_naming_the_field(client, run_id, query, field):
    response = client.get(f"/api/runs/{run_id}/logit-lens?{query}")
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["errors"][0]["field"].split(".")[0] == field  # 'position.0' for the first of a list
    assert body["detail"].startswith(field)


def test_api_unknown_run_is_404(client):
    response = client.get("/api/runs/nope/logit-lens")
    assert response.status_code == 404
    assert "Analyze the prompt again" in response.json()["detail"]


def test_duplicate_positions_are_refused(run, client, run_id):
    # Each duplicate costs a full row of unembeddings: 2,000 copies of one position held the
    # only forward slot for over a minute on GPT-2 small.
    with pytest.raises(ValueError, match="more than once"):
        logit_lens(run, positions=[1, 2, 1])
    response = client.get(f"/api/runs/{run_id}/logit-lens?position=0&position=0")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "position"


def test_api_lens_cost_is_capped_at_64_positions(client):
    """A lens over every position of a long prompt held the only forward slot for 33 s (k=50,
    both streams, 1,024 tokens): a request reads at most 64 positions."""
    long_run = client.post("/api/analyze", json={"text": "one two three four " * 20, "patterns": "auto"}).json()
    n = len(long_run["tokens"])
    assert n > 64
    url = f"/api/runs/{long_run['run_id']}/logit-lens"
    everything = client.get(url, params={"k": 2})
    assert everything.status_code == 422 and everything.json()["errors"][0]["field"] == "position"
    too_many = client.get(url, params={"k": 2, "position": list(range(65))})
    assert too_many.status_code == 422 and too_many.json()["errors"][0]["field"] == "position"
    window = client.get(url, params={"k": 2, "position": list(range(n - 64, n))})
    assert window.status_code == 200 and window.json()["positions"] == list(range(n - 64, n))
    schema = client.get("/openapi.json").json()["paths"]["/api/runs/{run_id}/logit-lens"]["get"]["parameters"]
    [position] = [p for p in schema if p["name"] == "position"]
    assert "64" in position["description"]
