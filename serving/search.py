"""Top-K per user with watched items excluded, vectorized over a batch of users."""

from __future__ import annotations

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# the first search over-fetches by this quantile of the batch's exclusion lengths
FETCH_QUANTILE = 0.9


def search_excluding(
    index: faiss.Index,
    queries: np.ndarray,  # [B, d]
    row_item_index: np.ndarray,  # [n] item index of each index row
    excluded: pa.ListArray,  # per user, item indices never to return (watched)
    top_k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows [B, min(top_k, n)], scores, counts [B]): the best unexcluded index rows per user,
    best first; row j of a user is valid for j < counts[user].

    The first search over-fetches by the 90th percentile of the batch's exclusion lengths;
    the users it leaves short of top_k (their exclusions took more of their best rows) are
    searched again over-fetching by their own longest list, so every user gets
    min(top_k, available) items without one heavy watcher making the whole batch fetch
    thousands of rows.
    """
    num_users, total = len(queries), int(index.ntotal)
    lengths = pc.list_value_length(excluded).to_numpy(zero_copy_only=False)
    lengths = np.nan_to_num(lengths.astype(np.float64)).astype(np.int64)
    width = min(top_k, total)
    rows = np.full((num_users, width), -1, np.int64)
    scores = np.full((num_users, width), -np.inf, np.float32)
    counts = np.zeros(num_users, np.int64)
    pending = np.arange(num_users)
    fetch = top_k + (int(np.quantile(lengths, FETCH_QUANTILE)) if num_users else 0)
    while len(pending):
        fetch = min(fetch, total)
        found = _best_unexcluded(index, queries[pending], row_item_index, excluded.take(pa.array(pending)),
                                 lengths[pending], top_k, fetch)
        rows[pending], scores[pending], counts[pending] = found
        if fetch == total or fetch >= top_k + lengths[pending].max():
            break  # every pending user's exclusions fitted in what was fetched
        pending = pending[counts[pending] < top_k]
        fetch = top_k + int(lengths[pending].max(initial=0))  # enough for every one of them
    return rows, scores, counts


def _best_unexcluded(
    index: faiss.Index, queries: np.ndarray, row_item_index: np.ndarray, excluded: pa.ListArray,
    lengths: np.ndarray, top_k: int, fetch: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One search for the top `fetch` rows, excluded items removed: (rows, scores) cut to
    min(top_k, fetch) columns, and how many of them are valid."""
    num_users = len(queries)
    scores, rows = index.search(queries, fetch)
    candidates = np.where(rows >= 0, row_item_index[np.maximum(rows, 0)], -1)

    # excluded[(user, item)] as one int64 key per pair, so one np.isin masks the whole batch
    owners = np.repeat(np.arange(num_users, dtype=np.int64), lengths)
    excluded_items = excluded.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    stride = np.int64(max(int(row_item_index.max(initial=0)), int(excluded_items.max(initial=0))) + 2)
    keys = np.arange(num_users, dtype=np.int64)[:, None] * stride + candidates
    keep = (rows >= 0) & ~np.isin(keys, owners * stride + excluded_items)

    # stable sort puts each user's kept candidates first, still in score order
    order = np.argsort(~keep, axis=1, kind="stable")[:, :top_k]
    counts = np.minimum(keep.sum(axis=1), top_k)
    return np.take_along_axis(rows, order, 1), np.take_along_axis(scores, order, 1), counts
