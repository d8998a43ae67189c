"""One order for every per-user computation: the job sorts the click log once.

Every window over a user's events (duplicates, the leave-last-out split, rollback windows,
the per-user cap, serving features) partitions by user_id and orders by EVENT_ORDER, ties at
the same second broken by item id. The first such window shuffles by user and sorts; Spark
sees that the cached result is already partitioned and sorted that way, so no later step
shuffles or sorts the events again (see `spark.sql.optimizer.canChangeCachedPlanOutputPartitioning`
in core/spark_session.py). Merging a search log's queries into the watches' time line shuffles the
queries alone, hashed by user as the events were, and sorts the time line where it lies.
"""

from __future__ import annotations

from pyspark.sql import Column, Window, WindowSpec

EVENT_ORDER = ("ts", "item_id")


def by_user() -> WindowSpec:
    """All of a user's rows, unordered: per-user totals."""
    return Window.partitionBy("user_id")


def in_event_order(*tiebreak: str | Column) -> WindowSpec:
    """A user's rows in event order (then `tiebreak`, for rows equal in user, ts and item)."""
    return Window.partitionBy("user_id").orderBy(*EVENT_ORDER, *tiebreak)


def so_far() -> WindowSpec:
    """A user's rows up to and including the current one, in event order."""
    return in_event_order().rowsBetween(Window.unboundedPreceding, Window.currentRow)
