"""Ranking metrics and the most-popular baseline, on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from serving.evaluate import MISS, list_statistics, most_popular_ranks, ranking_metrics, ranks_in_lists


def test_ranks_in_lists_finds_each_target():
    lists = pa.array([["a", "b", "c"], ["c"], [], ["x", "y"]], pa.list_(pa.string()))
    ranks = ranks_in_lists(lists, np.array(["c", "c", "a", "q"], dtype=object))
    assert ranks.tolist() == [2, 0, MISS, MISS]


def test_ranks_in_a_sliced_list_array():
    lists = pa.array([["z"], ["a", "b"], ["b", "a"]], pa.list_(pa.string())).slice(1)
    assert ranks_in_lists(lists, np.array(["b", "b"], dtype=object)).tolist() == [1, 0]


def test_metrics_from_ranks():
    m = ranking_metrics(np.array([0, 9, 49, 99, MISS]))
    assert m["hr@10"] == 0.4 and m["hr@50"] == 0.6 and m["hr@100"] == 0.8
    assert math.isclose(m["ndcg@10"], (1.0 + 1.0 / math.log2(11)) / 5)
    assert math.isclose(m["mrr"], (1 + 1 / 10 + 1 / 50 + 1 / 100) / 5)
    assert m["recall@50"] == m["hr@50"]
    assert m["hr@200"] == 0.8 and math.isclose(m["ndcg@200"], (1 + 1 / math.log2(11) + 1 / math.log2(51)
                                                                + 1 / math.log2(101)) / 5)


def test_metrics_stop_at_the_length_of_the_lists():
    m = ranking_metrics(np.array([0, 150]), max_k=100)
    assert "hr@100" in m and "hr@200" not in m and "ndcg@200" not in m


def test_coverage_and_popularity_of_the_recommended_items():
    lists = pa.array([["a", "b"], ["a", "c"], []], pa.list_(pa.string()))
    stats = list_statistics(lists, {"a": 10, "b": 4, "c": 2, "d": 0}, catalog=5)
    assert stats["coverage"] == 3 / 5
    assert stats["mean_popularity"] == (10 + 4 + 10 + 2) / 4
    assert stats["catalog_mean_popularity"] == 16 / 4


def test_most_popular_skips_watched_items():
    # item index = popularity rank (1 = most watched)
    watched = pa.array([[1, 3], [], [2, 5], [1]], pa.list_(pa.int32()))
    target = np.array([4, 4, 5, 0])
    # user 0: items 1 and 3 are above 4 and watched -> rank 1; user 1: rank 3;
    # user 2 watched its target -> never recommended; user 3: unknown target
    assert most_popular_ranks(target, watched).tolist() == [1, 3, MISS, MISS]
