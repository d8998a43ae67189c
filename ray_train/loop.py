"""The training loop every Ray Train worker runs (`train_loop_per_worker`).

Everything a worker needs arrives in its config dict: the train section of the configuration,
the model spec, and where the prep vocabulary lies. Rank 0 alone writes checkpoints (what one
holds: ray_train.checkpoint); a restarted run continues from `ray.train.get_checkpoint()`.

Early stopping: after every epoch rank 0 measures val_hr@50 on the validation split; when it
has not improved for `train.early_stopping_patience` epochs, every rank stops, and the
weights of the best epoch (kept in the checkpoint beside the latest) are the ones exported.
"""

from __future__ import annotations

import io
import logging
import math
import tempfile
import time
from typing import Any

import ray.train
import ray.train.torch
import torch

from ray_train.allocator import keep_freed_memory
from ray_train.checkpoint import restore_checkpoint, save_checkpoint
from ray_train.data import Batch, Widths, WorkerExamples
from ray_train.model import ModelSpec
from ray_train.models import build_model, has_item_tower
from ray_train.objective import Objective
from ray_train.optim import Optimizer, uses_sparse_embeddings
from ray_train.precision import step_autocast, step_precision
from ray_train.sequence import next_watch_targets, tiles_watches
from ray_train.sparse_sync import prepare_model
from ray_train.step import train_step
from ray_train.two_tower import load_item_features
from ray_train.validation import VAL_K, ValidationSet
from core import storage
from core.config import TrainConfig

log = logging.getLogger(__name__)

LOG_EVERY_STEPS = 50
COSINE_FLOOR = 0.01


def train_loop_per_worker(config: dict[str, Any]) -> None:
    cfg = TrainConfig.model_validate(config["train"])
    # Ray Train's own lines (each rank's every report and checkpoint) stay in its log files;
    # the console gets one line per epoch from rank 0
    quiet_ray_train()
    spec = ModelSpec.from_dict(config["spec"])
    widths = Widths(**config["widths"])
    context = ray.train.get_context()
    rank = context.get_world_rank()
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    keep_freed_memory()  # the step's large tensors are reused, not page-faulted in again
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))

    model = build_model(spec, sparse=uses_sparse_embeddings(cfg, spec.num_items))
    if config.get("warm_start_path"):  # a checkpoint, if any, replaces these below
        raw = io.BytesIO(storage.read_bytes(config["warm_start_path"]))
        model.load_state_dict(torch.load(raw, weights_only=True))
    if has_item_tower(spec):  # the item tower's inputs, from prep (saved with the weights)
        model.item_output.set_features(*load_item_features(config["prep_dir"], spec))
    start_epoch, history, optimizer_state, recoveries, best = restore_checkpoint(model, config.get("resume_from"))
    model, synced_tables = prepare_model(model)
    net: torch.nn.Module = model.module if hasattr(model, "module") else model
    device = ray.train.torch.get_device()
    optimizer = Optimizer(net, cfg)
    if optimizer_state is not None:  # Adam's moments go on where they were
        optimizer.load_state_dict(optimizer_state)
    objective = Objective(cfg, spec, config["item_sampling_path"], rank)
    batch_size = int(config.get("batch_size") or cfg.batch_size)  # windows, when they tile sequences
    every_position = tiles_watches(cfg)
    examples_source = WorkerExamples(ray.train.get_dataset_shard("train"), widths, batch_size, cfg.seed, rank,
                                     keep=bool(config.get("keep_in_worker")))
    validation = ValidationSet.load(config["prep_dir"], widths, cfg.val_users, cfg.seed) if rank == 0 else None

    # bf16 where the device has it natively (no loss scaling needed, unlike fp16)
    autocast, precision = step_autocast(cfg), step_precision(cfg)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        optimizer.set_learning_rate(learning_rate(cfg, epoch))
        started, examples, loss_sum, steps, waited = time.time(), 0, 0.0, 0, 0.0
        asked = time.perf_counter()
        for batch in examples_source.epoch(epoch):
            waited += time.perf_counter() - asked  # the step waited on its data
            batch = batch.to(device)
            loss, predicted = train_step(lambda: batch_loss(model, net, objective, batch, every_position), optimizer,
                                         synced_tables, autocast)
            steps += 1
            examples += predicted
            loss_sum += float(loss.detach())
            if rank == 0 and steps % LOG_EVERY_STEPS == 0:
                log.debug("epoch %d step %d loss %.4f", epoch + 1, steps, loss_sum / steps)
            asked = time.perf_counter()
        seconds = time.time() - started
        metrics = {
            "epoch": epoch + 1,
            "loss": loss_sum / max(steps, 1),
            "examples": examples,
            "seconds": seconds,
            "data_wait_seconds": waited,
            "examples_per_second": examples / max(seconds, 1e-9),
            "learning_rate": learning_rate(cfg, epoch),
            "recoveries": recoveries,  # restarts from a checkpoint after a failure so far
            "precision": precision,  # rank 0's steps: bf16 autocast or fp32
        }
        if validation is not None:
            metrics[f"val_hr@{VAL_K}"] = validation.hit_rate(net, device)
        # rank 0 alone validates: every rank learns the verdict from it, and stops with it
        metrics[f"val_hr@{VAL_K}"] = _from_rank_zero(metrics.get(f"val_hr@{VAL_K}"))
        history.append(metrics)
        best = _best_weights(net, history, best) if rank == 0 else best
        if rank == 0:
            validated = metrics.get(f"val_hr@{VAL_K}")
            log.info("epoch %d/%d: loss %.4f, val HR@%d %s, %d examples in %.1fs (rank 0)",
                     epoch + 1, cfg.epochs, metrics["loss"], VAL_K, "-" if validated is None else f"{validated:.4f}",
                     examples, seconds)
        _report(net, optimizer, spec, cfg, metrics, history, rank, best)
        if _should_stop(history, cfg.early_stopping_patience):
            if rank == 0:
                log.info("early stop after epoch %d: val HR@%d last improved at epoch %d", epoch + 1, VAL_K,
                         best_epoch(history))
            break


def quiet_ray_train() -> None:
    """Ray Train's INFO lines to WARNING: its package logger, and the worker context's, which
    is named by its file's path and logs every report of every rank."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray Train layout: its lines stay
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def batch_loss(model: torch.nn.Module, net: torch.nn.Module, objective: Objective, batch: Batch,
               every_position: bool = False) -> tuple[torch.Tensor, int]:
    """One batch's loss and how many watches it predicted: each example's label, or with
    every_position (the sequence tower's windows) every watch of each window."""
    if every_position:
        user, labels, weights = next_watch_targets(model(*batch.features(), every_position=True),
                                                   batch.history, batch.labels, batch.weights)
    else:
        user, labels, weights = model(*batch.features()), batch.labels, batch.weights
    return objective(user, labels, net, weights), len(labels)


def best_epoch(history: list[dict]) -> int:
    """The epoch (1-based) of the highest val_hr@50, the first of equals; the last epoch when
    nothing was validated."""
    scored = [(e[f"val_hr@{VAL_K}"], -e["epoch"]) for e in history if e.get(f"val_hr@{VAL_K}") is not None]
    return -max(scored)[1] if scored else history[-1]["epoch"]


def _should_stop(history: list[dict], patience: int) -> bool:
    """Whether val_hr@50 has not improved over the last `patience` epochs (0: never stop)."""
    if not patience or not history or history[-1].get(f"val_hr@{VAL_K}") is None:
        return False
    return history[-1]["epoch"] - best_epoch(history) >= patience


def _from_rank_zero(value: float | None) -> float | None:
    """Rank 0's value on every rank (None stays None: no validation)."""
    if not torch.distributed.is_initialized():
        return value
    shared = torch.tensor([float("nan") if value is None else value], dtype=torch.float64)
    torch.distributed.broadcast(shared, src=0)
    return None if math.isnan(shared.item()) else shared.item()


def _best_weights(net: torch.nn.Module, history: list[dict], best: dict | None) -> dict | None:
    """A copy of the weights of the best epoch so far: the current ones when this epoch is
    the best, else the copy already kept (None: the latest are the best)."""
    if best_epoch(history) != history[-1]["epoch"]:
        return best
    return {name: value.detach().to("cpu", copy=True) for name, value in net.state_dict().items()}


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of epoch (0-based): constant, or a cosine from learning_rate down to
    COSINE_FLOOR of it at the last epoch. A function of the epoch alone, so a resumed run
    continues the schedule."""
    if cfg.lr_schedule == "constant" or cfg.epochs == 1:
        return cfg.learning_rate
    floor = cfg.learning_rate * COSINE_FLOOR
    return floor + 0.5 * (cfg.learning_rate - floor) * (1 + math.cos(math.pi * epoch / (cfg.epochs - 1)))


def _report(net: torch.nn.Module, optimizer: Optimizer, spec: ModelSpec, cfg: TrainConfig, metrics: dict,
            history: list, rank: int, best: dict | None) -> None:
    """Every rank reports (it is a barrier); rank 0 attaches the checkpoint: the latest
    weights and Adam's state to go on from, and the best epoch's weights to export."""
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = (save_checkpoint(tmp, net, optimizer, spec, cfg, history, best_epoch(history), best)
                      if rank == 0 else None)
        ray.train.report(metrics, checkpoint=checkpoint)

