"""Generation through the engine, against independent computations.

The oracle is `transformers`' own GPT-2 (eager attention, no cache: the whole sequence again at
every step), with interventions as plain PyTorch pre-hooks on its modules that edit the same
slice: a head's z is the input of attn.c_proj, a neuron the input of mlp.c_proj, a block's
residual stream the input of the block. The next token is drawn from its last logits with the
same sampling rule (model/sampling.py, tested on its own in test_sampling.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.main import create_app
from app.serving.settings import Settings
from fastapi.testclient import TestClient
from model.batching import DecodeBatch, Request
from model.generation import generate
from model.interventions import Editor, Intervention, check
from model.sampling import distribution, sample

from .test_api import sse_events

PROMPTS = ["The cat sat on the mat", "When Mary and John went to the store, John gave a drink to", "日本語", "1, 2, 3,"]


def oracle(hf, ids: list[int], n: int, temperature: float, seed: int | None, pre_hooks=()) -> list[tuple[int, np.ndarray]]:
    """(token, probabilities) at each step: transformers' forward on the whole sequence so far."""
    handles = [module.register_forward_pre_hook(hook, with_kwargs=True) for module, hook in pre_hooks]
    try:
        out, ids = [], list(ids)
        for step in range(n):
            with torch.no_grad():
                logits = hf(torch.tensor([ids])).logits[0, -1]
            dist = distribution(logits, temperature)
            token = sample(dist, None if seed is None else seed + step)
            out.append((token, dist.probs.numpy()))
            ids.append(token)
        return out
    finally:
        for handle in handles:
            handle.remove()


def assert_matches(steps, expected, what):
    assert [s.token.id for s in steps] == [t for t, _ in expected], what
    for step, (_, probs) in zip(steps, expected):
        np.testing.assert_allclose(step.dist.probs.numpy(), probs, rtol=0, atol=1e-5, err_msg=what)
        # The tiny model's probabilities are ~2e-5 each: also within 1e-3 of themselves.
        np.testing.assert_allclose(step.dist.probs.numpy(), probs, rtol=1e-3, atol=1e-9, err_msg=what)


def _edit_input(select, value=None):
    """A pre-hook that sets a slice of the module's first input: to 0, or to `value`."""
    def hook(module, args, kwargs):
        if args:
            x = args[0].clone()
            x[select] = 0 if value is None else value
            return (x, *args[1:]), kwargs
        x = kwargs["hidden_states"].clone()
        x[select] = 0 if value is None else value
        return args, {**kwargs, "hidden_states": x}
    return hook


@pytest.mark.parametrize("temperature, seed", [(0.0, None), (1.6, 11)])
def test_generation_alone_equals_transformers_step_by_step(explainer, hf_eager, temperature, seed):
    for prompt in PROMPTS:
        ids = explainer.tokenize(prompt)
        steps = list(generate(explainer, ids, 6, temperature, seed=seed))
        assert_matches(steps, oracle(hf_eager, ids, 6, temperature, seed), prompt)


def _interventions(explainer, source_ids):
    """name -> (interventions, the oracle's pre-hooks), for the three kinds of edit."""
    model, hf_d = explainer.model, explainer.config.n_embd // explainer.config.n_head
    source_run = explainer.analyze_ids(source_ids)
    head, layer, neuron, position = 2, 1, 17, 1
    return {
        "head_z_zeroed": (
            [Intervention(f"blocks.{layer}.attn.hook_z", "zero", head=head)],
            lambda hf: [(hf.transformer.h[layer].attn.c_proj, _edit_input((..., slice(head * hf_d, (head + 1) * hf_d))))],
            {},
        ),
        "neuron_zeroed": (
            [Intervention("blocks.0.mlp.hook_post", "zero", neuron=neuron)],
            lambda hf: [(hf.transformer.h[0].mlp.c_proj, _edit_input((..., neuron)))],
            {},
        ),
        "resid_patched": (
            [Intervention(f"blocks.{layer}.hook_resid_pre", "patch", position=position, source_run_id="src")],
            lambda hf: [(hf.transformer.h[layer], _edit_input((0, position), source_run[f"blocks.{layer}.hook_resid_pre"][position]))],
            {"src": source_run},
        ),
    }


@pytest.mark.parametrize("kind", ["head_z_zeroed", "neuron_zeroed", "resid_patched"])
@pytest.mark.parametrize("temperature, seed", [(0.0, None), (1.5, 3)])
def test_generation_with_interventions_equals_transformers_with_pre_hooks(explainer, hf_eager, kind, temperature, seed):
    ids = explainer.tokenize("The quick brown fox jumps over")
    interventions, hooks, sources = _interventions(explainer, explainer.tokenize("A slow green dog walks under"))[kind]
    c = explainer.config
    check(interventions, c.n_layer, c.n_head, 4 * c.n_embd, len(ids), {k: len(v) for k, v in sources.items()}, generation=True)
    editor = Editor(interventions, sources)
    steps = list(generate(explainer, ids, 8, temperature, seed=seed, editor=editor))
    assert_matches(steps, oracle(hf_eager, ids, 8, temperature, seed, hooks(hf_eager)), kind)
    # And the intervention did something: the first distribution at T = 1 differs from the clean one.
    edited, clean = (next(generate(explainer, ids, 1, 1.0, editor=e)) for e in (editor, Editor(())))
    assert not np.allclose(clean.dist.probs.numpy(), edited.dist.probs.numpy(), rtol=1e-3, atol=0)


def test_a_batch_mixing_generations_with_and_without_interventions_equals_each_alone(explainer):
    sources_ids = explainer.tokenize("A slow green dog walks under")
    cases = _interventions(explainer, sources_ids)
    requests = []
    for i, prompt in enumerate(["The quick brown fox jumps over", "Hello there", "The quick brown fox jumps over", "x y"]):
        kind = [None, "head_z_zeroed", "resid_patched", "neuron_zeroed"][i]
        editor = Editor(()) if kind is None else Editor(cases[kind][0], cases[kind][2])
        requests.append(Request(tuple(explainer.tokenize(prompt)), 7, 1.5, seed=20 + i, editor=editor))
    batch, got, owner = DecodeBatch(explainer), {}, {}
    for i, request in enumerate(requests):
        sequence, first = batch.prefill(request)
        owner[id(sequence)], got[i] = i, [first]
        batch.join(sequence)
    while len(batch):
        for sequence, step in batch.step():
            got[owner[id(sequence)]].append(step)
        for sequence in [s for s in batch.members if s.finished]:
            batch.leave(sequence)
    for i, request in enumerate(requests):
        alone = list(generate(explainer, list(request.ids), 7, 1.5, seed=request.seed, editor=request.editor))
        assert [s.token.id for s in got[i]] == [s.token.id for s in alone], i
        for a, b in zip(got[i], alone):
            np.testing.assert_allclose(a.dist.probs.numpy(), b.dist.probs.numpy(), rtol=1e-4, atol=1e-9)


@pytest.fixture(scope="module")
def http(explainer, checkpoint_dir):
    with TestClient(create_app(Settings(model=checkpoint_dir), explainer=explainer)) as client:
        yield client


def test_twenty_hot_generations_name_exactly_the_run_they_generated(http, explainer, hf_eager):
    """At a high temperature the tiny model draws byte tokens and pieces that merge when the text
    is tokenized again: the done event's run must be the ids streamed, not the text's."""
    retokenized_differs = 0
    for i in range(20):
        prompt = PROMPTS[i % len(PROMPTS)]
        body = {"text": prompt, "max_new_tokens": 12, "temperature": 1.5 + 0.05 * (i % 4), "seed": 100 + i}
        events = sse_events(http.post("/api/generate", json=body).text)
        kind, done = events[-1]
        assert kind == "done", events[-1]
        streamed = [data["token"]["id"] for _, data in events[:-1]]
        assert done["ids"] == explainer.tokenize(prompt) + streamed
        run = http.get(f"/api/runs/{done['run_id']}").json()
        assert [t["id"] for t in run["tokens"]] == done["ids"]
        analyzed = http.post("/api/analyze", json={"ids": done["ids"], "patterns": "auto"}).json()
        assert analyzed["run_id"] == done["run_id"] and analyzed["text"] == done["text"]
        logits = np.frombuffer(__import__("base64").b64decode(analyzed["tensors"]["logits"]["data"]), dtype="<f4")
        with torch.no_grad():
            want = hf_eager(torch.tensor([done["ids"]])).logits[0, -1].numpy()
        np.testing.assert_allclose(logits, want, rtol=0, atol=1e-4)
        retokenized_differs += explainer.tokenize(done["text"]) != done["ids"]
    assert retokenized_differs > 0  # the case the done event used to get wrong did occur


def test_generate_with_interventions_over_http_streams_the_ablated_tokens(http, explainer, hf_eager):
    ids = explainer.tokenize("The quick brown fox jumps over")
    spec = {"hook": "blocks.1.attn.hook_z", "op": "zero", "head": 2}
    body = {"ids": ids, "max_new_tokens": 6, "temperature": 1.5, "seed": 5, "interventions": [spec]}
    events = sse_events(http.post("/api/generate", json=body).text)
    kind, done = events[-1]
    assert kind == "done" and done["interventions"] == [spec]
    d_head = explainer.config.n_embd // explainer.config.n_head
    hooks = [(hf_eager.transformer.h[1].attn.c_proj, _edit_input((..., slice(2 * d_head, 3 * d_head))))]
    expected = oracle(hf_eager, ids, 6, 1.5, 5, hooks)
    assert [data["token"]["id"] for _, data in events[:-1]] == [t for t, _ in expected]
    # Its run is the ablated one: the same interventions, on exactly these ids.
    run = http.get(f"/api/runs/{done['run_id']}").json()
    assert run["interventions"] == [spec] and [t["id"] for t in run["tokens"]] == done["ids"]


@pytest.mark.parametrize("spec, field, code", [
    ({"hook": "blocks.0.hook_resid_pre", "op": "mean"}, "interventions.0.op", "not_applicable"),
    ({"hook": "blocks.0.hook_resid_pre", "op": "patch", "source_run_id": "x"}, "interventions.0.position", "not_applicable"),
    ({"hook": "blocks.01.attn.hook_z", "op": "zero", "head": 1}, "interventions.0.hook", "invalid"),
    ({"hook": "blocks.0.attn.hook_z", "op": "zero", "position": 6}, "interventions.0.position", "out_of_range"),
])
def test_generate_refuses_what_it_cannot_do_before_streaming(http, spec, field, code):
    body = {"text": "The cat sat on the mat", "max_new_tokens": 3, "interventions": [spec]}  # 6 tokens
    response = http.post("/api/generate", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code and response.json()["errors"][0]["field"] == field


@pytest.mark.parametrize("body, field, code", [
    ({"text": "hi", "ids": [1]}, "ids", "one_of"),
    ({}, "text", "one_of"),
    ({"ids": []}, "ids", "invalid"),
    ({"ids": [1, 50257]}, "ids.1", "out_of_range"),
    ({"ids": [1, -1]}, "ids.1", "invalid"),
    ({"ids": [1, "2"]}, "ids.1", "invalid"),
    ({"ids": [7] * 1025}, "ids", "prompt_too_long"),
])
def test_a_prompt_as_ids_is_checked_field_by_field(http, body, field, code):
    for path in ("/api/analyze", "/api/generate"):
        response = http.post(path, json=body)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["code"] == code and response.json()["errors"][0]["field"] == field, (path, response.json())


def test_the_real_end_of_text_token_goes_in_as_an_id(http, explainer):
    typed = http.post("/api/analyze", json={"text": "a<|endoftext|>", "patterns": "auto"}).json()
    assert 50256 not in [t["id"] for t in typed["tokens"]]  # typed, it is text, as OpenAI's encoder reads it
    real = http.post("/api/analyze", json={"ids": explainer.tokenize("a") + [50256], "patterns": "auto"}).json()
    assert [t["id"] for t in real["tokens"]][-1] == 50256 and real["text"] == "a<|endoftext|>"
    assert real["run_id"] != typed["run_id"]
