"""item-kNN: cosine over co-watching users, each item's N best neighbours, scored against the
last R watches; the ranking protocol every scored baseline shares."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pyarrow as pa
import pytest
import torch

from report.baselines import MISS, item_knn_ranks, rank_unwatched
from serving.cowatch import PAIRS_PER_BLOCK, Neighbourhoods, cosine_blocks, in_order

# users 0..3 watched {1,2}, {1,2,3}, {2,3}, {1}: sim(1,2) = 2/3, sim(1,3) = 1/sqrt(6),
# sim(2,3) = 2/sqrt(6), item 4 was never watched (similar to nothing)
WATCHED = pa.array([[1, 2], [1, 2, 3], [2, 3], [1]], pa.list_(pa.int32()))
HISTORY = np.array([[1, 2, 0], [1, 2, 3], [2, 3, 0], [1, 0, 0]])
COWATCH = Neighbourhoods.build(WATCHED, num_items=5, neighbours=4)  # every other item: the whole similarity


def knn(targets, watched, history, cowatch, recent, neighbours=4, num_items=5, **blocks):
    return item_knn_ranks(np.asarray(targets), watched, history, cowatch, recent, neighbours, num_items, **blocks)


def dense_similarity(log, num_items, pairs_per_block=PAIRS_PER_BLOCK, rows=None) -> np.ndarray:
    """cosine_blocks' rows, put together as a dense [num_items, num_items] matrix."""
    sim = np.zeros((num_items, num_items))
    for block in cosine_blocks(log, num_items, pairs_per_block, rows):
        sim[block.first + np.repeat(np.arange(len(block.crow) - 1), np.diff(block.crow)), block.columns] = block.values
    return sim


def test_ranks_follow_the_similarity_to_the_last_watch():
    ranks = knn([4, 4, 1, 3], WATCHED, HISTORY, COWATCH, recent=1)
    # user 0 (last watch 2): 3 scores 2/sqrt(6) > 4 scores 0; user 1 has only 4 left;
    # user 2 (last 3): 1 scores 1/sqrt(6); user 3 (last 1): 2 scores 2/3 > 3 scores 1/sqrt(6)
    assert ranks.tolist() == [1, 0, 0, 1]


def test_more_recent_watches_add_their_similarities():
    # user 0 with both watches: 3 scores 1/sqrt(6) + 2/sqrt(6), above 4 either way
    assert knn([3, 4, 1, 2], WATCHED, HISTORY, COWATCH, recent=2).tolist() == [0, 0, 0, 0]


def test_watched_and_unknown_targets_are_never_recommended():
    ranks = knn([1, 0, 2, 1], WATCHED, HISTORY, COWATCH, recent=1)
    assert ranks.tolist() == [MISS, MISS, MISS, MISS]


def test_ties_go_to_the_more_popular_lower_index():
    # nobody co-watched anything: every candidate scores 0 and ranks by index
    watched = pa.array([[1], [2]], pa.list_(pa.int32()))
    ranks = knn([4, 3], watched, np.array([[1], [2]]), Neighbourhoods.build(watched, 5, neighbours=4), recent=1)
    assert ranks.tolist() == [2, 1]  # user 0: behind 2 and 3; user 1: behind 1 (2 is watched)


def test_the_similarity_is_the_cosine_of_the_item_columns():
    x = np.zeros((4, 5))
    for user, items in enumerate(WATCHED.to_pylist()):
        x[user, items] = 1
    norms = np.sqrt(x.sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.nan_to_num(x.T @ x / np.outer(norms, norms))
    assert np.allclose(dense_similarity(WATCHED, 5), expected, rtol=0, atol=1e-15)
    blocks = list(cosine_blocks(WATCHED, 5))
    assert sum(len(block.values) for block in blocks) == 9  # co-watched pairs only


def test_blocks_counted_on_threads_come_in_their_order_each_once():
    finished = []

    def work(block: int) -> int:  # the earlier blocks take longer: they finish last
        time.sleep(0.02 * (6 - block))
        finished.append(block)
        return block

    assert list(in_order(work, range(6), workers=3)) == list(range(6))
    assert sorted(finished) == list(range(6)) and finished != list(range(6))


def row(neighbourhoods: Neighbourhoods, item: int) -> tuple[list[int], np.ndarray]:
    """An item's neighbours and their similarities."""
    at = neighbourhoods.rows(np.array([item]))[0]
    entries = slice(neighbourhoods.starts[at], neighbourhoods.starts[at + 1])
    return neighbourhoods.items[entries].tolist(), neighbourhoods.scores[entries]


def test_each_item_keeps_its_best_neighbours_and_only_the_rows_asked_for_are_held():
    # items 2 and 3 each have two neighbours: 2's are 3 (2/sqrt(6)) then 1 (2/3); 3's are 2 then 1
    assert row(COWATCH, 2)[0] == [3, 1] and row(COWATCH, 3)[0] == [2, 1] and row(COWATCH, 4)[0] == []
    assert np.allclose(row(COWATCH, 2)[1], [2 / np.sqrt(6), 2 / 3])
    assert COWATCH.lengths.tolist() == [0, 2, 2, 2, 0]  # the empty row 0, then items 1..4; no padding held
    only = Neighbourhoods.build(WATCHED, 5, neighbours=4, rows=np.array([3]))  # the rows a ranking reads
    assert only.items.tolist() == [2, 1] and only.starts.tolist() == [0, 0, 2] and row(only, 3)[0] == [2, 1]
    assert only.rows(np.array([1, 2, 4])).tolist() == [0, 0, 0]  # the empty row
    assert row(Neighbourhoods.build(WATCHED, 5, neighbours=1), 1)[0] == [2]  # the cut: the best alone


def neighbourhoods(cosine: np.ndarray, neighbours: int) -> np.ndarray:
    """The dense similarity with each row cut to its `neighbours` best other items by their
    float32 value, as kept (ties to the lower index)."""
    sim = np.zeros_like(cosine)
    for item, row in enumerate(cosine):
        others = [j for j in sorted(range(len(row)), key=lambda j: -np.float32(row[j])) if j != item and row[j] > 0]
        sim[item, others[:neighbours]] = row[others[:neighbours]].astype(np.float32)
    return sim


def brute_force_knn_ranks(targets, watched, history, similarity_log, num_items, recent, neighbours):
    """item-kNN from its definition: a dense similarity, each row cut to its `neighbours` best
    other items (ties to the lower index; float32, as kept), each user's scores summed over
    the last `recent` watches, every unwatched item above the target counted."""
    x = np.zeros((len(similarity_log), num_items))
    for user, items in enumerate(similarity_log):
        x[user, items] = 1
    norms = np.sqrt(x.sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.nan_to_num(x.T @ x / np.outer(norms, norms))
    sim = neighbourhoods(cosine, neighbours)
    ranks = []
    for target, seen, row in zip(targets, watched, history):
        last = [j for j in row if j > 0][-recent:]
        score = sim[last].sum(0)
        candidates = [c for c in range(1, num_items) if c not in seen]
        if target == 0 or target not in candidates:
            ranks.append(MISS)
            continue
        ranks.append(sum(score[c] > score[target] or (score[c] == score[target] and c < target) for c in candidates))
    return ranks


@pytest.mark.parametrize("dense_from", [0.0, 0.5, 2.0], ids=["dense", "by-density", "sparse"])
def test_ranks_equal_a_brute_force_computation_on_a_random_log(dense_from):
    rng = np.random.default_rng(5)
    num_items, history_len = 30, 6
    # a log with a popular head, so that co-watch counts vary and exact ties are rare but present
    log = [sorted(set(rng.choice(np.arange(1, num_items), rng.integers(1, 12), p=_head(num_items)).tolist()))
           for _ in range(40)]
    # the first 25 users are ranked: their history is a permutation of their watches, a target drawn anywhere
    history = np.zeros((25, history_len), dtype=np.int64)
    for user in range(25):
        last = rng.permutation(log[user])[-history_len:]
        history[user, :len(last)] = last
    targets = rng.integers(0, num_items, 25)
    watched = pa.array(log[:25], pa.list_(pa.int32()))
    cowatch = Neighbourhoods.build(pa.array(log, pa.list_(pa.int32())), num_items, neighbours=num_items - 1)
    for recent, neighbours in itertools.product((1, 2, 3, 6), (1, 3, 10, num_items - 1)):
        ranks = knn(targets, watched, history, cowatch, recent, neighbours, num_items, entries_per_block=40,
                    dense_from=dense_from)
        assert ranks.tolist() == brute_force_knn_ranks(targets, log[:25], history, log, num_items, recent,
                                                       neighbours), (recent, neighbours)
    # the rows the ranking reads only, each item's first neighbours only: the same ranks
    some = Neighbourhoods.build(pa.array(log, pa.list_(pa.int32())), num_items, neighbours=3, rows=np.unique(history))
    assert knn(targets, watched, history, some, 6, 3, num_items).tolist() == knn(targets, watched, history, cowatch,
                                                                                6, 3, num_items).tolist()


def _head(num_items):
    weights = 1.0 / np.arange(1, num_items)
    return weights / weights.sum()


def test_rank_unwatched_skips_padding_and_watched_items_and_breaks_ties_by_index():
    scores = torch.tensor([[9.0, 1.0, 2.0, 2.0, 0.5], [9.0, 1.0, 2.0, 2.0, 0.5]])
    watched = pa.array([[2], []], pa.list_(pa.int32()))
    # user 0: 2 is watched, 3 leads, then 1, then 4; user 1: 2 ties 3 and goes first (lower index)
    assert rank_unwatched(scores.clone(), np.array([4, 3]), watched).tolist() == [2, 1]
    assert rank_unwatched(scores.clone(), np.array([2, 0]), watched).tolist() == [MISS, MISS]


def test_a_target_nobody_co_watched_ranks_behind_every_scored_item_then_by_index():
    # two communities, {1, 2, 3} and {4, 5, 6}: a {1, 2, 3} user's target in the other one scores 0
    log = [[1, 2], [2, 3], [1, 3], [4, 5], [5, 6], [4, 6], [1, 2, 3]]
    cowatch = Neighbourhoods.build(pa.array(log, pa.list_(pa.int32())), num_items=8, neighbours=7)
    watched = pa.array([[1], [1], [1], [1, 4]], pa.list_(pa.int32()))
    history = np.array([[1], [1], [1], [1]])
    for dense_from in (0.0, 2.0):  # ranked as dense blocks, and from the scored entries alone
        ranks = knn([5, 4, 7, 5], watched, history, cowatch, 1, 7, 8, entries_per_block=1, dense_from=dense_from)
        # 2 and 3 score above 0; then 4, 5, 6, 7 by index (user 3 watched 4)
        assert ranks.tolist() == [3, 2, 5, 2]
    assert ranks.tolist() == brute_force_knn_ranks([5, 4, 7, 5], watched.to_pylist(), history, log, 8, 1, 7)


def test_the_similarity_built_a_few_rows_at_a_time_is_the_same_matrix():
    rng = np.random.default_rng(2)
    log = pa.array([sorted(set(rng.choice(np.arange(1, 40), rng.integers(1, 15), p=_head(40)).tolist()))
                    for _ in range(60)], pa.list_(pa.int32()))
    whole = dense_similarity(log, 45)
    for pairs in (1, 50, 400):
        assert np.array_equal(dense_similarity(log, 45, pairs_per_block=pairs), whole)
    # only the rows asked for: theirs exactly, every other row empty
    rows = np.array([1, 2, 7, 30, 44])
    some = dense_similarity(log, 45, pairs_per_block=50, rows=rows)
    expected = np.zeros_like(some)
    expected[rows] = whole[rows]
    assert np.array_equal(some, expected) and np.count_nonzero(some[rows]) > 0
