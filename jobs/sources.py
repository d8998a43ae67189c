"""Read a DATA_DIR into the canonical tables: clicks, users, items, searches.

A DATA_DIR is either the canonical layout (clicks/, users/, items/, optional searches/, each
Parquet or CSV) or a MovieLens dataset, detected from its files:
- RecBole atomic files (ml-100k.inter, .user, .item; tab-separated, "name:type" headers),
- ml-1m's ratings.dat / users.dat / movies.dat ("::"-separated, Latin-1),
- ml-latest's ratings.csv / movies.csv (no users table).
Ratings are taken as watches (MovieLens has no watch time); a movie's release year stands in
for its upload time. Every reader returns string ids and a UTC `ts` timestamp; values that do
not parse become nulls here and are rejected, with a reason, by validate.py; a canonical CSV
click row with more or fewer fields than the header keeps its raw text in _corrupt_record and
is rejected as malformed. Parquet files whose column types disagree (integer ids in some,
text in others) are read group by group, those columns as text.

A canonical clicks/ (and searches/) table may be partitioned by day, date=YYYY-MM-DD/
folders as a nightly log lands; given a range of days, only those are read, and a day of
clicks missing from the range is an error (a searches day may be absent: nobody searched).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from functools import reduce

import pyarrow.fs as pafs
import pyarrow.parquet as pq
from py4j.protocol import Py4JJavaError
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core import storage
from core.contract import CORRUPT_RECORD, DAY_MARKER, ITEMS_KEY, USERS_KEY

log = logging.getLogger(__name__)


class InputError(ValueError):
    """A DATA_DIR that cannot be read as any known layout."""


PARTITION = "date="  # a day's folder of a partitioned table: date=YYYY-MM-DD
DAY_FOLDER = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class Sources:
    """The canonical input tables; users, items and searches may be absent."""

    name: str  # what the data is, for reports: "ml-100k", "canonical:<dir>", ...
    layout: str
    clicks: DataFrame
    users: DataFrame | None
    items: DataFrame | None
    searches: DataFrame | None


def read_sources(spark: SparkSession, data_dir: str, days: tuple[dt.date, dt.date] | None = None,
                 ts_unit: str = "auto", day_marker: str | None = DAY_MARKER) -> Sources:
    """The tables of data_dir; `days` (first, last) reads only those days of a log
    partitioned by day, a day being there once its folder holds `day_marker` (None: once the
    folder is there); `ts_unit` is the unit of a canonical click log's numeric times
    (parse_ts). The clicks keep each raw time as text in ts__raw, for the rejected rows."""
    data_dir = storage.absolute(data_dir)
    names = storage.list_names(data_dir)
    if not names:
        raise InputError(f"{data_dir} does not exist or is empty")
    if "clicks" in names:
        return _read_canonical(spark, data_dir, names, days, ts_unit, day_marker)
    if days is not None:
        raise InputError(f"{data_dir}: reading days {days[0]}..{days[1]} needs a canonical layout with "
                         f"clicks/{PARTITION}YYYY-MM-DD/ partitions")
    inter = [n for n in names if n.endswith(".inter")]
    if inter:
        return _read_recbole(spark, data_dir, inter[0].removesuffix(".inter"), names)
    if "ratings.dat" in names:
        return _read_ml1m(spark, data_dir)
    if "ratings.csv" in names:
        return _read_ml_latest(spark, data_dir, names)
    raise InputError(
        f"{data_dir} holds neither the canonical layout (clicks/, users/, items/) nor a "
        f"MovieLens dataset (*.inter, ratings.dat or ratings.csv); found: {', '.join(names[:10])}"
    )


# ---------------------------------------------------------------- canonical layout
def _read_canonical(spark: SparkSession, data_dir: str, names: list[str],
                    days: tuple[dt.date, dt.date] | None, ts_unit: str, day_marker: str | None) -> Sources:
    def table(name: str, quarantine: bool = False) -> DataFrame | None:
        return _read_table(spark, [storage.join(data_dir, name)], quarantine) if name in names else None

    def by_day(name: str, quarantine: bool = False) -> DataFrame | None:
        if name not in names:
            return None
        paths = day_paths(storage.join(data_dir, name), days, every_day=name == "clicks", marker=day_marker)
        if paths is None:  # not partitioned by day
            return table(name, quarantine)
        return _read_table(spark, paths, quarantine) if paths else None

    clicks = by_day("clicks", quarantine=True)
    if clicks is None:
        raise InputError(f"{data_dir}/clicks: no partition {PARTITION}YYYY-MM-DD/ from {days[0]} to {days[1]}")
    searches = by_day("searches")
    items = _string_key(table("items"), ITEMS_KEY, f"{data_dir}/items")
    return Sources(
        name=f"canonical:{data_dir.rstrip('/').rsplit('/', 1)[-1]}",
        layout="canonical",
        clicks=parse_ts(clicks, "ts", ts_unit, f"{data_dir}/clicks") if "ts" in clicks.columns else clicks,
        users=_string_key(table("users"), USERS_KEY, f"{data_dir}/users"),
        items=(
            parse_ts(items, "upload_ts", "auto", f"{data_dir}/items", keep_raw=False)
            if items is not None and "upload_ts" in items.columns
            else items
        ),
        searches=(parse_ts(searches, "ts", ts_unit, f"{data_dir}/searches", keep_raw=False)
                  if searches is not None and "ts" in searches.columns else searches),
    )


def day_folders(table_dir: str) -> list[str]:
    """The days (YYYY-MM-DD, sorted) of a table partitioned by day: its date=YYYY-MM-DD/
    folders, landed or still being written."""
    return sorted(m.group(1) for m in map(DAY_FOLDER.match, storage.list_names(table_dir)) if m)


def logged_days(table_dir: str, marker: str | None = DAY_MARKER) -> list[str]:
    """The days (YYYY-MM-DD, sorted) that have landed in a table partitioned by day: the
    date=YYYY-MM-DD/ folders holding `marker` (every folder when marker is None)."""
    return _landed(table_dir, day_folders(table_dir), marker)


def _landed(table_dir: str, folders: list[str], marker: str | None) -> list[str]:
    """The days of `folders` whose folder holds marker (all of them when marker is None)."""
    return [day for day in folders
            if marker is None or storage.exists(storage.join(table_dir, PARTITION + day, marker))]


def day_paths(table_dir: str, days: tuple[dt.date, dt.date] | None, every_day: bool = True,
              marker: str | None = DAY_MARKER) -> list[str] | None:
    """The date=YYYY-MM-DD/ folders of a table partitioned by day that have landed (hold
    `marker`): all of them, or those from days[0] to days[1], each of which must have landed
    when every_day. None for a table that is not partitioned, which is an error when days are
    asked for every day."""
    folders = day_folders(table_dir)  # one listing: on an object store each is a request
    present = _landed(table_dir, folders, marker)
    if not folders:
        if days is not None and every_day:
            raise InputError(f"{table_dir}: reading days {days[0]}..{days[1]} needs {PARTITION}YYYY-MM-DD/ "
                             "partitions; the table has none")
        return None
    if days is None:
        wanted = present
        landing = [d for d in folders if d not in present]
        if landing:
            log.warning("%s: left out %d day(s) not landed whole yet (their folders hold no %s): %s", table_dir,
                        len(landing), marker, ", ".join(landing[:5]))
    else:
        first, last = days
        wanted = [(first + dt.timedelta(days=d)).isoformat() for d in range((last - first).days + 1)]
        missing = [d for d in wanted if d not in present]
        landing = [d for d in missing if d in folders]
        if landing and every_day:
            raise InputError(
                f"{table_dir}: the day{'s' if len(landing) > 1 else ''} {', '.join(landing[:5])} of {first}..{last} "
                f"{'have' if len(landing) > 1 else 'has'} not landed whole ({PARTITION}{landing[0]}/ holds no "
                f"{marker}, which the writer of a day writes last): wait for {'them' if len(landing) > 1 else 'it'}, "
                "or set prep.day_marker=null for a log written without markers"
            )
        if missing and every_day:
            raise InputError(
                f"{table_dir}: the day{'s' if len(missing) > 1 else ''} {', '.join(missing[:5])}"
                f"{f' and {len(missing) - 5} more' if len(missing) > 5 else ''} of {first}..{last} "
                f"{'are' if len(missing) > 1 else 'is'} missing (no {PARTITION}{missing[0]}/): land "
                "the day's log, or run for a range that has every day"
            )
        wanted = [d for d in wanted if d in present]
    return [storage.join(table_dir, PARTITION + d) for d in wanted]


def _string_key(table: DataFrame | None, key: str, source: str) -> DataFrame | None:
    """Integer ids in a users or items table become the text keys the click log uses; so do
    floating-point ids that hold integers (1.0, as a dataframe library writes an integer
    column with a missing value), which would otherwise never match the log's "1". A
    fractional one is refused, naming the column and the value."""
    if table is None or key not in table.columns:
        return table
    if isinstance(table.schema[key].dataType, (T.FloatType, T.DoubleType, T.DecimalType)):
        fractional = table.where(F.col(key) != F.floor(F.col(key))).select(key).limit(1).collect()
        if fractional:
            raise InputError(f"{source}: column {key!r} holds {fractional[0][0]}, which is not an id: ids must be "
                             "strings or integers")
        table = table.withColumn(key, F.col(key).cast("long"))
    return table.withColumn(key, ids(F.col(key)))


def _read_table(spark: SparkSession, paths: list[str], quarantine: bool = False) -> DataFrame:
    """Folders (or files) of Parquet or CSV files, as one table; CSV is read as strings with a
    header, and with `quarantine` a row that does not fit the header keeps its raw text in
    CORRUPT_RECORD."""
    names = [n for path in paths for n in storage.list_names(path) or [path.rsplit("/", 1)[-1]]]
    if any(n.endswith(".parquet") for n in names):
        return _read_parquet(spark, paths)
    if any(n.endswith(".csv") or n.endswith(".csv.gz") for n in names):
        reader = csv_reader(spark).option("mode", "PERMISSIVE")
        header = reader.csv(paths).schema  # the header line only: every column a string
        if not quarantine or not header.fields:
            return reader.csv(paths)
        schema = T.StructType([*header.fields, T.StructField(CORRUPT_RECORD, T.StringType())])
        return reader.option("columnNameOfCorruptRecord", CORRUPT_RECORD).schema(schema).csv(paths)
    raise InputError(f"{paths[0]}: expected Parquet (*.parquet) or CSV (*.csv) files")


def csv_reader(spark: SparkSession):
    """CSV as RFC 4180 writes it: a header line, fields quoted with ", a " inside a quoted
    field doubled, line breaks inside quoted fields kept (so a file is read whole by one task,
    not split), a UTF-8 byte-order mark ignored."""
    return spark.read.option("header", True).option("quote", '"').option("escape", '"').option("multiLine", True)


def _read_parquet(spark: SparkSession, paths: list[str]) -> DataFrame:
    """Parquet files with their schemas merged (a column some files lack is null there); where
    files disagree on a column's type, each group of files with one schema is read alone and
    the disagreeing columns become text, so that integer and text ids meet as text."""
    try:
        return spark.read.option("mergeSchema", True).parquet(*paths)
    except Py4JJavaError as err:
        if "CANNOT_MERGE" not in str(err.java_exception):
            raise
    files = []
    for path in paths:
        fs, local = storage.filesystem(path)
        infos = fs.get_file_info(pafs.FileSelector(local, recursive=True))
        files += sorted(f.path for f in infos if f.path.endswith(".parquet"))
    groups: dict[tuple, list[str]] = {}
    for file in files:
        with fs.open_input_file(file) as f:
            schema = pq.read_schema(f)
        groups.setdefault(tuple((field.name, str(field.type)) for field in schema), []).append(file)
    types: dict[str, set[str]] = {}
    for schema in groups:
        for name, kind in schema:
            types.setdefault(name, set()).add(kind)
    mixed = sorted(name for name, kinds in types.items() if len(kinds) > 1)
    log.warning("%s: files disagree on the types of %s (%s); those columns are read as text", paths[0],
                ", ".join(mixed), "; ".join(f"{n}: {', '.join(sorted(types[n]))}" for n in mixed))
    # the filesystem names a file without its scheme (bucket/key on an object store)
    scheme = paths[0].split("://", 1)[0] + "://" if storage.is_uri(paths[0]) else ""
    frames = [
        spark.read.parquet(*[scheme + f for f in group]).withColumns(
            {c: F.col(c).cast("string") for c in mixed if c in dict(schema)}
        )
        for schema, group in groups.items()
    ]
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)


EPOCH_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6}
UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds"}
UNIT_SAMPLE = 1000  # numeric times read to tell the unit


def raw_column(name: str) -> str:
    """The column that keeps `name`'s values as read, as text (parse_ts's keep_raw)."""
    return f"{name}__raw"


def parse_ts(df: DataFrame, name: str, unit: str = "s", source: str | None = None,
             keep_raw: bool = True) -> DataFrame:
    """Column `name` as a timestamp, from a timestamp or date, epoch numbers (number or
    numeric text) in `unit` (s, ms, us; auto: told from a sample, epoch_unit) or ISO-8601
    text; anything else becomes null (and is rejected downstream). keep_raw: the values as
    read go to raw_column(name), as text. A column of another type (boolean, list, ...) is
    refused at once, naming it."""
    dtype = df.schema[name].dataType
    where = source or name
    if not isinstance(dtype, (T.TimestampType, T.TimestampNTZType, T.DateType, T.NumericType, T.StringType)):
        raise InputError(f"{where}: column {name!r} has type {dtype.simpleString()}; expected a timestamp, "
                         "epoch seconds (or ms, us: prep.ts_unit) or ISO-8601 text")
    col = F.col(name)
    if keep_raw:
        df = df.withColumn(raw_column(name), col.cast("string"))
    if isinstance(dtype, (T.TimestampType, T.TimestampNTZType, T.DateType)):
        return df.withColumn(name, col.cast("timestamp"))
    scale = EPOCH_UNITS[epoch_unit(df, name, unit, where)]
    if isinstance(dtype, T.NumericType):
        return df.withColumn(name, F.timestamp_seconds(col.cast("double") / F.lit(scale)))
    text = F.trim(col.cast("string"))
    number = text.try_cast("double")
    parsed = F.when(number.isNotNull(), F.timestamp_seconds(number / F.lit(scale))).otherwise(
        F.try_to_timestamp(text)
    )
    return df.withColumn(name, parsed.cast("timestamp"))


def epoch_unit(df: DataFrame, name: str, unit: str, source: str) -> str:
    """The unit of a column's epoch numbers: `unit` unless "auto", then told by the median
    of a sample's magnitude (seconds of the years 1973-5138 stay below 1e11, milliseconds
    below 1e14, microseconds beyond). A unit given that the sample contradicts is refused,
    naming the unit the values look like."""
    sample = [abs(r[0]) for r in df.select(F.col(name).cast("string").try_cast("double").alias("v"))
              .where(F.col("v").isNotNull() & (F.col("v") != 0)).limit(UNIT_SAMPLE).collect()]
    if not sample:
        return "s" if unit == "auto" else unit
    median = sorted(sample)[len(sample) // 2]
    seen = "s" if median < 1e11 else "ms" if median < 1e14 else "us"
    if unit == "auto":
        if seen != "s":
            log.info("%s: %s holds epoch %s (median %.3g): read as such (prep.ts_unit=auto)", source, name,
                     UNIT_NAMES[seen], median)
        return seen
    if seen != unit:
        raise InputError(f"{source}: column {name!r} looks like epoch {UNIT_NAMES[seen]} (median {median:.3g}), "
                         f"not {UNIT_NAMES[unit]} as prep.ts_unit={unit} says; set prep.ts_unit={seen} or auto")
    return unit


def ids(col: Column) -> Column:
    """Ids as trimmed strings, so integer ids and UUIDs share one vocabulary code path."""
    return F.trim(col.cast("string"))


# ---------------------------------------------------------------- MovieLens
def _clicks(ratings: DataFrame, user: str, item: str, ts: str) -> DataFrame:
    """Ratings as watches: (user, item, time) in the canonical names and types."""
    selected = ratings.select(
        ids(F.col(user)).alias("user_id"), ids(F.col(item)).alias("item_id"), F.col(ts).alias("ts")
    )
    return parse_ts(selected, "ts", "s")


def _genre_text(col: Column, sep: str) -> Column:
    return F.array_join(F.split(col, sep), " ")


def _release_year_ts(year: Column) -> Column:
    return F.try_to_timestamp(F.concat(F.trim(year), F.lit("-01-01")), F.lit("yyyy-MM-dd"))


def _read_recbole(spark: SparkSession, data_dir: str, stem: str, names: list[str]) -> Sources:
    def atomic(suffix: str) -> DataFrame | None:
        if f"{stem}.{suffix}" not in names:
            return None
        df = (
            spark.read.option("header", True)
            .option("sep", "\t")
            .option("quote", "\u0000")
            .csv(storage.join(data_dir, f"{stem}.{suffix}"))
        )
        # RecBole headers are "name:type"; the name is the column
        return df.toDF(*[c.split(":", 1)[0] for c in df.columns])

    inter = atomic("inter")
    clicks = _clicks(inter, "user_id", "item_id", "timestamp")
    users = atomic("user")
    if users is not None:
        users = users.select(
            ids(F.col(USERS_KEY)).alias(USERS_KEY),
            *[F.col(c) for c in users.columns if c != USERS_KEY],
        )
    items = atomic("item")
    if items is not None:
        items = items.select(
            ids(F.col("item_id")).alias(ITEMS_KEY),
            F.col("movie_title").alias("title"),
            _release_year_ts(F.col("release_year")).alias("upload_ts"),
            _genre_text(F.col("class"), " ").alias("genres"),
        )
    return Sources(stem, "recbole", clicks, users, items, None)


def _read_dat(spark: SparkSession, path: str, columns: list[str]) -> DataFrame:
    df = (
        spark.read.option("sep", "::")
        .option("encoding", "ISO-8859-1")
        .option("quote", "\u0000")
        .csv(path)
    )
    return df.toDF(*columns)


def _read_ml1m(spark: SparkSession, data_dir: str) -> Sources:
    ratings = _read_dat(
        spark, storage.join(data_dir, "ratings.dat"), ["user_id", "item_id", "rating", "timestamp"]
    )
    users = _read_dat(
        spark, storage.join(data_dir, "users.dat"), ["user_id", "gender", "age", "occupation", "zip_code"]
    )
    movies = _read_dat(spark, storage.join(data_dir, "movies.dat"), ["item_id", "title", "genres"])
    return Sources(
        name="ml-1m",
        layout="ml-1m",
        clicks=_clicks(ratings, "user_id", "item_id", "timestamp"),
        users=users.withColumn("user_id", ids(F.col("user_id"))),
        items=_movies_with_year(movies),
        searches=None,
    )


def _movies_with_year(movies: DataFrame) -> DataFrame:
    """ml-1m / ml-latest titles end in "(1995)": the year becomes the upload time."""
    year = F.regexp_extract(F.col("title"), r"\((\d{4})\)\s*$", 1)
    return movies.select(
        ids(F.col("item_id")).alias(ITEMS_KEY),
        F.trim(F.regexp_replace(F.col("title"), r"\s*\(\d{4}\)\s*$", "")).alias("title"),
        _release_year_ts(F.nullif(year, F.lit(""))).alias("upload_ts"),
        _genre_text(F.col("genres"), r"\|").alias("genres"),
    )


def _read_ml_latest(spark: SparkSession, data_dir: str, names: list[str]) -> Sources:
    def csv(name: str) -> DataFrame:
        return csv_reader(spark).csv(storage.join(data_dir, name))

    ratings = csv("ratings.csv")
    movies = csv("movies.csv").withColumnRenamed("movieId", "item_id") if "movies.csv" in names else None
    return Sources(
        name=data_dir.rstrip("/").rsplit("/", 1)[-1],
        layout="ml-latest",
        clicks=_clicks(ratings, "userId", "movieId", "timestamp"),
        users=None,
        items=_movies_with_year(movies) if movies is not None else None,
        searches=None,
    )
