"""Input checks: the schema fails fast, bad rows are quarantined with a reason, never dropped.

Every click row ends up in exactly one place: the clean events or the rejected table, whose
`reason` column says why (one of REJECTION_REASONS).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.order import in_event_order
from jobs.sources import raw_column
from core.contract import CLICKS_REQUIRED, CORRUPT_RECORD

# what a decoder writes for bytes that are not UTF-8: an id holding it was mis-encoded and
# would not match the same id written correctly elsewhere
REPLACEMENT_CHARACTER = "\ufffd"


class SchemaError(ValueError):
    """An input table without a required column, or with a column of an unusable type."""


WATCH_COLUMNS = ("watch_seconds", "watch_fraction")
# the values of `reason`, in the order the checks run
REJECTION_REASONS = (
    "malformed_row", "null_id", "bad_encoding", "bad_timestamp", "implausible_timestamp", "future_timestamp",
    "unknown_item", "bad_watch_time", "negative_watch_time", "duplicate",
)
_ID_TYPES = (T.StringType, T.IntegerType, T.LongType, T.ShortType)
_TS_TYPES = (T.TimestampType, T.TimestampNTZType)


def check_clicks_schema(clicks: DataFrame, source: str) -> None:
    """Fail at once, naming the column, when the click log cannot be read as (user, item, ts)."""
    columns = dict((f.name, f.dataType) for f in clicks.schema.fields if f.name != CORRUPT_RECORD)
    for name in CLICKS_REQUIRED:
        if name not in columns:
            raise SchemaError(
                f"{source}: click log has no column {name!r} (columns: {', '.join(columns)}); "
                f"required: {', '.join(CLICKS_REQUIRED)}"
            )
    for name in ("user_id", "item_id"):
        if not isinstance(columns[name], _ID_TYPES):
            raise SchemaError(
                f"{source}: column {name!r} has type {columns[name].simpleString()}; "
                "ids must be strings or integers"
            )
    if not isinstance(columns["ts"], _TS_TYPES):
        raise SchemaError(
            f"{source}: column 'ts' has type {columns['ts'].simpleString()}; expected a timestamp, "
            "epoch seconds or ISO-8601 text"
        )
    for name in WATCH_COLUMNS:
        if name in columns and not isinstance(columns[name], (T.NumericType, T.StringType)):
            raise SchemaError(f"{source}: column {name!r} must be numeric, not {columns[name].simpleString()}")


def check_key_column(table: DataFrame | None, key: str, source: str) -> None:
    if table is not None and key not in table.columns:
        raise SchemaError(f"{source}: table has no column {key!r} (columns: {', '.join(table.columns)})")


def with_rejection_reason(
    clicks: DataFrame,
    anchor: dt.datetime | None = None,
    known_items: DataFrame | None = None,
    earliest: dt.datetime | None = None,
) -> DataFrame:
    """The clicks with a `reason` column (null = valid); the first failing check names it.

    A CSV row that did not fit the header (CORRUPT_RECORD set by the reader) is malformed;
    an id with bytes that were not UTF-8 is badly encoded.
    anchor: events after it are in the future (clock skew, bad producers) and rejected.
    earliest: events before it are implausible (a zero or negative epoch, a default date) and
    rejected.
    known_items: when the items table exists, clicks on items it lacks are rejected.
    Rejected rows keep their raw values (as text), so they can be inspected and replayed.
    """
    ids = {c: F.trim(F.col(c).cast("string")) for c in ("user_id", "item_id")}
    # watch columns from CSV arrive as text: numbers are parsed, anything else is rejected
    watch = [c for c in WATCH_COLUMNS if c in clicks.columns]
    parsed = {f"{c}__parsed": F.col(c).try_cast("double") for c in watch}
    tagged = clicks.withColumns({**ids, **parsed})
    malformed = F.col(CORRUPT_RECORD).isNotNull() if CORRUPT_RECORD in clicks.columns else F.lit(False)
    mis_encoded = F.col("user_id").contains(REPLACEMENT_CHARACTER) | F.col("item_id").contains(REPLACEMENT_CHARACTER)
    reason = (
        F.when(malformed, F.lit("malformed_row"))
        .when(F.col("user_id").isNull() | (F.col("user_id") == "") | F.col("item_id").isNull()
              | (F.col("item_id") == ""), F.lit("null_id"))
        .when(mis_encoded, F.lit("bad_encoding"))
        .when(F.col("ts").isNull(), F.lit("bad_timestamp"))
    )
    if earliest is not None:
        reason = reason.when(F.col("ts") < F.lit(earliest), F.lit("implausible_timestamp"))
    if anchor is not None:
        reason = reason.when(F.col("ts") > F.lit(anchor), F.lit("future_timestamp"))
    if known_items is not None:
        # the catalog is small next to the log: broadcast it rather than shuffle the log by item
        catalog = known_items.select(F.trim(F.col("item_id").cast("string")).alias("item_id")).distinct()
        tagged = tagged.join(F.broadcast(catalog.withColumn("item_known", F.lit(True))), "item_id", "left")
        reason = reason.when(F.col("item_known").isNull(), F.lit("unknown_item"))
    for c in watch:
        reason = reason.when(F.col(c).isNotNull() & F.col(f"{c}__parsed").isNull(), F.lit("bad_watch_time"))
        reason = reason.when(F.col(f"{c}__parsed") < 0, F.lit("negative_watch_time"))
    # exact duplicates of (user, item, ts) are neighbours in event order: the first copy (the
    # longest watch first) is the event, the rest are rejected. This window is the job's one
    # shuffle and sort by user (jobs/order.py).
    copies = in_event_order(*[F.col(f"{c}__parsed").desc() for c in watch])
    earlier_copy = (F.lag("item_id").over(copies) == F.col("item_id")) & (F.lag("ts").over(copies) == F.col("ts"))
    tagged = tagged.withColumn("reason", reason).withColumn(
        "reason",
        F.when(F.col("reason").isNull() & F.coalesce(earlier_copy, F.lit(False)), F.lit("duplicate")).otherwise(
            F.col("reason")
        ),
    )
    return tagged


def rejected_row(columns: list[str]) -> Column:
    """A rejected row of a tagged frame as a struct of its raw values (as text: a column's
    values as read where the reader kept them, jobs.sources.raw_column) and reason; null for
    a valid row, so that it costs nothing to carry along."""
    kept = [c for c in columns if raw_column(c) not in columns and not c.endswith("__raw")]
    read = [F.col(raw_column(c)).alias(c) for c in columns if raw_column(c) in columns]
    raw = F.struct(*[F.col(c).cast("string").alias(c) for c in kept], *read, F.col("reason"))
    return F.when(F.col("reason").isNotNull(), raw)


def short_watch(tagged: DataFrame, min_seconds: float | None, min_fraction: float | None) -> Column:
    """True for a watch too short to be a positive, where the log says how long; reads the
    parsed watch columns of a frame tagged by with_rejection_reason."""
    short = F.lit(False)
    for column, threshold, missing in (
        ("watch_seconds", min_seconds, float("inf")),
        ("watch_fraction", min_fraction, 1.0),
    ):
        if threshold is not None and f"{column}__parsed" in tagged.columns:
            short = short | (F.coalesce(F.col(f"{column}__parsed"), F.lit(missing)) < threshold)
    return short
