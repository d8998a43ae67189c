"""Ranking metrics and the most-popular baseline, on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from report.evaluate import (
    MISS, bootstrap_intervals, list_statistics, most_popular_ranks, popularity_bucket, popularity_buckets,
    ranking_metrics, ranks_in_lists, recent_positions,
)


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
    stats = list_statistics(lists, pa.array(["a", "b", "c", "d"]), np.array([10, 4, 2, 0]), catalog=5)
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


def test_recently_popular_ranks_follow_the_recent_counts_and_skip_watched_items():
    # item index 1..4 by overall count; in the recent window item 3 leads, then 4, then 1 and 2 (ties by index)
    recent = np.array([0, 0, 0, 9, 5])  # index 0 is padding
    position = recent_positions(recent)
    assert position[1:].tolist() == [2, 3, 0, 1]
    watched = pa.array([[3], [], [4, 1], [2]], pa.list_(pa.int32()))
    target = np.array([1, 1, 2, 2])
    # user 0: list 3, 4, 1 with 3 watched -> rank 1; user 1: rank 2; user 2: list 3, 4, 1, 2
    # with 4 and 1 watched -> rank 1; user 3 watched its target
    assert most_popular_ranks(target, watched, position).tolist() == [1, 2, 1, MISS]


def test_bootstrap_intervals_hold_the_estimate_and_match_the_normal_width():
    rng = np.random.default_rng(3)
    ranks = np.where(rng.random(10_000) < 0.3, 5, MISS)  # HR@50 = NDCG@10 share 0.3
    ci = bootstrap_intervals(ranks, samples=400)
    low, high = ci["hr@50_ci95"]
    hr = (ranks < 50).mean()
    assert low < hr < high
    half = 1.96 * np.sqrt(hr * (1 - hr) / len(ranks))  # 0.009
    assert abs((high - low) / 2 - half) < 0.15 * half
    ndcg = 1 / np.log2(7)
    assert ci["ndcg@10_ci95"][0] < hr * ndcg < ci["ndcg@10_ci95"][1]
    assert bootstrap_intervals(np.zeros(50, np.int64), samples=50)["hr@50_ci95"] == [1.0, 1.0]


def test_popularity_buckets_are_log2_ranges_and_the_shares_describe_the_slots():
    assert popularity_bucket(np.array([0, 1, 2, 3, 4, 7, 8, 1023, 1024, 10**6])).tolist() == [0, 1, 2, 2, 3, 3, 4, 10, 11, 11]
    labels = popularity_buckets()
    assert labels[:4] == ["0", "1", "2-3", "4-7"] and labels[-1] == ">=1024" and len(labels) == 12
    lists = pa.array([["a", "b"], ["a", "c"]], pa.list_(pa.string()))
    stats = list_statistics(lists, pa.array(["a", "b", "c", "d"]), np.array([10, 4, 2, 0]), catalog=4,
                            fresh=np.array([False, False, True, True]))
    dist = stats["popularity_distribution"]
    assert dist["recommended"][4] == 0.5 and dist["recommended"][3] == 0.25 and dist["recommended"][2] == 0.25
    assert dist["catalog"][0] == 0.25 and sum(dist["catalog"]) == 1.0
    assert stats["fresh_share"] == 0.25 and stats["catalog_fresh_share"] == 0.5
