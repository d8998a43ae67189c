"""The ml-100k run the end-to-end tests share: one pipeline run per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

# the settings of the shared run; a run elsewhere with these settings is comparable to it
RUN_SETTINGS = ["train.epochs=3", "recall.top_k=100", "recall.run_date=2026-11-23"]


@pytest.fixture(scope="session")
def run_dir(spark, ray_local, ml100k, tmp_path_factory) -> Path:
    """prep, train (2 workers), recall and evaluate of ml-100k, in this process: the embedded
    Spark session and the local Ray instance."""
    from jobs.prep import run_prep
    from ray_train.trainer import run_train
    from report.evaluate import evaluate
    from serving.recall import run_recall
    from core.config import load_config

    run = tmp_path_factory.mktemp("ml100k")
    cfg = load_config(None, RUN_SETTINGS)
    run_prep(spark, ml100k, str(run / "prep"), cfg.prep)
    run_train(str(run), cfg)
    run_recall(str(run), cfg)
    evaluate(str(run))
    return run
