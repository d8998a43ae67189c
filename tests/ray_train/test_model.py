"""The user tower: history bag ignores padding; shapes follow the spec."""

from __future__ import annotations

import torch

from ray_train.model import ModelSpec, YouTubeDNN

SPEC = ModelSpec(num_items=20, categorical_sizes=(4, 6), embedding_dim=8, hidden_layers=(16, 5))


def test_padding_does_not_change_the_user_vector():
    model = YouTubeDNN(SPEC).eval()
    demo = torch.tensor([[2, 3]])
    age = torch.tensor([0.25])
    short = model(torch.tensor([[3, 4, 0, 0]]), demo, age)
    long = model(torch.tensor([[3, 4, 0, 0, 0, 0, 0]]), demo, age)
    assert torch.allclose(short, long)
    assert short.shape == (1, 5)


def test_history_is_mean_pooled():
    model = YouTubeDNN(SPEC).eval()
    tower = model.user_tower
    bag = tower.history(torch.tensor([3, 4])).mean(0)
    repeated = model(torch.tensor([[3, 4, 3, 4]]), torch.tensor([[0, 0]]), torch.tensor([0.0]))
    once = model(torch.tensor([[3, 4, 0, 0]]), torch.tensor([[0, 0]]), torch.tensor([0.0]))
    assert torch.allclose(repeated, once, atol=1e-6)
    assert bag.shape == (8,)
