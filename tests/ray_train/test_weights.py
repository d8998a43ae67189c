"""Per-example weights: every objective's loss is the weighted mean of the examples' terms."""

from __future__ import annotations

import pytest
import torch

from ray_train.model import ModelSpec
from ray_train.models import build_model
from ray_train.objective import Objective
from core.config import TrainConfig

SPEC = ModelSpec(num_items=30, categorical_sizes=(), embedding_dim=8, hidden_layers=(8,))


@pytest.mark.parametrize("loss", ["sampled", "in_batch", "mixed", "full", "pointwise"])
def test_the_loss_is_the_weighted_mean_of_the_example_terms(loss):
    torch.manual_seed(0)
    net = build_model(SPEC)
    history = torch.randint(1, 30, (6, 4), generator=torch.Generator().manual_seed(2))
    inputs = (history, torch.zeros(6, 0, dtype=torch.long), torch.zeros(6, 0, dtype=torch.long),
              torch.zeros(6, 0), torch.zeros(6))
    labels = history[:, 0]
    cfg = TrainConfig(loss=loss, num_negatives=8, frequency_buckets=64)

    def value(weights):  # a fresh objective each time: the same negatives and estimates
        return Objective(cfg, SPEC, "", 0)(net(*inputs), labels, net, weights).item()

    terms = [value(torch.eye(6)[i]) for i in range(6)]  # one example at a time
    weights = torch.tensor([3.0, 0.0, 1.0, 2.5, 0.5, 1.0])
    expected = sum(w * t for w, t in zip(weights.tolist(), terms)) / float(weights.sum())
    assert value(weights) == pytest.approx(expected, rel=1e-5)
    assert value(torch.ones(6)) == pytest.approx(value(None), rel=1e-6)
