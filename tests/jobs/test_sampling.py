"""Hot-item down-sampling and the per-user cap: seeded, exact, partition-independent."""

from __future__ import annotations

import datetime as dt
import math

from jobs.sampling import hash_uniform, keep_probability, with_drop_reason

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def examples(spark, rows):
    """rows of (user, item, seconds, history_length, item_count)."""
    return spark.createDataFrame(
        [(u, i, T0 + dt.timedelta(seconds=s), h, c) for u, i, s, h, c in rows],
        "user_id string, item_id string, ts timestamp, history_length int, item_count long",
    )


def test_keep_probability_is_word2vecs_formula(spark):
    t = 1e-3
    df = spark.createDataFrame([(0.0005,), (0.01,), (0.25,)], "share double")
    got = [r.p for r in df.select(keep_probability(df.share, t).alias("p")).collect()]
    expected = [min(1.0, (math.sqrt(f / t) + 1) * t / f) for f in (0.0005, 0.01, 0.25)]
    assert got == [1.0, expected[1], expected[2]] and expected[2] < 0.07


def test_min_history_drops_labels_without_enough_past(spark):
    df = examples(spark, [("a", "x", 1, 0, 1), ("a", "y", 2, 1, 1), ("a", "z", 3, 2, 1)])
    got = with_drop_reason(df, 3, min_history=2, subsample_threshold=None, max_per_user=0, seed=1)
    assert {(r.item_id, r.drop_reason) for r in got.collect()} == {("x", "short_history"), ("y", "short_history"), ("z", None)}


def test_hot_items_are_down_sampled_and_rare_items_kept(spark):
    # item "hot" has 90% of 10,000 clicks, "cold" 1 click: p(hot) ~ 0.034, p(cold) = 1
    rows = [(f"u{k}", "hot", k, 1, 9000) for k in range(2000)] + [("u0", "cold", 5, 1, 1)]
    got = with_drop_reason(examples(spark, rows), 10_000, 1, 1e-3, 0, seed=7).collect()
    hot_kept = sum(1 for r in got if r.item_id == "hot" and r.drop_reason is None)
    p = (math.sqrt(0.9 / 1e-3) + 1) * 1e-3 / 0.9
    assert abs(hot_kept / 2000 - p) < 0.015
    assert [r.drop_reason for r in got if r.item_id == "cold"] == [None]


def test_draws_do_not_depend_on_partitioning(spark):
    rows = [(f"u{k % 7}", f"i{k % 13}", k, 1, 50) for k in range(500)]
    df = examples(spark, rows)
    run = lambda d: sorted(  # noqa: E731
        (r.user_id, r.item_id, r.ts, r.drop_reason)
        for r in with_drop_reason(d, 500, 1, 0.05, 10, seed=3).collect()
    )
    assert run(df.repartition(1)) == run(df.repartition(5, "item_id"))


def test_user_cap_keeps_at_most_n_of_the_survivors(spark):
    rows = [("heavy", f"i{k}", k, 0 if k == 0 else 1, 1) for k in range(40)] + [("light", "i0", 1, 1, 1)]
    got = with_drop_reason(examples(spark, rows), 41, 1, None, 30, seed=5).collect()
    heavy = [r.drop_reason for r in got if r.user_id == "heavy"]
    assert heavy.count(None) == 30 and heavy.count("short_history") == 1 and heavy.count("user_cap") == 9
    assert [r.drop_reason for r in got if r.user_id == "light"] == [None]


def test_hash_uniform_is_in_the_unit_interval(spark):
    df = spark.range(2000).selectExpr("cast(id as string) as k")
    values = [r.u for r in df.select(hash_uniform(11, "k").alias("u")).collect()]
    assert min(values) >= 0.0 and max(values) < 1.0 and abs(sum(values) / len(values) - 0.5) < 0.03
