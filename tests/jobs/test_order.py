"""The job sorts the events by user once: later per-user steps read the cached order."""

from __future__ import annotations

import datetime as dt
import re

from pyspark.sql import Row
from pyspark.sql import functions as F

from jobs.sampling import with_drop_reason
from jobs.split import is_left_out_last
from jobs.user_features import serving_features
from jobs.validate import with_rejection_reason
from jobs.windows import windowed_examples

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
SHUFFLE = re.compile(r"(?<!Broadcast)Exchange ")  # a broadcast of a small table is no shuffle of the events


def cached_events(spark):
    """Clicks validated (the sort), split and cached, as the prep job does."""
    clicks = spark.createDataFrame(
        [Row(user_id=f"u{u}", item_id=f"i{(u * 7 + k) % 11}", ts=T0 + dt.timedelta(minutes=k)) for u in range(20) for k in range(6)],
        "user_id string, item_id string, ts timestamp",
    )
    checked = with_rejection_reason(clicks)
    fated = checked.withColumn("held_out", is_left_out_last(F.col("reason").isNull())).persist()
    fated.count()
    return fated.where(~F.col("held_out")).select(
        "user_id", "item_id", "ts",
        F.substring("item_id", 2, 3).cast("int").alias("item_index"), F.lit(3).cast("long").alias("item_count"),
    ), fated


def above_the_cache(df) -> list[str]:
    """The executed plan's lines, leaving out the cached relation's own plan."""
    lines, cache_depth = [], None
    for line in df._jdf.queryExecution().executedPlan().toString().splitlines():
        depth = len(line) - len(line.lstrip(" :+-"))
        if cache_depth is not None and depth > cache_depth:
            continue
        cache_depth = depth if "InMemoryRelation" in line else None
        lines.append(line)
    return lines


def test_windows_examples_and_features_read_the_cached_order_without_a_shuffle_or_sort(spark):
    events, fated = cached_events(spark)
    try:
        uncapped = windowed_examples(events, 4).transform(
            with_drop_reason, total_clicks=100, min_history=1, subsample_threshold=None, max_per_user=0, seed=1
        )
        for df in (uncapped, serving_features(events, 4)):
            plan = above_the_cache(df)
            assert any("InMemoryTableScan" in line for line in plan)
            assert not [line for line in plan if SHUFFLE.search(line) or re.search(r"\bSort \[", line)], plan
        # the per-user cap joins a small per-user table: still no shuffle of the events
        capped = windowed_examples(events, 4).transform(
            with_drop_reason, total_clicks=100, min_history=1, subsample_threshold=None, max_per_user=2, seed=1
        )
        assert not [line for line in above_the_cache(capped) if SHUFFLE.search(line)]
        assert capped.where(F.col("drop_reason").isNull()).groupBy("user_id").count().agg(F.max("count")).first()[0] == 2
    finally:
        fated.unpersist()


def ancestors_of_the_cache(df) -> list[str]:
    """The executed plan's operators between the root and the cached events' scan."""
    path: list[tuple[int, str]] = []
    for line in df._jdf.queryExecution().executedPlan().toString().splitlines():
        depth = len(line) - len(line.lstrip(" :+-"))
        path = [(d, op) for d, op in path if d < depth] + [(depth, line.strip(" :+-"))]
        if line.strip(" :+-").startswith("InMemoryTableScan"):
            return [op for _, op in path[:-1]]
    raise AssertionError("the plan reads no cached events")


def test_searches_join_the_time_line_without_a_shuffle_of_the_events(spark):
    events, fated = cached_events(spark)
    searches = spark.createDataFrame(
        [(f"u{u}", T0 + dt.timedelta(minutes=k, seconds=30), [k + 1]) for u in range(0, 20, 3) for k in range(3)],
        "user_id string, ts timestamp, tokens array<int>",
    )
    try:
        for df in (windowed_examples(events, 4, searches, max_tokens=2), serving_features(events, 4, searches, 2)):
            # the searches are hashed by user as the events were: only they move, the time
            # line is sorted where it lies
            assert not [op for op in ancestors_of_the_cache(df) if SHUFFLE.search(op + " ")]
        got = {(r.user_id, r.label): r.search_tokens for r in windowed_examples(events, 4, searches, 2).collect()}
        # u0's second watch (item 1, minute 1) follows the search at minute 0:30; u1 never searched
        assert got[("u0", 1)] == [1] and got[("u1", 7)] == []
    finally:
        fated.unpersist()
