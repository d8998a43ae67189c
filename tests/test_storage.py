"""Stage directories: unfinished until the manifest, emptied before a rerun, one writer at a
time."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import locks, storage

HOLD = "import sys, time; from core import storage; storage.begin_stage(sys.argv[1]); print('held', flush=True); "


def holder(stage, then: str = "time.sleep(120)") -> subprocess.Popen:
    """Another process that takes the stage's lock (and then does `then`)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD + then, str(stage)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_begin_stage_unfinishes_and_empties_all_but_what_it_keeps(tmp_path):
    stage = tmp_path / "model"
    (stage / "checkpoints" / "train").mkdir(parents=True)
    (stage / "checkpoints" / "train" / "model.pt").write_bytes(b"weights")
    (stage / "old.parquet").write_bytes(b"x")
    (stage / "old_dir").mkdir()
    storage.finish_stage(str(stage), 0.0, {})
    storage.begin_stage(str(stage), keep=("checkpoints",))
    assert sorted(p.name for p in stage.iterdir()) == [locks.LOCK, "checkpoints"]
    assert (stage / "checkpoints" / "train" / "model.pt").read_bytes() == b"weights"
    with pytest.raises(storage.StageNotFinished):
        storage.read_manifest(str(stage))
    storage.begin_stage(str(stage))
    assert [p.name for p in stage.iterdir()] == [locks.LOCK]
    storage.finish_stage(str(stage), 0.0, {})
    assert [p.name for p in stage.iterdir()] == ["_manifest.json"]  # the lock is dropped


def test_a_second_run_into_a_stage_being_written_is_refused_until_the_first_is_gone(tmp_path):
    stage = tmp_path / "prep"
    first = holder(stage)
    try:
        (stage / "part-0.parquet").write_bytes(b"the first run's output")
        with pytest.raises(locks.StageBusy, match=f"being written by another run \\(pid {first.pid} on "
                                                  f"{socket.gethostname()}"):
            storage.begin_stage(str(stage))
        assert (stage / "part-0.parquet").read_bytes() == b"the first run's output"  # nothing deleted
    finally:
        first.kill()
        first.wait()
    # killed without cleaning up: its lock names a process that is gone, so it is taken over
    storage.begin_stage(str(stage))
    assert [p.name for p in stage.iterdir()] == [locks.LOCK]
    assert json.loads((stage / locks.LOCK).read_text())["pid"] != first.pid


def test_a_process_that_exits_drops_its_locks(tmp_path):
    stage = tmp_path / "recall"
    done = holder(stage, then="pass")
    assert done.wait() == 0
    assert not (stage / locks.LOCK).exists()


def test_a_lock_from_another_host_holds_for_a_day(tmp_path):
    stage = tmp_path / "model"
    stage.mkdir()
    lock = {"host": "elsewhere", "pid": 1, "token": "t", "started": time.time() - 3600}
    (stage / locks.LOCK).write_text(json.dumps(lock))
    with pytest.raises(locks.StageBusy, match="pid 1 on elsewhere"):
        storage.begin_stage(str(stage))
    (stage / locks.LOCK).write_text(json.dumps({**lock, "started": time.time() - locks.STALE_AFTER - 60}))
    storage.begin_stage(str(stage))
    assert json.loads((stage / locks.LOCK).read_text())["host"] == socket.gethostname()


def test_replace_dir_swaps_the_whole_folder_and_leaves_nothing_behind(tmp_path):
    old, new = tmp_path / "run" / "old", tmp_path / "run" / "new"
    for folder, files in ((old, ["a.parquet", "b.parquet"]), (new, ["c.parquet"])):
        folder.mkdir(parents=True)
        for name in files:
            (folder / name).write_text(folder.name)
    table = tmp_path / "recall"
    storage.replace_dir(str(old), str(table / "run_date=2026-03-04"))
    assert sorted(p.name for p in (table / "run_date=2026-03-04").iterdir()) == ["a.parquet", "b.parquet"]
    (table / ".run_date=2026-03-04.new-dead0000").mkdir()  # what an interrupted replace left
    storage.replace_dir(str(new), str(table / "run_date=2026-03-04"))
    assert sorted(p.name for p in table.iterdir()) == ["run_date=2026-03-04"]
    assert [(p.name, p.read_text()) for p in (table / "run_date=2026-03-04").iterdir()] == [("c.parquet", "new")]
    assert (old / "a.parquet").exists()  # the source is copied, not moved


def test_replace_dir_from_a_missing_folder_keeps_what_was_there(tmp_path):
    (tmp_path / "table" / "run_date=2026-03-04").mkdir(parents=True)
    (tmp_path / "table" / "run_date=2026-03-04" / "a.parquet").write_text("served")
    with pytest.raises(FileNotFoundError, match="no such folder to publish"):
        storage.replace_dir(str(tmp_path / "nothing"), str(tmp_path / "table" / "run_date=2026-03-04"))
    assert (tmp_path / "table" / "run_date=2026-03-04" / "a.parquet").read_text() == "served"


def test_a_stage_refuses_an_input_inside_itself_and_removes_only_the_links_it_holds(tmp_path):
    stage, outside = tmp_path / "run" / "prep", tmp_path / "outside"
    (stage / "mydata").mkdir(parents=True)
    (stage / "mydata" / "clicks.csv").write_text("user_id,item_id,ts\n")
    outside.mkdir()
    (outside / "planted").write_text("keep")
    with pytest.raises(ValueError, match="mydata lies inside .*prep, which this stage empties"):
        storage.begin_stage(str(stage), inputs=(str(tmp_path / "run" / "prep" / ".." / "prep" / "mydata"),))
    assert (stage / "mydata" / "clicks.csv").exists() and not (stage / locks.LOCK).exists()
    (stage / "link").symlink_to(outside)
    storage.begin_stage(str(stage), inputs=(str(outside), None))
    assert (outside / "planted").read_text() == "keep"  # the link went, not what it pointed to
    assert [p.name for p in stage.iterdir()] == [locks.LOCK]


def test_every_build_of_a_stage_has_its_own_fingerprint_and_a_stale_downstream_is_refused(tmp_path):
    prep, model = tmp_path / "prep", tmp_path / "model"
    first = storage.finish_stage(str(prep), 0.0, {"config": {"seed": 1}})
    built = storage.finish_stage(str(model), 0.0, {"built_from": {"prep": first["fingerprint"]}})
    storage.check_built_from(str(model), built, {"prep": first})
    again = storage.finish_stage(str(prep), 0.0, {"config": {"seed": 1}})  # the same inputs, a new build
    assert again["fingerprint"] != first["fingerprint"]
    with pytest.raises(storage.StaleStage, match=f"model was built from another prep .fingerprint {first['fingerprint']}"):
        storage.check_built_from(str(model), built, {"prep": again})
    storage.check_built_from(str(model), {"stage": "model"}, {"prep": again})  # a manifest from before lineage


SEGMENTS = st.lists(st.sampled_from(["a", "b", "..", ".", "out"]), max_size=6)


@settings(max_examples=200, deadline=None)
@given(root_parts=SEGMENTS, path_parts=SEGMENTS)
def test_a_path_is_under_a_root_exactly_when_its_resolved_form_is(root_parts, path_parts):
    # a tree with a link inside it ("out") that leads outside: is_under must see through it
    with tempfile.TemporaryDirectory() as scratch:
        base = os.path.realpath(scratch)
        for folder in ("tree/a/b", "tree/b/a", "elsewhere/a"):
            os.makedirs(os.path.join(base, folder), exist_ok=True)
        for folder in ("tree", "tree/a", "tree/b", "tree/a/b"):
            os.symlink(os.path.join(base, "elsewhere"), os.path.join(base, folder, "out"))
        root = os.path.join(base, "tree", *root_parts)
        path = os.path.join(root, *path_parts)
        real_path, real_root = os.path.realpath(path), os.path.realpath(root)
        # the filesystem's root ("/", reached with enough "..") holds every path
        expected = real_path == real_root or real_path.startswith(real_root.rstrip(os.sep) + os.sep)
        assert storage.is_under(path, root) == expected


@given(extra=st.lists(st.sampled_from(["x", "y", "..", ".", ""]), max_size=5))
def test_a_uri_is_under_its_prefix_unless_it_holds_a_parent_step(extra):
    path = "s3://bucket/runs/" + "/".join(extra)
    assert storage.is_under(path, "s3://bucket/runs") == (".." not in extra)
    assert not storage.is_under(path, "/bucket/runs")  # never a local root for a URI


@given(recorded=st.dictionaries(st.sampled_from(["prep", "model", "recall"]), st.sampled_from(["f1", "f2"])),
       current=st.dictionaries(st.sampled_from(["prep", "model", "recall"]), st.sampled_from(["f1", "f2"])))
def test_a_stage_is_stale_exactly_when_an_upstream_it_records_was_rebuilt(recorded, current):
    manifest = {"stage": "report", "built_from": recorded}
    upstream = {name: {"fingerprint": fp} for name, fp in current.items()}
    stale = any(name in recorded and recorded[name] != fp for name, fp in current.items())
    if stale:
        with pytest.raises(storage.StaleStage, match="was rebuilt since"):
            storage.check_built_from("RUN/report", manifest, upstream)
    else:
        storage.check_built_from("RUN/report", manifest, upstream)


def test_take_rows_reads_only_the_row_groups_that_hold_the_rows_and_matches_a_take(tmp_path):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    # two files of 10 and 7 rows in row groups of 3: positions run file by file, group by group
    for name, first, count in (("part-0.parquet", 0, 10), ("part-1.parquet", 10, 7)):
        ids = np.arange(first, first + count)
        pq.write_table(pa.table({"row": ids, "history": [[int(i)] * (int(i) % 4) for i in ids]}),
                       tmp_path / name, row_group_size=3)
    whole = storage.parquet_dataset(str(tmp_path))
    for rows in ([0], [16], [2, 3, 9, 10, 11, 16], list(range(17)), []):
        got = storage.take_rows(str(tmp_path), np.array(rows, dtype=np.int64))
        assert got.equals(whole.take(pa.array(rows, pa.int64()))), rows
        assert got.column("row").to_pylist() == rows
    assert storage.take_rows(str(tmp_path), np.array([5, 13]), columns=["history"]).to_pylist() == [
        {"history": [5]}, {"history": [13]}]
    assert storage.take_rows(str(tmp_path), np.array([], dtype=np.int64), columns=["row"]).column_names == ["row"]
