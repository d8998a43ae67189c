"""Rollback windows: every training watch is a label, its history only the watches before it.

Covington et al. predict the *next* watch from what came before it: a label's features must
never see the label itself or anything after it. Histories are built with a window frame that
ends one row before the label, in (ts, item_id) order.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.split import EVENT_ORDER

SECONDS_PER_HOUR = 3600.0


def padded(items: Column, length: int) -> Column:
    """Right-pad an int array with 0 (the padding index) to a fixed length."""
    return F.concat(items, F.array_repeat(F.lit(0), F.lit(length) - F.size(items))).cast("array<int>")


def event_seconds(ts: Column) -> Column:
    return F.unix_micros(ts) / 1e6


def windowed_examples(events: DataFrame, history_len: int) -> DataFrame:
    """One row per training event: label, history (padded), history_length, and the event's
    other columns (user_id, item_id, ts, ...) passed through.

    `events` carries user_id, item_id, item_index and ts of the training events.
    """
    earlier = Window.partitionBy("user_id").orderBy(*EVENT_ORDER).rowsBetween(-history_len, -1)
    examples = events.select(
        *[c for c in events.columns if c != "item_index"],
        F.col("item_index").cast("int").alias("label"),
        F.collect_list("item_index").over(earlier).alias("history_items"),
    )
    return examples.select(
        *[c for c in examples.columns if c != "history_items"],
        padded(F.col("history_items"), history_len).alias("history"),
        F.size("history_items").cast("int").alias("history_length"),
    )


def with_example_age(examples: DataFrame, anchor_seconds: float, window_hours: float) -> DataFrame:
    """example_age_hours = anchor - event time; example_age = that over the training window.

    The anchor is the end of the training window, so the newest example has age 0, as the
    user vector does at serving time.
    """
    age_hours = (F.lit(anchor_seconds) - event_seconds(F.col("ts"))) / SECONDS_PER_HOUR
    x = age_hours / F.lit(window_hours)
    return examples.withColumns(
        {
            "example_age_hours": age_hours.cast("double"),
            "example_age": x.cast("float"),
            "example_age_sq": (x * x).cast("float"),
            "example_age_sqrt": F.sqrt(F.greatest(x, F.lit(0.0))).cast("float"),
        }
    )
