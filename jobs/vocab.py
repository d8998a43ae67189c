"""Vocabularies: item ids ranked by training frequency, categorical values with a rare bucket.

Item index 0 is padding (empty history slots); items are 1 .. n in descending training count,
ties by id, so that frequency-ranked samplers (log-uniform) can use the index directly.
Categorical index 0 means missing; a rare or unseen value hashes into one of B buckets
1 .. B (prep.oov_buckets), so that unknown values do not all share one embedding; values
are B + 1 .. n.
Vocabularies are fitted on training events only: nothing from the held-out future leaks in.

Given the previous run's vocabulary, indices are stable across runs: known keys keep their
index (a key no longer seen keeps it too, with count 0), and new keys are appended after the
largest index, ranked by count. A model warm-started from yesterday's then finds every old
item in the row it learnt.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from core.contract import CATEGORY_MISSING, CATEGORY_UNKNOWN


def ranked_vocabulary(counts: DataFrame, key: str, first_index: int, previous: DataFrame | None = None) -> DataFrame:
    """key, index, count and counts' other columns: new keys numbered from first_index (or
    after previous's largest index) by count desc, then key; previous's keys keep their
    index (where they were not seen, with zero in the *count columns and null in the rest)."""
    values = [c for c in counts.columns if c != key]
    rank = Window.orderBy(F.col("count").desc(), F.col(key))
    if previous is None:
        return counts.select(key, (F.row_number().over(rank) + (first_index - 1)).cast("int").alias("index"), *values)
    previous = previous.select(key, "index")
    lowest = previous.agg(F.min("index")).first()[0]
    if lowest is not None and lowest < first_index:
        raise ValueError(
            f"the previous vocabulary of {key!r} starts at index {lowest}, below {first_index}: it was "
            "built with fewer OOV buckets (prep.oov_buckets); keep the previous run's setting"
        )
    offset = previous.agg(F.coalesce(F.max("index"), F.lit(first_index - 1)).alias("offset"))
    kept = previous.join(counts, key, "left").select(
        key, "index", *(F.coalesce(c, F.lit(0)).cast("long").alias(c) if c.endswith("count") else F.col(c)
                        for c in values)
    )
    new = counts.join(previous, key, "left_anti").crossJoin(offset)
    appended = new.select(key, (F.row_number().over(rank) + F.col("offset")).cast("int").alias("index"), *values)
    return kept.unionByName(appended)


def item_vocabulary(train_events: DataFrame, previous: DataFrame | None = None,
                    recent_since: Column | None = None) -> DataFrame:
    """item_id, index (1 .. n by count desc, then id; or stable with previous), count,
    recent_count: the events for which `recent_since` holds (the recently-popular
    baseline's counts; every event when None), and, when the events have a ts, first_ts:
    the item's first training watch (its age where the catalog has no upload time)."""
    recent = F.lit(True) if recent_since is None else recent_since
    first = [F.min("ts").alias("first_ts")] if "ts" in train_events.columns else []
    counts = train_events.groupBy("item_id").agg(
        F.count(F.lit(1)).alias("count"), F.count(F.when(recent, 1)).alias("recent_count"), *first
    )
    return ranked_vocabulary(counts, "item_id", 1, previous)


def negative_sampling_table(items: DataFrame, alpha: float) -> DataFrame:
    """index, probability ∝ count^alpha: the trainer's proposal for sampled negatives
    (alpha = 0.75 damps the head, as word2vec's unigram table does)."""
    weighted = items.select("index", F.pow(F.col("count").cast("double"), F.lit(alpha)).alias("weight"))
    total = weighted.agg(F.sum("weight").alias("total"))
    return weighted.crossJoin(total).select(
        "index", (F.col("weight") / F.col("total")).alias("probability")
    ).orderBy("index")


def categorical_vocabulary(
    values: DataFrame, column: str, min_count: int, previous: DataFrame | None = None, buckets: int = 1
) -> DataFrame:
    """value, index (B + 1 .. n by count desc, then value; or stable with previous), count;
    values below min_count are left out and hash into the B = `buckets` OOV buckets."""
    counts = (
        values.select(F.trim(F.col(column).cast("string")).alias("value"))
        .where(F.col("value").isNotNull() & (F.col("value") != ""))
        .groupBy("value")
        .agg(F.count(F.lit(1)).alias("count"))
        .where(F.col("count") >= min_count)
    )
    return ranked_vocabulary(counts, "value", CATEGORY_UNKNOWN + buckets, previous)


def oov_bucket(value: Column, buckets: int) -> Column:
    """The OOV index (1 .. buckets) of a value outside the vocabulary: a hash, the same in
    every run and partition."""
    return (F.lit(CATEGORY_UNKNOWN) + F.pmod(F.xxhash64(value), F.lit(buckets))).cast("int")


def encode_categoricals(
    table: DataFrame, key: str, vocabularies: dict[str, DataFrame], keep: list[str] = (), buckets: int = 1
) -> DataFrame:
    """key, demographics (one index per vocabulary, in the dict's order), and the `keep`
    columns passed through."""
    encoded = table.select(key, *keep, *[F.trim(F.col(c).cast("string")).alias(c) for c in vocabularies])
    for column, vocab in vocabularies.items():
        lookup = F.broadcast(vocab.select(F.col("value").alias(column), F.col("index").alias(f"{column}__index")))
        encoded = encoded.join(lookup, on=column, how="left")
    indices = [
        F.when(F.col(c).isNull() | (F.col(c) == ""), F.lit(CATEGORY_MISSING))
        .otherwise(F.coalesce(F.col(f"{c}__index"), oov_bucket(F.col(c), buckets)))
        .cast("int")
        for c in vocabularies
    ]
    demographics = F.array(*indices) if indices else F.array()
    return encoded.select(key, *keep, demographics.cast("array<int>").alias("demographics"))


def missing_demographics(count: int):
    """The demographics of a user absent from the users table: every feature missing."""
    return F.array_repeat(F.lit(CATEGORY_MISSING), count).cast("array<int>")
