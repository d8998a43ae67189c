"""item-kNN: cosine over co-watching users, scored against the last R watches."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from serving.baselines import MISS, item_knn_ranks

# users 0..3 watched {1,2}, {1,2,3}, {2,3}, {1}: sim(1,2) = 2/3, sim(1,3) = 1/sqrt(6),
# sim(2,3) = 2/sqrt(6), item 4 was never watched (similar to nothing)
WATCHED = pa.array([[1, 2], [1, 2, 3], [2, 3], [1]], pa.list_(pa.int32()))
HISTORY = np.array([[1, 2, 0], [1, 2, 3], [2, 3, 0], [1, 0, 0]])


def test_ranks_follow_the_similarity_to_the_last_watch():
    ranks = item_knn_ranks(np.array([4, 4, 1, 3]), WATCHED, HISTORY, num_items=5, recent=1)
    # user 0 (last watch 2): 3 scores 2/sqrt(6) > 4 scores 0; user 1 has only 4 left;
    # user 2 (last 3): 1 scores 1/sqrt(6); user 3 (last 1): 2 scores 2/3 > 3 scores 1/sqrt(6)
    assert ranks.tolist() == [1, 0, 0, 1]


def test_more_recent_watches_add_their_similarities():
    # user 0 with both watches: 3 scores 1/sqrt(6) + 2/sqrt(6), above 4 either way
    assert item_knn_ranks(np.array([3, 4, 1, 2]), WATCHED, HISTORY, num_items=5, recent=2).tolist() == [
        0, 0, 0, 0]


def test_watched_and_unknown_targets_are_never_recommended():
    ranks = item_knn_ranks(np.array([1, 0, 2, 1]), WATCHED, HISTORY, num_items=5, recent=1)
    assert ranks.tolist() == [MISS, MISS, MISS, MISS]


def test_ties_go_to_the_more_popular_lower_index():
    # nobody co-watched anything: every candidate scores 0 and ranks by index
    watched = pa.array([[1], [2]], pa.list_(pa.int32()))
    ranks = item_knn_ranks(np.array([4, 3]), watched, np.array([[1], [2]]), num_items=5, recent=1)
    assert ranks.tolist() == [2, 1]  # user 0: behind 2 and 3; user 1: behind 1 (2 is watched)
