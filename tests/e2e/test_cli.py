"""The `watchnext` command as scripts and schedulers call it, in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest


def watchnext(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "watchnext", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_generate_then_run_on_a_synthetic_log(tmp_path: Path):
    data, run = tmp_path / "data", tmp_path / "run"
    gen = watchnext("generate", "--users", "400", "--items", "300", "--events", "12000", "--seed", "3", "--out", str(data))
    assert gen.returncode == 0, gen.stderr
    assert pq.read_table(data / "clicks").num_rows == 12000

    config = tmp_path / "small.yaml"
    # the scored baselines (a Spark ALS grid) are the ml-100k run's to prove, not this one's
    config.write_text("train:\n  epochs: 2\n  workers: 1\nprep:\n  example_files: 2\nray:\n  num_cpus: 2\n"
                      "report:\n  baselines: []\n")
    done = watchnext("run", "--data", str(data), "--out", str(run), "--config", str(config),
                     "--set", "recall.top_k=20", "--set", "recall.actors=2")  # 2 actors on 2 CPUs: reads still run
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"recall table: {run / 'recall' / 'table'}" in done.stdout
    assert "most_popular" in done.stdout
    report = json.loads((run / "report" / "report.json").read_text())
    prep = json.loads((run / "prep" / "_manifest.json").read_text())
    # every user with two or more valid events is evaluated on their last one
    assert report["users"] == prep["counts"]["eval_users"] > 350
    assert report["dataset"] == "canonical:data"
    # lists of recall.top_k=20 items: metrics at 10, none at 50 and beyond
    assert set(report["model"]) >= {"hr@10", "recall@10", "ndcg@10", "mrr", "coverage", "mean_popularity"}
    assert "hr@50" not in report["model"] and "hr@50" in report["baselines"]["most_popular"]
    for stage in ("prep", "model", "recall", "report"):
        assert (run / stage / "_manifest.json").exists()
    # the console: the stages' lines, the epochs and the log file's name; the engines' routine
    # lines only in RUN_DIR/logs
    (log,) = (run / "logs").glob("run-*Z.log")
    assert done.stderr.rstrip().endswith(f"log:          {log}")
    logged = log.read_text()
    for line in ("prep: 12000 events", "epoch 2/2", "train: 2 epochs", "recall: ", "evaluate: "):
        assert line in done.stderr and line in logged, line
    for noise in ("Started a local Ray instance", "Setting default log level", "Requesting resources",
                  "Checkpoint successfully created"):
        assert noise not in done.stderr, noise
    assert " INFO " in log.with_suffix(".spark.log").read_text()  # Spark's own lines

    again = watchnext("evaluate", "--run", str(run), "--config", str(config))
    assert again.returncode == 0 and json.loads((run / "report" / "report.json").read_text()) == report

    # a later prep into the same RUN_DIR (a new fingerprint): what was built on the old one is refused
    manifest_path = run / "prep" / "_manifest.json"
    manifest_path.write_text(json.dumps({**prep, "fingerprint": "0123456789abcdef"}))
    stale_model, stale_recall = watchnext("recall", "--run", str(run)), watchnext("evaluate", "--run", str(run))
    assert stale_model.returncode == 2 and stale_recall.returncode == 2
    assert f"{run / 'model'} was built from another prep (fingerprint {prep['fingerprint']})" in stale_model.stderr
    assert f"{run / 'recall'} was built from another prep" in stale_recall.stderr
    assert (run / "recall" / "_manifest.json").exists()  # refused before anything was touched


def test_unknown_config_key_is_an_error_naming_it(tmp_path: Path):
    bad = watchnext("train", "--run", str(tmp_path), "--set", "train.epoch=3")
    assert bad.returncode == 2
    assert "train.epoch: unknown key" in bad.stderr


def test_a_stage_refuses_an_unfinished_input(tmp_path: Path):
    (tmp_path / "prep").mkdir()  # no manifest: prep never finished
    refused = watchnext("train", "--run", str(tmp_path))
    assert refused.returncode == 2
    assert "has no _manifest.json" in refused.stderr


def test_a_second_run_into_the_same_output_at_once_refuses_with_a_clear_message(tmp_path: Path, ml100k):
    from tests.test_storage import holder

    first = holder(tmp_path / "run" / "prep")  # another run is writing RUN_DIR/prep
    try:
        second = watchnext("prep", "--data", ml100k, "--out", str(tmp_path / "run"))
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2
    assert f"run/prep is being written by another run (pid {first.pid} on" in second.stderr
    assert "Traceback" not in second.stderr


def test_an_output_outside_the_allowed_roots_is_refused_before_anything_runs(tmp_path: Path, ml100k):
    refused = watchnext("prep", "--data", ml100k, "--out", str(tmp_path / "run"),
                        "--set", f"paths.allowed_roots=[{Path(ml100k).parent}]")
    assert refused.returncode == 2
    assert f"--out {tmp_path / 'run'} is outside the allowed roots" in refused.stderr
    assert not (tmp_path / "run").exists()


def test_prep_refuses_an_input_inside_the_folder_it_empties(tmp_path: Path, ml100k):
    import shutil

    inside = tmp_path / "run" / "prep" / "mydata"
    shutil.copytree(ml100k, inside)
    refused = watchnext("prep", "--data", str(inside), "--out", str(tmp_path / "run"))
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "mydata lies inside" in refused.stderr and "which this stage empties before it writes" in refused.stderr
    assert sorted(p.name for p in inside.iterdir()) == sorted(p.name for p in Path(ml100k).iterdir())
