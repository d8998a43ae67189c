"""In-batch softmax: streaming frequency estimates and the corrected loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ray_train.in_batch import StreamingFrequency, in_batch_softmax_loss
from ray_train.model import ModelSpec, YouTubeDNN
from ray_train.objective import Objective
from ray_train.sampled_softmax import sampled_logits
from core.config import TrainConfig
from tests.ray_train.fitting import fit


def test_an_item_seen_every_k_steps_is_estimated_at_one_over_k():
    estimator = StreamingFrequency(buckets=1 << 12, hashes=2, alpha=0.05, seed=0)
    every = {11: 1, 22: 4, 33: 10, 44: 25}
    for step in range(1, 2001):
        estimator.update(torch.tensor([item for item, k in every.items() if step % k == 0] + [999]), step)
    p = estimator.log_p(torch.tensor(list(every))).exp()
    assert p.tolist() == pytest.approx([1 / k for k in every.values()], rel=0.05)


def test_a_collision_under_one_hash_is_outvoted_by_the_largest_gap():
    # 2 buckets: under any hash function the rare item shares a bucket with a frequent one
    # half the time; with several functions the largest gap is the rare item's own
    rare, frequent = 5, list(range(100, 140))
    one = StreamingFrequency(buckets=2, hashes=1, alpha=0.05, seed=3)
    many = StreamingFrequency(buckets=64, hashes=4, alpha=0.05, seed=3)
    for step in range(1, 1001):
        items = torch.tensor(frequent + ([rare] if step % 20 == 0 else []))
        one.update(items, step)
        many.update(items, step)
    assert one.log_p(torch.tensor([rare])).exp().item() > 0.5  # swamped by its bucket mates
    assert many.log_p(torch.tensor([rare])).exp().item() == pytest.approx(1 / 20, rel=0.1)


def _tables(n: int, d: int):
    torch.manual_seed(0)
    vectors, bias = nn.Embedding(n, d), nn.Embedding(n, 1)
    nn.init.normal_(bias.weight, std=0.5)
    return vectors, bias


def test_in_batch_loss_corrects_by_log_p_and_masks_repeated_labels():
    vectors, bias = _tables(10, 4)
    user = torch.randn(3, 4)
    labels = torch.tensor([2, 7, 2])
    log_p = torch.tensor([-1.0, -3.0, -1.0])
    got = in_batch_softmax_loss(user, labels, vectors, bias, log_p)
    scores = user @ vectors.weight[labels].T + bias.weight[labels, 0] - log_p
    expected = 0.0
    for i in range(3):
        # example 0 and 2 share item 2: the other copy is not a negative
        keep = [j for j in range(3) if j == i or labels[j] != labels[i]]
        expected += -scores[i, i] + torch.logsumexp(scores[i, keep], 0)
    assert got.item() == pytest.approx(expected.item() / 3, rel=1e-5)


def test_mixed_adds_the_sampled_negatives_to_the_softmax():
    vectors, bias = _tables(10, 4)
    user, labels, log_p = torch.randn(2, 4), torch.tensor([1, 4]), torch.tensor([-2.0, -1.0])
    negatives, log_q = torch.tensor([4, 8, 9]), torch.log(torch.tensor([0.2, 0.1, 0.1]))
    extra = sampled_logits(user, labels, vectors, bias, negatives, log_q)
    assert extra[1, 0] == float("-inf")  # item 4 is example 1's own label
    assert extra[0, 1].item() == pytest.approx(
        (user[0] @ vectors.weight[8] + bias.weight[8, 0] - math.log(3 * 0.1)).item(), rel=1e-5
    )
    mixed = in_batch_softmax_loss(user, labels, vectors, bias, log_p, extra)
    in_batch = user @ vectors.weight[labels].T + bias.weight[labels, 0] - log_p
    logits = torch.cat([in_batch, extra], dim=1)
    assert mixed.item() == pytest.approx(F.cross_entropy(logits, torch.arange(2)).item(), rel=1e-5)


@pytest.mark.parametrize("loss", ["sampled", "in_batch", "mixed", "full"])
def test_every_objective_trains_the_softmax_toward_the_labels(loss):
    spec = ModelSpec(num_items=30, categorical_sizes=(), embedding_dim=8, hidden_layers=(8,))
    net = YouTubeDNN(spec)
    cfg = TrainConfig(loss=loss, num_negatives=10, frequency_buckets=256)
    objective = Objective(cfg, spec, item_sampling_path="", rank=0)
    losses = fit(objective, net, num_items=30, steps=60, lr=0.05)
    assert math.isfinite(losses[-1]) and losses[-1] < 0.7 * losses[0]


def test_without_logq_correction_the_in_batch_logits_are_raw_scores():
    spec = ModelSpec(num_items=30, categorical_sizes=(), embedding_dim=8, hidden_layers=(8,))
    net = YouTubeDNN(spec)
    user, labels = torch.randn(4, 8), torch.tensor([1, 1, 2, 3])

    def last_loss(cfg: TrainConfig) -> float:
        objective = Objective(cfg, spec, "", 0)
        for _ in range(3):  # items 1 and 2 every step: item 3, first seen later, looks rarer
            objective(user, torch.tensor([1, 2, 1, 2]), net)
        return objective(user, labels, net).item()

    raw = last_loss(TrainConfig(loss="in_batch", logq_correction=False))
    logits = user @ net.item_output(labels).T + net.item_bias(labels).squeeze(-1)
    logits = logits.masked_fill((labels[None] == labels[:, None]) & ~torch.eye(4, dtype=torch.bool), float("-inf"))
    assert raw == pytest.approx(F.cross_entropy(logits, torch.arange(4)).item(), rel=1e-5)
    assert last_loss(TrainConfig(loss="in_batch")) != pytest.approx(raw, rel=1e-3)
