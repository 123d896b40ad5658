"""Head detectors, the induction probe and direct logit attribution, over HTTP, each against an
independent computation: scores recomputed with plain loops from the served patterns; a
checkpoint whose head 0.0 is a previous-token head by construction; the probe's loss from
transformers' own forward; each head's attribution from the served z and the checkpoint's W_O."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from transformers import GPT2Config, GPT2LMHeadModel

from app.main import create_app
from app.serving.settings import Settings
from app.runs.tensors import decode
from model import Explainer

PROMPT = "the cat and the dog and the cat and the dog"


def analyze(client, text, *interventions):
    response = client.post("/api/analyze", json={"text": text, "interventions": list(interventions)})
    assert response.status_code == 200, response.text
    return response.json()


def loop_scores(pattern: np.ndarray, ids: list[int]) -> dict[str, list]:
    """The three scores of every head of one layer, with plain loops. pattern [head, q, k]"""
    n = len(ids)
    keys = {
        "previous_token": lambda i: [i - 1] if i >= 1 else [],
        "duplicate_token": lambda i: [j for j in range(i) if ids[j] == ids[i]],
        "induction": lambda i: [j + 1 for j in range(i) if ids[j] == ids[i] and j + 1 < i],
    }
    out = {}
    for kind, of in keys.items():
        rows = [i for i in range(n) if of(i)]
        out[kind] = [None if not rows else sum(sum(pattern[h, i, j] for j in of(i)) for i in rows) / len(rows)
                     for h in range(pattern.shape[0])]
    return out


def test_head_scores_equal_plain_loops_over_the_served_patterns(client, explainer):
    run = analyze(client, PROMPT)
    ids = [t["id"] for t in run["tokens"]]
    body = client.get(f"/api/runs/{run['run_id']}/head-scores").json()
    assert set(body["definitions"]) == {"previous_token", "duplicate_token", "induction"}
    for layer in range(explainer.config.n_layer):
        pattern = decode(client.get(f"/api/runs/{run['run_id']}/layers/{layer}",
                                    params={"fields": "attn.hook_pattern"}).json()["tensors"][f"blocks.{layer}.attn.hook_pattern"])
        expected = loop_scores(pattern.astype(np.float64), ids)
        for kind in expected:
            np.testing.assert_allclose(body[kind][layer], expected[kind], atol=1e-6)
            assert all(0 <= s <= 1 for s in body[kind][layer])
    # A prompt with no repeated token has no duplicate or induction keys: null, not 0.
    plain = analyze(client, "Once upon a time")
    none = client.get(f"/api/runs/{plain['run_id']}/head-scores").json()
    assert none["induction"][0] == [None] * explainer.config.n_head


def previous_token_checkpoint(path) -> str:
    """A tiny GPT-2 whose head 0.0 attends to the previous token by construction: the residual
    stream entering layer 0 is a rotation by θ·position (token embeddings zero), LayerNorm 1 is
    the identity on it, and head 0's keys are those positions rotated one step further, so
    q_i · k_j = S·cos(θ(i − 1 − j)) peaks at j = i − 1."""
    torch.manual_seed(3)
    config = GPT2Config(n_layer=2, n_head=4, n_embd=64, n_positions=64, vocab_size=50257)
    model = GPT2LMHeadModel(config)
    theta, scale = 0.5, 12.0
    with torch.no_grad():
        wte, wpe = model.transformer.wte.weight, model.transformer.wpe.weight
        wte.zero_()  # tied to the unembedding: every logit is 0, which this test does not read
        wpe.zero_()
        pos = torch.arange(config.n_positions, dtype=torch.float32)
        # Zero mean over d_model, constant norm: LayerNorm only rescales it.
        wpe[:, 0], wpe[:, 1], wpe[:, 2], wpe[:, 3] = torch.cos(theta * pos), torch.sin(theta * pos), -torch.cos(theta * pos), -torch.sin(theta * pos)
        block = model.transformer.h[0]
        block.ln_1.weight.fill_(1.0)
        block.ln_1.bias.zero_()
        d = config.n_embd
        w, b = block.attn.c_attn.weight, block.attn.c_attn.bias  # [d_model, 3·d_model]: q | k | v
        w[:, 0:16] = 0
        w[:, d:d + 16] = 0
        b[0:16] = 0
        b[d:d + 16] = 0
        w[0, 0] = w[1, 1] = scale  # q_i = S·(cos θi, sin θi)
        c, s = math.cos(theta), math.sin(theta)  # k_j = S·(cos θ(j+1), sin θ(j+1))
        w[0, d + 0], w[1, d + 0] = scale * c, -scale * s
        w[0, d + 1], w[1, d + 1] = scale * s, scale * c
    model.save_pretrained(path)
    return str(path)


def test_a_previous_token_head_by_construction_scores_above_095_and_ranks_first(tmp_path):
    explainer = Explainer.load(previous_token_checkpoint(tmp_path / "prev"))
    with TestClient(create_app(Settings(model=str(tmp_path / "prev")), explainer=explainer)) as client:
        run = analyze(client, "one two three four five six seven eight nine")
        scores = client.get(f"/api/runs/{run['run_id']}/head-scores").json()["previous_token"]
        flat = [(s, l, h) for l, row in enumerate(scores) for h, s in enumerate(row)]
        best = max(flat)
        assert scores[0][0] > 0.95, scores
        assert best[1:] == (0, 0)


def test_the_induction_probe_is_seeded_and_its_loss_is_transformers(client, hf_eager):
    body = client.post("/api/induction-probe", json={"length": 20, "seed": 7}).json()
    again = client.post("/api/induction-probe", json={"length": 20, "seed": 7}).json()
    other = client.post("/api/induction-probe", json={"length": 20, "seed": 8}).json()
    assert body == again and body["tokens"] != other["tokens"]
    tokens = body["tokens"]
    assert len(tokens) == 40 and tokens[:20] == tokens[20:]
    with torch.no_grad():
        logits = hf_eager(torch.tensor([tokens])).logits[0, :-1]
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(tokens[1:]), reduction="none").numpy()
    np.testing.assert_allclose(body["loss"], loss, atol=1e-4)
    assert body["loss_first_half"] == pytest.approx(loss[:19].mean(), abs=1e-4)
    # The second half's loss is over the tokens an induction head can predict: the repeated ones
    # but the first (token 20, which has no earlier copy to follow), i.e. tokens 21 … 39, each
    # predicted from the position before it.
    repeated = [float(torch.nn.functional.cross_entropy(logits[j - 1], torch.tensor(tokens[j]))) for j in range(21, 40)]
    assert body["loss_second_half"] == pytest.approx(np.mean(repeated), abs=1e-4)
    assert body["loss_second_half"] != pytest.approx(loss[19:].mean(), abs=1e-4)  # not with token 20 in it
    assert len(body["induction"]) == 2 and len(body["induction"][0]) == 4
    assert client.post("/api/induction-probe", json={"length": 600}).status_code == 422


def test_attribution_parts_add_up_and_each_head_is_z_through_its_w_o(client, explainer):
    run = analyze(client, PROMPT)
    target, baseline = run["top"][0]["id"], run["top"][1]["id"]
    body = client.get(f"/api/runs/{run['run_id']}/attribution", params={"target": target, "baseline": baseline}).json()
    logits = decode(run["tensors"]["logits"]).astype(np.float64)
    assert body["logit_diff"] == pytest.approx(logits[target] - logits[baseline], abs=1e-5)
    parts = body["embed"] + body["pos_embed"] + np.sum(body["heads"]) + sum(body["attn_bias"]) + sum(body["mlp"]) + body["ln_final_bias"]
    assert parts == pytest.approx(body["logit_diff"], abs=1e-4)
    assert body["total"] == pytest.approx(body["logit_diff"], abs=1e-4)
    # Each head, independently: its z from the layer endpoint, W_O from the checkpoint, the final
    # LayerNorm's σ from the served final residual stream.
    model = explainer.model
    last = explainer.config.n_layer - 1
    final = decode(client.get(f"/api/runs/{run['run_id']}/layers/{last}", params={"fields": "hook_resid_post"}).json()
                   ["tensors"][f"blocks.{last}.hook_resid_post"])[-1].astype(np.float64)
    sigma = math.sqrt(final.var() + model.transformer.ln_f.eps)
    gamma = model.transformer.ln_f.weight.detach().double().numpy()
    d = (model.lm_head.weight[target] - model.lm_head.weight[baseline]).detach().double().numpy()
    n_heads, d_head = explainer.config.n_head, explainer.config.n_embd // explainer.config.n_head
    for layer in range(explainer.config.n_layer):
        z = decode(client.get(f"/api/runs/{run['run_id']}/layers/{layer}", params={"fields": "attn.hook_z"}).json()
                   ["tensors"][f"blocks.{layer}.attn.hook_z"])[-1].astype(np.float64)  # [head, d_head]
        w_o = model.transformer.h[layer].attn.c_proj.weight.detach().double().numpy()  # [d_model (z), d_model]
        for head in range(n_heads):
            out = z[head] @ w_o[head * d_head:(head + 1) * d_head]
            expected = ((out - out.mean()) / sigma * gamma) @ d
            assert body["heads"][layer][head] == pytest.approx(expected, abs=1e-5)
    # A run whose stream was edited directly cannot be split: said, not served wrong.
    edited = analyze(client, PROMPT, {"hook": "blocks.0.hook_attn_out", "op": "zero"})
    refused = client.get(f"/api/runs/{edited['run_id']}/attribution", params={"target": target, "baseline": baseline})
    assert refused.status_code == 422 and refused.json()["code"] == "not_applicable"
    assert client.get(f"/api/runs/{run['run_id']}/attribution", params={"target": 50257, "baseline": 1}).status_code == 422


def test_the_probe_applies_interventions_like_an_analyze(client, explainer):
    """Switching heads off in the probe is the same edit as in a run: compared with the model's
    own pass over the probe's tokens with that intervention."""
    from model.interventions import Editor, Intervention
    from model.head_scores import next_token_loss

    off = {"hook": "blocks.1.attn.hook_z", "op": "zero", "head": 1}
    plain = client.post("/api/induction-probe", json={"length": 16, "seed": 2}).json()
    body = client.post("/api/induction-probe", json={"length": 16, "seed": 2, "interventions": [off]}).json()
    assert body["interventions"] == [off] and plain["interventions"] == []
    run = explainer.analyze_ids(body["tokens"], editor=Editor((Intervention(**off),)))
    np.testing.assert_allclose(body["loss"], next_token_loss(explainer.model, run), atol=1e-5)
    assert not np.allclose(body["loss"], plain["loss"], atol=1e-6)


def test_the_probe_refuses_a_patch_saying_it_cannot_patch(client):
    """The probe's tokens are its own: no run can be patched from, whatever source is named (an
    existing run of the same length too), and that is what the 422 says, on the op."""
    source = client.post("/api/analyze", json={"ids": list(range(100, 132))}).json()["run_id"]  # 32 tokens, as the probe
    off = {"hook": "blocks.1.attn.hook_z", "op": "zero", "head": 1}
    for patches, index in (([{"hook": "blocks.0.hook_attn_out", "op": "patch", "source_run_id": "never-issued"}], 0),
                           ([off, {"hook": "blocks.0.hook_attn_out", "op": "patch", "source_run_id": source}], 1),
                           ([off, {"hook": "blocks.0.attn.hook_pattern", "op": "patch"}], 1)):
        refused = client.post("/api/induction-probe", json={"length": 16, "interventions": patches})
        assert refused.status_code == 422, refused.text
        body = refused.json()
        assert body["code"] == "not_applicable", body
        assert body["errors"][0]["field"] == f"interventions.{index}.op", body
        assert "cannot patch" in body["detail"] and "no source run" in body["detail"] and "'zero' or 'mean'" in body["detail"]
