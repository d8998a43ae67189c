"""The same input and seed give the same prep output, whatever the engine's partitioning:
the embedded local[2] session against a local-cluster of two executor processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from jobs.prep import run_prep
from watchnext.config import PrepConfig
from watchnext.synthetic import generate

TABLES = {
    "examples": ["user_id", "ts", "label"],
    "user_features": ["user_id"],
    "eval": ["user_id"],
    "vocab/items": ["index"],
    "vocab/search_tokens": ["index"],
    "vocab/item_sampling": ["index"],
    "rejected": ["user_id", "item_id", "ts", "reason"],
}
SETTINGS = ["prep.anchor=2026-06-01T00:00:00Z", "prep.max_examples_per_user=20", "prep.example_files=3"]


def content(prep_dir: Path, name: str, keys: list[str]):
    table = pq.read_table(prep_dir / name)
    return table.sort_by([(k, "ascending") for k in keys]).to_pylist()


def test_local_cluster_gives_identical_output(spark, tmp_path):
    data = tmp_path / "data"
    generate(str(data), users=300, items=200, events=8000, seed=5)
    cfg = PrepConfig.model_validate({s.split("=")[0].split(".")[1]: s.split("=")[1] for s in SETTINGS})
    run_prep(spark, str(data), str(tmp_path / "local" / "prep"), cfg)

    cluster = subprocess.run(
        [sys.executable, "-m", "watchnext.cli", "prep", "--data", str(data), "--out", str(tmp_path / "cluster"),
         "--set", "spark.master=local-cluster[2,1,1024]", "--set", "spark.shuffle_partitions=7",
         *[arg for s in SETTINGS for arg in ("--set", s)]],
        capture_output=True, text=True, timeout=600,
    )
    assert cluster.returncode == 0, cluster.stderr[-3000:]
    for name, keys in TABLES.items():
        local = content(tmp_path / "local" / "prep", name, keys)
        assert local == content(tmp_path / "cluster" / "prep", name, keys), name
    assert len(content(tmp_path / "local" / "prep", "examples", TABLES["examples"])) > 1000
