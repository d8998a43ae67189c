"""Top-K search with exclusion, checked against brute force on seeded vectors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from serving.index import IndexParams, build_index, user_queries
from serving.search import search_excluding


def exact(vectors):
    return build_index(vectors, IndexParams("flat"))


def brute_force(queries, vectors, row_index, excluded, k):
    out = []
    for q, ex in zip(queries, excluded):
        scores = vectors @ q
        order = [r for r in np.argsort(-scores, kind="stable") if row_index[r] not in set(ex)]
        out.append(order[:k])
    return out


def test_top_k_are_the_best_unwatched_items_best_first():
    rng = np.random.default_rng(0)
    n, d, k = 300, 9, 20
    vectors = rng.normal(size=(n, d)).astype(np.float32)
    row_index = np.arange(1, n + 1)  # row r holds item index r + 1
    queries = rng.normal(size=(40, d)).astype(np.float32)
    excluded = [sorted(rng.choice(np.arange(1, n + 1), size=rng.integers(0, 60), replace=False).tolist()) for _ in range(40)]
    rows, scores, counts = search_excluding(exact(vectors), queries, row_index,
                                            pa.array(excluded, pa.list_(pa.int32())), k)
    assert (counts == k).all()
    expected = brute_force(queries, vectors, row_index, excluded, k)
    for u in range(40):
        assert list(rows[u]) == expected[u]
        assert len(set(rows[u])) == k
        assert not set(row_index[rows[u]]) & set(excluded[u])
        assert (np.diff(scores[u]) <= 1e-6).all()


def test_a_user_who_watched_most_of_the_catalog_gets_what_is_left():
    vectors = np.eye(6, dtype=np.float32)
    row_index = np.arange(1, 7)
    excluded = pa.array([[1, 2, 3, 4], []], pa.list_(pa.int32()))
    rows, _, counts = search_excluding(exact(vectors), np.ones((2, 6), np.float32), row_index, excluded, 5)
    assert counts.tolist() == [2, 5]
    assert sorted(row_index[rows[0, :2]].tolist()) == [5, 6]


def test_bias_dimension_adds_the_item_bias_to_the_score():
    items = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, -2.0]], dtype=np.float32)  # [v, b]
    queries = user_queries(np.array([[2.0, 3.0]], dtype=np.float32))
    _, scores, _ = search_excluding(exact(items), queries, np.array([1, 2]), pa.array([[]], pa.list_(pa.int32())), 2)
    assert np.allclose(scores[0], [2.5, 1.0])


def test_a_heavy_watcher_is_searched_again_and_the_others_are_not_affected():
    rng = np.random.default_rng(1)
    n, d, k = 400, 8, 10
    vectors = rng.normal(size=(n, d)).astype(np.float32)
    row_index = np.arange(n)
    queries = rng.normal(size=(30, d)).astype(np.float32)
    # user 0 watched its own 150 best items, far beyond the batch's 90th percentile (0)
    heavy = np.argsort(-(vectors @ queries[0]))[:150].tolist()
    excluded = [heavy] + [[] for _ in range(29)]
    searched = []

    class Counting:
        ntotal = n

        def search(self, q, fetch):
            searched.append((len(q), fetch))
            return exact(vectors).search(q, fetch)

    rows, _, counts = search_excluding(Counting(), queries, row_index, pa.array(excluded, pa.list_(pa.int32())), k)
    assert searched == [(30, k), (1, k + 150)]
    assert (counts == k).all()
    expected = brute_force(queries, vectors, row_index, excluded, k)
    assert [list(r) for r in rows] == expected
