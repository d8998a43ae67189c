"""Hard negatives: chosen from a band of the current scores, masked where they are the label."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ray_train.hard_negatives import hard_negative_logits, hard_negatives, pool_band
from ray_train.model import ModelSpec
from ray_train.models import build_model
from ray_train.objective import Objective
from core.config import ConfigError, TrainConfig, config_from_dict
from tests.ray_train.fitting import fit


def _scored_by_index(n: int):
    """Item j scores j for a user vector [1]: rank r of the pool 1 .. n - 1 is item n - 1 - r."""
    vectors, bias = nn.Embedding(n, 1), nn.Embedding(n, 1)
    with torch.no_grad():
        vectors.weight.copy_(torch.arange(n, dtype=torch.float32).unsqueeze(1))
        bias.weight.zero_()
    return vectors, bias


def test_the_band_scales_from_the_corpus_to_the_pool():
    assert pool_band((100, 500), 8192, 400_000) == (2, 11)
    assert pool_band((100, 500), 1000, 1000) == (100, 500)
    assert pool_band((100, 500), 50, 50) == (49, 50)  # a corpus smaller than the band: its tail


def test_hard_negatives_come_from_the_band_of_the_users_scores():
    vectors, bias = _scored_by_index(101)
    user = torch.ones(3, 1)
    chosen = hard_negatives(user, vectors, bias, torch.arange(1, 101), (10, 20), 50, torch.Generator().manual_seed(0))
    assert chosen.shape == (3, 50)
    assert set(chosen.flatten().tolist()) <= set(range(81, 91))  # ranks 10 .. 19: items 90 .. 81
    assert len(set(chosen.flatten().tolist())) > 5


def test_a_hard_negative_equal_to_the_label_is_masked():
    vectors, bias = _scored_by_index(10)
    logits = hard_negative_logits(torch.ones(2, 1), torch.tensor([4, 7]), vectors, bias, torch.tensor([[4, 5], [6, 8]]))
    assert logits[0, 0] == -math.inf and logits[0, 1] == 5 and logits[1].tolist() == [6, 8]


@pytest.mark.parametrize("loss", ["sampled", "in_batch", "mixed"])
def test_training_with_hard_negatives_lowers_the_loss(loss):
    spec = ModelSpec(num_items=60, categorical_sizes=(), embedding_dim=8, hidden_layers=(8,))
    net = build_model(spec)
    cfg = TrainConfig(loss=loss, num_negatives=10, frequency_buckets=256, hard_negatives=4,
                      hard_negative_ranks=(5, 20))
    objective = Objective(cfg, spec, "", 0)
    losses = fit(objective, net, num_items=60, steps=60, lr=0.05)
    assert math.isfinite(losses[-1]) and losses[-1] < 0.7 * losses[0]


def test_hard_negatives_are_refused_where_they_do_not_fit():
    with pytest.raises(ConfigError, match="hard_negatives"):
        config_from_dict({"train": {"hard_negatives": 4, "loss": "full"}})
    with pytest.raises(ConfigError, match="hard_negative_ranks"):
        config_from_dict({"train": {"hard_negative_ranks": [500, 100]}})
