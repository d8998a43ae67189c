"""The two-tower and DSSM models: cosine / temperature, shared or own id tables, item
features in the item tower, the pointwise objective."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from ray_train.model import ModelSpec
from ray_train.models import build_model
from ray_train.objective import Objective
from ray_train.sampled_softmax import pointwise_loss
from ray_train.two_tower import load_item_features
from core.config import TrainConfig
from core.contract import ITEM_FEATURES
from tests.ray_train.fitting import fit

SPEC = ModelSpec(num_items=12, categorical_sizes=(3,), embedding_dim=8, hidden_layers=(16, 8),
                 model="two_tower", item_categorical_sizes=(5,), temperature=0.1)


def _users(rows: int = 4):
    g = torch.Generator().manual_seed(0)
    return (torch.randint(1, 12, (rows, 3), generator=g), torch.zeros(rows, 0, dtype=torch.long),
            torch.randint(0, 3, (rows, 1), generator=g), torch.zeros(rows, 0), torch.rand(rows, generator=g))


def test_scores_are_cosines_over_the_temperature():
    net = build_model(SPEC).eval()
    user = net(*_users())
    assert torch.allclose(user.norm(dim=-1), torch.full((4,), 1 / 0.1), atol=1e-4)
    vectors, bias = net.item_table()
    assert vectors.shape == (12, 8) and torch.allclose(vectors.norm(dim=-1), torch.ones(12), atol=1e-5)
    assert torch.equal(bias, torch.zeros(12))
    ids = torch.tensor([3, 7])
    assert torch.allclose(net.item_output(ids), vectors[ids]) and net.item_bias(ids).shape == (2, 1)


def test_two_tower_shares_the_id_table_and_dssm_does_not():
    shared = build_model(SPEC)
    assert shared.item_output.ids is shared.user_tower.history
    own = build_model(ModelSpec(**{**SPEC.to_dict(), "model": "dssm"}))
    assert own.item_output.ids is not own.user_tower.history
    assert ModelSpec.from_dict(SPEC.to_dict()) == SPEC


def test_item_features_move_the_item_vector():
    net = build_model(SPEC).eval()
    categories = torch.zeros(12, 1, dtype=torch.long)
    age = torch.zeros(12, 2)
    categories[4, 0], age[5] = torch.tensor(3), torch.tensor([0.5, 1.0])
    with torch.no_grad():
        net.item_output.ids.weight[4:7] = net.item_output.ids.weight[6]  # items 4, 5, 6 alike by id
        before = net.item_output(torch.tensor([4, 5, 6]))
        assert torch.allclose(before[0], before[2]) and torch.allclose(before[1], before[2])
        net.item_output.set_features(categories, age)
        after = net.item_output(torch.tensor([4, 5, 6]))
    assert not torch.allclose(after[0], after[2]) and not torch.allclose(after[1], after[2])
    assert "item_output.item_categories" in net.state_dict()  # saved with the weights


def test_item_features_load_from_prep(tmp_path):
    (tmp_path / "vocab" / "item_features").mkdir(parents=True)
    (tmp_path / "_manifest.json").write_text(json.dumps({"features": {"item_age_scale": math.log1p(30.0)}}))
    table = pa.table({"index": pa.array([1, 2, 3], pa.int32()),
                      "categories": pa.array([[2], [0], [4]], pa.list_(pa.int32())),
                      "age_days": pa.array([30.0, None, 0.0], pa.float32())}, schema=ITEM_FEATURES)
    pq.write_table(table, tmp_path / "vocab" / "item_features" / "part-0.parquet")
    categories, age = load_item_features(str(tmp_path), ModelSpec(**{**SPEC.to_dict(), "num_items": 5}))
    assert categories[:, 0].tolist() == [0, 2, 0, 4, 0]
    assert age.tolist() == [[0, 0], [pytest.approx(1.0), 1], [0, 0], [0, 1], [0, 0]]


def test_pointwise_loss_is_sigmoid_cross_entropy_with_hits_masked():
    vectors, bias = torch.nn.Embedding(6, 2), torch.nn.Embedding(6, 1)
    user, labels, negatives = torch.randn(2, 2), torch.tensor([1, 4]), torch.tensor([4, 5])
    loss = pointwise_loss(user, labels, vectors, bias, negatives)
    score = lambda u, j: user[u] @ vectors.weight[j] + bias.weight[j, 0]  # noqa: E731
    # user 0: 4 and 5 are negatives; user 1: 4 is its own label (masked), 5 is the negative
    first = -F.logsigmoid(score(0, 1)) + (-F.logsigmoid(-score(0, 4)) - F.logsigmoid(-score(0, 5))) / 2
    second = -F.logsigmoid(score(1, 4)) - F.logsigmoid(-score(1, 5))
    assert loss.item() == pytest.approx(((first + second) / 2).item(), rel=1e-5)


@pytest.mark.parametrize("model,loss", [("two_tower", "in_batch"), ("two_tower", "sampled"), ("dssm", "pointwise")])
def test_the_towers_learn_their_objective(model, loss):
    spec = ModelSpec(**{**SPEC.to_dict(), "model": model, "num_items": 30})
    net = build_model(spec)
    objective = Objective(TrainConfig(loss=loss, num_negatives=10, frequency_buckets=256), spec, "", 0)
    losses = fit(objective, net, num_items=30, steps=80, lr=0.02, demographics=1)
    assert np.isfinite(losses[-1]) and losses[-1] < 0.8 * losses[0]
