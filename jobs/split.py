"""Hold out each user's last event for evaluation (leave-last-out), or split at a time.

Events are ordered by (ts, item_id) everywhere (jobs/order.py), so that ties at the same
second break the same way in the split, in the windows and in the serving features.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.order import by_user, in_event_order, so_far


def is_left_out_last(eligible: Column, from_end: int = 1) -> Column:
    """True for the user's last eligible row (from_end=2: the one before the last) when the
    user has more eligible rows than that.

    A user with a single event keeps it for training: with nothing before it, it could be
    evaluated only against popularity. Running and total counts, not a descending sort, so
    the split reads the events in the job's one order.
    """
    one = F.when(eligible, F.lit(1)).otherwise(F.lit(0))
    total = F.sum(one).over(by_user())
    return eligible & (F.sum(one).over(so_far()) == total - (from_end - 1)) & (total >= from_end + 1)


def leave_last_out(events: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(training events, held-out events): a user with two or more events gives up the last."""
    flagged = events.withColumn("_held_out", is_left_out_last(F.lit(True)))
    train = flagged.where(~F.col("_held_out")).drop("_held_out")
    held_out = flagged.where(F.col("_held_out")).drop("_held_out")
    return train, held_out


SHARE_BUCKETS = 1_000_000  # a user's bucket of the users share: the hash of the id modulo this


def time_split(events: DataFrame, split_time, eval_days: float, users_share: float | None = None,
               seed: int = 0) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(training events, held-out events in the eval_days after split_time, events later
    still): the nightly protocol, train on the past and evaluate on the next day."""
    period = time_period(split_time, eval_days, users_share, seed)
    return tuple(events.where(period == name) for name in ("train", "held_out", "after_eval_window"))


def time_period(split_time, eval_days: float, users_share: float | None = None, seed: int = 0) -> Column:
    """"train" up to split_time, "held_out" in the eval_days after it, "after_eval_window" later.

    With users_share, only that share of the users (by a seeded hash of the id) is held out
    in the eval window; the other users' watches there are training: a night evaluates on
    its own day and still trains on most of it."""
    eval_end = F.lit(split_time) + F.make_dt_interval(secs=F.lit(eval_days * 86400.0))
    period = F.when(F.col("ts") <= F.lit(split_time), F.lit("train"))
    if users_share is not None:
        period = period.when((F.col("ts") <= eval_end) & ~is_held_out_user(users_share, seed), F.lit("train"))
    return period.when(F.col("ts") <= eval_end, F.lit("held_out")).otherwise(F.lit("after_eval_window"))


def is_held_out_user(users_share: float, seed: int) -> Column:
    """True for the users_share of the users whose seeded hash of the id falls below it."""
    bucket = F.pmod(F.xxhash64(F.col("user_id").cast("string"), F.lit(seed)), F.lit(SHARE_BUCKETS))
    return bucket < F.lit(int(round(users_share * SHARE_BUCKETS)))


def first_per_user(events: DataFrame) -> DataFrame:
    """Each user's first event (by time, then item id): the evaluation target of a time split."""
    return events.withColumn("rank", F.row_number().over(in_event_order())).where("rank = 1").drop("rank")
