"""Samplers and the sampled softmax: probabilities, logQ correction, accidental hits."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ray_train.sampled_softmax import (
    LogUniformSampler,
    UniformSampler,
    UnigramSampler,
    accidental_hits,
    full_softmax_loss,
    sampled_softmax_loss,
)


def test_log_uniform_q_sums_to_one_and_matches_draws():
    sampler = LogUniformSampler(num_items=101)  # ids 1 .. 100
    ids = torch.arange(1, 101)
    q = sampler.log_q(ids).double().exp()
    assert math.isclose(float(q.sum()), 1.0, rel_tol=1e-5)
    draws = sampler.sample(200_000, torch.Generator().manual_seed(0))
    assert draws.min() >= 1 and draws.max() <= 100
    empirical = torch.bincount(draws, minlength=101)[1:].double() / len(draws)
    assert torch.allclose(empirical[:5], q[:5], atol=0.005)


def test_uniform_sampler_draws_every_item_alike():
    sampler = UniformSampler(num_items=11)  # ids 1 .. 10
    draws = sampler.sample(50_000, torch.Generator().manual_seed(0))
    assert draws.min() == 1 and draws.max() == 10
    assert torch.allclose(torch.bincount(draws, minlength=11)[1:].double() / len(draws), torch.full((10,), 0.1, dtype=torch.float64),
                          atol=0.01)
    assert math.isclose(float(sampler.log_q(torch.tensor([3, 9])).exp().sum()), 0.2, rel_tol=1e-6)


def test_unigram_sampler_draws_from_the_table():
    table = np.array([0.3, 0.5, 0.3, 0.2, 0.0])  # index 0 is padding: never drawn
    sampler = UnigramSampler(table)
    assert np.allclose(sampler.probs.numpy(), [0.0, 0.5, 0.3, 0.2, 0.0])
    draws = sampler.sample(100_000, torch.Generator().manual_seed(1))
    assert set(draws.unique().tolist()) == {1, 2, 3}
    assert abs(float((draws == 1).double().mean()) - 0.5) < 0.01
    assert torch.allclose(sampler.log_q(torch.tensor([2])), torch.tensor([math.log(0.3)]))


def _table(n: int, d: int, seed: int):
    torch.manual_seed(seed)
    vectors, bias = nn.Embedding(n, d), nn.Embedding(n, 1)
    nn.init.normal_(bias.weight, std=0.5)
    return vectors, bias


def test_logq_correction_matches_full_softmax():
    """With a uniform proposal over all n items, the corrected sampled loss with every item as
    a negative except the label reproduces the full softmax exactly."""
    n, d = 50, 8
    vectors, bias = _table(n, d, 0)
    user = torch.randn(4, d)
    labels = torch.tensor([3, 7, 7, 49])
    negatives = torch.arange(1, n)  # every item once
    log_q = torch.full((n - 1,), -math.log(n - 1))
    sampled = sampled_softmax_loss(user, labels, vectors, bias, negatives, log_q[labels - 1], log_q)
    assert torch.allclose(sampled, full_softmax_loss(user, labels, (vectors.weight, bias.weight.squeeze(-1))), atol=1e-5)


def test_the_exact_softmax_in_chunks_has_cross_entropys_loss_and_gradients():
    n, d = 50, 8
    torch.manual_seed(3)
    user, vectors, bias = torch.randn(5, d), torch.randn(n, d), torch.randn(n)
    labels, weights = torch.tensor([1, 7, 7, 49, 23]), torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0])

    def gradients(loss_of):
        leaves = [t.clone().requires_grad_() for t in (user, vectors, bias)]
        loss = loss_of(*leaves)
        loss.backward()
        return loss.detach(), [t.grad for t in leaves]

    def straightforward(u, v, b):
        losses = F.cross_entropy(u @ v[1:].T + b[1:], labels - 1, reduction="none")
        return (losses * weights).sum() / weights.sum()

    expected, expected_grads = gradients(straightforward)
    for chunk_scores in (5 * 3, 5 * 7, 1 << 20):  # chunks of 3 and 7 items (the last one short), one chunk
        loss, grads = gradients(lambda u, v, b: full_softmax_loss(u, labels, (v, b), weights, chunk_scores))
        assert torch.allclose(loss, expected, atol=1e-5)
        for got, want in zip(grads, expected_grads):
            assert torch.allclose(got, want, atol=1e-5)
        assert not grads[1][0].any() and not grads[2][0].any()  # padding row 0 is never scored
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, _ = gradients(lambda u, v, b: full_softmax_loss(u, labels, (v, b), weights, 5 * 3))
    assert torch.allclose(low, expected, atol=0.05)


def test_accidental_hits_are_not_counted_as_negatives():
    n, d = 10, 4
    vectors, bias = _table(n, d, 1)
    user = torch.randn(2, d)
    labels = torch.tensor([2, 5])
    log_q = torch.zeros(3)
    with_hit = sampled_softmax_loss(user, labels, vectors, bias, torch.tensor([2, 8, 9]), log_q[:2], log_q)
    without = sampled_softmax_loss(user[1:], labels[1:], vectors, bias, torch.tensor([2, 8, 9]), log_q[:1], log_q)
    # for user 0 the negative 2 is its own label: masked, so its loss uses only 8 and 9
    pos = (user[0] * vectors.weight[2]).sum() + bias.weight[2, 0]
    neg = user[0] @ vectors.weight[[8, 9]].T + bias.weight[[8, 9], 0]
    loss0 = -pos + torch.logsumexp(torch.cat([pos.view(1), neg]), 0)
    assert torch.allclose(with_hit, (loss0 + without) / 2, atol=1e-5)


def test_accidental_hits_are_every_copy_of_each_label_among_the_negatives():
    labels = torch.tensor([4, 9, 4, 1])
    negatives = torch.tensor([4, 7, 4, 1, 9, 4, 3])  # 4 three times, drawn with replacement
    rows, columns = accidental_hits(labels, negatives)
    found = sorted(zip(rows.tolist(), columns.tolist()))
    assert found == [(0, 0), (0, 2), (0, 5), (1, 4), (2, 0), (2, 2), (2, 5), (3, 3)]


def test_masked_hits_give_the_gradients_of_an_explicitly_masked_softmax():
    n, d = 12, 4
    vectors, bias = _table(n, d, 2)
    user = torch.randn(6, d, requires_grad=True)
    labels = torch.tensor([2, 5, 2, 11, 7, 3])
    negatives = torch.tensor([2, 2, 8, 5, 11, 1, 2])
    log_q = torch.randn(n)
    loss = sampled_softmax_loss(user, labels, vectors, bias, negatives, log_q[labels], log_q[negatives])
    grads = torch.autograd.grad(loss, [user, vectors.weight, bias.weight])

    # the reference: the [B, S] comparison and an out-of-place masked_fill, autograd throughout
    pos = (user * vectors(labels)).sum(-1) + bias(labels).squeeze(-1) - (log_q[labels] + math.log(7))
    neg = user @ vectors(negatives).T + bias(negatives).squeeze(-1) - (log_q[negatives] + math.log(7))
    neg = neg.masked_fill(negatives.unsqueeze(0) == labels.unsqueeze(1), float("-inf"))
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    reference = torch.nn.functional.cross_entropy(logits, torch.zeros_like(labels))
    expected = torch.autograd.grad(reference, [user, vectors.weight, bias.weight])
    assert torch.allclose(loss, reference)
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, atol=1e-6)


def test_loss_with_weights_extra_logits_and_large_logits_is_weighted_cross_entropy():
    n, d = 12, 4
    vectors, bias = _table(n, d, 3)
    with torch.no_grad():
        vectors.weight.mul_(300.0)  # logits in the thousands: exp overflows without the max shift
    user = torch.randn(5, d, requires_grad=True)
    labels = torch.tensor([4, 1, 9, 4, 6])
    negatives = torch.tensor([4, 3, 10, 7])
    log_q = torch.randn(n)
    extra = torch.randn(5, 2, requires_grad=True)
    weights = torch.tensor([1.0, 0.5, 2.0, 0.0, 3.0])
    loss = sampled_softmax_loss(user, labels, vectors, bias, negatives, log_q[labels], log_q[negatives], weights,
                                extra)
    grads = torch.autograd.grad(loss, [user, vectors.weight, extra])

    pos = (user * vectors(labels)).sum(-1) + bias(labels).squeeze(-1) - (log_q[labels] + math.log(4))
    neg = user @ vectors(negatives).T + bias(negatives).squeeze(-1) - (log_q[negatives] + math.log(4))
    neg = neg.masked_fill(negatives.unsqueeze(0) == labels.unsqueeze(1), float("-inf"))
    per_example = torch.nn.functional.cross_entropy(torch.cat([pos.unsqueeze(1), neg, extra], dim=1),
                                                    torch.zeros_like(labels), reduction="none")
    reference = (per_example * weights).sum() / weights.sum()
    expected = torch.autograd.grad(reference, [user, vectors.weight, extra])
    assert torch.isfinite(loss) and torch.allclose(loss, reference, rtol=1e-5)
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)
