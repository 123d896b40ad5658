"""Sampling semantics in model/sampling.py against direct computations."""

from __future__ import annotations

import pytest
import torch

from model.sampling import distribution, sample

LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])


def test_temperature_scales_logits_before_softmax():
    for t in (0.3, 1.0, 2.5):
        dist = distribution(LOGITS, t)
        torch.testing.assert_close(dist.probs, torch.softmax(LOGITS.double() / t, -1))
    assert distribution(LOGITS, 0.3).entropy_bits < distribution(LOGITS, 2.5).entropy_bits


def test_zero_temperature_is_greedy():
    dist = distribution(LOGITS, 0)
    assert dist.top(3) == [(0, 1.0)]
    assert all(sample(dist, seed) == 0 for seed in range(20))


def test_filters_intersect_and_renormalise():
    dist = distribution(LOGITS, 1.0, top_k=4, top_p=0.8)
    p = torch.softmax(LOGITS.double(), -1)
    n = int((torch.cumsum(p, 0) - p < 0.8).sum())  # LOGITS are sorted already
    assert n < 4
    assert [i for i, _ in dist.top(10)] == list(range(n))
    assert dist.probs.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(dist.probs[:n], p[:n] / p[:n].sum())


def test_sampling_follows_the_distribution_and_never_draws_filtered_tokens():
    dist = distribution(LOGITS, 1.0, top_k=3)
    draws = torch.tensor([sample(dist, seed) for seed in range(3000)])
    assert set(draws.tolist()) <= {0, 1, 2}
    freq = torch.bincount(draws, minlength=6).double() / len(draws)
    torch.testing.assert_close(freq[:3], dist.probs[:3], atol=0.03, rtol=0)


def test_same_seed_same_token():
    dist = distribution(torch.randn(50257, generator=torch.Generator().manual_seed(0)), 1.0)
    assert len({sample(dist, 123) for _ in range(5)}) == 1


def test_a_tiny_positive_temperature_is_greedy_not_nan():
    # logits / 5e-324 overflows to inf; softmax of that is nan and sampling then crashed (a 500).
    for t in (5e-324, 1e-310):
        dist = distribution(LOGITS, t)
        assert torch.isfinite(dist.probs).all()
        assert dist.top(1) == [(0, 1.0)]
        assert sample(dist, 0) == 0


def test_top_k_ties_at_the_cut_keep_the_lowest_ids_like_the_page():
    # static/sampling.js orders by logit, ties by id: top-k must keep the same set.
    logits = torch.tensor([0.0, 1.0, 1.0, 1.0, 0.5, 1.0])
    for k, kept in ((1, [1]), (2, [1, 2]), (3, [1, 2, 3]), (5, [1, 2, 3, 4, 5])):
        dist = distribution(logits, 1.0, top_k=k)
        assert torch.nonzero(dist.probs).flatten().tolist() == kept, k


def test_top_p_one_keeps_every_token():
    # "The smallest set whose mass reaches 1" is the whole vocabulary; the cumulative sum can
    # reach 1.0 early by rounding, which must not drop the tail (the page keeps it).
    logits = torch.randn(50257, generator=torch.Generator().manual_seed(0)) * 3
    dist = distribution(logits, 0.7, top_p=1.0)
    assert dist.n_kept == 50257
    torch.testing.assert_close(dist.probs, distribution(logits, 0.7).probs)


def test_entropy_of_a_certain_token_is_plus_zero():
    assert str(distribution(LOGITS, 0).entropy_bits) == "0.0"


def test_candidates_list_only_tokens_with_probability():
    """At a tiny temperature the runners-up underflow to exactly 0: they are not listed."""
    assert distribution(LOGITS, 1e-3).top(5) == [(0, 1.0)]
