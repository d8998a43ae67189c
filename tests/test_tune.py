"""`watchnext tune`: the search space checked at the boundary, one prep per combination of
prep settings, real trials through ASHA, and best.yaml the configuration of the trial with
the best val_hr@50."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from watchnext.ablate import resolve
from watchnext.tune import (
    METRIC, SEARCH_SPACE, base_settings, best_config, best_trial, neighbours, parse_space, prep_key, prep_settings,
    run_tune, trials_at_once,
)
from core.config import Config, ConfigError, config_from_dict, load_config

LR = {"loguniform": [0.001, 0.01]}


def test_the_default_space_is_valid_and_tunes_the_prep_and_training_knobs():
    knobs = parse_space(SEARCH_SPACE, Config())
    assert set(knobs) >= {"prep.max_examples_per_user", "prep.subsample_threshold", "train.recent_items",
                          "train.example_age", "train.learning_rate", "train.lr_schedule", "train.embedding_dim",
                          "train.num_negatives", "train.loss", "train.model"}
    assert all(knob.kind == "choice" for knob in knobs.values() if knob.is_prep)
    uncapped = load_config(None, ["prep.max_examples_per_user=0", "prep.subsample_threshold=null"])
    assert len(prep_settings(knobs, uncapped)) == 4  # 2 x 2 preps, the base's among them


@pytest.mark.parametrize("space, message", [
    ({"recall.top_k": {"choice": [10]}}, "tune.space.recall.top_k: only prep.* and train.*"),
    ({"train.learning_rat": {"choice": [0.1]}}, "tune.space.train.learning_rat: unknown key"),
    ({"train.learning_rate": {"normal": [0, 1]}}, "expected one of"),
    ({"train.learning_rate": {"loguniform": [0.01, 0.001]}}, "low < high"),
    ({"train.learning_rate": {"loguniform": [0, 0.01]}}, "positive low end"),
    ({"train.embedding_dim": {"uniform": [16, 64]}}, "draws real numbers; give this setting as {choice"),
    ({"prep.subsample_threshold": {"loguniform": [0.0001, 0.01]}}, "one Spark prep"),
    ({"train.loss": {"choice": ["sampled", "softmax"]}}, "tune.space.*train.loss"),
    ({"train.epochs": {"choice": []}}, "choice needs a list"),
    ([], "expected a mapping"),
])
def test_a_bad_space_is_an_error_naming_the_knob(space, message):
    with pytest.raises(ConfigError, match=message):
        parse_space(space, Config())


def test_settings_given_with_set_leave_the_space():
    space = {"train.learning_rate": LR, "train.loss": {"choice": ["sampled", "in_batch"]}}
    assert list(parse_space(space, Config(), fixed=["train.loss"])) == ["train.learning_rate"]
    with pytest.raises(ConfigError, match="nothing is left to tune"):
        parse_space(space, Config(), fixed=["train.loss", "train.learning_rate"])


def test_each_combination_of_prep_choices_is_one_prep_the_base_first():
    base = load_config(None, ["prep.max_examples_per_user=30", "prep.subsample_threshold=0.001"])
    space = {"prep.max_examples_per_user": {"choice": [0, 10]}, "prep.subsample_threshold": {"choice": [None, 0.001]},
             "train.learning_rate": LR}
    combos = prep_settings(parse_space(space, base), base)
    # the base's own, then its neighbour without down-sampling (the cap of 30 is no choice),
    # then the 2 x 2 combinations
    assert combos[:2] == [{"prep.max_examples_per_user": 30, "prep.subsample_threshold": 0.001},
                          {"prep.max_examples_per_user": 30, "prep.subsample_threshold": None}]
    assert len(combos) == 6 and len({prep_key(c) for c in combos}) == 6
    assert prep_key(combos[0]) == "max_examples_per_user=30,subsample_threshold=0.001"
    # a trial finds its prep from its prep settings alone
    assert prep_key({**combos[1], "train.learning_rate": 0.004}) == prep_key(combos[1])
    assert prep_key({"train.learning_rate": 0.004}) == "base"


def test_the_neighbours_change_one_knob_each_ranges_to_the_midpoints_towards_their_ends():
    base = load_config(None, ["train.learning_rate=0.004", "train.loss=sampled", "train.dropout=0.2"])
    space = {"train.learning_rate": LR, "train.loss": {"choice": ["sampled", "in_batch", "mixed"]},
             "train.dropout": {"uniform": [0.0, 0.5]}}
    own = {"train.learning_rate": 0.004, "train.loss": "sampled", "train.dropout": 0.2}
    assert neighbours(base, parse_space(space, base)) == [
        {**own, "train.learning_rate": 0.002}, {**own, "train.learning_rate": 0.006325},  # sqrt(0.004 x the end)
        {**own, "train.loss": "in_batch"}, {**own, "train.loss": "mixed"},
        {**own, "train.dropout": 0.1}, {**own, "train.dropout": 0.35},
    ]


def test_the_choice_is_the_best_val_hr_at_any_epoch_the_first_drawn_of_equals():
    trials = [{"trial": 0, METRIC: 0.30}, {"trial": 1, METRIC: 0.35}, {"trial": 2, METRIC: 0.35},
              {"trial": 3, METRIC: None}]  # trial 3 failed before its first epoch
    assert best_trial(trials)["trial"] == 1


def test_best_yaml_is_the_bases_changes_with_every_tuned_setting():
    base = load_config(None, ["train.epochs=3", "ray.num_cpus=2"])
    schedule = Config().train.lr_schedule  # a tuned setting at its default is written all the same: it was chosen
    settings = {"train.learning_rate": 0.005, "train.lr_schedule": schedule}
    sections = best_config(base, settings)
    assert sections == {"ray": {"num_cpus": 2}, "train": {"epochs": 3, "learning_rate": 0.005, "lr_schedule": schedule}}
    assert config_from_dict(sections) == resolve(base, settings, "best")


def test_trials_at_once_follow_the_cluster_and_the_workers():
    two_workers = load_config(None, ["train.workers=2"])
    assert trials_at_once(two_workers, {"CPU": 16}) == 5  # 2 workers + 1 for reads each
    assert trials_at_once(two_workers, {"CPU": 2}) == 1  # at least one
    on_gpus = load_config(None, ["train.workers=2", "train.use_gpu=true"])
    assert trials_at_once(on_gpus, {"CPU": 64, "GPU": 4}) == 2
    assert trials_at_once(load_config(None, ["tune.trials_at_once=3"]), {"CPU": 2}) == 3


@pytest.mark.slow
def test_tune_runs_trials_through_asha_and_its_best_yaml_trains(spark, ray_local, tmp_path: Path):
    from jobs.prep import run_prep
    from ray_train.trainer import run_train
    from synthetic.generator import generate

    def prep(data: str, run_dir: str, cfg: Config) -> None:  # the session's Spark, as the command's prep stage
        run_prep(spark, data, f"{run_dir}/prep", cfg.prep)

    data, out = tmp_path / "data", tmp_path / "out"
    generate(str(data), users=400, items=300, events=12000, seed=3)
    base = config_from_dict({
        "train": {"epochs": 2, "workers": 1}, "prep": {"example_files": 2},
        "tune": {"max_trials": 2, "grace_epochs": 1, "budget_minutes": 10,
                 # no prep knob: one prep (a Spark prep costs more than a trial here; the sharing of
                 # preps between prep settings is the test above)
                 "space": {"train.learning_rate": LR, "train.embedding_dim": {"choice": [16, 32]}}},
    })
    summary = run_tune(str(data), str(out), base, fixed=[], prep=prep)

    trials = summary["trials"]
    assert len(trials) == 2 and all(t["history"] for t in trials)
    assert trials[0]["settings"] == base_settings(base, summary["space"])  # the base configuration first
    assert summary["scheduler"] == {"name": "ASHA", "time_attr": "epoch", "max_t": 2, "grace_period": 1,
                                    "reduction_factor": 3}
    assert list(summary["preps"]) == ["base"]
    for trial in trials:
        assert trial[METRIC] == max(value for _, value in trial["history"])
        assert trial["ended"] in ("finished", "stopped by ASHA", "early stopping")
    assert summary["best"][METRIC] == max(t[METRIC] for t in trials)
    assert summary["best"]["settings"] == best_trial(trials)["settings"]

    tune_dir = out / "tune"
    chosen = load_config(tune_dir / "best.yaml")
    assert chosen == resolve(base, summary["best"]["settings"], "best")
    assert json.loads((tune_dir / "results.json").read_text()) == summary
    assert len((tune_dir / "results.md").read_text().splitlines()) == 2 + 2 + len(trials)
    assert "<svg" in (tune_dir / "tune.html").read_text()

    # best.yaml trains, on the prep its settings name
    prep_dir = summary["preps"][prep_key(summary["best"]["settings"])]
    assert json.loads((Path(prep_dir) / "_manifest.json").read_text())["config"] == chosen.prep.model_dump(mode="json")
    trained = run_train(str(tmp_path / "run"), chosen, prep_dir=prep_dir)["config"]
    assert {key: trained[key.split(".")[1]] for key in summary["space"]} == summary["best"]["settings"]
