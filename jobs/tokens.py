"""Search-history tokens: queries broken into unigrams and bigrams, indexed by a vocabulary.

Covington et al. feed "tokenized unigrams and bigrams" of past queries as an unordered bag.
Where a dataset has no search log, the titles of past watches stand in (prep.search_source):
what a user watched is named by words, as what they searched for would be.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.vocab import categorical_vocabulary, oov_bucket


def unigrams_and_bigrams(text: Column) -> Column:
    """Lower-cased words and adjacent word pairs: "Toy Story 2" -> [toy, story, 2, toy story, story 2]."""
    words = F.filter(F.split(F.lower(text), r"[^\p{L}\p{N}]+"), lambda w: w != "")
    bigrams = F.when(
        F.size(words) >= 2,
        F.transform(F.sequence(F.lit(1), F.size(words) - 1), lambda i: F.concat(words[i - 1], F.lit(" "), words[i])),
    ).otherwise(F.array().cast("array<string>"))
    return F.concat(words, bigrams)


def token_vocabulary(
    texts: DataFrame, min_count: int, previous: DataFrame | None = None, buckets: int = 1
) -> DataFrame:
    """value, index (B + 1 .. n by count desc; or stable with previous), count over the
    tokens of a `text` column; rarer tokens hash into the B = `buckets` OOV buckets."""
    tokens = texts.select(F.explode(unigrams_and_bigrams(F.col("text"))).alias("token"))
    return categorical_vocabulary(tokens, "token", min_count, previous, buckets)


def encode_texts(rows: DataFrame, key: list[str], vocab: DataFrame, buckets: int = 1) -> DataFrame:
    """key columns + `tokens`: the distinct token indices of each row's `text` (tokens outside
    the vocabulary in their hashed OOV bucket), one row per input row."""
    exploded = rows.select(*key, F.explode(F.array_distinct(unigrams_and_bigrams(F.col("text")))).alias("value"))
    indexed = exploded.join(F.broadcast(vocab.select("value", "index")), "value", "left").select(
        *key, F.coalesce(F.col("index"), oov_bucket(F.col("value"), buckets)).cast("int").alias("token")
    )
    return indexed.groupBy(*key).agg(F.array_sort(F.array_distinct(F.collect_list("token"))).alias("tokens"))
