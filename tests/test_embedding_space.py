"""Embedding maths against plain torch on a tiny real checkpoint: nearest neighbours, word
arithmetic, dot products, the PCA map and position similarities equal a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app.runs.tensors import decode
from model.embedding_space import EmbeddingQueryError, EmbeddingSpace

PROMPT = "The king and the queen ate the king's cake"


@pytest.fixture(scope="module")
def space(explainer):
    return EmbeddingSpace.of(explainer.model, explainer.tokenizer)


@pytest.fixture(scope="module")
def W(explainer):
    return explainer.model.transformer.wte.weight.detach().clone()


def direct_nearest(W, vector, k, exclude):
    cos = F.cosine_similarity(W, vector[None, :], dim=-1)
    cos[list(exclude)] = -2
    values, ids = torch.topk(cos, k)
    return ids.tolist(), values


def ids_of(explainer, text):
    return explainer.tokenizer.encode(text)


def test_one_space_per_model(space, explainer):
    assert EmbeddingSpace.of(explainer.model, explainer.tokenizer) is space


def test_neighbours_of_a_token_equal_plain_torch(space, W):
    for token_id in (5822, 3797, 11, 50256):
        found = space.neighbours_of_token(token_id, k=10)
        ids, cos = direct_nearest(W, W[token_id], 10, [token_id])
        assert [n.id for n in found.neighbours] == ids
        np.testing.assert_allclose([n.cosine for n in found.neighbours], cos.numpy(), atol=1e-5)
        assert found.excluded == (token_id,)
        assert token_id not in [n.id for n in found.neighbours]


def test_a_word_reads_with_a_leading_space_unless_quoted(space, explainer, W):
    found = space.neighbours_of_word("king", k=5)
    assert found.terms[0].text == " king" and list(found.terms[0].ids) == ids_of(explainer, " king")
    quoted = space.neighbours_of_word('"king"', k=5)
    assert quoted.terms[0].text == "king" and list(quoted.terms[0].ids) == ids_of(explainer, "king")
    ids, _ = direct_nearest(W, W[ids_of(explainer, "king")[0]], 5, ids_of(explainer, "king"))
    assert [n.id for n in quoted.neighbours] == ids


def test_a_multi_token_word_is_averaged_with_a_note(space, explainer, W):
    found = space.neighbours_of_word("Kubernetes", k=10)
    term_ids = ids_of(explainer, " Kubernetes")
    assert len(term_ids) > 1 and list(found.terms[0].ids) == term_ids
    assert found.notes and "average" in found.notes[0] and str(len(term_ids)) in found.notes[0]
    ids, cos = direct_nearest(W, W[term_ids].mean(0), 10, term_ids)
    assert [n.id for n in found.neighbours] == ids
    np.testing.assert_allclose([n.cosine for n in found.neighbours], cos.numpy(), atol=1e-5)


def test_arithmetic_equals_plain_torch(space, explainer, W):
    found = space.arithmetic("king - man + woman", k=10)
    king, man, woman = (ids_of(explainer, w)[0] for w in (" king", " man", " woman"))
    assert [(t.text, t.sign) for t in found.terms] == [(" king", 1), (" man", -1), (" woman", 1)]
    ids, cos = direct_nearest(W, W[king] - W[man] + W[woman], 10, [king, man, woman])
    assert [n.id for n in found.neighbours] == ids
    np.testing.assert_allclose([n.cosine for n in found.neighbours], cos.numpy(), atol=1e-5)
    assert not {king, man, woman} & {n.id for n in found.neighbours}


def test_the_minus_sign_is_an_operator_too(space):
    assert space.arithmetic("king \u2212 man + woman", k=5) is space.arithmetic("king - man + woman", k=5)


def test_arithmetic_with_multi_token_and_quoted_words(space, explainer, W):
    found = space.arithmetic('-Paris + "T-shirt" + Kubernetes', k=5)
    paris, tshirt, kube = ids_of(explainer, " Paris"), ids_of(explainer, "T-shirt"), ids_of(explainer, " Kubernetes")
    assert [t.sign for t in found.terms] == [-1, 1, 1]
    assert [list(t.ids) for t in found.terms] == [paris, tshirt, kube]
    assert len(found.notes) == sum(len(x) > 1 for x in (paris, tshirt, kube))
    vector = -W[paris].mean(0) + W[tshirt].mean(0) + W[kube].mean(0)
    ids, _ = direct_nearest(W, vector, 5, set(paris + tshirt + kube))
    assert [n.id for n in found.neighbours] == ids


@pytest.mark.parametrize("expression, message", [
    ("", "empty"), ("   ", "empty"), ("king +", "ends with an operator"), ('"king" "man"', "between the words"),
    ("king - - man", "two operators"), ('"king + man', "unclosed"), ("king - king", "zero"), ('""', "empty"),
    (" + ".join(["cat"] * 13), "more than"),
])
def test_bad_expressions_say_why(space, expression, message):
    with pytest.raises(EmbeddingQueryError, match=message) as error:
        space.arithmetic(expression)
    assert error.value.field == "expression"


def test_dot_product_and_cosine_equal_plain_torch(space, explainer, W):
    c = space.compare(space.term("cat"), space.term("dog"))
    a, b = W[ids_of(explainer, " cat")[0]], W[ids_of(explainer, " dog")[0]]
    assert c.dot == pytest.approx(float(a @ b), rel=1e-5, abs=1e-7)
    assert c.cosine == pytest.approx(float(F.cosine_similarity(a, b, dim=0)), abs=1e-6)
    assert c.norm_a == pytest.approx(float(a.norm()), rel=1e-6)
    same = space.compare(space.token(42), space.token(42))
    assert same.cosine == pytest.approx(1.0, abs=1e-6)


def test_results_are_cached(space):
    first = space.arithmetic("cat + dog", k=7)
    hits = space.cache.hits
    assert space.arithmetic("cat  +  dog", k=7) is first  # same tokens, same answer object
    assert space.cache.hits == hits + 1


def test_map_is_the_pca_of_sample_plus_prompt(space, explainer, W):
    prompt_ids = ids_of(explainer, PROMPT)
    found = space.map(prompt_ids, ["queen", "Kubernetes"])
    basis = sorted(set(space.sample_ids()) | set(prompt_ids))
    X = W[basis].double().numpy()
    Xc = X - X.mean(0)
    _, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    np.testing.assert_allclose(found.explained, (S[:3] ** 2) / (S ** 2).sum(), rtol=1e-3)
    by_id = {p.id: p for p in found.points if p.group == "prompt"}
    assert set(by_id) == set(prompt_ids)
    king = ids_of(explainer, " king")[0]
    assert by_id[king].positions == tuple(i for i, t in enumerate(prompt_ids) if t == king)
    # Same coordinates as numpy's projection, up to the sign of each axis.
    sample_points = [p for p in found.points if p.group == "sample"]
    ids = [p.id for p in sample_points[:50]] + list(by_id)
    got = np.array([p.xyz for p in sample_points[:50]] + [by_id[i].xyz for i in by_id])
    expected = (W[ids].double().numpy() - X.mean(0)) @ Vt[:3].T
    signs = np.sign((got * expected).sum(0))
    np.testing.assert_allclose(got, expected * signs, atol=1e-4)
    # Added words: one token placed at its embedding, several at their average.
    words = [p for p in found.points if p.group == "word"]
    assert [w.text for w in words] == [" queen", " Kubernetes"]
    assert words[1].id is None and found.notes and "Kubernetes" in found.notes[0]
    kube = ids_of(explainer, " Kubernetes")
    np.testing.assert_allclose(words[1].xyz, ((W[kube].double().mean(0).numpy() - X.mean(0)) @ Vt[:3].T) * signs, atol=1e-4)
    assert not {p.id for p in found.points if p.group == "sample"} & set(prompt_ids)


def test_a_phrase_is_one_averaged_term(space, explainer):
    found = space.arithmetic("New York - city", k=3)
    assert [t.text for t in found.terms] == [" New York", " city"]
    assert "average" in found.notes[0]


def test_map_sample_is_readable_words(space, explainer):
    sample = space.sample_ids()
    assert len(sample) == 1000
    assert all(explainer.tokenizer.label(i).startswith(" ") and explainer.tokenizer.label(i)[1:].isalpha() for i in sample)


def test_position_cosines_equal_plain_torch(space, explainer):
    W_pos, cos = space.positions(7)
    wpe = explainer.model.transformer.wpe.weight[:7]
    torch.testing.assert_close(W_pos, wpe)
    torch.testing.assert_close(cos, F.cosine_similarity(wpe[:, None, :], wpe[None, :, :], dim=-1), atol=1e-5, rtol=0)


# --- over HTTP -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_id(client):
    return client.post("/api/analyze", json={"text": PROMPT}).json()["run_id"]


def test_api_neighbours(client, space):
    body = client.get("/api/embedding-space/neighbours", params={"word": "king", "k": 10}).json()
    expected = space.neighbours_of_word("king", 10)
    assert [n["id"] for n in body["neighbours"]] == [n.id for n in expected.neighbours]
    assert body["terms"][0]["tokens"] == [" king"] and body["excluded"] == [5822]
    by_id = client.get("/api/embedding-space/neighbours", params={"token_id": 5822, "k": 10}).json()
    assert by_id["neighbours"] == body["neighbours"]


def test_api_arithmetic_and_dot(client, space):
    body = client.get("/api/embedding-space/arithmetic", params={"expression": "king - man + woman"}).json()
    assert [n["id"] for n in body["neighbours"]] == [n.id for n in space.arithmetic("king - man + woman").neighbours]
    assert len(body["neighbours"]) == 10
    dot = client.get("/api/embedding-space/dot", params={"a": "cat", "b_id": 3290}).json()
    c = space.compare(space.term("cat"), space.token(3290))
    assert dot["dot"] == pytest.approx(c.dot) and dot["cosine"] == pytest.approx(c.cosine)
    assert dot["b"]["text"] == " dog"


def test_api_map_and_positions(client, run_id, explainer):
    body = client.get(f"/api/runs/{run_id}/embedding-space/map", params={"word": ["queen", "Kubernetes"]}).json()
    assert body["d_model"] == 64 and len(body["explained"]) == 3
    groups = {p["group"] for p in body["points"]}
    assert groups == {"sample", "prompt", "word"}
    assert {p["id"] for p in body["points"] if p["group"] == "prompt"} == set(ids_of(explainer, PROMPT))
    assert body["notes"] and body["terms"][1]["note"]
    positions = client.get(f"/api/runs/{run_id}/embedding-space/positions").json()["tensors"]
    n = len(ids_of(explainer, PROMPT))
    wpe = explainer.model.transformer.wpe.weight[:n]
    np.testing.assert_allclose(decode(positions["hook_pos_embed"]), wpe.numpy(), atol=1e-7)
    cos = decode(positions["position_cosine"])
    assert cos.shape == (n, n)
    np.testing.assert_allclose(np.diag(cos), 1, atol=1e-5)


@pytest.mark.parametrize("url, params, field", [
    ("/api/embedding-space/neighbours", {}, "word"),
    ("/api/embedding-space/neighbours", {"word": "   "}, "word"),
    ("/api/embedding-space/neighbours", {"word": "x" * 101}, "word"),
    ("/api/embedding-space/neighbours", {"word": "cat", "token_id": 3}, "word"),
    ("/api/embedding-space/neighbours", {"token_id": 50257}, "token_id"),
    ("/api/embedding-space/neighbours", {"token_id": -1}, "token_id"),
    ("/api/embedding-space/neighbours", {"word": "cat", "k": 0}, "k"),
    ("/api/embedding-space/neighbours", {"word": "cat", "k": 101}, "k"),
    ("/api/embedding-space/arithmetic", {}, "expression"),
    ("/api/embedding-space/arithmetic", {"expression": "king +"}, "expression"),
    ("/api/embedding-space/arithmetic", {"expression": "king - king"}, "expression"),
    ("/api/embedding-space/dot", {"a": "cat"}, "b"),
    ("/api/embedding-space/dot", {"a": "", "b": "dog"}, "a"),
    ("/api/embedding-space/dot", {"a": "cat", "b_id": 99999}, "b_id"),
])
def test_api_bad_input_is_422_naming_the_field(client, url, params, field):
    response = client.get(url, params=params)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field
    assert response.json()["detail"].startswith(f"{field}:")


def test_api_map_bad_words(client, run_id):
    response = client.get(f"/api/runs/{run_id}/embedding-space/map", params={"word": ["cat", " "]})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "word[1]"
    response = client.get(f"/api/runs/{run_id}/embedding-space/map", params={"word": ["cat"] * 21})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "word"
    assert client.get("/api/runs/nope/embedding-space/map").status_code == 404
    assert client.get("/api/runs/nope/embedding-space/positions").status_code == 404
