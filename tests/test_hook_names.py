"""One hook-name grammar: a name is accepted only in its canonical form (blocks.L.<suffix>, L in
ASCII decimal with no leading zero and in range), everywhere a request can name a hook; any
other spelling is a 422 naming the field, never a 500 and never an experiment claimed but not
done. Property-based: mutations of valid names (digits of other scripts, leading zeros, spaces,
case, missing or extra parts, layers out of range)."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings, strategies as st

from app.main import create_app
from app.serving.settings import Settings
from model.hooks import GLOBAL_HOOKS, LAYER_HOOKS, HookNameError, hook_name, parse_hook
from model.interventions import EDITABLE

from .test_api import sse_events

N_LAYERS = 2  # tests/conftest.py's tiny model
PROMPT = "The quick brown fox jumps over the lazy dog"
OTHER_DIGITS = ["０", "１", "٣", "१", "১", "๑", "𝟙", "¹", "①"]  # fullwidth, Arabic-Indic, Devanagari, Bengali, Thai, math, superscript, circled


def mutations() -> st.SearchStrategy[str]:
    """Valid names and what a careless or mischievous client makes of them."""
    suffix = st.sampled_from(LAYER_HOOKS)
    layer = st.integers(0, N_LAYERS - 1)
    canonical = st.builds(lambda l, s: f"blocks.{l}.{s}", layer, suffix)
    return st.one_of(
        canonical,
        st.builds(lambda l, s, z: f"blocks.{'0' * z}{l}.{s}", layer, suffix, st.integers(1, 3)),  # leading zeros
        st.builds(lambda l, s, d: f"blocks.{str(l).replace(str(l)[0], d)}.{s}", layer, suffix, st.sampled_from(OTHER_DIGITS)),
        st.builds(lambda n, pad: f"{pad}{n}" if len(pad) % 2 else f"{n}{pad}", canonical, st.sampled_from([" ", "\t", "\n", "\u00a0", "\u200b"])),
        st.builds(lambda n: n.replace(".", " ", 1), canonical),
        st.builds(lambda n: n.upper(), canonical),
        st.builds(lambda n: n[0].upper() + n[1:], canonical),
        st.builds(lambda l: f"blocks.{l}", layer),  # missing the suffix
        st.just("blocks."), st.just("blocks"), st.just(""), st.just("."),
        st.builds(lambda n: n + ".", canonical),
        st.builds(lambda n: n.replace("blocks.", "blocks..", 1), canonical),
        st.builds(lambda n, extra: n + extra, canonical, st.sampled_from([".hook_z", "_", ".0"])),
        st.builds(lambda l, s: f"blocks.{l}.{s}", st.integers(N_LAYERS, 10**7), suffix),  # out of range
        st.builds(lambda l, s: f"blocks.{l}.{s}", st.integers(-3, -1), suffix),
        st.builds(lambda l, s: f"blocks.{l}.{s}", st.sampled_from(["1.0", "+1", "0x1", "1e0", "1_0", "½"]), suffix),
        st.builds(lambda s: f"blocks.0.{s}", st.sampled_from(["attn.hook_Z", "hook_z", "attn.z", "mlp.hook_post ", "attn..hook_z"])),
        st.sampled_from(GLOBAL_HOOKS),
        st.text(max_size=30),
    )


def is_canonical_editable(name: str) -> bool:
    """Independently of model/hooks.py: the canonical spelling, by construction."""
    for layer in range(N_LAYERS):
        for suffix in EDITABLE:
            if name == "blocks." + str(layer) + "." + suffix:
                return True
    return False


def test_the_grammar_builds_and_parses_only_canonical_names():
    assert hook_name("attn.hook_q", 3) == "blocks.3.attn.hook_q" and parse_hook("blocks.3.attn.hook_q") == (3, "attn.hook_q")
    assert parse_hook("blocks.10.hook_resid_pre", n_layers=12) == (10, "hook_resid_pre")
    assert parse_hook("hook_embed") == (None, "hook_embed")
    for bad in ["blocks.03.attn.hook_q", "blocks.３.attn.hook_q", "blocks.३.attn.hook_q", "blocks.3", "blocks.",
                " blocks.3.attn.hook_q", "blocks.3.attn.hook_q ", "Blocks.3.attn.hook_q", "blocks.-1.attn.hook_q"]:
        with pytest.raises(HookNameError):
            parse_hook(bad)
    with pytest.raises(HookNameError):
        parse_hook("blocks.12.attn.hook_q", n_layers=12)
    for bad in [("attn.hook_q", True), ("attn.hook_q", -1), ("attn.hook_nope", 1), ("hook_embed", 0), ("attn.hook_q", None)]:
        with pytest.raises(HookNameError):
            hook_name(*bad)


@pytest.fixture(scope="module")
def client(explainer, checkpoint_dir):
    with TestClient(create_app(Settings(model=checkpoint_dir), explainer=explainer)) as client:
        yield client


@pytest.fixture(scope="module")
def clean(client):
    return client.post("/api/analyze", json={"text": PROMPT, "patterns": "auto"}).json()


def _logits(body: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(body["tensors"]["logits"]["data"]), dtype="<f4")


# What zeroing a whole hook means in transformers' own modules: (module, pre-hook or hook, what it zeroes).
def _independent(hf, layer: int, suffix: str):
    block = hf.transformer.h[layer]
    d = hf.config.n_embd

    def zero_input(module, args, kwargs):
        if args:
            return (torch.zeros_like(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": torch.zeros_like(kwargs["hidden_states"])}

    def zero_output(module, args, output):
        if isinstance(output, tuple):
            return (torch.zeros_like(output[0]), *output[1:])
        return torch.zeros_like(output)

    def zero_v(module, args, output):
        out = output.clone()
        out[..., 2 * d:] = 0
        return out

    return {
        "hook_resid_pre": ("pre", block, zero_input),
        "attn.hook_z": ("pre", block.attn.c_proj, zero_input),
        "mlp.hook_post": ("pre", block.mlp.c_proj, zero_input),
        "hook_attn_out": ("post", block.attn, zero_output),
        "hook_mlp_out": ("post", block.mlp, zero_output),
        "attn.hook_v": ("post", block.attn.c_attn, zero_v),
    }.get(suffix)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=mutations())
def test_analyze_accepts_a_hook_name_only_in_its_canonical_form(client, clean, hf_eager, name):
    check_analyze(client, clean, hf_eager, name)


@pytest.mark.parametrize("name", [f"blocks.{l}.{s}" for l in range(N_LAYERS) for s in EDITABLE])
def test_every_canonical_editable_name_does_its_experiment(client, clean, hf_eager, name):
    check_analyze(client, clean, hf_eager, name)


def check_analyze(client, clean, hf_eager, name):
    response = client.post("/api/analyze", json={"text": PROMPT, "patterns": "auto",
                                                 "interventions": [{"hook": name, "op": "zero"}]})
    assert response.status_code != 500, response.text
    body = response.json()
    if not is_canonical_editable(name):
        assert response.status_code == 422, (name, body)
        assert body["errors"][0]["field"] == "interventions.0.hook", (name, body)
        return
    if name.endswith("attn.hook_pattern"):  # canonical, but the pattern takes 'patch' only
        assert response.status_code == 422 and body["errors"][0]["field"] == "interventions.0.op", body
        return
    assert response.status_code == 200, (name, body)
    assert body["interventions"] == [{"hook": name, "op": "zero"}]  # stored and echoed as written: canonical
    assert body["run_id"] != clean["run_id"]
    layer, suffix = int(name.split(".")[1]), name.split(".", 2)[2]
    independent = _independent(hf_eager, layer, suffix)
    if independent is None:  # no module boundary in transformers: the numbers must at least have moved
        assert not np.array_equal(_logits(body), _logits(clean)), name
        return
    kind, module, hook = independent
    handle = (module.register_forward_pre_hook(hook, with_kwargs=True) if kind == "pre" else module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            want = hf_eager(torch.tensor([[t["id"] for t in clean["tokens"]]])).logits[0, -1].numpy()
    finally:
        handle.remove()
    np.testing.assert_allclose(_logits(body), want, rtol=0, atol=1e-4, err_msg=name)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=mutations())
def test_generate_and_the_induction_probe_refuse_every_other_spelling(client, name):
    spec = {"hook": name, "op": "zero"}
    generated = client.post("/api/generate", json={"text": PROMPT, "max_new_tokens": 1, "temperature": 0, "interventions": [spec]})
    probe = client.post("/api/induction-probe", json={"length": 4, "seed": 1, "interventions": [spec]})
    for response in (generated, probe):
        assert response.status_code != 500, response.text
        if not is_canonical_editable(name) or name.endswith("attn.hook_pattern"):
            assert response.status_code == 422, (name, response.text)
            assert response.json()["errors"][0]["field"].startswith("interventions.0."), response.text
        else:
            assert response.status_code == 200, (name, response.text)
    if generated.status_code == 200:
        kind, done = sse_events(generated.text)[-1]
        assert kind == "done" and done["interventions"] == [spec]
    if probe.status_code == 200:
        assert probe.json()["interventions"] == [spec]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hook=st.one_of(st.sampled_from(["resid_pre", "attn_out", "mlp_out", "z"]), st.text(max_size=12),
                      st.sampled_from(["Z", " z", "z ", "resid_pre\n", "blocks.0.attn.hook_z", "ｚ"])))
def test_patching_takes_only_its_four_names(client, hook):
    body = {"clean": "When John and Mary went", "corrupted": "When Mary and John went", "target_token": 1, "baseline_token": 2,
            "hook": hook}
    response = client.post("/api/patching", json=body)
    assert response.status_code != 500, response.text
    if hook in ("resid_pre", "attn_out", "mlp_out", "z"):
        assert response.status_code == 200, response.text
        assert response.json()["hook"] == hook
    else:
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "hook", response.text


@pytest.mark.parametrize("fields, status", [
    ("attn.hook_q", 200), ("blocks.1.attn.hook_q", 200), ("blocks.01.attn.hook_q", 422), ("blocks.１.attn.hook_q", 422),
    ("blocks.0.attn.hook_q", 422), ("blocks.9.attn.hook_q", 422), ("attn.hook_Q", 422),
])
def test_the_layer_endpoint_reads_hook_names_with_the_same_grammar(client, clean, fields, status):
    response = client.get(f"/api/runs/{clean['run_id']}/layers/1", params={"fields": fields})
    assert response.status_code == status, response.text
    if status == 200:
        assert list(response.json()["tensors"]) == ["blocks.1.attn.hook_q"]
    else:
        assert response.json()["errors"][0]["field"] == "fields"
