"""Nights of the nightly job on a log that lands one day at a time, as a scheduler runs them."""

from __future__ import annotations

import json
import shutil

import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from tests.e2e.test_cli import watchnext
from watchnext.nightly import NIGHTLY_STEPS

FIRST, SECOND, HELD_OUT = "2026-03-04", "2026-03-05", "2026-03-06"


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """A 6-day log from 2026-03-01; night FIRST runs in one process, night SECOND one step per
    process (as the cluster's scheduler runs it)."""
    base = tmp_path_factory.mktemp("nightly")
    data, root, config = base / "data", base / "root", base / "small.yaml"
    gen = watchnext("generate", "--users", "400", "--items", "300", "--events", "12000", "--seed", "3",
                    "--start", "2026-03-01", "--days", "6", "--partition-by-date", "--out", str(data))
    assert gen.returncode == 0, gen.stderr
    config.write_text("train:\n  epochs: 2\n  workers: 1\nprep:\n  example_files: 2\nray:\n  num_cpus: 2\n"
                      "recall:\n  top_k: 50\n")
    common = ("--data", str(data), "--root", str(root), "--config", str(config))
    first = watchnext("nightly", "--date", FIRST, *common)
    assert first.returncode == 0, first.stderr[-3000:]
    for step in NIGHTLY_STEPS:
        done = watchnext("nightly", "--date", SECOND, "--step", step, *common)
        assert done.returncode == 0, f"{step}: {done.stderr[-3000:]}"
    return data, root, common


def summary(root, night: str) -> dict:
    return json.loads((root / "nightly" / f"{night}.json").read_text())


def vocab(root, night: str) -> dict[str, int]:
    table = pq.read_table(root / "runs" / night / "prep" / "vocab" / "items", columns=["item_id", "index"])
    return dict(zip(table["item_id"].to_pylist(), table["index"].to_pylist()))


def test_the_first_night_starts_cold_and_the_next_continues_it(nights):
    _, root, _ = nights
    first, second = summary(root, FIRST), summary(root, SECOND)
    assert first["previous_night"] is None and first["days"] == ["2026-03-01", FIRST]
    assert second["previous_night"] == FIRST and second["eval_day"] == HELD_OUT
    assert not (root / "runs" / FIRST / "model" / "warm_start.pt").exists()
    assert (root / "runs" / SECOND / "model" / "warm_start.pt").exists()
    # yesterday's items keep their rows; tonight's are appended after them
    old, new = vocab(root, FIRST), vocab(root, SECOND)
    assert all(new[item] == index for item, index in old.items())
    appended = sorted(index for item, index in new.items() if item not in old)
    assert appended == list(range(len(old) + 1, len(new) + 1))


def test_items_first_seen_tonight_get_embeddings_and_are_recalled(nights):
    _, root, _ = nights
    old, new = vocab(root, FIRST), vocab(root, SECOND)
    fresh = {item for item in new if item not in old}
    embedded = set(pq.read_table(root / "runs" / SECOND / "model" / "item_embeddings.parquet")["item_id"].to_pylist())
    lists = pq.read_table(root / "recall" / f"run_date={SECOND}")["item_ids"].to_pylist()
    recalled = {item for row in lists for item in row if item in fresh}
    assert fresh and fresh <= embedded and recalled
    assert summary(root, SECOND)["new_items"] | {"share_of_slots": None} == {
        "items": len(fresh), "with_embeddings": len(fresh), "indexed": len(fresh), "recalled": len(recalled),
        "share_of_slots": None}


def test_tonight_is_judged_beside_the_lists_the_previous_night_published(nights):
    _, root, _ = nights
    evaluation = summary(root, SECOND)["evaluation"]
    assert evaluation["eval_day"] == HELD_OUT and evaluation["users"] > 100
    assert evaluation["previous"]["night"] == FIRST
    # the previous lists know neither tonight's items nor the day's watches
    assert evaluation["tonight"]["hr@50"] > evaluation["previous"]["hr@50"]
    tables = pads.dataset(root / "recall", format="parquet", partitioning="hive").to_table(columns=["run_date"])
    assert sorted(pc.unique(tables["run_date"]).to_pylist()) == [FIRST, SECOND]
    assert (root / "i2i" / f"run_date={SECOND}").is_dir()


def test_a_rerun_of_a_night_replaces_its_partitions(nights):
    _, root, common = nights
    published = root / "recall" / f"run_date={SECOND}"
    before = sorted(p.name for p in published.iterdir())
    again = watchnext("nightly", "--date", SECOND, *common)
    assert again.returncode == 0, again.stderr[-3000:]
    # every write of the table names its files anew: the partition holds the rerun's files only
    after = sorted(p.name for p in published.iterdir())
    written = sorted(p.name for p in (root / "runs" / SECOND / "recall" / "table" / f"run_date={SECOND}").iterdir())
    assert after == written and not set(after) & set(before)
    assert summary(root, SECOND)["previous_night"] == FIRST
    for table in ("recall", "i2i"):
        assert sorted(p.name for p in (root / table).iterdir()) == [f"run_date={FIRST}", f"run_date={SECOND}"]


def test_a_missing_day_fails_with_a_clear_message_and_writes_nothing(nights, tmp_path):
    data, _, _ = nights
    gap = tmp_path / "data"
    shutil.copytree(data, gap)
    shutil.rmtree(gap / "clicks" / "date=2026-03-02")
    failed = watchnext("nightly", "--date", SECOND, "--data", str(gap), "--root", str(tmp_path / "root"))
    assert failed.returncode == 2
    assert "the day 2026-03-02 of 2026-03-01..2026-03-05 is missing" in failed.stderr
    assert not (tmp_path / "root").exists()
