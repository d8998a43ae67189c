"""Per-user serving features: the latest history window and everything already watched."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.windows import token_bag, user_timeline


def serving_features(
    train_events: DataFrame, history_len: int, searches: DataFrame | None = None, max_tokens: int = 0
) -> DataFrame:
    """user_id, history (last history_len watches, oldest first), history_length,
    search_tokens (of the searches since the window's first watch, up to the last watch),
    watched (every training item index)."""
    timeline = user_timeline(train_events, searches)
    per_user = timeline.groupBy("user_id").agg(
        F.array_sort(
            F.collect_list(F.when(F.col("is_watch"), F.struct("watch_ordinal", "item_index")))
        ).alias("watches"),
        F.max("watch_ordinal").alias("last_ordinal"),
        F.max(F.when(F.col("is_watch"), F.col("ts"))).alias("last_watch_ts"),
        F.collect_list(F.struct("watch_ordinal", "ts", "tokens")).alias("token_rows"),
    )
    items = F.transform(F.col("watches"), lambda w: w["item_index"])
    latest = F.slice(items, F.greatest(F.size(items) - history_len + 1, F.lit(1)), history_len)
    # the examples' window of a next watch: the last history_len watches and the searches
    # between them, none after the last watch (it could describe the held-out one)
    in_window = F.filter(
        F.col("token_rows"),
        lambda r: r["tokens"].isNotNull()
        & (r["watch_ordinal"] > F.col("last_ordinal") - history_len)
        & (r["ts"] <= F.col("last_watch_ts")),
    )
    ordered = F.transform(F.array_sort(in_window), lambda r: r["tokens"])
    return per_user.where(F.col("last_ordinal") > 0).select(
        "user_id",
        latest.cast("array<int>").alias("history"),
        F.least(F.size(items), F.lit(history_len)).cast("int").alias("history_length"),
        token_bag(ordered, max_tokens).alias("search_tokens"),
        F.array_sort(F.array_distinct(items)).cast("array<int>").alias("watched"),
    )
