"""A checkpoint brings back what a run goes on from: the latest weights, the optimizers'
moments, the epochs done and the best epoch's weights; the latest is the one of most epochs."""

from __future__ import annotations

import json

import pytest
import torch

from ray_train.checkpoint import (CHECKPOINT_BEST, CHECKPOINT_STATE, latest_checkpoint, load_checkpoint,
                                  save_checkpoint)
from ray_train.model import ModelSpec, YouTubeDNN
from ray_train.objective import Objective
from ray_train.optim import Optimizer
from ray_train.step import train_step
from core.config import TrainConfig

SPEC = ModelSpec(num_items=40, categorical_sizes=(3,), embedding_dim=8, hidden_layers=(16, 8))
CFG = TrainConfig(num_negatives=5, sparse_embeddings="on", learning_rate=0.01, loss="sampled")


def _trained(seed: int) -> tuple[YouTubeDNN, Optimizer]:
    """A model and its optimizers after one step: Adam and LazyAdam hold moments."""
    torch.manual_seed(seed)
    net = YouTubeDNN(SPEC, sparse=True)
    optimizer = Optimizer(net, CFG)
    g = torch.Generator().manual_seed(seed)
    history = torch.randint(1, 40, (16, 4), generator=g)
    inputs = (history, torch.zeros(16, 0, dtype=torch.long), torch.randint(0, 3, (16, 1), generator=g),
              torch.zeros(16, 0), torch.rand(16, generator=g))
    objective = Objective(CFG, SPEC, "", 0)
    train_step(lambda: (objective(net(*inputs), history[:, 0], net), 16), optimizer, [])
    return net, optimizer


def _history(epochs: int) -> list[dict]:
    return [{"epoch": e, "loss": 1.0 / e, "val_hr@50": 0.1 * e, "recoveries": 1} for e in range(1, epochs + 1)]


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_restores_the_latest_weights_the_moments_the_epochs_and_the_best_weights(tmp_path):
    net, optimizer = _trained(seed=0)
    best = {k: v.clone() for k, v in YouTubeDNN(SPEC, sparse=True).state_dict().items()}  # another epoch's
    checkpoint = save_checkpoint(str(tmp_path), net, optimizer, SPEC, CFG, _history(3), best_epoch=2, best=best)
    restored_net = YouTubeDNN(SPEC, sparse=True)
    restored = load_checkpoint(restored_net, checkpoint, recovered=True)
    assert _equal(restored_net.state_dict(), net.state_dict())
    assert (restored.start_epoch, restored.history) == (3, _history(3))
    assert restored.recoveries == 2  # the epochs' 1, and this restart
    assert _equal(restored.best, best)
    # the moments go on: the next step from the checkpoint is the next step of the run
    restored_optimizer = Optimizer(restored_net, CFG)
    restored_optimizer.load_state_dict(restored.optimizer_state)
    for ours, theirs in zip(restored_optimizer.parts, optimizer.parts):
        for p, q in zip(ours.param_groups[0]["params"], theirs.param_groups[0]["params"]):
            assert _equal(ours.state[p], theirs.state[q])
    state = json.loads((tmp_path / CHECKPOINT_STATE).read_text())
    assert (state["epoch"], state["best_epoch"], ModelSpec.from_dict(state["spec"])) == (3, 2, SPEC)
    assert TrainConfig.model_validate(state["train"]) == CFG


def test_the_best_weights_are_kept_apart_only_when_the_best_epoch_is_not_the_latest(tmp_path):
    net, optimizer = _trained(seed=1)
    checkpoint = save_checkpoint(str(tmp_path), net, optimizer, SPEC, CFG, _history(2), best_epoch=2,
                                 best=net.state_dict())
    assert not (tmp_path / CHECKPOINT_BEST).exists()
    # restored, the latest weights are the best so far: kept, so that a worse epoch after the
    # restart still exports them
    assert _equal(load_checkpoint(YouTubeDNN(SPEC, sparse=True), checkpoint).best, net.state_dict())


def test_the_latest_checkpoint_is_the_one_of_the_most_epochs(tmp_path):
    root = tmp_path / "checkpoints"
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        latest_checkpoint(str(root))
    for name, epoch in (("checkpoint_a", 2), ("checkpoint_b", 3), ("checkpoint_c", 1)):
        (root / "train" / name).mkdir(parents=True)
        (root / "train" / name / CHECKPOINT_STATE).write_text(json.dumps({"epoch": epoch}))
    assert latest_checkpoint(str(root)) == (3, f"{root}/train/checkpoint_b")
