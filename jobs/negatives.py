"""Pre-drawn negatives: k item indices per example from the count^alpha table (negsample=k).

For trainers that read negatives from the examples (pointwise DSSM, other frameworks) rather
than sampling their own. Drawing uses word2vec's unigram-table idea with Spark built-ins: the
table is one array in which item j fills about M * p_j slots (at least one), broadcast to
every task; a draw is a slot chosen by a hash of (seed, user, item, ts, draw number), so the
negatives do not depend on partitioning. An accidental hit (the label itself) is redrawn once.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.sampling import hash_uniform

TABLE_SLOTS_PER_ITEM = 10
MIN_TABLE_SLOTS = 1_000_000


def unigram_table(sampling: DataFrame, num_items: int) -> DataFrame:
    """One row, one column `table`: item indices, item j repeated ~M * p_j times (>= 1)."""
    slots = max(MIN_TABLE_SLOTS, TABLE_SLOTS_PER_ITEM * num_items)
    repeats = F.greatest(F.lit(1), F.round(F.col("probability") * slots).cast("int"))
    return sampling.where(F.col("probability") > 0).agg(
        F.flatten(F.collect_list(F.array_repeat(F.col("index"), repeats))).alias("table")
    )


def with_negatives(examples: DataFrame, table: DataFrame, k: int, seed: int) -> DataFrame:
    """Add `negatives`: k draws per example (empty when k = 0)."""
    if k == 0:
        return examples.withColumn("negatives", F.array().cast("array<int>"))

    def draw(j, attempt: int):
        u = hash_uniform(seed, F.lit(attempt), "user_id", "item_id", "ts", j)
        return F.element_at(F.col("table"), (u * F.size("table")).cast("int") + 1)

    def negative(j):
        first = draw(j, 0)
        return F.when(first == F.col("label"), draw(j, 1)).otherwise(first)

    drawn = F.transform(F.sequence(F.lit(1), F.lit(k)), negative).cast("array<int>")
    return examples.crossJoin(F.broadcast(table)).withColumn("negatives", drawn).drop("table")
