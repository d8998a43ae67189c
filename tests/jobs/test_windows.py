"""Rollback windows: a label's history holds exactly the earlier watches, and example age."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from jobs.windows import windowed_examples, with_example_age, with_watches_after

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def events(spark, rows):
    """rows of (user, item_index, seconds after T0); item_id is the index as text."""
    return spark.createDataFrame(
        [Row(user_id=u, item_id=f"{i:05d}", item_index=i, ts=T0 + dt.timedelta(seconds=s)) for u, i, s in rows],
        "user_id string, item_id string, item_index int, ts timestamp",
    )


def test_history_holds_only_earlier_events_in_time_order(spark):
    log = events(spark, [("a", 5, 30), ("a", 7, 10), ("a", 9, 20), ("b", 3, 5), ("b", 4, 6)])
    got = windowed_examples(log, history_len=4).select("user_id", "label", "history", "history_length")
    expected = spark.createDataFrame(
        [
            ("a", 7, [], 0), ("a", 9, [7], 1), ("a", 5, [7, 9], 2),
            ("b", 3, [], 0), ("b", 4, [3], 1),
        ],
        "user_id string, label int, history array<int>, history_length int",
    )
    assertDataFrameEqual(got, expected)


def test_history_is_capped_at_the_latest_events(spark):
    log = events(spark, [("a", i, i) for i in range(1, 8)])
    got = windowed_examples(log, history_len=3).where("label = 7").select("history").first()
    assert got.history == [4, 5, 6]


def test_ties_in_time_break_by_item_id(spark):
    log = events(spark, [("a", 8, 10), ("a", 2, 10), ("a", 5, 11)])
    got = windowed_examples(log, history_len=5).orderBy("history_length").collect()
    assert [(r.label, r.history[: r.history_length]) for r in got] == [(2, []), (8, [2]), (5, [2, 8])]


def test_example_age_is_anchor_minus_event_time(spark):
    log = events(spark, [("a", 1, 0), ("a", 2, 3600 * 10), ("a", 3, 3600 * 40)])
    anchor = (T0 + dt.timedelta(hours=40)).timestamp()
    got = with_example_age(windowed_examples(log, 5), anchor, window_seconds=40 * 3600.0)
    ages = {r.label: (r.example_age_raw, r.example_age, r.example_age_sq, r.example_age_sqrt) for r in got.collect()}
    assert ages[1] == (40.0, 1.0, 1.0, 1.0)
    assert ages[2] == (30.0, 0.75, 0.5625, pytest.approx(0.75 ** 0.5))
    assert ages[3] == (0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("unit, raw", [("seconds", 108000.0), ("minutes", 1800.0), ("days", 1.25)])
def test_example_age_unit_changes_the_raw_age_not_the_normalized_one(spark, unit, raw):
    log = events(spark, [("a", 1, 0), ("a", 2, 3600 * 10)])
    anchor = (T0 + dt.timedelta(hours=40)).timestamp()
    got = with_example_age(windowed_examples(log, 5), anchor, 40 * 3600.0, unit).where("label = 2").first()
    assert (got.example_age_raw, got.example_age) == (raw, 0.75)


logs = st.lists(
    st.tuples(st.sampled_from("uvw"), st.integers(1, 30), st.integers(0, 50)),
    min_size=1,
    max_size=60,
    unique_by=lambda e: (e[0], e[1], e[2]),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=logs, history_len=st.integers(1, 6))
def test_history_equals_earlier_events_on_random_logs(spark, rows, history_len):
    got = windowed_examples(events(spark, rows), history_len).collect()
    assert len(got) == len(rows)
    ordered = {u: sorted((s, f"{i:05d}", i) for uu, i, s in rows if uu == u) for u in "uvw"}
    expected = {
        (u, seq[k][2], seq[k][0]): [e[2] for e in seq[max(0, k - history_len):k]]
        for u, seq in ordered.items() for k in range(len(seq))
    }
    for r in got:
        # collected timestamps are naive local times; .timestamp() reads them back as such
        key = (r.user_id, r.label, round(r.ts.timestamp() - T0.timestamp()))
        # unpadded: exactly the earlier watches, the oldest first
        assert r.history == expected[key] and r.history_length == len(expected[key])


def searches(spark, rows):
    """rows of (user, seconds after T0, token indices)."""
    return spark.createDataFrame(
        [(u, T0 + dt.timedelta(seconds=s), t) for u, s, t in rows], "user_id string, ts timestamp, tokens array<int>"
    )


def test_search_tokens_come_only_from_searches_before_the_label(spark):
    log = events(spark, [("a", 1, 10), ("a", 2, 20), ("a", 3, 30)])
    # the search at second 20 is in the same second as watch 2: it counts as after it
    queries = searches(spark, [("a", 15, [5, 9]), ("a", 20, [6]), ("a", 40, [7]), ("b", 1, [8])])
    got = {r.label: r.search_tokens for r in windowed_examples(log, 5, queries, max_tokens=4).collect()}
    assert got == {1: [], 2: [9, 5], 3: [6, 9, 5]}


def test_search_tokens_stay_within_the_history_window(spark):
    log = events(spark, [("a", 1, 10), ("a", 2, 20), ("a", 3, 30)])
    queries = searches(spark, [("a", 15, [5]), ("a", 25, [6])])
    got = {r.label: (r.history, r.search_tokens) for r in windowed_examples(log, 1, queries, max_tokens=3).collect()}
    assert got[3] == ([2], [6])


def test_title_tokens_stand_in_for_searches(spark):
    log = events(spark, [("a", 1, 10), ("a", 2, 20), ("a", 3, 30)]).withColumn(
        "tokens", F.array(F.col("item_index") + 10)
    )
    got = {r.label: r.search_tokens for r in windowed_examples(log, 5, None, max_tokens=3).collect()}
    assert got == {1: [], 2: [11], 3: [12, 11]}


def test_serving_features_ignore_searches_after_the_last_watch(spark):
    from jobs.user_features import serving_features

    log = events(spark, [("a", 1, 10), ("a", 2, 20), ("b", 3, 5)])
    queries = searches(spark, [("a", 15, [5]), ("a", 99, [7]), ("c", 1, [8])])
    rows = {r.user_id: r for r in serving_features(log, 3, queries, max_tokens=2).collect()}
    assert set(rows) == {"a", "b"}
    assert rows["a"].history == [1, 2] and rows["a"].search_tokens == [5]
    assert rows["b"].search_tokens == [] and rows["b"].watched == [3]


def test_windows_ending_every_history_len_watches_tile_each_users_training_watches(spark):
    # a's last watch (item 6) is a validation target: not a training watch, never a label
    log = events(spark, [("a", i, i) for i in range(1, 7)] + [("b", 9, 1)]).withColumn(
        "is_validation", F.col("item_index") == 6)
    windows = windowed_examples(log.transform(with_watches_after), history_len=2).where(~F.col("is_validation"))
    after = {(r.user_id, r.label): r.watches_after for r in windows.collect()}
    assert after == {("a", 1): 4, ("a", 2): 3, ("a", 3): 2, ("a", 4): 1, ("a", 5): 0, ("b", 9): 0}
    tiles = [r for r in windows.collect() if r.watches_after % 2 == 0]
    # every window's watches but its first, and its label, are predicted: each watch once
    predicted = sorted(w for r in tiles for w in [*r.history[1:r.history_length], r.label])
    assert sorted((r.user_id, r.label) for r in tiles) == [("a", 1), ("a", 3), ("a", 5), ("b", 9)]
    assert predicted == [1, 2, 3, 4, 5, 9]
