"""The four stages as the commands run them, each with its one console line: prep (Spark),
train (Ray Train), recall (Ray Data + FAISS) and evaluate (the report). The engines are
imported when a stage runs, so a command loads only what it uses."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from core.config import Config
from core.layout import RunLayout

log = logging.getLogger("watchnext")


def prep_stage(data: str, run_dir: str, cfg: Config) -> dict[str, Any]:
    from jobs.prep import run_prep
    from core.spark_session import spark_session

    log.info("prep: %s -> %s", data, RunLayout.of(run_dir).prep.root)
    spark = spark_session(cfg.spark)
    try:
        manifest = run_prep(spark, data, RunLayout.of(run_dir).prep.root, cfg.prep)
    finally:
        spark.stop()
    counts = manifest["counts"]
    log.info("prep: %d events -> %d examples, %d users, %d items in %.1fs",
             counts["events_in"], counts["examples"], counts["users"], counts["items"], manifest["seconds"])
    return manifest


def train_stage(run_dir: str, cfg: Config, resume: bool = False) -> dict[str, Any]:
    from ray_train.trainer import run_train

    log.info("train: %s, %d epochs on %d worker(s)%s", cfg.train.model, cfg.train.epochs, cfg.train.workers,
             ", resuming" if resume else "")
    manifest = run_train(run_dir, cfg, resume=resume)
    metrics = manifest["metrics"]
    log.info("train: %d epochs, final loss %.4f, %.0f examples/s on %s x%d", len(metrics["epochs"]),
             metrics["epochs"][-1]["loss"], metrics["examples_per_second"], metrics["device"], metrics["workers"])
    return manifest


def recall_stage(run_dir: str, cfg: Config) -> dict[str, Any]:
    from serving.recall import run_recall

    log.info("recall: top %d per user from %s", cfg.recall.top_k, ", ".join(cfg.recall.channels))
    manifest = run_recall(run_dir, cfg)
    log.info("recall: %d users at %.0f users/s -> %s", manifest["users"], manifest["users_per_second"],
             RunLayout.of(run_dir).recall.table)
    return manifest


def evaluate_stage(run_dir: str, cfg: Config | None = None) -> dict[str, Any]:
    from report.evaluate import evaluate

    log.info("evaluate: %s", RunLayout.of(run_dir).root)
    started = time.time()
    report = evaluate(run_dir, cfg)
    hits = {k: v for k, v in report["model"].items() if k.startswith("hr@") and "_" not in k}
    log.info("evaluate: %d users, model %s, %d baseline(s) in %.1fs", report["users"],
             ", ".join(f"{k.upper()} {v:.4f}" for k, v in hits.items()), len(report["baselines"]),
             time.time() - started)
    return report


def run_all(data: str, run_dir: str, cfg: Config) -> None:
    """prep, train, recall and evaluate into run_dir, and the report's summary on the console."""
    started = time.time()
    prep_stage(data, run_dir, cfg)
    train_stage(run_dir, cfg)
    recall_stage(run_dir, cfg)
    report = evaluate_stage(run_dir, cfg)
    print_report(report)
    run = RunLayout.of(run_dir)
    print(f"recall table: {run.recall.table}")
    print(f"report:       {run.report.html} (and report.json)")
    print(f"total time:   {time.time() - started:.0f}s")


def print_report(report: dict[str, Any]) -> None:
    from report.console import summary

    print(summary(report))


Stage = Callable[..., dict[str, Any]]
# by name, for the commands that run them in their own order (ablate, nightly)
STAGES: dict[str, Stage] = {"prep": prep_stage, "train": train_stage, "recall": recall_stage,
                            "evaluate": evaluate_stage}
