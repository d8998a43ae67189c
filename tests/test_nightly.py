"""Planning a night: the window, the day it is judged on, the previous night, and the settings the
stages get (the night itself runs end to end in tests/e2e/test_nightly.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from jobs.sources import InputError
from watchnext.gate import NightStats, refusals
from watchnext.nightly import Night, plan, summary_path
from core.config import load_config

D = dt.date(2026, 3, 10)


def _log(tmp_path, days: list[str], landing: tuple[str, ...] = ()) -> str:
    """clicks/date=D/ folders, each with its _SUCCESS marker but the days in `landing`."""
    for day in days:
        (tmp_path / "data" / "clicks" / f"date={day}").mkdir(parents=True)
        if day not in landing:
            (tmp_path / "data" / "clicks" / f"date={day}" / "_SUCCESS").touch()
    return str(tmp_path / "data")


def _days(first: int, last: int) -> list[str]:
    return [f"2026-03-{d:02d}" for d in range(first, last + 1)]


def test_the_window_ends_on_the_night_and_is_clipped_at_the_first_logged_day(tmp_path):
    data = _log(tmp_path, _days(5, 11))
    night = plan(D, data, str(tmp_path / "root"), load_config(overrides=["nightly.window_days=3"]))
    assert (night.first_day, night.eval_day, night.previous) == (dt.date(2026, 3, 8), D, None)
    night = plan(D, data, str(tmp_path / "root"), load_config())
    assert night.first_day == dt.date(2026, 3, 5)  # 14 days back is before the log began


def test_a_night_is_judged_on_its_own_day_without_waiting_for_the_next(tmp_path):
    night = plan(D, _log(tmp_path, _days(1, 10)), str(tmp_path / "root"), load_config())
    assert night.eval_day == D
    prep = night.config(load_config()).prep
    assert prep.partition_to == D and prep.eval_users_share == 0.1


def test_a_day_still_landing_stops_the_night_naming_it(tmp_path):
    night = plan(D, _log(tmp_path, _days(1, 11), landing=("2026-03-11",)), str(tmp_path / "root"), load_config())
    assert night.eval_day == D  # D + 1 still landing is none of night D's business
    data = _log(tmp_path / "b", _days(1, 11), landing=("2026-03-10",))
    with pytest.raises(InputError, match=r"the day 2026-03-10 of 2026-03-01..2026-03-10 has not landed whole"):
        plan(D, data, str(tmp_path / "root"), load_config())
    # a log written without markers: every folder is a landed day
    assert plan(D, data, str(tmp_path / "root"), load_config(overrides=["prep.day_marker=null"])).first_day == \
        dt.date(2026, 3, 1)


def test_a_missing_day_fails_before_anything_runs(tmp_path):
    data = _log(tmp_path, [d for d in _days(1, 11) if d != "2026-03-07"])
    with pytest.raises(InputError, match=r"the day 2026-03-07 of 2026-03-01..2026-03-10 is missing"):
        plan(D, data, str(tmp_path / "root"), load_config())
    with pytest.raises(InputError, match="before the log's first day"):
        plan(dt.date(2026, 2, 1), data, str(tmp_path / "root"), load_config())
    (tmp_path / "flat" / "clicks").mkdir(parents=True)
    with pytest.raises(InputError, match="partitioned by day"):
        plan(D, str(tmp_path / "flat"), str(tmp_path / "root"), load_config())


def test_the_previous_night_is_the_latest_finished_one_within_the_lookback(tmp_path):
    data, root = _log(tmp_path, _days(1, 11)), tmp_path / "root"
    (root / "nightly").mkdir(parents=True)
    for day in ("2026-03-06", "2026-03-08"):
        (root / "nightly" / f"{day}.json").write_text("{}")
    (root / "runs" / "2026-03-09" / "prep").mkdir(parents=True)  # started, never published: not a finished night
    assert plan(D, data, str(root), load_config()).previous == dt.date(2026, 3, 8)
    assert plan(D, data, str(root), load_config(overrides=["nightly.lookback_days=1"])).previous is None
    assert summary_path(str(root), D).endswith("/root/nightly/2026-03-10.json")


def test_the_night_sets_the_time_split_the_partitions_the_warm_start_and_the_run_date(tmp_path):
    root = str(tmp_path / "root")
    night = Night(D, "/logs", root, dt.date(2026, 2, 25), dt.date(2026, 3, 9))
    cfg = night.config(load_config(overrides=["prep.split=leave_last_out", "train.epochs=3",
                                              "nightly.eval_share=0.25"]))
    assert cfg.prep.split == "time" and cfg.train.epochs == 3
    # day D is the eval window, held out for a quarter of the users only
    assert cfg.prep.split_time == dt.datetime(2026, 3, 9, 23, 59, 59, 999999, tzinfo=dt.timezone.utc)
    assert (cfg.prep.eval_days, cfg.prep.eval_users_share) == (1.0, 0.25)
    assert cfg.prep.anchor == dt.datetime(2026, 3, 12, tzinfo=dt.timezone.utc)
    assert (cfg.prep.partition_from, cfg.prep.partition_to) == (dt.date(2026, 2, 25), D)
    assert cfg.prep.previous_vocab == f"{tmp_path}/root/runs/2026-03-09/prep"
    assert cfg.train.warm_start == f"{tmp_path}/root/runs/2026-03-09"
    assert cfg.recall.run_date == "2026-03-10"
    cold = Night(D, "/logs", root, dt.date(2026, 2, 25), None).config(load_config())
    assert cold.prep.previous_vocab is None and cold.train.warm_start is None


def test_partition_bounds_go_together_and_in_order():
    with pytest.raises(ValueError, match="go together"):
        load_config(overrides=["prep.partition_from=2026-03-01"])
    with pytest.raises(ValueError, match="is after"):
        load_config(overrides=["prep.partition_from=2026-03-05", "prep.partition_to=2026-03-01"])


LAST = NightStats(val_hr50=0.30, val_users=2_000, coverage=0.40, full_lists=0.99, days=14, events_in=140_000,
                  users=9_000, items=3_000, rejected_share=0.001, held_out_hr50=0.40, held_out_users=1_000,
                  served_val_hr50=0.40, served_val_users=1_000)


def test_a_night_like_the_last_published_one_passes_the_gate():
    cfg = load_config().nightly
    steady = dataclasses.replace(LAST, val_hr50=0.29, coverage=0.38, events_in=150_000, users=9_500, items=3_100)
    assert refusals(steady, LAST, cfg) == []
    # the window still growing: a fifth day after four brings more users and items
    young = dataclasses.replace(LAST, days=4, events_in=40_000, users=4_000, items=1_500)
    assert refusals(dataclasses.replace(young, days=5, events_in=50_000, users=5_800, items=2_200), young, cfg) == []
    # the first night is judged on its own lists alone
    assert refusals(LAST, None, cfg) == []


def test_a_validation_drop_within_the_noise_of_a_few_users_passes_and_the_same_drop_on_many_does_not():
    cfg = load_config().nightly
    few = dataclasses.replace(LAST, val_users=300)
    assert refusals(dataclasses.replace(few, val_hr50=0.25), few, cfg) == []  # 1.4 standard errors
    reasons = refusals(dataclasses.replace(LAST, val_hr50=0.25), LAST, cfg)  # 3.5 on 2,000 users each
    assert len(reasons) == 1 and "validation HR@50 0.2500 is more than 10% below" in reasons[0]
    # a drop within the allowed share is not refused however many users see it
    many = dataclasses.replace(LAST, val_users=10**6)
    assert refusals(dataclasses.replace(many, val_hr50=0.28), many, cfg) == []
    # a night from before the count was kept is judged on the drop alone
    assert refusals(dataclasses.replace(few, val_hr50=0.25, val_users=None), few, cfg) != []


@pytest.mark.parametrize("measure, name", [("held_out", "HR@50 on the day's held-out users"),
                                           ("served_val", "the exported model's validation HR@50 in recall")])
def test_a_model_damaged_after_its_validation_is_refused_on_the_lists_it_serves(measure, name):
    cfg = load_config().nightly
    hr, users = f"{measure}_hr50", f"{measure}_users"
    # the training's validation as yesterday's; the lists the exported model serves near chance
    damaged = dataclasses.replace(LAST, **{hr: 0.05})
    assert refusals(damaged, LAST, cfg) == [
        f"{name} 0.0500 is more than 10% below the last published night's 0.4000, "
        "by 20.6 standard errors (nightly.gate_max_val_drop)"]
    # the same drop on a few dozen users is within their noise; a small move on many is allowed
    few = dataclasses.replace(LAST, **{users: 30})
    assert refusals(dataclasses.replace(few, **{hr: 0.25}), few, cfg) == []
    assert refusals(dataclasses.replace(LAST, **{hr: 0.37}), LAST, cfg) == []
    # a night without the measure (no evaluate step, no channels), or a last night without it
    assert refusals(dataclasses.replace(damaged, **{hr: None, users: None}), LAST, cfg) == []
    assert refusals(damaged, dataclasses.replace(LAST, **{hr: None, users: None}), cfg) == []


@pytest.mark.parametrize("change, reason", [
    ({"val_hr50": 0.20}, "validation HR@50 0.2000 is more than 10% below the last published night's 0.3000, "
                         "by 7.4 standard errors"),
    ({"coverage": 0.10}, "catalog coverage 0.1000 is more than 20% below"),
    ({"full_lists": 0.40}, "40.0% of the users have a full list, under nightly.gate_min_full_lists=0.5"),
    ({"full_lists": 0.70}, "the share of full lists 0.7000 is more than 20% below"),
    ({"events_in": 50_000}, "3571 events a day is outside 50% of the last published night's 10000"),
    ({"items": 7_000}, "7000 items is outside 50% of the last published night's 3000"),
    ({"users": 3_000}, "3000 users is outside 50%"),
    ({"rejected_share": 0.05}, "5.00% of the rows were rejected, against 0.10% the last published night"),
])
def test_the_gate_names_each_rule_a_night_breaks(change, reason):
    reasons = refusals(dataclasses.replace(LAST, **change), LAST, load_config().nightly)
    assert reason in reasons[0], reasons
    # a share of full lists under the floor is also far below yesterday's; every other rule alone
    assert len(reasons) == (2 if change == {"full_lists": 0.40} else 1), reasons


def test_a_nights_stats_come_from_its_manifests_and_its_recall_table(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from core.layout import RunLayout

    run = RunLayout(str(tmp_path / "run"))
    (tmp_path / "run" / "recall" / "table" / "run_date=2026-03-10").mkdir(parents=True)
    pq.write_table(pa.table({"item_ids": [["a", "b", "c"], ["a", "d", "e"], ["b"]]}),
                   f"{run.recall.table_partition('2026-03-10')}/part-0.parquet")
    prep = {"counts": {"events_in": 1000, "users": 3, "items": 10, "rejected": {"bad_ts": 5, "null_id": 5},
                       "valid_users": 3}}
    model = {"metrics": {"best_epoch": 2, "epochs": [{"epoch": 1, "val_hr@50": 0.1}, {"epoch": 2, "val_hr@50": 0.3},
                                                     {"epoch": 3, "val_hr@50": 0.2}]}, "config": {"val_users": 2}}
    recall = {"config": {"top_k": 3}, "index": {"items": 10}}
    stats = NightStats.of(run, prep, model, recall, "2026-03-10", days=7)
    # the exported (best) epoch's validation, on 2 of the 3 validation users (train.val_users);
    # 5 of 10 items recommended; 2 of 3 lists full
    assert stats == NightStats(val_hr50=0.3, val_users=2, coverage=0.5, full_lists=2 / 3, days=7, events_in=1000,
                               users=3, items=10, rejected_share=0.01)
    assert NightStats.from_dict(stats.to_dict()) == stats
    # with the evaluate step's comparison (tonight's lists on the day's held-out users) and
    # recall's channels (the model alone on the validation users that weighed them)
    compare = {"users": 40, "tonight": {"hr@10": 0.2, "hr@50": 0.45}, "previous": {"hr@10": 0.1, "hr@50": 0.3}}
    recall["channels"] = {"validation_users": 30, "metric": "ndcg@50",
                          "alone": {"model": {"hr@50": 0.35, "ndcg@50": 0.1},
                                    "item2item": {"hr@50": 0.4, "ndcg@50": 0.2}}}
    judged = NightStats.of(run, prep, model, recall, "2026-03-10", days=7, compare=compare)
    assert judged == dataclasses.replace(stats, held_out_hr50=0.45, held_out_users=40, served_val_hr50=0.35,
                                         served_val_users=30)
    assert NightStats.from_dict(judged.to_dict()) == judged
    # a recall stage from before each channel kept both metrics: its one metric, HR@50
    recall["channels"] = {"validation_users": 30, "metric": "hr@50", "alone": {"model": 0.35, "item2item": 0.4}}
    assert NightStats.of(run, prep, model, recall, "2026-03-10", days=7, compare=compare) == judged
    every = NightStats.of(run, prep, {**model, "config": {"val_users": 2000}}, recall, "2026-03-10", days=7)
    assert every.val_users == 3
