"""Query and title tokens: unigrams and bigrams, indexed by a vocabulary with hashed unknown buckets."""

from __future__ import annotations

from pyspark.sql import functions as F

from jobs.tokens import encode_texts, token_vocabulary, unigrams_and_bigrams
from jobs.vocab import oov_bucket


def test_unigrams_and_bigrams(spark):
    df = spark.createDataFrame([("Toy Story 2",), ("  Café!",), ("",)], "text string")
    got = [r.t for r in df.select(unigrams_and_bigrams(F.col("text")).alias("t")).collect()]
    assert got == [["toy", "story", "2", "toy story", "story 2"], ["café"], []]


def test_rare_tokens_share_the_unknown_index(spark):
    texts = spark.createDataFrame([(1, "red car"), (2, "red bike"), (3, "blue car")], "id int, text string")
    vocab = token_vocabulary(texts, min_count=2)
    assert {r["value"]: r["index"] for r in vocab.collect()} == {"car": 2, "red": 3}
    encoded = {r.id: r.tokens for r in encode_texts(texts, ["id"], vocab).collect()}
    # "red car" -> red, car and the rare bigram "red car" (unknown = 1)
    assert encoded == {1: [1, 2, 3], 2: [1, 3], 3: [1, 2]}


def test_rare_tokens_hash_into_their_own_buckets_and_known_tokens_keep_their_index(spark):
    texts = spark.createDataFrame([(1, "red car"), (2, "red bike"), (3, "blue car")], "id int, text string")
    previous = spark.createDataFrame([("car", 9, 5)], "value string, index int, count long")
    vocab = token_vocabulary(texts, min_count=2, previous=previous, buckets=4)
    assert {r["value"]: r["index"] for r in vocab.collect()} == {"car": 9, "red": 10}
    buckets = {
        r.value: r.bucket
        for r in spark.createDataFrame([("red car",), ("bike",), ("red bike",), ("blue",), ("blue car",)], "value string")
        .select("value", oov_bucket(F.col("value"), 4).alias("bucket"))
        .collect()
    }
    assert set(buckets.values()) <= {1, 2, 3, 4}
    encoded = {r.id: r.tokens for r in encode_texts(texts, ["id"], vocab, buckets=4).collect()}
    assert encoded == {
        1: sorted({9, 10, buckets["red car"]}),
        2: sorted({10, buckets["bike"], buckets["red bike"]}),
        3: sorted({9, buckets["blue"], buckets["blue car"]}),
    }
