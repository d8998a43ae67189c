"""Per-user serving features: the latest history window and everything already watched."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.split import EVENT_ORDER
from jobs.windows import padded


def serving_features(train_events: DataFrame, history_len: int) -> DataFrame:
    """user_id, history (last history_len, oldest first, padded), history_length, watched."""
    in_order = F.array_sort(F.collect_list(F.struct(*EVENT_ORDER, "item_index")))
    sequences = train_events.groupBy("user_id").agg(
        F.transform(in_order, lambda event: event["item_index"]).alias("items")
    )
    latest = F.slice(
        F.col("items"), F.greatest(F.size("items") - history_len + 1, F.lit(1)), history_len
    )
    return sequences.select(
        "user_id",
        padded(latest, history_len).alias("history"),
        F.least(F.size("items"), F.lit(history_len)).cast("int").alias("history_length"),
        F.array_sort(F.array_distinct(F.col("items"))).cast("array<int>").alias("watched"),
    )
