"""Continuous batching of generation: every sequence stepped in the batch gives exactly what the
same request gives alone (model/generation.py, the single-sequence path with its own KV cache):
the same tokens, and the same distribution at every step (atol 1e-5 on probabilities), whatever
else is in the batch, whoever joins or leaves between steps."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
import torch

from app.main import create_app
from app.serving.settings import Settings
from model.batching import DecodeBatch, Request
from model.engine import UNEMBED_AS_COLUMNS, LayerCache, unembed_rows as unembed
from model.generation import generate
from model.interventions import Editor, Intervention

from .waiting import until

# Different prompts (lengths 1..20 tokens), lengths, temperatures, top-k/p and seeds.
CASES = [
    ("The cat sat on the mat", 12, 1.0, None, None, 1),
    ("Hello", 8, 0.7, 5, None, 2),
    ("A much longer prompt, with several words and commas in it, to be padded against", 10, 1.3, None, 0.9, 3),
    ("x", 6, 0.0, None, None, None),  # greedy
    ("When Mary and John went to the store, John gave a drink to", 14, 0.9, 40, 0.95, 5),
    ("1, 2, 3, 4,", 5, 2.0, None, None, 6),
    ("Q: what is a token?\nA:", 9, 0.5, 3, None, 7),
    ("日本語のテキスト", 7, 1.0, None, 0.5, 8),  # byte tokens: pieces held back until complete
]


def requests(explainer) -> list[Request]:
    return [Request(tuple(explainer.tokenize(text)), n, t, k, p, seed) for text, n, t, k, p, seed in CASES]


def alone(explainer, request: Request):
    return list(generate(explainer, list(request.ids), request.max_new_tokens, request.temperature,
                         request.top_k, request.top_p, request.seed, request.editor))


def assert_same(batched, single, what) -> None:
    assert [s.token.id for s in batched] == [s.token.id for s in single], what
    assert [s.token.text for s in batched] == [s.token.text for s in single], what
    for a, b in zip(batched, single):
        pa, pb = a.dist.probs.numpy(), b.dist.probs.numpy()
        # Top-p keeps tokens down to a cutoff. In the tiny model's flat distributions two tokens can
        # tie at the cutoff to 4e-13 (below float32 noise between a batch and a lone pass), and
        # then either may be the one kept: allow that swap, and only that (one token in, one out,
        # both at the cutoff's probability).
        flipped = (pa == 0) != (pb == 0)
        if flipped.any():
            edge = min(pa[pa > 0].min(), pb[pb > 0].min())
            assert flipped.sum() == 2 and (pa[flipped] > 0).sum() == 1, what
            np.testing.assert_allclose(np.maximum(pa, pb)[flipped], edge, rtol=1e-4, err_msg=what)
            pa, pb = pa[~flipped], pb[~flipped]
        np.testing.assert_allclose(pa, pb, rtol=0, atol=1e-5, err_msg=what)
        # The tiny model's distributions are flat (p ~ 2e-5 over 50,257 tokens), where 1e-5 is half
        # of a probability: each kept token's probability must also agree to 1e-4 of itself.
        np.testing.assert_allclose(pa, pb, rtol=1e-4, atol=1e-12, err_msg=what)
        assert a.prob == pytest.approx(b.prob, abs=1e-5)


# ROOM 1: the cache's buffers are full at every step and grow each time, across joins and leaves.
@pytest.mark.parametrize("room", [LayerCache.ROOM, 1])
def test_a_batch_with_sequences_joining_and_leaving_between_steps_equals_each_alone(explainer, monkeypatch, room):
    monkeypatch.setattr(LayerCache, "ROOM", room)
    reqs = requests(explainer)
    batch = DecodeBatch(explainer)
    got: dict[int, list] = {i: [] for i in range(len(reqs))}
    owner: dict[int, int] = {}
    waiting = list(range(len(reqs)))
    sizes = []
    step = 0
    while waiting or len(batch):
        # One joins every other step: the batch holds sequences at different lengths and steps.
        if waiting and step % 2 == 0:
            i = waiting.pop(0)
            sequence, first = batch.prefill(reqs[i])
            owner[id(sequence)] = i
            got[i].append(first)
            batch.join(sequence)
        sizes.append(len(batch))
        for sequence, s in batch.step():
            got[owner[id(sequence)]].append(s)
        for sequence in [s for s in batch.members if s.finished]:
            batch.leave(sequence)  # leaving mid-way: the others go on from their own rows
        step += 1
    assert max(sizes) >= 5, sizes  # the test did batch
    for i, request in enumerate(reqs):
        assert_same(got[i], alone(explainer, request), CASES[i])


def test_a_sequence_dropped_mid_way_changes_nothing_for_the_others(explainer):
    reqs = requests(explainer)[:4]
    batch = DecodeBatch(explainer)
    got = {i: [] for i in range(4)}
    sequences = []
    for i, request in enumerate(reqs):
        sequence, first = batch.prefill(request)
        got[i].append(first)
        batch.join(sequence)
        sequences.append(sequence)
    for step in range(5):
        if step == 2:
            batch.leave(sequences[2])  # its client left
        for sequence, s in batch.step():
            got[sequences.index(sequence)].append(s)
        for sequence in [s for s in batch.members if s.finished]:
            batch.leave(sequence)
    for i in (0, 1, 3):
        single = alone(explainer, reqs[i])
        assert_same(got[i], single[: len(got[i])], CASES[i])
    assert len(got[2]) == 3


def test_a_layer_cache_grows_in_place_and_counts_a_step_only_when_committed(explainer):
    """A step's columns are written after the cache but counted only by commit: a step that
    failed part-way is written over by the next. An update longer than ROOM must fit, and the
    rows selected (a member leaving) go on growing from their own columns."""
    keys = torch.arange(2 * 1 * 3 * 2, dtype=torch.float32).reshape(2, 1, 3, 2)
    layer = LayerCache(keys, -keys)
    layer.extended(torch.full((2, 1, 1, 2), 9.0), torch.full((2, 1, 1, 2), -9.0))  # a failed step: not committed
    layer = layer.select(torch.tensor([1]), 0)
    one = torch.full((1, 1, 1, 2), 5.0)
    got_keys, got_values = layer.extended(one, -one)
    layer.commit(1)
    want = torch.cat([keys[1:], one], dim=2)
    assert torch.equal(got_keys, want) and torch.equal(got_values, -want)
    assert torch.equal(layer.keys, want) and torch.equal(layer.values, -want)
    many = torch.full((1, 1, LayerCache.ROOM + 5, 2), 7.0)
    got_keys, got_values = layer.extended(many, -many)
    layer.commit(many.shape[2])
    want = torch.cat([want, many], dim=2)
    assert torch.equal(got_keys, want) and torch.equal(got_values, -want)
    assert torch.equal(layer.keys, want)


def test_the_unembedding_equals_the_plain_product_for_every_batch_size(explainer):
    weight = explainer.model.lm_head.weight.detach()  # [d_vocab, d_model]
    for rows in (1, 2, 3, UNEMBED_AS_COLUMNS, UNEMBED_AS_COLUMNS + 1, 16):
        hidden = torch.randn(rows, weight.shape[1], generator=torch.Generator().manual_seed(rows))
        want = hidden.double() @ weight.double().T
        got = unembed(hidden, weight)
        assert got.shape == (rows, weight.shape[0]) and got.dtype == torch.float32
        np.testing.assert_allclose(got.double().numpy(), want.numpy(), rtol=1e-5, atol=1e-5, err_msg=str(rows))


def test_a_prompt_at_the_context_limit_has_nothing_to_generate(explainer):
    request = Request(tuple([11] * explainer.n_ctx), 5, 1.0)
    sequence, first = DecodeBatch(explainer).prefill(request)
    assert first is None and sequence.finished


def sse_steps(body: str) -> tuple[list[dict], dict]:
    """The token events and the done event of a /api/generate stream."""
    steps, done = [], None
    for block in body.strip().split("\n\n"):
        lines = block.split("\n")
        data = json.loads(lines[-1][len("data: "):])
        if lines[0] == "event: done":
            done = data
        else:
            assert not lines[0].startswith("event:"), block
            steps.append(data)
    return steps, done


def test_eight_concurrent_generations_over_http_equal_each_alone(checkpoint_dir, explainer, monkeypatch):
    """Eight streams at once through the server, half of them joining after the first have
    stepped: each stream's tokens and its top distribution at every step are what the same
    request gives alone."""
    sizes: list[int] = []
    real_step = DecodeBatch.step

    def counted(self):
        sizes.append(len(self))  # observed, not changed: the numbers come from the real step
        return real_step(self)

    monkeypatch.setattr(DecodeBatch, "step", counted)
    bodies = [{"text": text, "max_new_tokens": n, "temperature": t, "top_k": k, "top_p": p, "seed": seed}
              for text, n, t, k, p, seed in CASES]
    for i, body in enumerate(bodies):  # every other one with a head switched off: a mixed batch
        if i % 2:
            body["interventions"] = [{"hook": "blocks.1.attn.hook_z", "op": "zero", "head": i % 4}]

    async def scenario():
        app = create_app(Settings(model=checkpoint_dir), explainer=explainer)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=120) as client:
                async def run(body):
                    response = await client.post("/api/generate", json={k: v for k, v in body.items() if v is not None})
                    assert response.status_code == 200, response.text
                    return sse_steps(response.text)

                alone_answers = [await run(body) for body in bodies]
                sizes.clear()
                first = [asyncio.create_task(run(body)) for body in bodies[:4]]
                # The first four are stepping: the rest join mid-way.
                await until(lambda: len(sizes) >= 3, "the first four are stepping")
                later = [asyncio.create_task(run(body)) for body in bodies[4:]]
                together = await asyncio.gather(*first, *later)
                return alone_answers, together

    alone_answers, together = asyncio.run(scenario())
    assert max(sizes) >= 4, sizes  # they were stepped together
    for i, (case, (single, done_single), (batched, done_batched)) in enumerate(zip(CASES, alone_answers, together)):
        assert [s["token"]["id"] for s in batched] == [s["token"]["id"] for s in single], case
        assert done_batched["text"] == done_single["text"]
        for a, b in zip(batched, single):
            # The top 20 by probability (two ids may swap places only on a tie within float error).
            np.testing.assert_allclose([t["prob"] for t in a["top"]], [t["prob"] for t in b["top"]], atol=1e-5)
            assert a["token"]["prob"] == pytest.approx(b["token"]["prob"], abs=1e-5)
        # And alone is the single-sequence path of model/generation.py, not the batch's own answer.
        editor = Editor([Intervention(**it) for it in bodies[i].get("interventions", [])])
        request = Request(tuple(explainer.tokenize(case[0])), *case[1:], editor=editor)
        assert [s["token"]["id"] for s in single] == [s.token.id for s in alone(explainer, request)]
        assert done_batched["ids"] == done_single["ids"] and done_batched["run_id"] == done_single["run_id"]
