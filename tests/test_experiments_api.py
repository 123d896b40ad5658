"""Interventions over HTTP: POST /api/analyze with `interventions` serves the intervened run
(its own id, every run endpoint reading it), compared with transformers under a plain PyTorch
hook; a patch's source run is found again after eviction, never served wrong; each wrong field
is a 422 naming it; GET /api/runs/{a}/compare/{b} against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.main import create_app
from app.serving.settings import Settings
from app.runs.tensors import decode

CLEAN = "When Mary and John went to the store, John gave a drink to"
OTHER = "When Mary and John went to the store, Mary gave a drink to"
Z = {"hook": "blocks.1.attn.hook_z", "op": "zero", "head": 2}


def analyze(client, text, *interventions, **extra):
    response = client.post("/api/analyze", json={"text": text, "interventions": list(interventions), **extra})
    assert response.status_code == 200, response.text
    return response.json()


def hf_logits_with_head_zeroed(hf, ids, layer, head):
    dh = hf.config.n_embd // hf.config.n_head

    def edit(module, args):
        z = args[0].clone()
        z[..., head * dh:(head + 1) * dh] = 0
        return (z,)

    handle = hf.transformer.h[layer].attn.c_proj.register_forward_pre_hook(edit)
    try:
        with torch.no_grad():
            return hf(torch.tensor([ids])).logits[0, -1].double().numpy()
    finally:
        handle.remove()


def test_an_ablated_run_has_its_own_id_and_numbers_and_every_endpoint_reads_it(client, explainer, hf_eager):
    clean = analyze(client, CLEAN)
    ablated = analyze(client, CLEAN, Z)
    assert ablated["run_id"] != clean["run_id"]
    assert ablated["interventions"] == [Z] and clean["interventions"] == []
    expected = hf_logits_with_head_zeroed(hf_eager, explainer.tokenize(CLEAN), 1, 2)
    np.testing.assert_allclose(decode(ablated["tensors"]["logits"]), expected, atol=1e-4)
    assert not np.allclose(decode(clean["tensors"]["logits"]), expected, atol=1e-4)
    # The same request is the same run (content-addressed), from the cache.
    assert analyze(client, CLEAN, Z)["run_id"] == ablated["run_id"]
    # The layer endpoint recomputes with the ablation: head 2's z is zero, the other heads' are not.
    layer = client.get(f"/api/runs/{ablated['run_id']}/layers/1", params={"fields": "attn.hook_z"}).json()
    z = decode(layer["tensors"]["blocks.1.attn.hook_z"])
    assert not z[:, 2].any() and z[:, 1].any()
    lens = client.get(f"/api/runs/{ablated['run_id']}/logit-lens", params={"position": 13, "k": 1}).json()
    assert lens["final"][0]["id"] == int(np.argmax(expected))
    sample = client.post("/api/sample", json={"run_id": ablated["run_id"], "temperature": 0}).json()
    assert sample["token"]["id"] == int(np.argmax(expected))


def test_a_patch_reads_its_source_and_survives_the_sources_eviction(explainer, checkpoint_dir):
    app = create_app(Settings(model=checkpoint_dir, cache_entries=2), explainer=explainer)
    with TestClient(app) as client:
        source = analyze(client, OTHER)
        patch = {"hook": "blocks.0.hook_resid_post", "op": "patch", "position": 9, "source_run_id": source["run_id"]}
        patched = analyze(client, CLEAN, patch)
        reference = explainer.analyze(CLEAN, interventions=[], sources=None)
        from model.interventions import Intervention
        direct = explainer.analyze(CLEAN, interventions=[Intervention(**{**patch, "source_run_id": "s"})],
                                   sources={"s": explainer.analyze(OTHER)})
        np.testing.assert_allclose(decode(patched["tensors"]["logits"]), direct["logits"].numpy(), atol=1e-6)
        assert not np.allclose(decode(patched["tensors"]["logits"]), reference["logits"].numpy(), atol=1e-4)
        # Three other prompts push both runs out of a two-run cache; the patched run's layer is
        # recomputed, its source recomputed with it: the same numbers.
        for text in ("a", "b", "c"):
            analyze(client, text)
        layer = client.get(f"/api/runs/{patched['run_id']}/layers/1", params={"fields": "hook_resid_pre"}).json()
        np.testing.assert_allclose(decode(layer["tensors"]["blocks.1.hook_resid_pre"]),
                                   direct["blocks.1.hook_resid_pre"].numpy(), atol=1e-6)


@pytest.mark.parametrize("intervention, field, code", [
    ({"hook": "blocks.7.attn.hook_z", "op": "zero"}, "hook", "out_of_range"),
    ({"hook": "blocks.0.ln1.hook_out", "op": "zero"}, "hook", "invalid"),  # the schema's pattern: editable hooks only
    ({"hook": "blocks.0.attn.hook_z", "op": "halve"}, "op", "invalid"),
    ({"hook": "blocks.0.attn.hook_z", "op": "zero", "head": 4}, "head", "out_of_range"),
    ({"hook": "blocks.0.hook_resid_pre", "op": "zero", "head": 0}, "head", "not_applicable"),
    ({"hook": "blocks.0.mlp.hook_post", "op": "zero", "neuron": 256}, "neuron", "out_of_range"),
    ({"hook": "blocks.0.mlp.hook_post", "op": "zero", "position": 14}, "position", "out_of_range"),
    ({"hook": "blocks.0.attn.hook_pattern", "op": "mean"}, "op", "not_applicable"),
    ({"hook": "blocks.0.hook_attn_out", "op": "patch"}, "source_run_id", "not_applicable"),
    ({"hook": "blocks.0.hook_attn_out", "op": "patch", "source_run_id": "never-issued"}, "source_run_id", "unknown_source"),
    ({"hook": "blocks.0.hook_attn_out", "op": "zero", "head": "1"}, "head", "invalid"),
    ({"hook": "blocks.0.hook_attn_out", "op": "zero", "layer": 1}, "layer", "invalid"),
])
def test_each_wrong_field_is_a_422_naming_it(client, intervention, field, code):
    response = client.post("/api/analyze", json={"text": CLEAN, "interventions": [Z, intervention]})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == code, body
    assert body["errors"][0]["field"] == f"interventions.1.{field}", body


def test_a_patch_between_prompts_of_different_lengths_is_refused(client):
    source = analyze(client, "Short")
    response = client.post("/api/analyze", json={"text": CLEAN, "interventions": [
        {"hook": "blocks.0.hook_attn_out", "op": "patch", "source_run_id": source["run_id"]}]})
    assert response.status_code == 422
    assert response.json()["code"] == "not_applicable" and "1 tokens" in response.json()["detail"]


def test_compare_gives_both_distributions_the_biggest_changes_and_kl(client):
    a, b = analyze(client, CLEAN), analyze(client, CLEAN, Z)
    response = client.get(f"/api/runs/{a['run_id']}/compare/{b['run_id']}")
    assert response.status_code == 200
    body = response.json()
    la = torch.log_softmax(torch.tensor(decode(a["tensors"]["logits"]), dtype=torch.float64), -1).numpy()
    lb = torch.log_softmax(torch.tensor(decode(b["tensors"]["logits"]), dtype=torch.float64), -1).numpy()
    pa, pb = np.exp(la), np.exp(lb)
    assert [t["id"] for t in body["top_a"]] == list(np.argsort(-pa, kind="stable")[:10])
    assert [t["id"] for t in body["top_b"]] == list(np.argsort(-pb, kind="stable")[:10])
    for t in body["top_a"] + body["biggest_changes"]:
        assert t["prob_a"] == pytest.approx(pa[t["id"]], rel=1e-6) and t["prob_b"] == pytest.approx(pb[t["id"]], rel=1e-6)
        assert t["change"] == pytest.approx(lb[t["id"]] - la[t["id"]], abs=1e-9)
    changes = [abs(t["change"]) for t in body["biggest_changes"]]
    assert changes == sorted(changes, reverse=True)
    assert body["kl_a_b"] == pytest.approx(float(np.sum(pa * (la - lb))), rel=1e-6) and body["kl_a_b"] > 0
    assert client.get(f"/api/runs/{a['run_id']}/compare/{a['run_id']}").json()["kl_a_b"] == pytest.approx(0, abs=1e-12)
    assert client.get(f"/api/runs/{a['run_id']}/compare/nope").status_code == 404


def ld_of(body, target, baseline) -> float:
    logits = decode(body["tensors"]["logits"]).astype(np.float64)
    return float(logits[target] - logits[baseline])


@pytest.fixture(scope="module")
def ioi(explainer):
    return {"clean": CLEAN, "corrupted": OTHER, "target_token": explainer.tokenize(" Mary")[0],
            "baseline_token": explainer.tokenize(" John")[0]}


def test_the_resid_pre_sweep_restores_exactly_where_the_prompts_differ(client, explainer, ioi):
    body = client.post("/api/patching", json={**ioi, "hook": "resid_pre"}).json()
    differ = [i for i, (a, b) in enumerate(zip(explainer.tokenize(CLEAN), explainer.tokenize(OTHER))) if a != b]
    assert differ == [9]
    row = body["grid"][0]
    assert row[9] == 1.0
    assert all(v == 0.0 for i, v in enumerate(row) if i != 9)
    assert len(body["grid"]) == explainer.config.n_layer and len(row) == len(body["tokens"]) == 14
    # The LDs are the plain runs'.
    t, b = ioi["target_token"], ioi["baseline_token"]
    assert body["ld_clean"] == pytest.approx(ld_of(analyze(client, CLEAN), t, b), abs=1e-5)
    assert body["ld_corrupted"] == pytest.approx(ld_of(analyze(client, OTHER), t, b), abs=1e-5)


@pytest.mark.parametrize("hook, name, axis", [("resid_pre", "hook_resid_pre", "position"), ("attn_out", "hook_attn_out", "position"),
                                             ("mlp_out", "hook_mlp_out", "position"), ("z", "attn.hook_z", "head")])
def test_each_cell_equals_that_patch_done_through_analyze(client, ioi, hook, name, axis):
    body = client.post("/api/patching", json={**ioi, "hook": hook}).json()
    assert body["axis"] == axis
    t, b = ioi["target_token"], ioi["baseline_token"]
    scale = body["ld_clean"] - body["ld_corrupted"]
    for layer, index in ((0, 3), (1, 2), (1, 13) if axis == "position" else (1, 0)):
        selection = {"position": index} if axis == "position" else {"head": index}
        patched = analyze(client, OTHER, {"hook": f"blocks.{layer}.{name}", "op": "patch", "source_run_id": body["clean_run_id"],
                                          **selection})
        expected = (ld_of(patched, t, b) - body["ld_corrupted"]) / scale
        assert body["grid"][layer][index] == pytest.approx(expected, abs=1e-4), (layer, index)


@pytest.mark.parametrize("change, field, code", [
    ({"corrupted": "Short"}, "corrupted", "not_applicable"),
    ({"clean": "word " * 70, "corrupted": "word " * 70}, "clean", "too_costly"),
    ({"target_token": 50257}, "target_token", "out_of_range"),
    ({"hook": "ln1"}, "hook", "invalid"),
    ({"clean": " "}, "clean", "empty_prompt"),
])
def test_patching_requests_that_cannot_be_run_name_the_field(client, ioi, change, field, code):
    response = client.post("/api/patching", json={**ioi, **change})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code and response.json()["errors"][0]["field"] == field


# --- Patching says when it cannot tell --------------------------------------------------------

def hf_ld(hf, ids, target, baseline) -> float:
    """logit(target) − logit(baseline) at the last position, from transformers' own forward."""
    with torch.no_grad():
        logits = hf(torch.tensor([ids])).logits[0, -1].double()
    return float(logits[target] - logits[baseline])


@pytest.mark.parametrize("hook", ["resid_pre", "z"])
def test_a_sweep_between_prompts_that_barely_differ_in_their_answer_is_not_reliable(client, explainer, hf_eager, ioi, hook):
    # On the tiny random model, the IOI pair moves the LD by about 0.01 logit: every cell is
    # that much noise divided by almost nothing.
    body = client.post("/api/patching", json={**ioi, "hook": hook}).json()
    t, b = ioi["target_token"], ioi["baseline_token"]
    expected = hf_ld(hf_eager, explainer.tokenize(CLEAN), t, b) - hf_ld(hf_eager, explainer.tokenize(OTHER), t, b)
    assert 0 < abs(expected) < 0.1
    assert body["denominator"] == pytest.approx(expected, abs=2e-5)
    assert body["denominator"] == pytest.approx(body["ld_clean"] - body["ld_corrupted"], abs=1e-12)
    assert body["reliable"] is False
    assert body["threshold"] == 1.0
    assert max(abs(v) for row in body["grid"] for v in row if v is not None) > 0  # still answered, for "show anyway"


def test_a_sweep_between_identical_prompts_has_a_zero_denominator_and_no_cells(client, ioi):
    body = client.post("/api/patching", json={**ioi, "corrupted": CLEAN, "hook": "resid_pre"}).json()
    assert body["denominator"] == 0 and body["ld_clean"] == body["ld_corrupted"]
    assert body["reliable"] is False
    assert all(v is None for row in body["grid"] for v in row)


ECHO = ("I saw a cat", "I saw a dog", " cat", " dog")


@pytest.fixture(scope="module")
def echo_checkpoint(tmp_path_factory) -> str:
    from .conftest import build_echo_checkpoint

    return build_echo_checkpoint(tmp_path_factory.mktemp("echo-gpt2"), ECHO[2:])


def test_a_sweep_between_prompts_with_different_answers_is_reliable(echo_checkpoint):
    from transformers import GPT2LMHeadModel

    from model import Explainer

    explainer = Explainer.load(echo_checkpoint)
    hf = GPT2LMHeadModel.from_pretrained(echo_checkpoint).eval()
    clean, corrupted, target, baseline = ECHO
    t, b = explainer.tokenize(target)[0], explainer.tokenize(baseline)[0]
    with TestClient(create_app(Settings(model=echo_checkpoint), explainer=explainer)) as client:
        body = client.post("/api/patching", json={"clean": clean, "corrupted": corrupted, "target_token": t,
                                                  "baseline_token": b, "hook": "attn_out"}).json()
    expected = hf_ld(hf, explainer.tokenize(clean), t, b) - hf_ld(hf, explainer.tokenize(corrupted), t, b)
    assert expected > 2  # the echo by design: " cat" after "cat", " dog" after "dog"
    assert body["denominator"] == pytest.approx(expected, abs=1e-4)
    assert body["reliable"] is True and body["threshold"] == 1.0
    assert all(v is not None and abs(v) < 5 for row in body["grid"] for v in row)
