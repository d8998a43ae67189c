"""The prep job: click log -> vocabularies, training examples, serving features, eval targets.

    read -> validate -> leave-last-out split -> vocabularies -> rollback windows + example age
         -> demographics -> write examples/, user_features/, eval/, vocab/, rejected/, manifest

Runs the same under `watchnext prep` (embedded local Spark) and `spark-submit -m jobs.prep`.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.sources import Sources, read_sources
from jobs.split import leave_last_out
from jobs.user_features import serving_features
from jobs.validate import check_clicks_schema, check_key_column, split_valid_clicks
from jobs.vocab import categorical_vocabulary, encode_categoricals, item_vocabulary, missing_demographics
from jobs.windows import SECONDS_PER_HOUR, event_seconds, windowed_examples, with_example_age
from watchnext import storage
from watchnext.config import PrepConfig
from watchnext.contract import USERS_KEY

log = logging.getLogger(__name__)

# how many rows of each shuffled example file go in one Parquet row group: large enough for
# fast scans, small enough that Ray Data streams a file in several pieces
EXAMPLE_ROW_GROUP_BYTES = 16 << 20


def run_prep(spark: SparkSession, data_dir: str, prep_dir: str, cfg: PrepConfig) -> dict[str, Any]:
    """Run the whole prep stage into prep_dir, manifest last; returns the manifest."""
    prep_dir = storage.absolute(prep_dir)
    started = storage.begin_stage(prep_dir)
    sources = read_sources(spark, data_dir)
    check_clicks_schema(sources.clicks, f"{data_dir} clicks")
    check_key_column(sources.users, USERS_KEY, f"{data_dir} users")

    clicks, rejected = split_valid_clicks(sources.clicks)
    clicks = clicks.select("user_id", "item_id", "ts").persist(StorageLevel.MEMORY_AND_DISK)
    train, held_out = leave_last_out(clicks)

    items = item_vocabulary(train).persist(StorageLevel.MEMORY_AND_DISK)
    indexed = train.join(items.select("item_id", F.col("index").alias("item_index")), "item_id")
    indexed = indexed.persist(StorageLevel.MEMORY_AND_DISK)

    bounds = indexed.agg(F.min(event_seconds(F.col("ts"))), F.max(event_seconds(F.col("ts")))).first()
    if bounds[0] is None:
        raise ValueError(f"{data_dir}: no valid training events (see {prep_dir}/rejected)")
    first_seconds, anchor_seconds = float(bounds[0]), float(bounds[1])
    window_hours = max((anchor_seconds - first_seconds) / SECONDS_PER_HOUR, 1.0)

    categoricals = _user_categoricals(sources, cfg)
    vocabularies = {
        c: categorical_vocabulary(sources.users, c, cfg.min_category_count).persist()
        for c in categoricals
    }
    demographics = (
        encode_categoricals(sources.users.dropDuplicates([USERS_KEY]), USERS_KEY, vocabularies)
        if categoricals
        else None
    )

    examples = (
        windowed_examples(indexed, cfg.history_len, cfg.min_history)
        .transform(with_example_age, anchor_seconds, window_hours)
        .transform(_with_demographics, demographics, len(categoricals))
    )
    features = serving_features(indexed, cfg.history_len).transform(
        _with_demographics, demographics, len(categoricals)
    )
    targets = held_out.join(
        items.select("item_id", F.col("index").alias("item_index")), "item_id", "left"
    ).select("user_id", "item_id", "item_index", "ts")

    out = lambda name: storage.join(prep_dir, name)  # noqa: E731
    _write_shuffled(examples, out("examples"), cfg)
    features.write.parquet(out("user_features"))
    targets.write.parquet(out("eval"))
    items.orderBy("index").coalesce(1).write.parquet(out("vocab/items"))
    for column, vocab in vocabularies.items():
        vocab.orderBy("index").coalesce(1).write.parquet(out(f"vocab/{column}"))
    rejected.write.parquet(out("rejected"))

    manifest = _manifest(spark, sources, data_dir, prep_dir, cfg, categoricals, vocabularies,
                         anchor_seconds, window_hours)
    for df in (clicks, items, indexed, *vocabularies.values()):
        df.unpersist()
    return storage.finish_stage(prep_dir, started, manifest)


def _user_categoricals(sources: Sources, cfg: PrepConfig) -> list[str]:
    if sources.users is None:
        return []
    available = [c for c in sources.users.columns if c != USERS_KEY]
    if cfg.user_categoricals is None:
        return available
    unknown = [c for c in cfg.user_categoricals if c not in available]
    if unknown:
        raise ValueError(
            f"prep.user_categoricals names {', '.join(unknown)}, not columns of the users table "
            f"({', '.join(available)})"
        )
    return list(cfg.user_categoricals)


def _with_demographics(df: DataFrame, demographics: DataFrame | None, count: int) -> DataFrame:
    """Attach each user's categorical indices; users absent from the users table get 'missing'."""
    if demographics is None:
        return df.withColumn("demographics", missing_demographics(count))
    joined = df.join(demographics, USERS_KEY, "left")
    return joined.withColumn(
        "demographics", F.coalesce(F.col("demographics"), missing_demographics(count))
    )


def _write_shuffled(examples: DataFrame, path: str, cfg: PrepConfig) -> None:
    """Examples in cfg.example_files files, rows in a seeded pseudo-random order.

    The order comes from a hash of (seed, user, label, ts), not rand(): reruns and any
    upstream partitioning give the same files.
    """
    key = F.xxhash64(F.lit(cfg.seed), "user_id", "label", "ts")
    (
        examples.select(
            "user_id", "label", "history", "history_length", "example_age_hours",
            "example_age", "demographics", "ts",
        )
        .repartition(cfg.example_files, key)
        .sortWithinPartitions(key)
        .write.option("parquet.block.size", EXAMPLE_ROW_GROUP_BYTES)
        .parquet(path)
    )


def _manifest(spark, sources, data_dir, prep_dir, cfg, categoricals, vocabularies,
              anchor_seconds, window_hours) -> dict[str, Any]:
    """Counts read back from the written files, so the manifest describes what is on disk."""
    read = lambda name: spark.read.parquet(storage.join(prep_dir, name))  # noqa: E731
    events_in = sources.clicks.count()
    rejected = dict(read("rejected").groupBy("reason").count().collect())
    examples = read("examples")
    n_examples = examples.count()
    held_out = read("eval").count()
    n_users = read("user_features").count()
    n_items = read("vocab/items").count()
    valid = events_in - sum(rejected.values())
    filtered = {"held_out": held_out, "short_history": valid - held_out - n_examples}
    per_user = examples.groupBy("user_id").count().agg(
        F.min("count"), F.expr("percentile_approx(count, 0.5)"), F.max("count")
    ).first()
    return {
        "inputs": {"data": storage.absolute(data_dir), "dataset": sources.name, "layout": sources.layout},
        "config": cfg.model_dump(mode="json"),
        "counts": {
            "events_in": events_in,
            "rejected": rejected,
            "filtered": filtered,
            "examples": n_examples,
            "users": n_users,
            "items": n_items,
            "eval_users": held_out,
            "examples_per_user": {"min": per_user[0], "median": per_user[1], "max": per_user[2]},
        },
        "features": {
            "history_len": cfg.history_len,
            "item_vocab_size": n_items + 1,  # + padding index 0
            "user_categoricals": categoricals,
            "categorical_sizes": [
                int(read(f"vocab/{c}").agg(F.max("index")).first()[0] or 1) + 1 for c in categoricals
            ],
            "anchor_ts": anchor_seconds,
            "window_hours": window_hours,
        },
        "outputs": ["examples", "user_features", "eval", "vocab", "rejected"],
    }


def main(argv: list[str] | None = None) -> None:
    """Entry point for spark-submit: `spark-submit -m jobs.prep --data D --out RUN_DIR`."""
    from jobs.spark import spark_session
    from watchnext.config import load_config

    parser = argparse.ArgumentParser(prog="jobs.prep", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True, help="RUN_DIR; writes RUN_DIR/prep")
    parser.add_argument("--config")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    spark = spark_session(cfg.spark)
    run_prep(spark, args.data, storage.join(storage.absolute(args.out), "prep"), cfg.prep)


if __name__ == "__main__":
    main()
