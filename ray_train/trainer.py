"""The train stage's driver: prep/ -> Ray Train TorchTrainer -> model/ (export + manifest).

The driver only builds the trainer: Ray Data streams prep/examples to the workers, which run
`loop.train_loop_per_worker`; the best-known checkpoint is then exported for serving.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import MutableMapping
from typing import Any

import pyarrow.dataset as pads
import ray
import ray.data
import torch
from ray.data import ExecutionOptions, FileShuffleConfig
from ray.train import CheckpointConfig, DataConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from ray_train.checkpoint import latest_checkpoint
from ray_train.data import EXAMPLE_COLUMNS, Widths
from ray_train.export import export_model
from ray_train.item2vec import ITEM2VEC_COLUMNS, VECTORS, item2vec_loop_per_worker
from ray_train.loop import train_loop_per_worker
from ray_train.optim import uses_sparse_embeddings
from ray_train.model import ModelSpec
from ray_train.models import build_model
from ray_train.sequence import tile_windows, tiles_watches, windows_per_batch
from ray_train.validation import VAL_K, VALIDATION_SOURCE
from ray_train.warm_start import state_bytes, warm_start_state
from core import storage
from core.config import Config, TrainConfig
from core.layout import CHECKPOINTS, ModelLayout, PrepLayout, RunLayout
from core.ray_cluster import start_ray

log = logging.getLogger(__name__)

# Ray Train's controller announces each worker group it requests and starts at INFO; those
# lines stay in Ray's session logs, and the epochs' lines are the console's progress
QUIET_TRAIN = LoggingConfig(log_level="WARNING")

# Ray Train's controller collects one report per worker each time it polls them, every 2 s
# by default, and a worker's next report waits until the last one was collected: epochs
# shorter than that waited for the poll (ml-100k: ~1.2 s of each ~2 s epoch). Ray Train
# passes this variable from the driver to its controller; a value the user set is kept.
REPORT_POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
REPORT_POLL_SECONDS = "0.25"


def poll_reports_often(environ: MutableMapping[str, str] = os.environ) -> None:
    """Have Ray Train's controller collect the workers' reports 4 times a second (see
    REPORT_POLL_ENV), unless the user chose an interval."""
    environ.setdefault(REPORT_POLL_ENV, REPORT_POLL_SECONDS)


def run_train(run_dir: str, cfg: Config, resume: bool = False, prep_dir: str | None = None,
              callbacks: list | None = None) -> dict[str, Any]:
    """Train into RUN_DIR/model; with resume, continue from the latest checkpoint there (the
    epochs it holds are not trained again). prep_dir: the examples to train on, RUN_DIR/prep
    by default (tuning trials share one prep); callbacks: Ray Train run callbacks (a Tune
    trial forwards the epochs' reports to its scheduler with one)."""
    run = RunLayout.of(run_dir)
    inputs, out = PrepLayout(storage.absolute(prep_dir)) if prep_dir else run.prep, run.model
    prep_dir, model_dir = inputs.root, out.root
    prep = storage.read_manifest(prep_dir)
    features = prep["features"]
    train_cfg = cfg.train.for_corpus(int(features["item_vocab_size"]))
    spec = model_spec(features, train_cfg)
    widths = Widths.from_prep_features(features)
    checkpoints = out.checkpoints
    warm_model = RunLayout(train_cfg.warm_start).model.root if train_cfg.warm_start else None
    started = storage.begin_stage(model_dir, keep=(CHECKPOINTS,) if resume else (), inputs=(prep_dir, warm_model))
    resume_from = _resume_checkpoint(checkpoints, train_cfg.epochs) if resume else None
    # training workers hold their CPUs for the whole run; Ray Data's readers need one more
    start_ray(cfg.ray, min_cpus=int(train_cfg.workers * train_cfg.cpus_per_worker) + 1)
    poll_reports_often()

    columns = EXAMPLE_COLUMNS + (["watches_after"] if tiles_watches(train_cfg) else [])
    _check_examples(inputs.examples, columns)
    # one order of the examples per seed: the files shuffled by it, Ray Data's blocks kept in
    # order here (the tiles and the cache are materialized in this process) and in the
    # workers' shards (dataset_config below), so a 1-worker run repeats itself; with several
    # workers the split hands blocks to whichever rank asks first
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    examples = ray.data.read_parquet(inputs.examples,
                                     shuffle=FileShuffleConfig(seed=train_cfg.seed)).select_columns(columns)
    batch_size = train_cfg.batch_size
    if tiles_watches(train_cfg):
        examples, batch_size = sequence_tiles(examples, widths.history_len, int(prep["counts"]["examples"]),
                                              train_cfg.batch_size)
    cached = _cache_examples(train_cfg.cache_examples, int(prep["counts"]["examples"]) * widths.row_bytes,
                             int(ray.cluster_resources().get("object_store_memory", 0)))
    if cached:
        examples = examples.materialize()
    worker_bytes = int(prep["counts"]["examples"]) * widths.tensor_bytes / train_cfg.workers
    keep_in_worker = cached and worker_bytes <= train_cfg.worker_cache_mib * 2**20
    if keep_in_worker:
        log.info("each worker keeps its ~%.0f MiB of examples as tensors after the first epoch", worker_bytes / 2**20)
    scaling = ScalingConfig(num_workers=train_cfg.workers, use_gpu=train_cfg.use_gpu,
                            resources_per_worker={"CPU": train_cfg.cpus_per_worker})
    # the initial weights, when not a fresh draw: a previous run's, or item2vec's history table
    warm_start_path = None
    if not resume and (train_cfg.warm_start or train_cfg.item2vec_epochs):
        warm_start_path = out.warm_start
        initial = (
            _warm_start_state(train_cfg.warm_start, prep_dir, spec, train_cfg.seed)
            if train_cfg.warm_start
            else _item2vec_state(examples, scaling, out, inputs, spec, widths.history_len, train_cfg)
        )
        storage.write_bytes(warm_start_path, state_bytes(initial))
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "train": train_cfg.model_dump(mode="json"),
            "spec": spec.to_dict(),
            "widths": dataclasses.asdict(widths),
            "item_sampling_path": inputs.item_sampling,
            "prep_dir": prep_dir,
            # --resume: the checkpoint the first attempt starts from (a retry after a worker
            # failure starts from this run's own latest checkpoint instead)
            "resume_from": resume_from,
            "warm_start_path": warm_start_path,
            "keep_in_worker": keep_in_worker,
            "batch_size": batch_size,
        },
        scaling_config=scaling,
        run_config=RunConfig(
            name="train",
            storage_path=checkpoints,
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=2),
            callbacks=callbacks,
            logging_config=QUIET_TRAIN,
        ),
        datasets={"train": examples},
        dataset_config=DataConfig(execution_options=ExecutionOptions(preserve_order=True)),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training finished without a checkpoint; see {model_dir}/checkpoints")
    with result.checkpoint.as_directory() as checkpoint_dir:
        exported = export_model(checkpoint_dir, prep_dir, model_dir)
    epochs = exported["epochs"]
    total_examples = sum(e["examples"] for e in epochs) * train_cfg.workers
    metrics = {
        "device": _device_name(train_cfg.use_gpu),
        "workers": train_cfg.workers,
        # the steps' arithmetic: bf16 autocast (train.amp, on a GPU or a CPU with native bf16) or fp32
        "precision": epochs[-1].get("precision", "fp32"),
        "examples_cached": cached,
        # restarts from a checkpoint after a worker failure (Ray Train FailureConfig)
        "recoveries": int(epochs[-1].get("recoveries", 0)),
        "examples_per_second": total_examples / max(sum(e["seconds"] for e in epochs), 1e-9),
        # the exported weights' epoch: the best val_hr@50 (early stopping), else the last
        "best_epoch": exported["best_epoch"],
        "stopped_early": len(epochs) < train_cfg.epochs,
        # what val_hr@50 measures: never the test targets of prep/eval
        "validation": VALIDATION_SOURCE if any(e.get(f"val_hr@{VAL_K}") is not None for e in epochs) else None,
        "epochs": [
            {
                "epoch": e["epoch"], "loss": e["loss"], f"val_hr@{VAL_K}": e.get(f"val_hr@{VAL_K}"),
                "seconds": e["seconds"], "data_wait_seconds": e.get("data_wait_seconds"),
                "recoveries": e.get("recoveries", 0),
            }
            for e in epochs
        ],
    }
    storage.write_text(out.metrics, json.dumps(metrics, indent=2) + "\n")
    return storage.finish_stage(
        model_dir,
        started,
        {
            "inputs": {"prep": prep_dir},
            "built_from": {"prep": prep.get("fingerprint")},
            "config": train_cfg.model_dump(mode="json"),
            "model_version": exported["model_version"],
            "spec": spec.to_dict(),
            "history_len": int(features["history_len"]),
            "metrics": metrics,
            "outputs": ["user_tower.pt", "model_spec.json", "item_embeddings.parquet", "metrics.json"],
        },
    )


def sequence_tiles(examples: ray.data.Dataset, history_len: int, example_count: int,
                   batch_size: int) -> tuple[ray.data.Dataset, int]:
    """The examples whose windows tile their user's watches (watches_after a multiple of
    history_len: each window's history ends where the next window's label is), and windows
    per batch such that a batch holds about batch_size watches to predict."""
    tiles = examples.map_batches(lambda table: tile_windows(table, history_len).drop_columns(["watches_after"]),
                                 batch_format="pyarrow").materialize()
    windows = tiles.count()
    per_batch = windows_per_batch(batch_size, windows, example_count)
    log.info("%d windows tile the %d training watches; %d windows a batch", windows, example_count, per_batch)
    return tiles, per_batch


def model_spec(features: dict, cfg: TrainConfig) -> ModelSpec:
    """The model a prep's features and the train section describe."""
    return ModelSpec(
        num_items=int(features["item_vocab_size"]),
        categorical_sizes=tuple(features["categorical_sizes"]),
        embedding_dim=cfg.embedding_dim,
        hidden_layers=cfg.hidden_layers,
        num_tokens=int(features.get("token_vocab_size", 0)),
        num_continuous=len(features.get("user_continuous", [])),
        tie_embeddings=cfg.tied,
        recent_items=min(cfg.recent_items, int(features["history_len"])),
        model=cfg.model,
        item_categorical_sizes=tuple(features.get("item_categorical_sizes", ())),
        temperature=cfg.temperature,
        example_age=cfg.example_age,
        sequence_length=int(features["history_len"]),
        sequence_layers=cfg.sequence_layers,
        sequence_heads=cfg.sequence_heads,
        dropout=cfg.dropout,
    )


def _check_examples(path: str, columns: list[str]) -> None:
    """Fail here, naming what is missing, rather than inside a worker: examples written by an
    older prep lack columns the trainer reads."""
    fs, local = storage.filesystem(path)
    names = set(pads.dataset(local, filesystem=fs, format="parquet").schema.names)
    missing = [c for c in columns if c not in names]
    if missing:
        raise ValueError(f"{path} has no column {', '.join(missing)}: it was written by an older prep; run "
                         "`watchnext prep` again")


def _cache_examples(setting: str, estimated_bytes: int, object_store_memory: int) -> bool:
    """Whether the examples stay in the object store across epochs (see train.cache_examples)."""
    cached = setting == "always" or (setting == "auto" and estimated_bytes <= object_store_memory // 2)
    log.info("examples (~%.0f MiB in memory) %s", estimated_bytes / 2**20,
             "kept in the object store across epochs" if cached else "streamed from Parquet every epoch")
    return cached


def _warm_start_state(previous_run: str, prep_dir: str, spec: ModelSpec, seed: int) -> dict:
    """train.warm_start: this run's initial weights from the previous run's latest checkpoint."""
    previous_run = storage.absolute(previous_run)
    _, checkpoint = latest_checkpoint(RunLayout(previous_run).model.checkpoints)
    with ray.train.Checkpoint(checkpoint).as_directory() as local:
        return warm_start_state(previous_run, local, prep_dir, spec, seed)


def _item2vec_state(examples: ray.data.Dataset, scaling: ScalingConfig, out: ModelLayout, prep: PrepLayout,
                    spec: ModelSpec, history_len: int, cfg: TrainConfig) -> dict:
    """train.item2vec_epochs: pretrain skip-gram vectors on the same workers and examples;
    fresh initial weights (seeded as the workers seed theirs) with them as the history table."""
    pretrainer = TorchTrainer(
        item2vec_loop_per_worker,
        train_loop_config={
            "train": cfg.model_dump(mode="json"), "num_items": spec.num_items,
            "history_len": history_len,
            "item_sampling_path": prep.item_sampling,
            "sparse": uses_sparse_embeddings(cfg, spec.num_items),
        },
        scaling_config=scaling,
        run_config=RunConfig(name="item2vec", storage_path=out.item2vec,
                             checkpoint_config=CheckpointConfig(num_to_keep=1),
                             failure_config=FailureConfig(max_failures=2), logging_config=QUIET_TRAIN),
        datasets={"train": examples.select_columns(ITEM2VEC_COLUMNS)},
    )
    result = pretrainer.fit()
    with result.checkpoint.as_directory() as local:
        center = torch.load(os.path.join(local, VECTORS), weights_only=True)["center"]
    torch.manual_seed(cfg.seed)
    state = build_model(spec).state_dict()
    state["user_tower.history.weight"] = center
    if "item_output.weight" in state and spec.tie_embeddings:
        state["item_output.weight"] = center
    log.info("history table initialized from %d item2vec epochs (last loss %.4f)", cfg.item2vec_epochs,
             result.metrics["item2vec_loss"])
    return state


def _resume_checkpoint(checkpoints: str, epochs: int) -> str:
    """--resume: the latest checkpoint's URI (every worker can read it), if epochs remain."""
    done, path = latest_checkpoint(checkpoints)
    if done >= epochs:
        raise ValueError(f"--resume: the latest checkpoint has {done} epochs already; raise train.epochs to go on")
    log.info("resuming from %s (%d epochs done)", path, done)
    return path


def _device_name(use_gpu: bool) -> str:
    return torch.cuda.get_device_name(0) if use_gpu and torch.cuda.is_available() else "cpu"
