"""Recall channels: co-watch neighbours equal a brute-force cosine, no channel ever offers a
watched item, and the fused list is each channel's ranks merged, without duplicates."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from serving.channels import CHANNELS, Channels, CoWatch, Fusion, choose, fuse, fusion_grid, latest, popular_candidates
from serving.cowatch import Neighbourhoods

WATCHED = pa.array([[1, 2, 3], [1, 2], [2, 4], [4, 5]], pa.list_(pa.int32()))
NUM_ITEMS = 6


def brute_cosine() -> np.ndarray:
    x = np.zeros((len(WATCHED), NUM_ITEMS))
    for u, items in enumerate(WATCHED.to_pylist()):
        x[u, items] = 1
    counts = x.sum(0)
    together = x.T @ x
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = np.nan_to_num(together / np.sqrt(np.outer(counts, counts)))
    np.fill_diagonal(cosine, 0)
    return cosine


def test_co_watch_neighbours_are_the_brute_force_cosines_best_first(tmp_path):
    cowatch = CoWatch.build(WATCHED, NUM_ITEMS, neighbours=2)
    cosine = brute_cosine()
    for item in range(1, NUM_ITEMS):
        expected = [j for j in sorted(range(NUM_ITEMS), key=lambda j: (-cosine[item, j], j)) if cosine[item, j] > 0][:2]
        got = [j for j in cowatch.neighbours[item] if j > 0]
        assert got == expected, item
        assert np.allclose(cowatch.scores[item][:len(got)], cosine[item, got])
    cowatch.save(str(tmp_path / "channels"))
    again = CoWatch.load(str(tmp_path / "channels"))
    assert isinstance(again.neighbours, np.memmap) and isinstance(again.scores, np.memmap)  # mapped, not read
    assert np.array_equal(again.neighbours, cowatch.neighbours) and np.array_equal(again.scores, cowatch.scores)


def test_the_actors_channels_are_what_the_stage_saved_for_its_index(tmp_path):
    row_item_index = np.array([1, 2, 4, 5])  # item 3 is not in the index
    row_item_id = np.array(["a", "b", "d", "e"], dtype=object)
    every = Fusion((("model", 1.0), ("item2item", 1.0), ("popular", 1.0)), 0)
    cowatch = CoWatch.build(WATCHED, NUM_ITEMS, neighbours=3)
    assert 3 in cowatch.neighbours[1]  # co-watched with 1 by the first user
    built = Channels.of(every, 2, row_item_index, row_item_id, cowatch=cowatch, popular=np.array([2, 3, 1, 4]))
    assert 3 not in built.cowatch.neighbours and built.popular.tolist() == [2, 1, 4]
    built.save(str(tmp_path))
    loaded = Channels.load(str(tmp_path), every, 2, row_item_index, row_item_id)
    assert isinstance(loaded.cowatch.neighbours, np.memmap)
    assert np.array_equal(loaded.cowatch.neighbours, built.cowatch.neighbours)
    assert np.array_equal(loaded.cowatch.scores, built.cowatch.scores)
    assert loaded.popular.tolist() == [2, 1, 4] and loaded.fresh is None
    model, history = np.array([[5, 0], [2, 0]]), np.array([[1, 2], [4, 0]])
    excluded = pa.array([[1, 2], [4]], pa.list_(pa.int32()))
    for a, b in zip(loaded.merged(model, history, excluded, 3), built.merged(model, history, excluded, 3)):
        assert np.array_equal(a, b)
    # 4 (d): item2item's first and popular's first; 5 (e): the model's first
    assert loaded.item_id[loaded.merged(model, history, excluded, 3)[0][0]].tolist() == ["d", "e", ""]
    # a setting that weighs item2item 0 maps no neighbours
    alone = Fusion((("model", 1.0), ("item2item", 0.0), ("popular", 1.0)), 0)
    assert Channels.load(str(tmp_path), alone, 2, row_item_index, row_item_id).cowatch is None


def test_co_watch_neighbours_made_a_few_rows_at_a_time_are_the_same():
    rng = np.random.default_rng(4)
    weights = 1.0 / np.arange(1, 50)
    log = pa.array([sorted(set(rng.choice(np.arange(1, 50), rng.integers(1, 12), p=weights / weights.sum()).tolist()))
                    for _ in range(80)], pa.list_(pa.int32()))
    whole = CoWatch.build(log, 52, neighbours=4)
    for pairs in (1, 30, 300):
        blocked = CoWatch.build(log, 52, neighbours=4, pairs_per_block=pairs)
        assert np.array_equal(blocked.neighbours, whole.neighbours) and np.array_equal(blocked.scores, whole.scores)
    # item-kNN's ragged rows: the channel's without their padding, for the items asked for alone
    some = np.array([1, 3, 17, 40, 51])
    ragged = Neighbourhoods.build(log, 52, neighbours=4, pairs_per_block=30, rows=some)
    for item in range(52):
        at = ragged.rows(np.array([item]))[0]
        kept = whole.neighbours[item][whole.neighbours[item] > 0] if item in some else []
        assert ragged.items[ragged.starts[at]:ragged.starts[at + 1]].tolist() == list(kept)
        assert np.array_equal(ragged.scores[ragged.starts[at]:ragged.starts[at + 1]], whole.scores[item][:len(kept)])


def test_item2item_candidates_sum_the_recent_watches_similarities_and_skip_the_watched():
    cowatch = CoWatch.build(WATCHED, NUM_ITEMS, neighbours=5)
    cosine = brute_cosine()
    recent = np.array([[2, 4], [5, 0]])
    excluded = pa.array([[2, 4, 1], [5]], pa.list_(pa.int32()))
    got = cowatch.candidates(recent, excluded, k=3)
    scores = cosine[2] + cosine[4]
    expected = [j for j in sorted(range(1, NUM_ITEMS), key=lambda j: (-scores[j], j)) if scores[j] > 0
                and j not in (2, 4, 1)][:3]
    assert [j for j in got[0] if j] == expected
    assert [j for j in got[1] if j] == [4]  # 5's one co-watched item


def test_the_recent_watches_are_each_historys_last_ones_oldest_first():
    history = np.array([[7, 8, 9, 0, 0], [4, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1, 2, 3, 4, 5]])
    assert latest(history, 3).tolist() == [[7, 8, 9], [0, 0, 4], [0, 0, 0], [3, 4, 5]]
    assert latest(history, 1).tolist() == [[9], [4], [0], [5]]


def test_popular_candidates_are_the_most_watched_the_user_has_not_watched():
    order = np.array([3, 1, 4, 2, 5])
    got = popular_candidates(order, pa.array([[3, 4], [], [1, 2, 3, 4, 5]], pa.list_(pa.int32())), k=2)
    assert got.tolist() == [[1, 2], [3, 1], [0, 0]]


def test_the_fused_list_merges_ranks_without_duplicates_and_names_each_slots_channel():
    lists = {"model": np.array([[7, 8, 9], [1, 0, 0]]), "item2item": np.array([[9, 6, 0], [2, 1, 0]]),
             "popular": np.array([[5, 7, 8], [3, 2, 1]]), "fresh": np.zeros((2, 3), np.int64)}
    alone = Fusion((("model", 1.0), ("item2item", 0.0), ("popular", 0.0), ("fresh", 0.0)), 10)
    items, _, channels = fuse(lists, alone, k=3)
    assert items.tolist() == [[7, 8, 9], [1, 0, 0]]
    assert channels.tolist() == [[0, 0, 0], [0, -1, -1]]
    both = Fusion((("model", 1.0), ("item2item", 1.0), ("popular", 0.0), ("fresh", 0.0)), 10)
    items, scores, channels = fuse(lists, both, k=4)
    # 9: model's third (1/13) + item2item's first (1/11) beats 7, the model's first (1/11)
    assert items[0].tolist() == [9, 7, 6, 8]  # 6 and 8 tie (second of a list): the lower index first
    assert np.allclose(scores[0], [1 / 13 + 1 / 11, 1 / 11, 1 / 12, 1 / 12])
    assert [CHANNELS[c] for c in channels[0]] == ["item2item", "model", "item2item", "model"]
    assert items[1].tolist() == [1, 2, 0, 0]  # 1: model's first and item2item's second
    for row in items:
        real = row[row > 0]
        assert len(set(real.tolist())) == len(real)


def test_an_item_two_channels_rank_alike_is_the_first_channels():
    lists = {"model": np.array([[4, 5]]), "item2item": np.array([[4, 6]])}
    both = Fusion((("model", 1.0), ("item2item", 1.0)), 10)
    items, scores, channels = fuse(lists, both, k=3)
    assert items.tolist() == [[4, 5, 6]] and np.allclose(scores, [[2 / 11, 1 / 12, 1 / 12]])
    assert [CHANNELS[c] for c in channels[0]] == ["model", "model", "item2item"]


def test_the_setting_chosen_is_the_one_that_finds_the_targets():
    lists = {"model": np.array([[1, 2], [3, 4]]), "item2item": np.array([[5, 6], [7, 8]]),
             "popular": np.array([[9, 10], [9, 10]]), "fresh": np.array([[11, 12], [11, 12]])}
    chosen, measured, tried = choose(lists, np.array([5, 7]), CHANNELS, k=2, at=2)
    assert chosen.active.get("item2item", 0) > 0 and len(tried) == len(fusion_grid(CHANNELS))
    assert measured["hr@2"] == 1.0 and measured["ndcg@2"] == max(t["ndcg@2"] for t in tried)
    assert tried[0]["weights"] == {"model": 1.0, "item2item": 0.0, "popular": 0.0, "fresh": 0.0}
    assert tried[0]["hr@2"] == 0.0 and max(t["hr@2"] for t in tried) == 1.0
    model_only, _, _ = choose(lists, np.array([1, 3]), CHANNELS, k=2, at=2)
    assert model_only.active == {"model": 1.0}  # the first of equals: the model alone


def test_of_settings_that_find_the_same_targets_the_one_that_places_them_higher_is_chosen():
    lists = {"model": np.array([[1, 5, 6]]), "item2item": np.array([[5, 7, 8]])}
    chosen, measured, tried = choose(lists, np.array([5]), ("model", "item2item"), k=3, at=3)
    assert all(t["hr@3"] == 1.0 for t in tried)  # every setting finds 5 among the first 3
    assert tried[0]["ndcg@3"] == 1 / np.log2(3)  # the model alone: second
    assert chosen.active.get("item2item", 0) > 0 and measured == {"hr@3": 1.0, "ndcg@3": 1.0}  # first


def test_a_recent_watch_of_an_item_left_out_of_the_index_still_reads_its_neighbours(tmp_path):
    # item 5, the catalog's last, is excluded from the index (recall.exclude_items): a user who
    # just watched it still gets its co-watched items, never 5 itself
    row_item_index = np.array([1, 2, 3, 4])
    row_item_id = np.array(["a", "b", "c", "d"], dtype=object)
    every = Fusion((("model", 1.0), ("item2item", 1.0)), 0)
    Channels.of(every, 1, row_item_index, row_item_id,
                cowatch=CoWatch.build(WATCHED, NUM_ITEMS, neighbours=3)).save(str(tmp_path))
    channels = Channels.load(str(tmp_path), every, 1, row_item_index, row_item_id)
    lists = channels.lists(np.zeros((1, 2), np.int64), np.array([[5]]), pa.array([[5]], pa.list_(pa.int32())), 2)
    assert lists["item2item"].tolist() == [[4, 0]]  # 5 was co-watched with 4 alone
