"""The same input and seed give the same prep output, whatever the engine's partitioning:
the embedded local[2] session against a local-cluster of two executor processes, one of
which is killed mid-job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.prep import run_prep
from synthetic.generator import generate
from tests.processes import kill_one
from core.config import PrepConfig

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


@pytest.fixture(scope="module")
def local_prep(spark, tmp_path_factory) -> tuple[Path, Path]:
    """(data, the embedded session's prep of it)."""
    root = tmp_path_factory.mktemp("determinism")
    generate(str(root / "data"), users=300, items=200, events=8000, seed=5)
    cfg = PrepConfig.model_validate({s.split("=")[0].split(".")[1]: s.split("=")[1] for s in SETTINGS})
    run_prep(spark, str(root / "data"), str(root / "local" / "prep"), cfg)
    return root / "data", root / "local" / "prep"


def cluster_prep(data: Path, out: Path) -> subprocess.Popen:
    """`watchnext prep` on a local-cluster of two executor processes, 7 shuffle partitions."""
    return subprocess.Popen(
        [sys.executable, "-m", "watchnext", "prep", "--data", str(data), "--out", str(out),
         "--set", "spark.master=local-cluster[2,1,1024]", "--set", "spark.shuffle_partitions=7",
         *[arg for s in SETTINGS for arg in ("--set", s)]],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def assert_same_output(local: Path, other: Path) -> None:
    for name, keys in TABLES.items():
        assert content(local, name, keys) == content(other, name, keys), name
    assert len(content(local, "examples", TABLES["examples"])) > 1000


@pytest.mark.slow
def test_a_local_cluster_whose_executor_is_killed_gives_the_embedded_sessions_output(local_prep, tmp_path):
    """Another partitioning (two executor processes, 7 shuffle partitions) and a lost
    executor's tasks run again elsewhere: the same rows, table by table."""
    data, local = local_prep
    cluster = cluster_prep(data, tmp_path / "cluster")
    # once the job's tasks run (the session is up and the examples are being built)
    killed = kill_one(cluster, "CoarseGrainedExecutorBackend",
                      ready=lambda: (tmp_path / "cluster" / "prep" / "rejected").exists())
    _, stderr = cluster.communicate(timeout=600)
    assert cluster.returncode == 0, stderr[-3000:]
    assert not killed.is_running()
    assert "Lost executor" in stderr or "lost executor" in stderr.lower(), stderr[-3000:]
    assert_same_output(local, tmp_path / "cluster" / "prep")
