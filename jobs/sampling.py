"""Seeded, partition-independent sampling of examples: hot-item down-sampling and the
per-user cap. Every draw is a hash of (seed, user, item, ts), never rand(): reruns and any
partitioning of the input give identical rows."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

_MANTISSA = (1 << 53) - 1


def hash_uniform(seed: int, *cols: str | Column) -> Column:
    """A deterministic draw in [0, 1) from a hash of the seed and the columns."""
    bits = F.xxhash64(F.lit(seed), *cols).bitwiseAND(F.lit(_MANTISSA))
    return bits.cast("double") / float(_MANTISSA + 1)


def keep_probability(share: Column, threshold: float) -> Column:
    """word2vec's sub-sampling: p = (sqrt(f / t) + 1) * t / f, capped at 1; f = item's share."""
    return F.least(F.lit(1.0), (F.sqrt(share / threshold) + 1.0) * threshold / share)


def with_drop_reason(
    examples: DataFrame,
    total_clicks: int,
    min_history: int,
    subsample_threshold: float | None,
    max_per_user: int,
    seed: int,
    caps: DataFrame | None = None,
) -> DataFrame:
    """Add `drop_reason` (null = the example is kept): validation, short_history, subsampled,
    user_cap.

    examples carry user_id, item_id, ts, history_length and item_count (the label item's
    training events, of total_clicks in all), and is_validation where prep holds validation
    targets out (they are never labels). The per-user cap picks among the examples that
    survive the first rules, at random with the seed; `caps` are the users' cap_thresholds
    of these examples, when already computed.
    """
    short = F.col("history_length") < min_history
    if "is_validation" in examples.columns:
        reason = F.when(F.col("is_validation"), F.lit("validation")).when(short, F.lit("short_history"))
    else:
        reason = F.when(short, F.lit("short_history"))
    if subsample_threshold is not None:
        share = F.col("item_count") / float(total_clicks)
        draw = hash_uniform(seed, "user_id", "item_id", "ts")
        reason = reason.when(draw >= keep_probability(share, subsample_threshold), F.lit("subsampled"))
    tagged = examples.withColumn("drop_reason", reason)
    if max_per_user == 0:
        return tagged
    if caps is None:
        caps = cap_thresholds(tagged, max_per_user, seed)
    capped = F.col("drop_reason").isNull() & (_cap_draw(seed) > F.col("cap_draw"))
    return (
        tagged.join(caps, "user_id", "left")
        .withColumn("drop_reason", F.when(capped, F.lit("user_cap")).otherwise(F.col("drop_reason")))
        .drop("cap_draw")
    )


def cap_thresholds(tagged: DataFrame, max_per_user: int, seed: int) -> DataFrame:
    """user_id, cap_draw (see cap_threshold) of examples tagged by the first two rules."""
    return tagged.groupBy("user_id").agg(cap_threshold(max_per_user, seed).alias("cap_draw"))


def per_user_sums(tagged: DataFrame, max_per_user: int, seed: int) -> DataFrame:
    """One row per user of examples tagged by the first two rules: user_id, short_history and
    subsampled (examples they drop), survivors (examples they keep), cap_draw (see
    cap_threshold; null without a cap)."""
    return tagged.groupBy("user_id").agg(
        *[F.count_if(F.col("drop_reason") == reason).alias(reason) for reason in ("short_history", "subsampled")],
        F.count_if(F.col("drop_reason").isNull()).alias("survivors"),
        (cap_threshold(max_per_user, seed) if max_per_user else F.lit(None).cast("double")).alias("cap_draw"),
    )


def cap_threshold(max_per_user: int, seed: int) -> Column:
    """An aggregate over a user's examples: the max_per_user-th smallest cap draw among those
    still kept (drop_reason null); an example whose draw is larger goes to the cap.

    A per-user threshold rather than a sort of the examples by draw: the examples stay in the
    job's one order (jobs/order.py), and the per-user table is small enough to keep.
    """
    kept_draws = F.collect_list(F.when(F.col("drop_reason").isNull(), _cap_draw(seed)))
    return F.array_max(F.slice(F.array_sort(kept_draws), 1, max_per_user))


def _cap_draw(seed: int) -> Column:
    return hash_uniform(seed + 1, "user_id", "item_id", "ts")
