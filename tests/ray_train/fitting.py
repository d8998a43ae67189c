"""A few full-batch steps of an objective on a learnable toy task, for the tests that check
an objective trains: each example's label is in its own history."""

from __future__ import annotations

import torch

from ray_train.objective import Objective


def fit(objective: Objective, net: torch.nn.Module, num_items: int, steps: int, lr: float,
        demographics: int = 0) -> list[float]:
    """The loss of each of `steps` Adam steps."""
    history = torch.randint(1, num_items, (64, 4), generator=torch.Generator().manual_seed(1))
    inputs = (history, torch.zeros(64, 0, dtype=torch.long), torch.zeros(64, demographics, dtype=torch.long),
              torch.zeros(64, 0), torch.zeros(64))
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        value = objective(net(*inputs), history[:, 0], net)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(value.item())
    return losses
