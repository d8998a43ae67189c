"""Leave-last-out: each user's last event (by time, then item id) is held out."""

from __future__ import annotations

import datetime as dt

from pyspark.testing import assertDataFrameEqual

from jobs.split import leave_last_out

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def clicks(spark, rows):
    return spark.createDataFrame(
        [(u, i, T0 + dt.timedelta(seconds=s)) for u, i, s in rows], "user_id string, item_id string, ts timestamp"
    )


def test_last_event_is_held_out_and_ties_break_by_item_id(spark):
    log = clicks(spark, [("a", "x", 1), ("a", "z", 5), ("a", "y", 5), ("b", "x", 2), ("b", "y", 1)])
    train, held_out = leave_last_out(log)
    assertDataFrameEqual(held_out, clicks(spark, [("a", "z", 5), ("b", "x", 2)]))
    assertDataFrameEqual(train, clicks(spark, [("a", "x", 1), ("a", "y", 5), ("b", "y", 1)]))


def test_a_user_with_one_event_keeps_it_for_training(spark):
    train, held_out = leave_last_out(clicks(spark, [("solo", "x", 1)]))
    assert train.count() == 1 and held_out.count() == 0


def test_time_split_trains_up_to_t_and_evaluates_the_next_window(spark):
    from jobs.split import first_per_user, time_split

    day = 86400
    log = clicks(spark, [("a", "x", 0), ("a", "y", day), ("a", "z", day + 10), ("a", "w", day + 20),
                         ("b", "x", 3 * day), ("b", "y", day + 5)])
    train, held_out, later = time_split(log, T0 + dt.timedelta(seconds=day), eval_days=1.0)
    assertDataFrameEqual(train, clicks(spark, [("a", "x", 0), ("a", "y", day)]))
    assertDataFrameEqual(held_out, clicks(spark, [("a", "z", day + 10), ("a", "w", day + 20), ("b", "y", day + 5)]))
    assertDataFrameEqual(later, clicks(spark, [("b", "x", 3 * day)]))
    assertDataFrameEqual(first_per_user(held_out), clicks(spark, [("a", "z", day + 10), ("b", "y", day + 5)]))


def test_a_users_share_holds_out_only_those_users_window_and_the_others_train_on_it(spark):
    from jobs.split import SHARE_BUCKETS, time_split

    day = 86400
    users = [f"u{n}" for n in range(400)]
    log = clicks(spark, [(u, i, s) for u in users for i, s in (("x", 10), ("y", day + 10), ("z", day + 20))])
    train, held_out, later = time_split(log, T0 + dt.timedelta(seconds=day), 1.0, users_share=0.25, seed=7)
    held = {r["user_id"] for r in held_out.select("user_id").distinct().collect()}
    # the oracle: Spark's seeded xxhash64 of each id, in SQL
    buckets = {r["user_id"]: r["b"] for r in log.selectExpr(
        "user_id", f"pmod(xxhash64(user_id, 7), {SHARE_BUCKETS}) AS b").distinct().collect()}
    assert held == {u for u, b in buckets.items() if b < 0.25 * SHARE_BUCKETS} and 60 < len(held) < 140
    # a held-out user gives up the whole window; every other user trains on it
    rows = {(r["user_id"], r["item_id"]) for r in train.collect()}
    assert rows == {(u, "x") for u in users} | {(u, i) for u in users if u not in held for i in "yz"}
    assert held_out.count() == 2 * len(held) and later.count() == 0
    # the same seed holds out the same users
    _, again, _ = time_split(log, T0 + dt.timedelta(seconds=day), 1.0, users_share=0.25, seed=7)
    assert {r["user_id"] for r in again.select("user_id").distinct().collect()} == held
