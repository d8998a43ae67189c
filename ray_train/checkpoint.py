"""The training checkpoint: the directory rank 0 attaches to every epoch's report.

A checkpoint holds what a run needs to go on and what the export needs to serve:
- model.pt, the latest epoch's weights, and optimizer.pt, the optimizers' state (Adam's
  moments): a run restarted after a failure, or resumed with --resume, goes on where it
  stopped instead of with fresh moments;
- best_model.pt, the best validated epoch's weights, only when that epoch is not the latest:
  with early stopping they, not the latest, are the ones exported;
- train_state.json: the epochs' metrics so far (early stopping and the stage's metrics read
  them), the best epoch, the model spec and the train config, so a checkpoint explains
  itself and the export and a warm start rebuild the model from it alone.
Nothing is unpickled: the weights load with weights_only=True.
"""

from __future__ import annotations

import json
import logging
import os
from typing import NamedTuple

import pyarrow.fs as pafs
import ray.train
import torch

from ray_train.model import ModelSpec
from ray_train.optim import Optimizer
from core import storage
from core.config import TrainConfig

log = logging.getLogger(__name__)

CHECKPOINT_MODEL = "model.pt"
CHECKPOINT_STATE = "train_state.json"
CHECKPOINT_OPTIMIZER = "optimizer.pt"
CHECKPOINT_BEST = "best_model.pt"  # the best validated epoch's weights, when not the latest


class Restored(NamedTuple):
    """Where a worker's run goes on from (all empty for a fresh run)."""

    start_epoch: int  # the first epoch to run (0-based): the epochs done
    history: list[dict]  # the metrics of the epochs done
    optimizer_state: dict | None
    recoveries: int  # restarts from a checkpoint after a failure so far
    best: dict | None  # the best epoch's weights so far (None for a fresh run)


def save_checkpoint(directory: str, net: torch.nn.Module, optimizer: Optimizer, spec: ModelSpec, cfg: TrainConfig,
                    history: list[dict], best_epoch: int, best: dict | None) -> ray.train.Checkpoint:
    """Write the checkpoint of the epoch just done (history's last) into directory: the
    latest weights and optimizer state, the best epoch's weights when that is another epoch,
    and train_state.json."""
    epoch = history[-1]["epoch"]
    torch.save(net.state_dict(), os.path.join(directory, CHECKPOINT_MODEL))
    torch.save(optimizer.state_dict(), os.path.join(directory, CHECKPOINT_OPTIMIZER))
    if best_epoch != epoch:
        torch.save(best, os.path.join(directory, CHECKPOINT_BEST))
    state = {"epoch": epoch, "best_epoch": best_epoch, "epochs": history, "spec": spec.to_dict(),
             "train": cfg.model_dump(mode="json")}
    with open(os.path.join(directory, CHECKPOINT_STATE), "w") as f:
        json.dump(state, f)
    return ray.train.Checkpoint.from_directory(directory)


def restore_checkpoint(model: torch.nn.Module, resume_from: str | None) -> Restored:
    """Load the latest checkpoint into model: this run's after a failure, else the one
    `--resume` named; without either the run starts fresh."""
    checkpoint = ray.train.get_checkpoint()
    recovered = checkpoint is not None
    if checkpoint is None and resume_from is not None:
        checkpoint = ray.train.Checkpoint(resume_from)
    if checkpoint is None:
        return Restored(0, [], None, 0, None)
    return load_checkpoint(model, checkpoint, recovered)


def load_checkpoint(model: torch.nn.Module, checkpoint: ray.train.Checkpoint, recovered: bool = False) -> Restored:
    """The checkpoint's latest weights into model, and the rest of what a run goes on from;
    recovered: the run restarts from it after a failure, one more recovery."""
    with checkpoint.as_directory() as d:
        model.load_state_dict(torch.load(os.path.join(d, CHECKPOINT_MODEL), weights_only=True))
        optimizer_state, best = (torch.load(os.path.join(d, name), weights_only=True)
                                 if os.path.exists(os.path.join(d, name)) else None
                                 for name in (CHECKPOINT_OPTIMIZER, CHECKPOINT_BEST))
        with open(os.path.join(d, CHECKPOINT_STATE)) as f:
            state = json.load(f)
    if best is None:  # the latest epoch was the best so far: a worse one after it must not lose it
        best = {name: value.detach().to("cpu", copy=True) for name, value in model.state_dict().items()}
    log.info("resuming after epoch %d", state["epoch"])
    history = list(state["epochs"])
    recoveries = int(history[-1].get("recoveries", 0)) + recovered if history else int(recovered)
    return Restored(int(state["epoch"]), history, optimizer_state, recoveries, best)


def latest_checkpoint(checkpoints: str) -> tuple[int, str]:
    """(epochs done, URI) of the checkpoint of the most epochs under a run's
    model/checkpoints."""
    fs, root = storage.filesystem(checkpoints)
    found = []
    if fs.get_file_info(root).type == pafs.FileType.Directory:
        for entry in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
            if entry.base_name == CHECKPOINT_STATE:
                with fs.open_input_stream(entry.path) as f:
                    epoch = int(json.load(f)["epoch"])
                found.append((epoch, entry.path[len(root):].strip("/").rsplit("/", 1)[0]))
    if not found:
        raise FileNotFoundError(f"no checkpoint under {checkpoints}")
    done, relative = max(found)
    return done, storage.join(checkpoints, relative)
