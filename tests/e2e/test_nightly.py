"""Nights of the nightly job on a log that lands one day at a time, as a scheduler runs them."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from tests.e2e.test_cli import watchnext
from watchnext.nightly import NIGHTLY_STEPS

pytestmark = pytest.mark.slow  # every test reads the nights the module fixture runs

FIRST, SECOND = "2026-03-04", "2026-03-05"


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """A 6-day log from 2026-03-01; night FIRST runs in one process, night SECOND one step per
    process (as the cluster's scheduler runs it), then SECOND again with the two-tower model
    (its item tower reads the items' categories), then with that model's item vectors replaced
    by random ones (its recall, evaluate and publish steps again): refused at the gate, then
    published with --force: (data, root, what the first SECOND published, the gate's runs)."""
    base = tmp_path_factory.mktemp("nightly")
    data, root, config = base / "data", base / "root", base / "small.yaml"
    gen = watchnext("generate", "--users", "400", "--items", "300", "--events", "12000", "--seed", "3",
                    "--start", "2026-03-01", "--days", "6", "--partition-by-date", "--out", str(data))
    assert gen.returncode == 0, gen.stderr
    # the baselines are the ml-100k run's to prove; validation HR@50 on a few hundred users of a
    # 2-epoch model moves more from night to night than a real log's, so the gate allows more;
    # half of the users are held out on each night's day, for enough targets
    config.write_text("train:\n  epochs: 2\n  workers: 1\nprep:\n  example_files: 2\nray:\n  num_cpus: 2\n"
                      "recall:\n  top_k: 50\nreport:\n  baselines: []\nnightly:\n  gate_max_drop: 0.5\n"
                      "  gate_max_val_drop: 0.5\n"
                      "  eval_share: 0.5\n")
    common = ("--data", str(data), "--root", str(root), "--config", str(config))
    first = watchnext("nightly", "--date", FIRST, *common)
    assert first.returncode == 0, first.stderr[-3000:]
    for step in NIGHTLY_STEPS:
        done = watchnext("nightly", "--date", SECOND, "--step", step, *common)
        assert done.returncode == 0, f"{step}: {done.stderr[-3000:]}"
    first_publish = {
        "summary": summary(root, SECOND),
        "files": sorted(p.name for p in (root / "recall" / f"run_date={SECOND}").iterdir()),
        "fresh": fresh_items(root, FIRST, SECOND),
        "embedded": embedded_items(root, SECOND),
    }
    first_publish["served"] = recalled(root, SECOND, first_publish["fresh"])
    again = watchnext("nightly", "--date", SECOND, *common, "--set", "train.model=two_tower")
    assert again.returncode == 0, again.stderr[-3000:]
    # the same night's model damaged after its validation: random item vectors, lists near chance
    published = summary(root, SECOND)
    published_files = sorted(p.name for p in (root / "recall" / f"run_date={SECOND}").iterdir())
    randomize_item_vectors(root / "runs" / SECOND / "model" / "item_embeddings.parquet")
    for step in ("recall", "evaluate"):
        done = watchnext("nightly", "--date", SECOND, "--step", step, *common)
        assert done.returncode == 0, f"{step}: {done.stderr[-3000:]}"
    refused = watchnext("nightly", "--date", SECOND, "--step", "publish", *common)
    gate = {"published": published, "refused": refused, "refused_summary": summary(root, SECOND),
            "published_files": published_files,
            "files_after_refusal": sorted(p.name for p in (root / "recall" / f"run_date={SECOND}").iterdir())}
    gate["forced"] = watchnext("nightly", "--date", SECOND, "--step", "publish", "--force", *common)
    return data, root, first_publish, gate


def randomize_item_vectors(path) -> None:
    table = pq.read_table(path)
    rows, dim = table.num_rows, len(table["vector"][0])
    vectors = np.random.default_rng(0).standard_normal((rows, dim), dtype=np.float32)
    field = table.schema.field("vector")
    random = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim).cast(field.type)
    pq.write_table(table.set_column(table.schema.get_field_index("vector"), field, random), path)


def summary(root, night: str) -> dict:
    return json.loads((root / "nightly" / f"{night}.json").read_text())


def vocab(root, night: str) -> dict[str, int]:
    table = pq.read_table(root / "runs" / night / "prep" / "vocab" / "items", columns=["item_id", "index"])
    return dict(zip(table["item_id"].to_pylist(), table["index"].to_pylist()))


def fresh_items(root, previous: str, night: str) -> set[str]:
    """Items in the night's vocabulary and not in the previous night's."""
    old = vocab(root, previous)
    return {item for item in vocab(root, night) if item not in old}


def embedded_items(root, night: str) -> set[str]:
    return set(pq.read_table(root / "runs" / night / "model" / "item_embeddings.parquet")["item_id"].to_pylist())


def recalled(root, night: str, items: set[str]) -> set[str]:
    lists = pq.read_table(root / "recall" / f"run_date={night}")["item_ids"].to_pylist()
    return {item for row in lists for item in row if item in items}


def assert_fresh_items_are_served(night_summary: dict, fresh: set[str], embedded: set[str], served: set[str]):
    assert fresh and fresh <= embedded and served
    assert night_summary["new_items"] | {"share_of_slots": None} == {
        "items": len(fresh), "with_embeddings": len(fresh), "indexed": len(fresh), "recalled": len(served),
        "share_of_slots": None}


def test_the_first_night_starts_cold_and_the_next_continues_it(nights):
    _, root, first_publish, _ = nights
    first, second = summary(root, FIRST), first_publish["summary"]
    assert first["previous_night"] is None and first["days"] == ["2026-03-01", FIRST]
    assert second["previous_night"] == FIRST and second["eval_day"] == SECOND
    assert not (root / "runs" / FIRST / "model" / "warm_start.pt").exists()
    assert (root / "runs" / SECOND / "model" / "warm_start.pt").exists()
    # yesterday's items keep their rows; tonight's are appended after them
    old, new = vocab(root, FIRST), vocab(root, SECOND)
    assert all(new[item] == index for item, index in old.items())
    appended = sorted(index for item, index in new.items() if item not in old)
    assert appended == list(range(len(old) + 1, len(new) + 1))


def test_items_first_seen_tonight_get_id_rows_and_are_recalled(nights):
    _, _, first, _ = nights  # the YouTube DNN: new items get fresh rows of the output table
    assert_fresh_items_are_served(first["summary"], first["fresh"], first["embedded"], first["served"])


def test_with_the_item_tower_new_items_get_vectors_from_their_features_and_are_recalled(nights):
    _, root, _, _ = nights
    spec = json.loads((root / "runs" / SECOND / "model" / "model_spec.json").read_text())["spec"]
    assert spec["model"] == "two_tower" and spec["item_categorical_sizes"]
    fresh = fresh_items(root, FIRST, SECOND)
    assert_fresh_items_are_served(summary(root, SECOND), fresh, embedded_items(root, SECOND),
                                  recalled(root, SECOND, fresh))


def test_tonight_is_judged_beside_the_lists_the_previous_night_published(nights):
    _, root, first_publish, _ = nights
    evaluation = first_publish["summary"]["evaluation"]
    assert evaluation["eval_day"] == SECOND and evaluation["users"] > 50  # half of the day's known users
    assert evaluation["previous"]["night"] == FIRST
    # the previous lists know neither tonight's items nor the day's watches
    assert evaluation["tonight"]["hr@50"] > evaluation["previous"]["hr@50"]
    # tonight's held-out users gave their day to the evaluation: no training example of theirs is from it
    prep = root / "runs" / SECOND / "prep"
    held = set(pq.read_table(prep / "eval", columns=["user_id"])["user_id"].to_pylist())
    examples = pq.read_table(prep / "examples", columns=["user_id", "ts"])
    tonight = pc.greater_equal(examples["ts"], pa.scalar(dt.datetime.fromisoformat(f"{SECOND}T00:00:00+00:00")))
    trained_tonight = set(pc.filter(examples["user_id"], tonight).to_pylist())
    assert len(held) == evaluation["users"] and trained_tonight and not trained_tonight & held
    tables = pads.dataset(root / "recall", format="parquet", partitioning="hive").to_table(columns=["run_date"])
    assert sorted(pc.unique(tables["run_date"]).to_pylist()) == [FIRST, SECOND]
    assert (root / "i2i" / f"run_date={SECOND}").is_dir()


def test_a_rerun_of_a_night_replaces_its_partitions(nights):
    _, root, first_publish, _ = nights
    # every write of the table names its files anew: the partition holds the rerun's files only
    after = sorted(p.name for p in (root / "recall" / f"run_date={SECOND}").iterdir())
    written = sorted(p.name for p in (root / "runs" / SECOND / "recall" / "table" / f"run_date={SECOND}").iterdir())
    assert after == written and not set(after) & set(first_publish["files"])
    rerun = summary(root, SECOND)
    assert rerun["previous_night"] == FIRST and rerun["model_version"] != first_publish["summary"]["model_version"]
    for table in ("recall", "i2i"):
        versions = pq.read_table(root / table / f"run_date={SECOND}", columns=["model_version"])["model_version"]
        assert pc.unique(versions).to_pylist() == [rerun["model_version"]]
        assert sorted(p.name for p in (root / table).iterdir()) == [f"run_date={FIRST}", f"run_date={SECOND}"]


def test_a_missing_day_fails_with_a_clear_message_and_writes_nothing(nights, tmp_path):
    data, _, _, _ = nights
    gap = tmp_path / "data"
    shutil.copytree(data, gap)
    shutil.rmtree(gap / "clicks" / "date=2026-03-02")
    failed = watchnext("nightly", "--date", SECOND, "--data", str(gap), "--root", str(tmp_path / "root"))
    assert failed.returncode == 2
    assert "the day 2026-03-02 of 2026-03-01..2026-03-05 is missing" in failed.stderr
    assert not (tmp_path / "root").exists()


def test_a_night_the_gate_refuses_keeps_the_published_tables_and_says_why(nights):
    _, root, first_publish, gate = nights
    # every published night passed the gate, each judged against the night before it
    first, second = summary(root, FIRST), first_publish["summary"]
    assert first["published"] and first["gate"] == {"stats": first["gate"]["stats"], "against": None,
                                                    "refused": [], "forced": False}
    assert second["published"] and second["gate"]["against"] == FIRST and not second["gate"]["refused"]
    stats = second["gate"]["stats"]
    assert stats["days"] == 5 and stats["events_in"] == second["counts"]["events_in"]
    assert 0 < stats["val_hr50"] <= 1 and 0 < stats["coverage"] <= 1 and stats["full_lists"] == 1.0
    # random item vectors: the validation the training measured before they replaced the
    # model's is as it was; the exported model's own lists on the validation users fall near
    # chance, and that refuses the night (the merged lists lean on the other channels): exit
    # code 3 naming the rule, nothing swapped in, the reasons in nightly/D.json
    refused, before = gate["refused"], gate["published"]["gate"]["stats"]
    assert refused.returncode == 3, refused.stderr[-3000:]
    assert f"night {SECOND} was not published (--force publishes it anyway)" in refused.stderr
    assert gate["files_after_refusal"] == gate["published_files"]
    assert gate["refused_summary"]["published"] is False and gate["refused_summary"]["tables"] == {}
    stats, reasons = gate["refused_summary"]["gate"]["stats"], gate["refused_summary"]["gate"]["refused"]
    assert stats["val_hr50"] == before["val_hr50"] and stats["served_val_users"] == before["served_val_users"]
    served_first = first["gate"]["stats"]["served_val_hr50"]
    assert stats["served_val_hr50"] < 0.5 * served_first and 0.5 * served_first < before["served_val_hr50"]
    served = (f"the exported model's validation HR@50 in recall {stats['served_val_hr50']:.4f} is more than 50% "
              f"below the last published night's {served_first:.4f}")
    assert any(r.startswith(served) for r in reasons) and not any(r.startswith("validation") for r in reasons)
    assert all(r in refused.stderr for r in reasons)
    # --force publishes it and keeps the reasons
    forced = gate["forced"]
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert "published with --force, although" in forced.stderr
    night = summary(root, SECOND)
    assert night["published"] and night["gate"]["forced"] and night["gate"]["refused"]
    # the history across nights, rewritten by every publish: the first night, and SECOND forced
    history = json.loads((root / "history.json").read_text())
    assert [(n["date"], n["published"], n["forced"]) for n in history["nights"]] == [(FIRST, True, False),
                                                                                     (SECOND, True, True)]
    assert history["nights"][1]["evaluation"]["hr@50"] == night["evaluation"]["tonight"]["hr@50"]
    assert set(history["nights"][1]["steps"]) == {"prep", "train", "recall", "evaluate", "compare"}
    assert "yes (forced)" in (root / "history.html").read_text()
