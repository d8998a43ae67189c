"""The users and items tables: one row per id, conflicts quarantined.

A table may hold an id twice. Exact copies are one row. Rows of one id that disagree (two
titles for an item, two countries for a user) are a conflict: the row that sorts first by
its values is kept, the same on every run and partitioning, and the others are quarantined
with a reason, their values as text, so that no value of a rejected row reaches a
vocabulary or a title's tokens.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

KEPT = "_kept_rank"


def one_row_per_id(table: DataFrame, key: str, reason: str) -> tuple[DataFrame, DataFrame]:
    """(the table with one row per `key`, the conflicting rows left out: every column as
    text and `reason`)."""
    columns = table.columns
    values = [F.col(c).asc_nulls_last() for c in columns if c != key] or [F.col(key)]  # an id alone: no conflict
    order = Window.partitionBy(key).orderBy(*values)
    ranked = table.dropDuplicates().withColumn(KEPT, F.row_number().over(order))
    kept = ranked.where(F.col(KEPT) == 1).drop(KEPT)
    rejected = ranked.where(F.col(KEPT) > 1).select(*[F.col(c).cast("string").alias(c) for c in columns],
                                                     F.lit(reason).alias("reason"))
    return kept, rejected
