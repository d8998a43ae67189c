"""Continuous user features, min-max normalized to [0, 1] with statistics kept for later runs.

The model sees x, x² and √x of each (DESIGN: "continuous values normalized to [0, 1], with
x, x^2 and sqrt(x)"); the statistics are kept in the prep manifest so that a nightly run can
normalize tomorrow's users the same way.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


def minmax_statistics(users: DataFrame, columns: list[str]) -> dict[str, tuple[float, float]]:
    """{column: (min, max)} over the users table's parseable values (one small aggregate)."""
    if not columns:
        return {}
    row = users.agg(
        *[agg(F.col(c).cast("string").try_cast("double")).alias(f"{name}_{c}")
          for c in columns for name, agg in (("min", F.min), ("max", F.max))]
    ).first()
    return {c: (row[f"min_{c}"], row[f"max_{c}"]) for c in columns}


def normalized(columns: list[str], stats: dict[str, tuple[float, float]]) -> Column:
    """array<float>: each column as (x - min) / (max - min), clipped to [0, 1]; a missing or
    unparseable value is 0."""
    values = []
    for c in columns:
        low, high = stats[c]
        span = (high - low) if low is not None and high is not None and high > low else 1.0
        x = (F.col(c).cast("string").try_cast("double") - F.lit(low or 0.0)) / F.lit(span)
        values.append(F.coalesce(F.least(F.greatest(x, F.lit(0.0)), F.lit(1.0)), F.lit(0.0)))
    return F.array(*values).cast("array<float>") if values else F.array().cast("array<float>")
