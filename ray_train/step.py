"""The training step every loop runs (training, item2vec) and bench/train_step times."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from ray_train.optim import Optimizer
from ray_train.sparse_sync import average_sparse_gradients


def train_step(loss_of: Callable[[], tuple[torch.Tensor, int]], optimizer: Optimizer,
               synced_tables: list[nn.Parameter],
               autocast: contextlib.AbstractContextManager = contextlib.nullcontext()) -> tuple[torch.Tensor, int]:
    """One optimizer step: `loss_of()`'s (loss, how many predictions it averages) computed
    under autocast, its gradients, those of the sparse tables kept out of DDP averaged across
    ranks (sparse_sync), and the optimizers' update. Returns what loss_of returned."""
    with autocast:
        loss, predicted = loss_of()
    optimizer.zero_grad()
    loss.backward()
    if synced_tables:
        average_sparse_gradients(synced_tables)
    optimizer.step()
    return loss, predicted
