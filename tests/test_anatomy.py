"""The anatomy of the parameters: counted from real models, and by formula for GPT-3."""

from __future__ import annotations

import pytest
import torch
from fastapi.testclient import TestClient
from transformers import GPT2Config, GPT2LMHeadModel

from app.main import create_app
from app.serving.settings import Settings
from model.anatomy import GPT2_SMALL, GPT3, Hyperparameters, count_model, from_hyperparameters


def closed_form(hp: Hyperparameters) -> int:
    """The textbook total, written independently: per block 4 d·hd + 2 d·m matrices, their biases
    (3 hd + d + m + d) and two LayerNorms (4 d); then embeddings, ln_f and an untied unembedding."""
    d, hd, m, L = hp.d_model, hp.n_heads * hp.d_head, hp.d_mlp, hp.n_layers
    per_block = 4 * d * hd + 2 * d * m + (3 * hd + d + m + d) + 4 * d
    unembed = 0 if hp.tied_embeddings else hp.d_vocab * d
    return L * per_block + hp.d_vocab * d + hp.n_ctx * d + 2 * d + unembed


@pytest.fixture(scope="module")
def gpt2_small():
    """GPT-2 small's exact shapes (about 0.5 GB, a few seconds), weights irrelevant."""
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config())


def test_gpt2_small_counted_from_the_model(gpt2_small):
    anatomy = count_model(gpt2_small, "GPT-2 small")
    assert anatomy.total == sum(p.numel() for p in gpt2_small.parameters()) == 124_439_808
    assert Hyperparameters.of(gpt2_small, "GPT-2 small") == GPT2_SMALL
    formula = from_hyperparameters(GPT2_SMALL)
    assert [k.key for k in anatomy.kinds] == [k.key for k in formula.kinds]
    for counted in anatomy.kinds:
        by_formula = formula.kind(counted.key)
        assert counted.count == by_formula.count, counted.key
        assert sorted(counted.parts, key=lambda p: p.name) == sorted(by_formula.parts, key=lambda p: p.name)
    assert closed_form(GPT2_SMALL) == 124_439_808
    assert anatomy.kind("token_embedding").count == 50257 * 768
    assert anatomy.kind("unembedding").count == 0 and "Tied" in anatomy.kind("token_embedding").note
    for kind in ("query", "key", "value", "attention_output"):
        assert anatomy.kind(kind).count == 12 * 768 * 768
    assert anatomy.kind("mlp_up").count == anatomy.kind("mlp_down").count == 12 * 768 * 3072
    assert anatomy.kind("layernorm").count == 25 * 768


def test_tiny_checkpoint_and_an_untied_model(explainer):
    anatomy = count_model(explainer.model, "tiny")
    assert anatomy.total == sum(p.numel() for p in explainer.model.parameters())
    untied = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=100, n_positions=32,
                                        tie_word_embeddings=False))
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    counted = count_model(untied, "untied")
    assert counted.total == sum(p.numel() for p in untied.parameters())
    assert counted.kind("unembedding").count == 100 * 16
    assert counted.total == from_hyperparameters(Hyperparameters.of(untied, "untied")).total == closed_form(
        Hyperparameters.of(untied, "untied"))


def test_gpt3_breakdown_from_hyperparameters():
    gpt3 = from_hyperparameters(GPT3)
    assert gpt3.total == closed_form(GPT3)
    assert gpt3.total == pytest.approx(175.2e9, abs=0.1e9)
    assert gpt3.kind("token_embedding").count == pytest.approx(617.6e6, abs=0.1e6)
    assert gpt3.kind("unembedding").count == gpt3.kind("token_embedding").count
    for kind in ("query", "key", "value", "attention_output"):
        assert gpt3.kind(kind).count == pytest.approx(14.5e9, abs=0.01e9)
    assert gpt3.kind("mlp_up").count + gpt3.kind("mlp_down").count == pytest.approx(116e9, abs=0.1e9)


def test_api_anatomy(explainer, checkpoint_dir):
    app = create_app(Settings(model=checkpoint_dir), explainer=explainer)
    with TestClient(app) as client:
        body = client.get("/api/anatomy").json()
    loaded, gpt3 = body["models"]
    assert body["n_params"] == loaded["total"] == sum(p.numel() for p in explainer.model.parameters())
    assert loaded["source"] == "model" and gpt3["source"] == "hyperparameters"
    assert gpt3["name"] == "GPT-3 175B" and gpt3["total"] == from_hyperparameters(GPT3).total
    for model in (loaded, gpt3):
        assert sum(k["count"] for k in model["kinds"]) == model["total"]
        assert sum(k["share"] for k in model["kinds"]) == pytest.approx(1.0)
        assert all(sum(p["count"] for p in k["parts"]) == k["count"] for k in model["kinds"])
    assert loaded["hyperparameters"]["d_model"] == 64 and loaded["hyperparameters"]["tied_embeddings"] is True
