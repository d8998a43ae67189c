"""Pre-drawn negatives: drawn from the count^alpha table, seeded, partition-independent."""

from __future__ import annotations

import datetime as dt

from jobs.negatives import unigram_table, with_negatives

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def examples(spark, n):
    return spark.createDataFrame(
        [(f"u{k % 50}", f"i{k}", T0 + dt.timedelta(seconds=k), 1) for k in range(n)],
        "user_id string, item_id string, ts timestamp, label int",
    )


def test_negatives_follow_the_sampling_table(spark):
    sampling = spark.createDataFrame([(1, 0.6), (2, 0.3), (3, 0.1)], "index int, probability double")
    table = unigram_table(sampling, num_items=3)
    got = with_negatives(examples(spark, 4000), table, k=5, seed=3).collect()
    draws = [n for r in got for n in r.negatives]
    assert all(len(r.negatives) == 5 for r in got) and set(draws) <= {1, 2, 3}
    shares = [draws.count(i) / len(draws) for i in (1, 2, 3)]
    # every label is 1: a draw of 1 (p = 0.6) is redrawn once, so P(1) = 0.6 * 0.6,
    # P(2) = 0.3 + 0.6 * 0.3, P(3) = 0.1 + 0.6 * 0.1
    for share, expected in zip(shares, (0.36, 0.48, 0.16)):
        assert abs(share - expected) < 0.02


def test_negatives_do_not_depend_on_partitioning(spark):
    sampling = spark.createDataFrame([(i, 1 / 20) for i in range(1, 21)], "index int, probability double")
    table = unigram_table(sampling, num_items=20)
    df = examples(spark, 300)
    run = lambda d: sorted((r.item_id, tuple(r.negatives)) for r in with_negatives(d, table, 3, 9).collect())  # noqa: E731
    assert run(df.repartition(1)) == run(df.repartition(7, "user_id"))


def test_no_negatives_gives_an_empty_list(spark):
    assert with_negatives(examples(spark, 3), None, k=0, seed=1).first().negatives == []
