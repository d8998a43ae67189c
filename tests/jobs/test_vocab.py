"""Vocabularies: frequency-ranked, and stable across runs given the previous one."""

from __future__ import annotations

from pyspark.testing import assertDataFrameEqual

from jobs.vocab import categorical_vocabulary, item_vocabulary


def test_items_are_ranked_by_count_then_id(spark):
    events = spark.createDataFrame([("b",), ("a",), ("c",), ("c",), ("b",)], "item_id string")
    expected = spark.createDataFrame([("b", 1, 2), ("c", 2, 2), ("a", 3, 1)], "item_id string, index int, count long")
    assertDataFrameEqual(item_vocabulary(events), expected)


def test_known_items_keep_their_index_and_new_ones_are_appended(spark):
    previous = spark.createDataFrame([("a", 1, 9), ("b", 2, 5), ("gone", 3, 1)], "item_id string, index int, count long")
    events = spark.createDataFrame([(i,) for i in ["b", "b", "b", "new1", "new2", "new2", "a"]], "item_id string")
    expected = spark.createDataFrame(
        [("a", 1, 1), ("b", 2, 3), ("gone", 3, 0), ("new2", 4, 2), ("new1", 5, 1)],
        "item_id string, index int, count long",
    )
    assertDataFrameEqual(item_vocabulary(events, previous), expected)


def test_categorical_values_are_stable_too(spark):
    previous = spark.createDataFrame([("fr", 2, 10)], "value string, index int, count long")
    users = spark.createDataFrame([("de",), ("de",), ("fr",), ("it",)], "country string")
    got = {r["value"]: r["index"] for r in categorical_vocabulary(users, "country", 1, previous).collect()}
    assert got == {"fr": 2, "de": 3, "it": 4}
