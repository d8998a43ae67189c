"""Vocabularies: frequency-ranked, and stable across runs given the previous one."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from jobs.vocab import categorical_vocabulary, encode_categoricals, item_vocabulary, oov_bucket
from core.contract import CATEGORY_MISSING


def test_items_are_ranked_by_count_then_id(spark):
    events = spark.createDataFrame([("b",), ("a",), ("c",), ("c",), ("b",)], "item_id string")
    expected = spark.createDataFrame([("b", 1, 2, 2), ("c", 2, 2, 2), ("a", 3, 1, 1)],
                                     "item_id string, index int, count long, recent_count long")
    assertDataFrameEqual(item_vocabulary(events), expected)


def test_known_items_keep_their_index_and_new_ones_are_appended(spark):
    previous = spark.createDataFrame([("a", 1, 9), ("b", 2, 5), ("gone", 3, 1)], "item_id string, index int, count long")
    events = spark.createDataFrame([(i,) for i in ["b", "b", "b", "new1", "new2", "new2", "a"]], "item_id string")
    expected = spark.createDataFrame(
        [("a", 1, 1, 1), ("b", 2, 3, 3), ("gone", 3, 0, 0), ("new2", 4, 2, 2), ("new1", 5, 1, 1)],
        "item_id string, index int, count long, recent_count long",
    )
    assertDataFrameEqual(item_vocabulary(events, previous), expected)


def test_recent_counts_hold_only_the_events_since_the_cutoff(spark):
    events = spark.createDataFrame([("a", 1), ("a", 5), ("a", 9), ("b", 8), ("b", 9), ("c", 2)],
                                   "item_id string, day int")
    vocab = item_vocabulary(events, recent_since=F.col("day") > 7)
    got = {r["item_id"]: (r["index"], r["count"], r["recent_count"]) for r in vocab.collect()}
    # ranked by the whole window's count; the recently-popular order would be b, a, c
    assert got == {"a": (1, 3, 1), "b": (2, 2, 2), "c": (3, 1, 0)}


def test_first_ts_is_the_first_training_watch_and_null_for_an_item_not_seen_now(spark):
    previous = spark.createDataFrame([("gone", 1, 4)], "item_id string, index int, count long")
    events = spark.createDataFrame(
        [("a", dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)), ("a", dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)),
         ("b", dt.datetime(2026, 3, 5, tzinfo=dt.timezone.utc))], "item_id string, ts timestamp")
    got = {r["item_id"]: (r["index"], r["count"], r["first_ts"]) for r in item_vocabulary(events, previous).collect()}
    assert {k: (i, n, ts and ts.astimezone(dt.timezone.utc).date()) for k, (i, n, ts) in got.items()} == {
        "gone": (1, 0, None), "a": (2, 2, dt.date(2026, 3, 1)), "b": (3, 1, dt.date(2026, 3, 5)),
    }


def test_categorical_values_are_stable_too(spark):
    previous = spark.createDataFrame([("fr", 2, 10)], "value string, index int, count long")
    users = spark.createDataFrame([("de",), ("de",), ("fr",), ("it",)], "country string")
    got = {r["value"]: r["index"] for r in categorical_vocabulary(users, "country", 1, previous).collect()}
    assert got == {"fr": 2, "de": 3, "it": 4}


def test_rare_and_unseen_values_hash_into_oov_buckets_below_the_known_values(spark):
    users = spark.createDataFrame(
        [("u1", "de"), ("u2", "de"), ("u3", "fr"), ("u4", "it"), ("u5", None)], "user_id string, country string"
    )
    vocab = categorical_vocabulary(users, "country", min_count=2, buckets=4)
    assert {r["value"]: r["index"] for r in vocab.collect()} == {"de": 5}
    later = spark.createDataFrame(
        [("u1", "de"), ("u3", "fr"), ("u4", "it"), ("u6", "never seen"), ("u7", "fr"), ("u5", None)],
        "user_id string, country string",
    )
    encoded = {r.user_id: r.demographics[0] for r in encode_categoricals(later, "user_id", {"country": vocab}, buckets=4).collect()}
    hashed = {
        r.value: r.bucket
        for r in later.select(F.col("country").alias("value"), oov_bucket(F.col("country"), 4).alias("bucket")).collect()
    }
    assert encoded["u1"] == 5 and encoded["u5"] == CATEGORY_MISSING
    for user, country in [("u3", "fr"), ("u4", "it"), ("u6", "never seen"), ("u7", "fr")]:
        assert encoded[user] == hashed[country] and 1 <= encoded[user] <= 4
    assert encoded["u3"] == encoded["u7"]  # a value hashes the same way every time


def test_a_previous_vocabulary_built_with_fewer_buckets_is_refused(spark):
    previous = spark.createDataFrame([("fr", 2, 10)], "value string, index int, count long")
    users = spark.createDataFrame([("de",), ("de",)], "country string")
    with pytest.raises(ValueError, match="oov_buckets"):
        categorical_vocabulary(users, "country", 1, previous, buckets=4)
