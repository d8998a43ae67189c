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


def windowed_examples(events: DataFrame, history_len: int, min_history: int) -> DataFrame:
    """user_id, label, history (padded), history_length, ts — one row per training event.

    `events` carries user_id, item_id, item_index and ts of the training events.
    """
    earlier = (
        Window.partitionBy("user_id").orderBy(*EVENT_ORDER).rowsBetween(-history_len, -1)
    )
    examples = events.select(
        "user_id",
        F.col("item_index").cast("int").alias("label"),
        F.collect_list("item_index").over(earlier).alias("history_items"),
        "ts",
    )
    return examples.where(F.size("history_items") >= min_history).select(
        "user_id",
        "label",
        padded(F.col("history_items"), history_len).alias("history"),
        F.size("history_items").cast("int").alias("history_length"),
        "ts",
    )


def with_example_age(examples: DataFrame, anchor_seconds: float, window_hours: float) -> DataFrame:
    """example_age_hours = anchor - event time; example_age = that over the training window.

    The anchor is the end of the training window, so the newest example has age 0, as the
    user vector does at serving time.
    """
    age_hours = (F.lit(anchor_seconds) - event_seconds(F.col("ts"))) / SECONDS_PER_HOUR
    return examples.withColumn("example_age_hours", age_hours.cast("double")).withColumn(
        "example_age", (F.col("example_age_hours") / F.lit(window_hours)).cast("float")
    )
