"""Rollback windows: every training watch is a label, its history only the watches before it.

Covington et al. predict the *next* watch from what came before it: a label's features must
never see the label itself or anything after it. Histories are built with a window frame that
ends one row before the label, in (ts, item_id) order.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.order import by_user, in_event_order, so_far
from core.contract import SECONDS_PER_UNIT


def event_seconds(ts: Column) -> Column:
    return F.unix_micros(ts) / 1e6


def watch_rows(events: DataFrame) -> DataFrame:
    """Watches as time-line rows: is_watch, and `tokens` (null unless titles stand in)."""
    rows = events.withColumn("is_watch", F.lit(True))
    if "tokens" not in events.columns:
        rows = rows.withColumn("tokens", F.lit(None).cast("array<int>"))
    return rows


def user_timeline(events: DataFrame, searches: DataFrame | None) -> DataFrame:
    """Watches and searches of each user on one time line, with `watch_ordinal`: the number of
    watches up to and including the row. Rows carry `tokens` (a search's query tokens, or a
    watch's title tokens where titles stand in for searches; else null).

    A search in the same second as a watch counts as after it, so no label sees a query that
    may have followed it.
    """
    timeline = watch_rows(events)
    if searches is None:
        # watches only: the job's one order, already sorted (jobs/order.py)
        return timeline.withColumn("watch_ordinal", F.count(F.lit(1)).over(so_far()))
    # hashed by user as the events are (their one shuffle), the union stays partitioned by
    # user: only the searches move, and the time line is sorted in place
    partitions = int(events.sparkSession.conf.get("spark.sql.shuffle.partitions"))
    timeline = timeline.unionByName(
        searches.select("user_id", "ts", "tokens").withColumn("is_watch", F.lit(False)).repartition(
            partitions, "user_id"),
        allowMissingColumns=True,
    )
    watches_so_far = (
        Window.partitionBy("user_id")
        .orderBy("ts", F.col("is_watch").desc(), "item_id")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    return timeline.withColumn("watch_ordinal", F.sum(F.col("is_watch").cast("int")).over(watches_so_far))


def token_bag(token_lists: Column, max_tokens: int) -> Column:
    """The distinct tokens of a list of token arrays, most recent first, at most max_tokens."""
    return F.slice(F.array_distinct(F.reverse(F.flatten(token_lists))), 1, max_tokens).cast("array<int>")


def windowed_examples(
    events: DataFrame, history_len: int, searches: DataFrame | None = None, max_tokens: int = 0
) -> DataFrame:
    """One row per training watch: label, history, history_length, search_tokens, and
    the event's other columns (user_id, item_id, ts, ...) passed through.

    `events` carries user_id, item_id, item_index, ts (and `tokens` when titles stand in for
    searches); `searches` carries user_id, ts, tokens. The window of watch w holds the watches
    w - history_len .. w - 1 and the searches made between them, nothing at or after w.
    """
    passthrough = [c for c in events.columns if c not in ("item_index", "tokens")]
    if searches is None:
        # watches only: the window is the previous history_len rows, one sort
        timeline = watch_rows(events)
        earlier = in_event_order().rowsBetween(-history_len, -1)
    else:
        # searches between the watches: the window is the rows whose watch ordinal is among
        # the previous history_len watches'
        timeline = user_timeline(events, searches)
        earlier = Window.partitionBy("user_id").orderBy("watch_ordinal").rangeBetween(-history_len, -1)
    timeline = timeline.select(
        *passthrough,
        "is_watch",
        F.col("item_index").cast("int").alias("label"),
        F.collect_list("item_index").over(earlier).alias("history_items"),
        F.collect_list("tokens").over(earlier).alias("token_lists"),
    )
    return timeline.where("is_watch").select(
        *passthrough,
        "label",
        F.col("history_items").cast("array<int>").alias("history"),
        F.size("history_items").cast("int").alias("history_length"),
        token_bag(F.col("token_lists"), max_tokens).alias("search_tokens"),
    )


def history_lengths(events: DataFrame, history_len: int) -> DataFrame:
    """user_id, item_id, ts, item_count (and is_validation, where events carry it),
    history_length of every training watch: what the sampling rules read, without building
    the histories."""
    position = F.row_number().over(in_event_order()) - 1
    flags = [c for c in ("is_validation",) if c in events.columns]
    return events.select(
        "user_id", "item_id", "ts", "item_count", *flags,
        F.least(position, F.lit(history_len)).cast("int").alias("history_length"),
    )


def with_example_age(
    examples: DataFrame, anchor_seconds: float, window_seconds: float, unit: str = "hours"
) -> DataFrame:
    """example_age_raw = anchor - event time in `unit`; example_age = that age over the
    training window (window_seconds long), with its square and square root.

    The anchor is the end of the training window, so the newest example has age 0, as the
    user vector does at serving time.
    """
    age_seconds = F.lit(anchor_seconds) - event_seconds(F.col("ts"))
    x = age_seconds / F.lit(window_seconds)
    return examples.withColumns(
        {
            "example_age_raw": (age_seconds / SECONDS_PER_UNIT[unit]).cast("double"),
            "example_age": x.cast("float"),
            "example_age_sq": (x * x).cast("float"),
            "example_age_sqrt": F.sqrt(F.greatest(x, F.lit(0.0))).cast("float"),
        }
    )


def with_watches_after(events: DataFrame) -> DataFrame:
    """watches_after: how many of the user's training watches follow each event (validation
    watches, flagged is_validation where events carry it, are not training watches)."""
    training = (~F.col("is_validation") if "is_validation" in events.columns else F.lit(True)).cast("int")
    return events.withColumn("watches_after", (F.sum(training).over(by_user()) - F.sum(training).over(so_far()))
                             .cast("int"))
