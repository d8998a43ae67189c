"""Hold out each user's last event for evaluation (leave-last-out).

Events are ordered by (ts, item_id) everywhere, so that ties at the same second break the
same way in the split, in the windows and in the serving features.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

EVENT_ORDER = ("ts", "item_id")


def leave_last_out(events: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(training events, held-out events): a user with two or more events gives up the last.

    A user with a single event keeps it for training: with nothing before it, it could be
    evaluated only against popularity.
    """
    by_user = Window.partitionBy("user_id")
    latest_first = by_user.orderBy(*[F.col(c).desc() for c in EVENT_ORDER])
    ranked = events.withColumn("events_after", F.row_number().over(latest_first) - 1).withColumn(
        "user_events", F.count(F.lit(1)).over(by_user)
    )
    is_held_out = (F.col("events_after") == 0) & (F.col("user_events") >= 2)
    train = ranked.where(~is_held_out).drop("events_after", "user_events")
    held_out = ranked.where(is_held_out).drop("events_after", "user_events")
    return train, held_out


def time_split(events: DataFrame, split_time, eval_days: float) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(training events up to split_time, held-out events in the eval_days after it, events
    later still): the nightly protocol, train on the past and evaluate on the next day."""
    eval_end = F.lit(split_time) + F.make_dt_interval(secs=F.lit(eval_days * 86400.0))
    train = events.where(F.col("ts") <= F.lit(split_time))
    held_out = events.where((F.col("ts") > F.lit(split_time)) & (F.col("ts") <= eval_end))
    later = events.where(F.col("ts") > eval_end)
    return train, held_out, later


def first_per_user(events: DataFrame) -> DataFrame:
    """Each user's first event (by time, then item id): the evaluation target of a time split."""
    earliest_first = Window.partitionBy("user_id").orderBy(*EVENT_ORDER)
    return events.withColumn("rank", F.row_number().over(earliest_first)).where("rank = 1").drop("rank")
