"""Query and title tokens: unigrams and bigrams, indexed by a vocabulary with an unknown bucket."""

from __future__ import annotations

from pyspark.sql import functions as F

from jobs.tokens import encode_texts, token_vocabulary, unigrams_and_bigrams


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
