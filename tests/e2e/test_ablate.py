"""`watchnext ablate` on a small synthetic log: variants share a prep where they can, the
table and the example-age figure come out, and a rerun resumes instead of training again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_cli import watchnext

GRID = """variants:
  example_age_off: {train.example_age: false}
  downsampling_on: {prep.subsample_threshold: 0.001}
  depth_1: {train.hidden_layers: [256, 64]}
"""
SMALL = ("train: {epochs: 2, workers: 1}\nprep: {example_files: 2}\nray: {num_cpus: 2}\nrecall: {top_k: 50}\n"
         "report: {baselines: []}\n")  # the scored baselines are the ml-100k run's to prove


@pytest.mark.slow
def test_a_grid_of_variants_runs_shares_preps_and_resumes(tmp_path: Path):
    data, out = tmp_path / "data", tmp_path / "out"
    assert watchnext("generate", "--users", "400", "--items", "300", "--events", "12000", "--seed", "3",
                     "--out", str(data)).returncode == 0
    (tmp_path / "grid.yaml").write_text(GRID)
    (tmp_path / "small.yaml").write_text(SMALL)
    args = ("ablate", "--data", str(data), "--out", str(out), "--grid", str(tmp_path / "grid.yaml"),
            "--config", str(tmp_path / "small.yaml"))
    done = watchnext(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "ablation.json").read_text())
    variants = summary["variants"]
    assert list(variants) == ["base", "example_age_off", "downsampling_on", "depth_1"]
    assert variants["depth_1"] == {"overrides": {"train.hidden_layers": [256, 64]}, "same_as": "base"}
    runs = out / "runs"
    # a training-only variant reads the base's prep; a prep variant has its own
    assert (runs / "example_age_off" / "r0" / "prep").resolve() == (runs / "base" / "r0" / "prep").resolve()
    assert not (runs / "downsampling_on" / "r0" / "prep").is_symlink()
    base_prep = json.loads((runs / "base" / "r0" / "prep" / "_manifest.json").read_text())
    own_prep = json.loads((runs / "downsampling_on" / "r0" / "prep" / "_manifest.json").read_text())
    assert own_prep["config"]["subsample_threshold"] == 1e-3 and base_prep["config"]["subsample_threshold"] is None
    for name in ("base", "example_age_off", "downsampling_on"):
        line = variants[name]
        report = json.loads((runs / name / "r0" / "report" / "report.json").read_text())
        assert line["hr@50"] == report["model"]["hr@50"] and line["hr@50_ci95"] == report["model"]["hr@50_ci95"]
        effect = line["example_age_effect"]
        assert effect["example_age"] == (name != "example_age_off")
        assert effect["empirical"][0] == 0.0  # a label is a watch: its item is in the log by then
        assert abs(sum(effect["empirical"]) - 1) < 1e-9 and abs(sum(effect["predicted"]) - 1) < 1e-6
    assert "| example_age_off | train.example_age=false |" in (out / "ablation.md").read_text()
    page = (out / "ablation.html").read_text()
    assert "base (example age on)" in page and "example_age_off (example age off)" in page

    again = watchnext(*args)  # every variant finished with the same configuration: nothing reruns
    assert again.returncode == 0, again.stderr[-3000:]
    assert "ablate: " + str(runs) not in again.stderr and "train:" not in again.stderr
    assert json.loads((out / "ablation.json").read_text()) == summary
