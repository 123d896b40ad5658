"""The capture engine against `transformers`' own forward and against plain torch."""

from __future__ import annotations

import math

import pytest
import torch

from model import EmptyPromptError, PromptTooLongError
from model.engine import LAYER_HOOKS

PROMPT = "The quick brown fox jumps over the lazy dog because it"


@pytest.fixture(scope="module")
def full_run(explainer):
    """Everything kept from one forward pass."""
    return explainer.analyze(PROMPT, keep=["*"])


@pytest.fixture(scope="module")
def hf_out(hf_eager, full_run):
    with torch.no_grad():
        return hf_eager(torch.tensor([full_run.ids]), output_attentions=True, output_hidden_states=True)


def test_last_logits_equal_transformers(full_run, hf_out):
    torch.testing.assert_close(full_run["logits"], hf_out.logits[0, -1], atol=1e-5, rtol=0)


def test_pattern_equals_eager_attentions(full_run, hf_out, explainer):
    for layer in range(explainer.config.n_layer):
        torch.testing.assert_close(full_run[f"blocks.{layer}.attn.hook_pattern"], hf_out.attentions[layer][0], atol=1e-6, rtol=0)


def test_residual_stream_equals_hidden_states(full_run, hf_out, explainer):
    n_layers = explainer.config.n_layer
    for layer in range(n_layers):
        torch.testing.assert_close(full_run[f"blocks.{layer}.hook_resid_pre"], hf_out.hidden_states[layer][0], atol=1e-5, rtol=0)
    # transformers' last hidden state is after ln_f.
    torch.testing.assert_close(full_run["ln_final.hook_out"], hf_out.hidden_states[n_layers][0], atol=1e-5, rtol=0)


def test_shapes(full_run, explainer):
    c = explainer.info
    n, h, dh = len(full_run), c["n_heads"], c["d_head"]
    expected = {
        "hook_resid_pre": (n, c["d_model"]), "ln1.hook_out": (n, c["d_model"]),
        "attn.hook_q": (n, h, dh), "attn.hook_k": (n, h, dh), "attn.hook_v": (n, h, dh),
        "attn.hook_attn_scores": (h, n, n), "attn.hook_pattern": (h, n, n), "attn.hook_z": (n, h, dh),
        "hook_attn_out": (n, c["d_model"]), "hook_resid_mid": (n, c["d_model"]), "ln2.hook_out": (n, c["d_model"]),
        "mlp.hook_pre": (n, c["d_mlp"]), "mlp.hook_post": (n, c["d_mlp"]), "hook_mlp_out": (n, c["d_model"]),
        "hook_resid_post": (n, c["d_model"]),
    }
    assert set(expected) == set(LAYER_HOOKS)
    for suffix, shape in expected.items():
        assert tuple(full_run[f"blocks.1.{suffix}"].shape) == shape, suffix
    assert tuple(full_run["hook_embed"].shape) == (n, c["d_model"])
    assert tuple(full_run["logits"].shape) == (c["d_vocab"],)


def _gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def _layer_norm(x, ln):
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def test_each_step_recomputed_with_plain_torch(full_run, explainer):
    """Each captured tensor follows from the previous captured ones by plain torch maths."""
    model = explainer.model
    wte, wpe = model.transformer.wte.weight, model.transformer.wpe.weight
    ids = torch.tensor(full_run.ids)
    n = len(ids)
    close = lambda a, b: torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)  # noqa: E731
    close(full_run["hook_embed"], wte[ids])
    close(full_run["hook_pos_embed"], wpe[:n])
    close(full_run["blocks.0.hook_resid_pre"], wte[ids] + wpe[:n])
    for layer, blk in enumerate(model.transformer.h):
        get = lambda s: full_run[f"blocks.{layer}.{s}"]  # noqa: E731
        h, dh = blk.attn.num_heads, blk.attn.head_dim
        d = h * dh
        close(get("ln1.hook_out"), _layer_norm(get("hook_resid_pre"), blk.ln_1))
        w, b = blk.attn.c_attn.weight, blk.attn.c_attn.bias  # [d, 3d]: q | k | v, heads contiguous
        for i, name in enumerate("qkv"):
            w_x = w[:, i * d:(i + 1) * d].reshape(d, h, dh)
            b_x = b[i * d:(i + 1) * d].reshape(h, dh)
            close(get(f"attn.hook_{name}"), torch.einsum("pm,mhd->phd", get("ln1.hook_out"), w_x) + b_x)
        scores = torch.einsum("qhd,khd->hqk", get("attn.hook_q"), get("attn.hook_k")) / math.sqrt(dh)
        mask = torch.tril(torch.ones(n, n, dtype=torch.bool))
        scores = torch.where(mask, scores, torch.tensor(float("-inf")))
        close(get("attn.hook_attn_scores"), scores)
        exp = torch.exp(scores - scores.max(-1, keepdim=True).values)
        close(get("attn.hook_pattern"), exp / exp.sum(-1, keepdim=True))
        close(get("attn.hook_z"), torch.einsum("hqk,khd->qhd", get("attn.hook_pattern"), get("attn.hook_v")))
        close(get("hook_attn_out"), get("attn.hook_z").reshape(n, d) @ blk.attn.c_proj.weight + blk.attn.c_proj.bias)
        close(get("hook_resid_mid"), get("hook_resid_pre") + get("hook_attn_out"))
        close(get("ln2.hook_out"), _layer_norm(get("hook_resid_mid"), blk.ln_2))
        close(get("mlp.hook_pre"), get("ln2.hook_out") @ blk.mlp.c_fc.weight + blk.mlp.c_fc.bias)
        close(get("mlp.hook_post"), _gelu_new(get("mlp.hook_pre")))
        close(get("hook_mlp_out"), get("mlp.hook_post") @ blk.mlp.c_proj.weight + blk.mlp.c_proj.bias)
        close(get("hook_resid_post"), get("hook_resid_mid") + get("hook_mlp_out"))
        if layer + 1 < len(model.transformer.h):
            assert torch.equal(get("hook_resid_post"), full_run[f"blocks.{layer + 1}.hook_resid_pre"])
    last = full_run[f"blocks.{len(model.transformer.h) - 1}.hook_resid_post"]
    close(full_run["ln_final.hook_out"], _layer_norm(last, model.transformer.ln_f))
    # The unembedding is tied to the token embedding.
    close(full_run["logits"], full_run["ln_final.hook_out"][-1] @ wte.T)


def test_layernorm_weights_are_perturbed(explainer):
    """Guards the fixture: a LayerNorm left at (1, 0) would let a forgotten weight pass."""
    ln = explainer.model.transformer.h[0].ln_1
    assert not torch.allclose(ln.weight, torch.ones_like(ln.weight))
    assert not torch.allclose(ln.bias, torch.zeros_like(ln.bias))


def test_attention_rows_sum_to_one_and_future_is_zero(full_run, explainer):
    n = len(full_run)
    future = torch.ones(n, n, dtype=torch.bool).triu(1)
    for layer in range(explainer.config.n_layer):
        pattern = full_run[f"blocks.{layer}.attn.hook_pattern"]
        torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:2]), atol=1e-6, rtol=0)
        assert torch.all(pattern[:, future] == 0)
        scores = full_run[f"blocks.{layer}.attn.hook_attn_scores"]
        assert torch.all(torch.isneginf(scores[:, future]))
        assert torch.all(torch.isfinite(scores[:, ~future]))


def test_lean_run_recomputes_layers_bitwise(explainer, full_run):
    """A run that keeps only the residual stream rebuilds any layer's hooks exactly."""
    lean = explainer.analyze(PROMPT)
    assert lean.nbytes < full_run.nbytes
    assert len(lean.stored) < len(full_run.stored) / 3
    for name in full_run.keys():
        assert torch.equal(lean[name], full_run[name]), name


def test_keep_selects_extra_hooks(explainer):
    run = explainer.analyze(PROMPT, keep=["attn.hook_pattern"])
    assert "blocks.0.attn.hook_pattern" in run.stored and "blocks.1.attn.hook_pattern" in run.stored
    assert "blocks.0.attn.hook_q" not in run.stored


def test_known_token_ids(explainer):
    assert explainer.tokenize("Data visualization empowers users to") == [6601, 32704, 795, 30132, 2985, 284]


def test_no_bos_and_texts_keep_leading_spaces(explainer):
    run = explainer.analyze("Hello world")
    assert [t.text for t in run.tokens] == ["Hello", " world"]


def test_context_limit(explainer):
    ids_1025 = " a" * 1025
    with pytest.raises(PromptTooLongError) as error:
        explainer.analyze(ids_1025)
    assert "1025" in str(error.value) and "1024" in str(error.value)
    run = explainer.analyze(" a" * 1024)
    assert len(run) == 1024
    assert run["blocks.1.attn.hook_pattern"].shape[-1] == 1024


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_prompt(explainer, text):
    with pytest.raises(EmptyPromptError, match="empty"):
        explainer.analyze(text)


@pytest.mark.parametrize(
    "text",
    ["héllo 😀 世界", "مرحبا بالعالم \u200f!", "x\u0301\u0301 combining", "ctrl \x00\x07\x1b end", "🤖🤖🤖",
     "\ufeffbom", "e\u0301" * 20, "\U0001F468\u200d\U0001F469\u200d\U0001F467 family"],
)
def test_any_unicode_tokenizes_and_joins_back(explainer, text):
    run = explainer.analyze(text)
    assert "".join(t.text for t in run.tokens) == text
    assert explainer.tokenizer.decode(run.ids) == text
    assert run["logits"].isfinite().all()


def test_partial_characters_are_marked_not_invented(explainer):
    run = explainer.analyze("🤖")
    assert len(run.tokens) > 1
    assert all(t.partial for t in run.tokens)
    assert "\ufffd" not in "".join(t.text for t in run.tokens)


def test_info_reports_dropout_and_weights(explainer):
    info = explainer.info
    assert info["n_params"] == sum(p.numel() for p in explainer.model.parameters())
    assert "identity" in info["dropout"]
    assert info["random_weights"] is False
    assert not explainer.model.training
