"""Interventions against an independent computation: `transformers`' GPT-2 with plain PyTorch
forward hooks and pre-hooks that edit the same slice (for the pattern, its eager attention
function wrapped to replace one row). Compared on the logits and on a downstream hook."""

from __future__ import annotations

import contextlib

import pytest
import torch
from transformers.models.gpt2 import modeling_gpt2

from model.interventions import Editor, Intervention, InterventionError, check

ATOL = 1e-5
CLEAN = "When Mary and John went to the store, John gave a drink to"
OTHER = "When Mary and John went to the store, Mary gave a drink to"


def hf_run(hf, ids: list[int]):
    """transformers' last-position logits and hidden states (input of block i; [pos, d_model])."""
    with torch.no_grad():
        out = hf(torch.tensor([ids]), output_hidden_states=True, output_attentions=True)
    return out.logits[0, -1], [h[0] for h in out.hidden_states], [a[0] for a in out.attentions]


@contextlib.contextmanager
def hooked(*handles):
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def hf_resid_patched(hf, ids: list[int], layer: int, position: int, value: torch.Tensor):
    """transformers' logits and hidden states with block `layer`'s input at `position` set to
    `value` by a plain pre-hook."""
    def edit(module, args, kwargs):
        hidden = args[0].clone()
        hidden[0, position] = value
        return (hidden, *args[1:]), kwargs

    with hooked(hf.transformer.h[layer].register_forward_pre_hook(edit, with_kwargs=True)):
        logits, hidden, _ = hf_run(hf, ids)
    return logits, hidden


def ours(explainer, text, *interventions, sources=None):
    return explainer.analyze(text, interventions=interventions, sources=sources)


def assert_same(run, logits, hidden, layer: int):
    """Logits, and the residual stream entering every block after `layer` (downstream of the edit)."""
    torch.testing.assert_close(run["logits"], logits, atol=ATOL, rtol=0)
    for l in range(layer + 1, run.n_layers):
        torch.testing.assert_close(run[f"blocks.{l}.hook_resid_pre"], hidden[l], atol=ATOL, rtol=0)


def d_head(hf) -> int:
    return hf.config.n_embd // hf.config.n_head


@pytest.mark.parametrize("op", ["zero", "mean"])
def test_a_heads_z_zeroed_or_averaged_equals_a_pre_hook_on_c_proj(explainer, hf_eager, op):
    layer, head = 1, 2
    ids = explainer.tokenize(CLEAN)
    dh = d_head(hf_eager)
    cols = slice(head * dh, (head + 1) * dh)

    def edit(module, args):
        z = args[0].clone()  # [1, pos, d_model]: the heads' z side by side, the input of W_O
        z[..., cols] = 0 if op == "zero" else z[..., cols].mean(dim=1, keepdim=True)
        return (z,)

    with hooked(hf_eager.transformer.h[layer].attn.c_proj.register_forward_pre_hook(edit)):
        logits, hidden, _ = hf_run(hf_eager, ids)
    run = ours(explainer, CLEAN, Intervention(f"blocks.{layer}.attn.hook_z", op, head=head))
    assert_same(run, logits, hidden, layer)
    assert not torch.allclose(run["logits"], explainer.analyze(CLEAN)["logits"], atol=1e-4)  # it did something
    # The run's own z shows the edit; a recomputed layer applies it again.
    z = run[f"blocks.{layer}.attn.hook_z"]
    if op == "zero":
        assert torch.count_nonzero(z[:, head]) == 0
    else:
        clean_z = explainer.analyze(CLEAN)[f"blocks.{layer}.attn.hook_z"]
        torch.testing.assert_close(z[:, head], clean_z[:, head].mean(0).expand_as(z[:, head]))


def test_a_neuron_at_one_position_equals_a_pre_hook_on_the_mlps_c_proj(explainer, hf_eager):
    layer, neuron, position = 0, 7, 3
    ids = explainer.tokenize(CLEAN)

    def edit(module, args):
        post = args[0].clone()  # [1, pos, d_mlp]
        post[0, position, neuron] = 0
        return (post,)

    with hooked(hf_eager.transformer.h[layer].mlp.c_proj.register_forward_pre_hook(edit)):
        logits, hidden, _ = hf_run(hf_eager, ids)
    run = ours(explainer, CLEAN, Intervention(f"blocks.{layer}.mlp.hook_post", "zero", neuron=neuron, position=position))
    assert_same(run, logits, hidden, layer)


@pytest.mark.parametrize("module, suffix", [("attn", "hook_attn_out"), ("mlp", "hook_mlp_out")])
def test_a_whole_attention_or_mlp_output_zeroed_equals_a_forward_hook(explainer, hf_eager, module, suffix):
    layer = 0
    ids = explainer.tokenize(CLEAN)

    def edit(mod, args, output):
        if isinstance(output, tuple):  # attention returns (output, weights)
            return (torch.zeros_like(output[0]), *output[1:])
        return torch.zeros_like(output)

    with hooked(getattr(hf_eager.transformer.h[layer], module).register_forward_hook(edit)):
        logits, hidden, _ = hf_run(hf_eager, ids)
    run = ours(explainer, CLEAN, Intervention(f"blocks.{layer}.{suffix}", "zero"))
    assert_same(run, logits, hidden, layer)
    # The branch adds nothing: the stream goes through the block's half untouched.
    before, after = ("hook_resid_pre", "hook_resid_mid") if module == "attn" else ("hook_resid_mid", "hook_resid_post")
    assert torch.equal(run[f"blocks.{layer}.{before}"], run[f"blocks.{layer}.{after}"])


def test_a_residual_stream_patch_at_one_position_equals_a_pre_hook_on_the_block(explainer, hf_eager):
    layer, position = 1, 4
    ids, other_ids = explainer.tokenize(CLEAN), explainer.tokenize(OTHER)
    _, source_hidden, _ = hf_run(hf_eager, other_ids)
    logits, hidden = hf_resid_patched(hf_eager, ids, layer, position, source_hidden[layer][position])
    source = explainer.analyze(OTHER)
    run = ours(explainer, CLEAN, Intervention(f"blocks.{layer}.hook_resid_pre", "patch", position=position, source_run_id="src"),
               sources={"src": source})
    assert_same(run, logits, hidden, layer)
    # The block's own input shows the patch (stored before the edit, recomputed with it).
    torch.testing.assert_close(run[f"blocks.{layer}.hook_resid_pre"][position], source[f"blocks.{layer}.hook_resid_pre"][position])


def test_an_attention_pattern_patch_equals_transformers_with_that_row_replaced(explainer, hf_eager, monkeypatch):
    layer, head, position = 0, 3, 6
    ids, other_ids = explainer.tokenize(CLEAN), explainer.tokenize(OTHER)
    _, _, source_attn = hf_run(hf_eager, other_ids)
    original = modeling_gpt2.eager_attention_forward

    def patched(module, query, key, value, attention_mask, **kwargs):
        _, weights = original(module, query, key, value, attention_mask, **kwargs)
        if module.layer_idx == layer:
            weights = weights.clone()
            weights[0, head, position] = source_attn[layer][head, position]
        out = torch.matmul(weights, value).transpose(1, 2)
        return out, weights

    monkeypatch.setattr(modeling_gpt2, "eager_attention_forward", patched)
    logits, hidden, _ = hf_run(hf_eager, ids)
    monkeypatch.undo()
    run = ours(explainer, CLEAN, Intervention(f"blocks.{layer}.attn.hook_pattern", "patch", head=head, position=position,
                                              source_run_id="src"), sources={"src": explainer.analyze(OTHER)})
    assert_same(run, logits, hidden, layer)


@pytest.mark.parametrize("source_text", ["When Mary and John", "When Mary and John went to the store, Mary gave a drink to Bob and then"])
def test_a_patch_at_one_position_reads_a_source_of_another_length(explainer, hf_eager, source_text):
    """A patch that names its position needs only that position in the source: a generation's
    run is longer than the source its prompt was patched from."""
    layer, position = 1, 2
    ids, other_ids = explainer.tokenize(CLEAN), explainer.tokenize(source_text)
    assert len(other_ids) != len(ids)
    _, source_hidden, source_attn = hf_run(hf_eager, other_ids)
    logits, hidden = hf_resid_patched(hf_eager, ids, layer, position, source_hidden[layer][position])
    source = explainer.analyze(source_text)
    c = explainer.config
    intervention = Intervention(f"blocks.{layer}.hook_resid_pre", "patch", position=position, source_run_id="src")
    check([intervention], c.n_layer, c.n_head, 4 * c.n_embd, len(ids), {"src": len(source)})
    assert_same(ours(explainer, CLEAN, intervention, sources={"src": source}), logits, hidden, layer)
    # The pattern's query row, too: its columns past the shorter run are masked (0) in both.
    pattern = Intervention("blocks.0.attn.hook_pattern", "patch", head=1, position=position, source_run_id="src")
    check([pattern], c.n_layer, c.n_head, 4 * c.n_embd, len(ids), {"src": len(source)})
    row = ours(explainer, CLEAN, pattern, sources={"src": source})["blocks.0.attn.hook_pattern"][1, position]
    want = torch.zeros(len(ids))
    want[: position + 1] = source_attn[0][1, position, : position + 1]
    torch.testing.assert_close(row, want, atol=1e-6, rtol=0)


def test_an_edit_applied_to_a_decode_steps_rows_equals_the_same_rows_of_the_whole_pass(explainer):
    """Editor(offset): a tensor holding only positions offset.. (a decode step's newest) gets
    exactly the rows the whole tensor gets; a position outside it leaves it alone."""
    tensor = torch.randn(9, 4, 16)  # [pos, head, d_head]
    for it in (Intervention("blocks.0.attn.hook_z", "zero", head=2), Intervention("blocks.0.attn.hook_z", "zero", position=7),
               Intervention("blocks.0.attn.hook_z", "zero", head=1, position=3)):
        editor = Editor([it])
        whole = editor("blocks.0.attn.hook_z", tensor)
        for offset in range(9):
            part = editor("blocks.0.attn.hook_z", tensor[offset:offset + 1], offset)
            assert torch.equal(whole[offset:offset + 1], tensor[offset:offset + 1] if part is None else part), (it, offset)


def test_interventions_apply_in_order_and_mean_reads_the_values_before_any_edit(explainer):
    hook = "blocks.0.attn.hook_z"
    clean = explainer.analyze(CLEAN)[hook]
    run = ours(explainer, CLEAN, Intervention(hook, "zero", head=1), Intervention(hook, "mean", head=1))
    # The mean is of the unedited values, not of the zeros the first edit wrote.
    torch.testing.assert_close(run[hook][:, 1], clean[:, 1].mean(0).expand_as(clean[:, 1]))
    run = ours(explainer, CLEAN, Intervention(hook, "mean", head=1), Intervention(hook, "zero", head=1, position=2))
    assert torch.count_nonzero(run[hook][2, 1]) == 0 and torch.count_nonzero(run[hook][3, 1]) > 0


def test_patching_a_run_with_itself_changes_nothing(explainer):
    clean = explainer.analyze(CLEAN)
    run = ours(explainer, CLEAN, Intervention("blocks.1.hook_resid_mid", "patch", source_run_id="me"), sources={"me": clean})
    assert torch.equal(run["logits"], clean["logits"])


@pytest.mark.parametrize("intervention, field, code", [
    (Intervention("blocks.9.attn.hook_z", "zero"), "hook", "out_of_range"),
    (Intervention("blocks.0.ln1.hook_out", "zero"), "hook", "unknown_hook"),
    (Intervention("hook_embed", "zero"), "hook", "unknown_hook"),
    (Intervention("blocks.0.attn.hook_z", "double"), "op", "one_of"),
    (Intervention("blocks.0.attn.hook_z", "zero", head=99), "head", "out_of_range"),
    (Intervention("blocks.0.hook_resid_pre", "zero", head=0), "head", "not_applicable"),
    (Intervention("blocks.0.attn.hook_z", "zero", neuron=1), "neuron", "not_applicable"),
    (Intervention("blocks.0.mlp.hook_post", "zero", neuron=10**6), "neuron", "out_of_range"),
    (Intervention("blocks.0.hook_mlp_out", "zero", position=50), "position", "out_of_range"),
    (Intervention("blocks.0.attn.hook_pattern", "zero"), "op", "not_applicable"),
    (Intervention("blocks.0.hook_attn_out", "patch"), "source_run_id", "not_applicable"),
    (Intervention("blocks.0.hook_attn_out", "patch", source_run_id="nope"), "source_run_id", "unknown_source"),
    (Intervention("blocks.0.hook_attn_out", "patch", source_run_id="short"), "source_run_id", "not_applicable"),
    (Intervention("blocks.0.hook_attn_out", "zero", source_run_id="short"), "source_run_id", "not_applicable"),
    (Intervention("blocks.0.hook_attn_out", "patch", position=5, source_run_id="short"), "position", "out_of_range"),
    (Intervention("blocks.01.attn.hook_z", "zero"), "hook", "invalid"),
    (Intervention("blocks.3", "zero"), "hook", "invalid"),
    (Intervention("blocks.", "zero"), "hook", "invalid"),
])
def test_each_wrong_field_is_named(explainer, intervention, field, code):
    c = explainer.config
    with pytest.raises(InterventionError) as caught:
        check([Intervention("blocks.0.attn.hook_z", "zero"), intervention], c.n_layer, c.n_head, c.n_inner or 4 * c.n_embd,
              n_tokens=14, source_lengths={"short": 3})
    assert caught.value.field == f"interventions.1.{field}"
    assert caught.value.code == code
