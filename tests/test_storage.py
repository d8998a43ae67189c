"""Stage directories: unfinished until the manifest, emptied before a rerun."""

from __future__ import annotations

import pytest

from watchnext import storage


def test_begin_stage_unfinishes_and_empties_all_but_what_it_keeps(tmp_path):
    stage = tmp_path / "model"
    (stage / "checkpoints" / "train").mkdir(parents=True)
    (stage / "checkpoints" / "train" / "model.pt").write_bytes(b"weights")
    (stage / "old.parquet").write_bytes(b"x")
    (stage / "old_dir").mkdir()
    storage.finish_stage(str(stage), 0.0, {})
    storage.begin_stage(str(stage), keep=("checkpoints",))
    assert sorted(p.name for p in stage.iterdir()) == ["checkpoints"]
    assert (stage / "checkpoints" / "train" / "model.pt").read_bytes() == b"weights"
    with pytest.raises(storage.StageNotFinished):
        storage.read_manifest(str(stage))
    storage.begin_stage(str(stage))
    assert list(stage.iterdir()) == []
