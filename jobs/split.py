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
