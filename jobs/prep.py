"""The prep job: click log -> vocabularies, training examples, serving features, eval targets.

    read -> validate -> leave-last-out split (test, then validation) -> vocabularies
         -> rollback windows + example age -> demographics
         -> write examples/, user_features/, eval/, valid/, vocab/, rejected/, manifest

Runs the same under `watchnext prep` (embedded local Spark) and under spark-submit
(infra/spark_main.py prep ...), where the session takes the cluster's master and memory.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.sources import Sources, read_sources
from jobs.continuous import minmax_statistics, normalized
from jobs.item_features import SECONDS_PER_DAY, item_categorical_columns, item_feature_table, item_vocabularies
from jobs.negatives import unigram_table, with_negatives
from jobs.sampling import per_user_sums, with_drop_reason
from jobs.split import first_per_user, is_left_out_last, time_period
from jobs.tables import one_row_per_id
from jobs.tokens import encode_texts, token_vocabulary
from jobs.user_features import serving_features
from jobs.validate import (
    REJECTION_REASONS,
    check_clicks_schema,
    check_key_column,
    rejected_row,
    short_watch,
    with_rejection_reason,
)
from jobs.vocab import (
    categorical_vocabulary,
    encode_categoricals,
    item_vocabulary,
    missing_demographics,
    negative_sampling_table,
)
from jobs.windows import event_seconds, history_lengths, windowed_examples, with_example_age, with_watches_after
from core import storage
from core.config import PrepConfig
from core.contract import ITEMS_KEY, ITEMS_TITLE, SECONDS_PER_UNIT, USERS_KEY, VALID_TARGETS
from core.layout import PrepLayout

log = logging.getLogger(__name__)

# how many rows of each shuffled example file go in one Parquet row group: large enough for
# fast scans, small enough that Ray Data streams a file in several pieces
EXAMPLE_ROW_GROUP_BYTES = 16 << 20


def run_prep(spark: SparkSession, data_dir: str, prep_dir: str, cfg: PrepConfig) -> dict[str, Any]:
    """Run the whole prep stage into prep_dir, manifest last; returns the manifest."""
    prep_dir = storage.absolute(prep_dir)
    started = storage.begin_stage(prep_dir, inputs=(data_dir, cfg.previous_vocab))
    out = PrepLayout(prep_dir)
    days = (cfg.partition_from, cfg.partition_to) if cfg.partition_from is not None else None
    sources = read_sources(spark, data_dir, days, cfg.ts_unit, cfg.day_marker)
    check_clicks_schema(sources.clicks, f"{data_dir} clicks")
    check_key_column(sources.users, USERS_KEY, f"{data_dir} users")
    check_key_column(sources.items, ITEMS_KEY, f"{data_dir} items")
    # one row per user and per item; conflicting rows are quarantined, never in a vocabulary
    sources, conflicts = _without_conflicts(sources, out)
    run_anchor = cfg.anchor or dt.datetime.now(dt.timezone.utc)
    laps = Laps()

    # every input row gets one fate: a rejection reason, short_watch, held_out (or
    # after_eval_window), validation or train. The rows are shuffled by user and sorted once, here, and
    # cached: every later per-user step reads them in that order (jobs/order.py)
    known_items = sources.items if cfg.reject_unknown_items else None
    checked = with_rejection_reason(sources.clicks, run_anchor, known_items, cfg.earliest_ts)
    fated = checked.select(
        "user_id", "item_id", "ts", _fate(checked, cfg).alias("fate"), _example_weight(checked, cfg).alias("weight"),
        rejected_row(sources.clicks.columns).alias("rejected"),  # raw values, only where rejected
    ).persist(StorageLevel.MEMORY_AND_DISK)
    ledger = {
        fate: (int(n), lo, hi)
        for fate, n, lo, hi in fated.groupBy("fate")
        .agg(F.count(F.lit(1)), F.min(event_seconds(F.col("ts"))), F.max(event_seconds(F.col("ts"))))
        .collect()
    }
    events_in = sum(n for n, _, _ in ledger.values())
    rejected_counts = {fate: n for fate, (n, _, _) in ledger.items() if fate in REJECTION_REASONS}
    fated.where(F.col("rejected").isNotNull()).select("rejected.*").write.parquet(out.rejected)
    _check_rejected_share(rejected_counts, events_in, cfg, out.rejected,
                          partial(_unknown_item_hint, fated, sources.items))
    filtered = {fate: ledger.get(fate, (0,))[0] for fate in ("short_watch", "held_out")}
    if cfg.split == "time":
        filtered["after_eval_window"] = ledger.get("after_eval_window", (0,))[0]
    if cfg.validation:
        filtered["validation"] = ledger.get("validation", (0,))[0]
    laps.lap("validate and split")

    if not ledger.get("train", (0,))[0]:
        raise ValueError(f"{data_dir}: no training events left after validation and the split (see {out.rejected})")
    # a validation watch is training history (the vocabularies count it, later windows and
    # the serving features see it) but never a label
    training = [ledger[fate] for fate in ("train", "validation") if fate in ledger]
    train_clicks = sum(n for n, _, _ in training)
    first_ts, last_ts = min(lo for _, lo, _ in training), max(hi for _, _, hi in training)
    train = fated.where(F.col("fate").isin("train", "validation")).select(
        "user_id", "item_id", "ts", "weight", (F.col("fate") == "validation").alias("is_validation")
    )
    previous = partial(_previous_vocabulary, spark, cfg.previous_vocab)
    # example age is measured from the end of the training window (which, with
    # eval_users_share, runs into the eval window)
    age_anchor = float(last_ts) if cfg.split == "leave_last_out" else max(cfg.split_time.timestamp(), float(last_ts))
    recent = event_seconds(F.col("ts")) > F.lit(age_anchor - cfg.recent_days * SECONDS_PER_DAY)
    items = item_vocabulary(train, previous("items"), recent).persist(StorageLevel.MEMORY_AND_DISK)
    # at least an hour, so that a log of one burst of events does not blow the ages up
    window_seconds = max(age_anchor - float(first_ts), 3600.0)
    _write_targets(fated, train, items, out.eval, cfg)

    search_source = _search_source(sources, cfg)
    searches, item_tokens, token_vocab = _search_tokens(
        sources, items, search_source, age_anchor, previous("search_tokens"), cfg
    )
    item_columns = items.select("item_id", F.col("index").alias("item_index"), F.col("count").alias("item_count"))
    if item_tokens is not None:  # titles stand in for searches: each watch brings its title's tokens
        item_columns = item_columns.join(item_tokens, "item_id", "left")
    # the vocabulary is small next to the log: a broadcast join keeps the events in order. The
    # indexed training events are all that later steps read: cached, and the fates let go
    indexed = train.join(F.broadcast(item_columns), "item_id").persist(StorageLevel.MEMORY_AND_DISK)
    indexed.count()
    fated.unpersist()
    laps.lap("vocabulary and eval")

    categoricals, continuous = _user_columns(sources, cfg)
    continuous_stats = minmax_statistics(sources.users, continuous)
    vocabularies = {
        c: categorical_vocabulary(sources.users, c, cfg.min_category_count, previous(c), cfg.oov_buckets).persist()
        for c in categoricals
    }
    demographics = (
        encode_categoricals(
            sources.users.dropDuplicates([USERS_KEY]), USERS_KEY, vocabularies, continuous, cfg.oov_buckets
        )
        .withColumn("continuous", normalized(continuous, continuous_stats))
        .drop(*continuous)
        if sources.users is not None
        else None
    )

    item_categoricals = item_categorical_columns(sources.items, cfg.item_categoricals)
    item_vocabs = item_vocabularies(sources.items, items, item_categoricals, cfg.min_category_count, previous,
                                    cfg.oov_buckets) if item_categoricals else {}
    item_vocabs = {c: v.persist() for c, v in item_vocabs.items()}

    max_tokens = cfg.max_search_tokens if search_source != "none" else 0
    rules = partial(
        with_drop_reason, total_clicks=train_clicks, min_history=cfg.min_history,
        subsample_threshold=cfg.subsample_threshold, seed=cfg.seed,
    )
    # the counts and the cap need only each label's position, not its history: one light
    # pass tags the first two rules and sums them per user
    cap = cfg.max_examples_per_user
    uncapped = history_lengths(indexed, cfg.history_len).transform(rules, max_per_user=0)
    per_user = per_user_sums(uncapped, cap, cfg.seed).persist(StorageLevel.MEMORY_AND_DISK)
    sampled, examples_per_user = _sampling_summary(per_user, cfg)
    filtered.update(sampled)
    caps = per_user.select("user_id", "cap_draw") if cap else None
    sampling = partial(rules, max_per_user=cap, caps=caps)
    candidates = windowed_examples(indexed.transform(with_watches_after), cfg.history_len, searches,
                                   max_tokens).transform(sampling)
    laps.lap("sampling")
    sampling_table = negative_sampling_table(items, cfg.negative_alpha)
    table = unigram_table(sampling_table, items.count()) if cfg.negatives_per_example else None
    examples = (
        candidates.where(F.col("drop_reason").isNull())
        .transform(with_example_age, age_anchor, window_seconds, cfg.example_age_unit)
        .transform(_with_demographics, demographics, len(categoricals), len(continuous))
        .transform(with_negatives, table, cfg.negatives_per_example, cfg.seed)
    )
    features = serving_features(indexed, cfg.history_len, searches, max_tokens).transform(
        _with_demographics, demographics, len(categoricals), len(continuous)
    )
    _write_shuffled(examples, out.examples, cfg)
    laps.lap("write examples")
    if cfg.validation:
        _validation_targets(indexed, cfg.history_len, searches, max_tokens).transform(
            _with_demographics, demographics, len(categoricals), len(continuous)
        ).select(*VALID_TARGETS.names).write.parquet(out.valid)
        laps.lap("write validation targets")
    features.write.parquet(out.user_features)
    laps.lap("write user features")
    items.orderBy("index").coalesce(1).write.parquet(out.item_vocab)
    sampling_table.coalesce(1).write.parquet(out.item_sampling)
    for column, vocab in vocabularies.items():
        vocab.orderBy("index").coalesce(1).write.parquet(out.vocab(column))
    if token_vocab is not None:
        token_vocab.orderBy("index").coalesce(1).write.parquet(out.vocab("search_tokens"))
    for column, vocab in item_vocabs.items():
        vocab.orderBy("index").coalesce(1).write.parquet(out.vocab(f"item_{column}"))
    item_feature_table(items, sources.items, item_vocabs, age_anchor, cfg.oov_buckets).orderBy(
        "index"
    ).coalesce(1).write.parquet(out.item_features)
    laps.lap("write vocabularies")
    manifest = _manifest(spark, sources, data_dir, out, cfg, categoricals, continuous, continuous_stats,
                         run_anchor, age_anchor, window_seconds, events_in, rejected_counts, filtered,
                         examples_per_user)
    laps.lap("manifest")
    manifest["phases_seconds"] = laps.seconds
    # users and items rows left out as conflicts (rejected_users/, rejected_items/)
    manifest["counts"]["conflicts"] = conflicts
    manifest["outputs"] += [f"rejected_{name}s" for name in ("user", "item") if conflicts.get(f"duplicate_{name}")]
    manifest["features"].update(
        {
            "search_source": search_source,
            "max_search_tokens": max_tokens,
            "token_vocab_size": (
                _vocab_size(spark, out.vocab("search_tokens"), cfg.oov_buckets) if token_vocab is not None else 0
            ),
            "item_categoricals": item_categoricals,
            "item_categorical_sizes": [
                _vocab_size(spark, out.vocab(f"item_{c}"), cfg.oov_buckets) for c in item_categoricals
            ],
            # the item tower sees log1p(age in days) / this: the oldest item at 1
            "item_age_scale": _item_age_scale(spark, out.item_features),
        }
    )
    tables = [t for t in (sources.users, sources.items) if t is not None]
    for df in (indexed, items, per_user, *tables, *vocabularies.values(), *item_vocabs.values()):
        df.unpersist()
    return storage.finish_stage(prep_dir, started, manifest)


def _example_weight(checked: DataFrame, cfg: PrepConfig) -> Column:
    """The weight of an example whose label is this watch (prep.example_weight)."""
    if cfg.example_weight == "none":
        return F.lit(1.0).cast("float")
    if "watch_seconds__parsed" not in checked.columns:
        raise ValueError(f"prep.example_weight={cfg.example_weight} needs a watch_seconds column in the clicks")
    seconds = F.greatest(F.col("watch_seconds__parsed"), F.lit(0.0))
    weight = seconds if cfg.example_weight == "watch_seconds" else F.log1p(seconds)
    return F.coalesce(weight, F.lit(1.0)).cast("float")


def _fate(checked: DataFrame, cfg: PrepConfig) -> Column:
    """What becomes of a row: its rejection reason, short_watch, or its side of the split."""
    positive = F.col("reason").isNull() & ~short_watch(checked, cfg.min_watch_seconds, cfg.min_watch_fraction)
    if cfg.split == "leave_last_out":
        side = F.when(is_left_out_last(positive), F.lit("held_out"))
        if cfg.validation:  # the watch before the test's
            side = side.when(is_left_out_last(positive, from_end=2), F.lit("validation"))
        side = side.otherwise(F.lit("train"))
    else:
        side = time_period(cfg.split_time, cfg.eval_days, cfg.eval_users_share, cfg.seed)
        if cfg.validation:  # the last watch up to split_time
            side = F.when(is_left_out_last(positive & (side == "train")), F.lit("validation")).otherwise(side)
    return F.coalesce(F.col("reason"), F.when(~positive, F.lit("short_watch")), side)


def _write_targets(fated: DataFrame, train: DataFrame, items: DataFrame, path: str, cfg: PrepConfig) -> None:
    """The evaluation targets: each user's held-out event, with its item index (null for an
    item the training events never saw)."""
    held_out = fated.where(F.col("fate") == "held_out").select("user_id", "item_id", "ts")
    if cfg.split == "time":
        # one target per user, among users the model knows: their first watch after the split
        held_out = first_per_user(held_out).join(train.select("user_id").distinct(), "user_id", "left_semi")
    held_out.join(
        F.broadcast(items.select("item_id", F.col("index").alias("item_index"))), "item_id", "left"
    ).select("user_id", "item_id", "item_index", "ts").write.parquet(path)


def _validation_targets(indexed: DataFrame, history_len: int, searches: DataFrame | None,
                        max_tokens: int) -> DataFrame:
    """Each user's validation watch with the serving features the user had just before it.

    The validation watch is the user's last training watch, so the features of the other
    watches are those of the moment before it, built as the test's are: the validation
    protocol is the test's one step earlier."""
    targets = indexed.where(F.col("is_validation")).select(
        "user_id", "item_id", F.col("item_index").cast("int").alias("item_index"), "ts"
    )
    before = serving_features(indexed.where(~F.col("is_validation")), history_len, searches, max_tokens)
    return targets.join(before, "user_id")


def _previous_vocabulary(spark: SparkSession, previous_prep: str | None, name: str) -> DataFrame | None:
    """The previous run's vocabulary `name`, if there is a previous run and it has one."""
    if previous_prep is None:
        return None
    storage.read_manifest(previous_prep)  # only a finished run's vocabulary is trusted
    path = PrepLayout(storage.absolute(previous_prep)).vocab(name)
    return spark.read.parquet(path) if storage.exists(path) else None


def _search_source(sources: Sources, cfg: PrepConfig) -> str:
    has_titles = sources.items is not None and ITEMS_TITLE in sources.items.columns
    if cfg.search_source == "auto":
        return "queries" if sources.searches is not None else "titles" if has_titles else "none"
    if cfg.search_source == "queries" and sources.searches is None:
        raise ValueError("prep.search_source=queries, but the dataset has no searches/ table")
    if cfg.search_source == "titles" and not has_titles:
        raise ValueError("prep.search_source=titles, but the items table has no title column")
    return cfg.search_source


def _search_tokens(
    sources: Sources, items: DataFrame, source: str, age_anchor: float, previous_tokens: DataFrame | None,
    cfg: PrepConfig,
):
    """(searches with tokens | None, item title tokens | None, token vocabulary | None).

    The vocabulary is fitted on what the training period saw: queries up to the end of the
    training window, or the titles of the items in the item vocabulary.
    """
    if source == "queries":
        check_key_column(sources.searches, "query", "searches")
        queries = sources.searches.select(
            F.trim(F.col("user_id").cast("string")).alias("user_id"), "ts", F.col("query").alias("text")
        ).where(F.col("user_id").isNotNull() & F.col("ts").isNotNull() & F.col("text").isNotNull())
        queries = queries.where(event_seconds(F.col("ts")) <= F.lit(age_anchor))
        vocab = token_vocabulary(queries, cfg.min_token_count, previous_tokens, cfg.oov_buckets).persist()
        # the user and time ride along with the search's id: no join back onto the queries
        keyed = queries.withColumn("search_id", F.monotonically_increasing_id())
        searches = encode_texts(keyed, ["search_id", "user_id", "ts"], vocab, cfg.oov_buckets).select(
            "user_id", "ts", "tokens")
        # read by the examples and by the serving features: tokenize once
        return searches.persist(StorageLevel.MEMORY_AND_DISK), None, vocab
    if source == "titles":
        titles = sources.items.select(
            F.trim(F.col(ITEMS_KEY).cast("string")).alias("item_id"), F.col(ITEMS_TITLE).alias("text")
        ).join(items.select("item_id"), "item_id", "left_semi").where(F.col("text").isNotNull())
        vocab = token_vocabulary(titles, cfg.min_token_count, previous_tokens, cfg.oov_buckets).persist()
        return None, encode_texts(titles, ["item_id"], vocab, cfg.oov_buckets), vocab
    return None, None, None


def _item_age_scale(spark: SparkSession, path: str) -> float:
    oldest = spark.read.parquet(path).agg(F.max("age_days")).first()[0]
    return float(math.log1p(oldest)) if oldest else 1.0


def _vocab_size(spark: SparkSession, path: str, buckets: int) -> int:
    """Index 0 = padding, 1 .. buckets = hashed OOV buckets, then the values."""
    return max(int(spark.read.parquet(path).agg(F.max("index")).first()[0] or 0), buckets) + 1


class Laps:
    """Wall time of each phase of the job, logged as it ends and kept for the manifest."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.time()

    def lap(self, phase: str) -> None:
        now = time.time()
        self.seconds[phase] = round(now - self._last, 3)
        self._last = now
        log.info("prep: %s done in %.1fs", phase, self.seconds[phase])


def _sampling_summary(per_user: DataFrame, cfg: PrepConfig) -> tuple[dict[str, int], dict[str, int]]:
    """(examples dropped by each sampling rule, distribution of examples per user), from the
    per-user sums of the light pass; the manifest checks them against the examples written."""
    cap = cfg.max_examples_per_user
    kept = F.least(F.col("survivors"), F.lit(cap)) if cap else F.col("survivors")
    row = per_user.withColumn("kept", kept).agg(
        F.sum("short_history"),
        F.sum("subsampled"),
        F.sum(F.col("survivors") - F.col("kept")),
        F.min(F.when(F.col("kept") > 0, F.col("kept"))),
        F.expr("percentile_approx(if(kept > 0, kept, null), array(0.5, 0.9, 0.99))"),
        F.max("kept"),
    ).first()
    counts = {"short_history": int(row[0] or 0)}
    if cfg.subsample_threshold is not None:
        counts["subsampled"] = int(row[1] or 0)
    if cap:
        counts["user_cap"] = int(row[2] or 0)
    if not row[5]:
        return counts, {}
    return counts, {"min": row[3], "p50": row[4][0], "p90": row[4][1], "p99": row[4][2], "max": row[5]}


def _check_rejected_share(rejected: dict[str, int], events_in: int, cfg: PrepConfig, where: str,
                          unknown_item_hint: Callable[[], str] | None = None) -> None:
    share = sum(rejected.values()) / max(events_in, 1)
    if share > cfg.max_rejected_fraction:
        ranked = sorted(rejected.items(), key=lambda kv: -kv[1])
        reasons = ", ".join(f"{k}: {v}" for k, v in ranked)
        hint = unknown_item_hint() if unknown_item_hint is not None and ranked[0][0] == "unknown_item" else ""
        raise ValueError(
            f"{share:.1%} of the {events_in} input rows were rejected ({reasons}), more than "
            f"prep.max_rejected_fraction={cfg.max_rejected_fraction}{hint}; inspect {where}, fix the "
            "input, or raise the limit"
        )


def _unknown_item_hint(fated: DataFrame, items: DataFrame | None) -> str:
    """What an item id of the log and one of the items table look like, side by side: most
    clicks on unknown items mean the two write the same ids differently."""
    clicked = fated.where(F.col("fate") == "unknown_item").select("item_id").limit(1).collect()
    listed = items.select(ITEMS_KEY).limit(1).collect() if items is not None else []
    if not clicked or not listed:
        return ""
    return (f" (the log's item ids look like {clicked[0][0]!r}, the items table's like {listed[0][0]!r}: "
            "the same ids written two ways?)")


def _without_conflicts(sources: Sources, out: PrepLayout) -> tuple[Sources, dict[str, int]]:
    """The sources with one row per user and per item (jobs/tables.py); the conflicting rows
    written to rejected_users/ and rejected_items/, and counted."""
    tables, conflicts = {}, {}
    for name, table, key in (("users", sources.users, USERS_KEY), ("items", sources.items, ITEMS_KEY)):
        if table is None:
            continue
        reason = f"duplicate_{name[:-1]}"
        kept, rejected = one_row_per_id(table, key, reason)
        tables[name] = kept.persist()
        conflicts[reason] = rejected.count()
        if conflicts[reason]:
            rejected.coalesce(1).write.parquet(out.rejected_table(name))
            log.warning("%s: %d rows give an id already given other values (%s); kept the first by value, the "
                        "others are in %s", name, conflicts[reason], reason, out.rejected_table(name))
    return dataclasses.replace(sources, **tables), conflicts


def _user_columns(sources: Sources, cfg: PrepConfig) -> tuple[list[str], list[str]]:
    """(categorical, continuous) user columns: as configured, or every other column of the
    users table as a categorical."""
    if sources.users is None:
        return [], []
    available = [c for c in sources.users.columns if c != USERS_KEY]
    named = list(cfg.user_categoricals or ()) + list(cfg.user_continuous)
    unknown = [c for c in named if c not in available]
    if unknown:
        raise ValueError(
            f"prep.user_categoricals/user_continuous name {', '.join(unknown)}, not columns of the "
            f"users table ({', '.join(available)})"
        )
    continuous = list(cfg.user_continuous)
    if cfg.user_categoricals is None:
        return [c for c in available if c not in continuous], continuous
    return list(cfg.user_categoricals), continuous


def _with_demographics(df: DataFrame, demographics: DataFrame | None, categoricals: int, continuous: int) -> DataFrame:
    """Attach each user's categorical indices and continuous values; users absent from the
    users table get 'missing' and zeros."""
    zeros = F.array_repeat(F.lit(0.0), continuous).cast("array<float>")
    if demographics is None:
        return df.withColumns({"demographics": missing_demographics(categoricals), "continuous": zeros})
    joined = df.join(demographics, USERS_KEY, "left")
    return joined.withColumns(
        {
            "demographics": F.coalesce(F.col("demographics"), missing_demographics(categoricals)),
            "continuous": F.coalesce(F.col("continuous"), zeros),
        }
    )


def _write_shuffled(examples: DataFrame, path: str, cfg: PrepConfig) -> None:
    """Examples in cfg.example_files files, rows in a seeded pseudo-random order.

    The examples arrive partitioned by user (jobs/order.py): each partition holds a random
    share of the users, so with no more files than partitions, partitions are merged into
    files and each file sorted by a hash of (seed, user, label, ts), without a shuffle of the
    examples. Asking for more files than partitions costs that shuffle. The order comes from
    the hash, not rand(): reruns and any upstream partitioning give the same rows per file.
    """
    key = F.xxhash64(F.lit(cfg.seed), "user_id", "label", "ts")
    columns = examples.select(
        "user_id", "label", "history", "history_length", "example_age_raw", "example_age",
        "example_age_sq", "example_age_sqrt", "search_tokens", "demographics", "continuous", "weight", "negatives",
        "ts", "watches_after",
    )
    # the events' one shuffle by user made spark.sql.shuffle.partitions partitions
    partitions = int(examples.sparkSession.conf.get("spark.sql.shuffle.partitions"))
    if cfg.example_files <= partitions:
        files = columns.coalesce(cfg.example_files)
    else:
        files = columns.repartition(cfg.example_files, key)
    files.sortWithinPartitions(key).write.option("parquet.block.size", EXAMPLE_ROW_GROUP_BYTES).parquet(path)


def _manifest(spark, sources, data_dir, out, cfg, categoricals, continuous, continuous_stats,
              run_anchor, age_anchor, window_seconds, events_in, rejected, filtered,
              examples_per_user) -> dict[str, Any]:
    """Counts of what was read and dropped, and of what is on disk, read back from the files."""
    examples = spark.read.parquet(out.examples)
    n_examples = examples.count()
    n_items = spark.read.parquet(out.item_vocab).count()
    accounted = sum(rejected.values()) + sum(filtered.values()) + n_examples
    if accounted != events_in:  # every input row must be an example, rejected or filtered
        raise RuntimeError(f"prep lost rows: {events_in} in, {accounted} accounted for")
    if not n_examples:
        raise ValueError(f"{data_dir}: no training examples are left; every training watch was filtered "
                         f"({', '.join(f'{k}: {v}' for k, v in filtered.items() if v)}; a label needs "
                         f"prep.min_history={cfg.min_history} earlier watches)")
    return {
        "inputs": {"data": storage.absolute(data_dir), "dataset": sources.name, "layout": sources.layout},
        "built_from": {"data": storage.tree_fingerprint(data_dir)},
        "config": cfg.model_dump(mode="json"),
        "counts": {
            "events_in": events_in,
            "rejected": rejected,
            "filtered": filtered,
            "examples": n_examples,
            "users": spark.read.parquet(out.user_features).count(),
            "items": n_items,
            "eval_users": spark.read.parquet(out.eval).count(),
            "valid_users": spark.read.parquet(out.valid).count() if cfg.validation else 0,
            "examples_per_user": examples_per_user,
        },
        "features": {
            "history_len": cfg.history_len,
            "item_vocab_size": n_items + 1,  # + padding index 0
            "user_categoricals": categoricals,
            "categorical_sizes": [
                _vocab_size(spark, out.vocab(c), cfg.oov_buckets) for c in categoricals
            ],
            "user_continuous": continuous,
            "continuous_stats": {c: {"min": lo, "max": hi} for c, (lo, hi) in continuous_stats.items()},
            "run_anchor": run_anchor.isoformat(),
            "anchor_ts": age_anchor,
            "example_age_unit": cfg.example_age_unit,
            "training_window": window_seconds / SECONDS_PER_UNIT[cfg.example_age_unit],
        },
        "outputs": ["examples", "user_features", "eval", *(["valid"] if cfg.validation else []), "vocab",
                    "rejected"],
    }
