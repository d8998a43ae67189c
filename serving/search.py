"""Top-K per user with watched items excluded, vectorized over a batch of users."""

from __future__ import annotations

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def search_excluding(
    index: faiss.Index,
    queries: np.ndarray,  # [B, d]
    row_item_index: np.ndarray,  # [n] item index of each index row
    excluded: pa.ListArray,  # per user, item indices never to return (watched)
    top_k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows [B, top_k], scores [B, top_k], counts [B]): the best unexcluded index rows per
    user, best first; row j of a user is valid for j < counts[user].

    The search over-fetches by the batch's longest exclusion list, so that after removing
    excluded items every user still has min(top_k, available) candidates.
    """
    num_users = len(queries)
    excluded_lengths = pc.list_value_length(excluded).to_numpy(zero_copy_only=False)
    excluded_lengths = np.nan_to_num(excluded_lengths.astype(np.float64)).astype(np.int64)
    fetch = int(min(index.ntotal, top_k + (excluded_lengths.max() if num_users else 0)))
    scores, rows = index.search(queries, fetch)
    candidates = np.where(rows >= 0, row_item_index[np.maximum(rows, 0)], -1)

    # excluded[(user, item)] as one int64 key per pair, so one np.isin masks the whole batch
    owners = np.repeat(np.arange(num_users, dtype=np.int64), excluded_lengths)
    excluded_items = excluded.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    stride = np.int64(max(int(row_item_index.max(initial=0)), int(excluded_items.max(initial=0))) + 2)
    keys = np.arange(num_users, dtype=np.int64)[:, None] * stride + candidates
    keep = (rows >= 0) & ~np.isin(keys, owners * stride + excluded_items)

    # stable sort puts each user's kept candidates first, still in score order
    order = np.argsort(~keep, axis=1, kind="stable")[:, :top_k]
    counts = np.minimum(keep.sum(axis=1), top_k)
    return np.take_along_axis(rows, order, 1), np.take_along_axis(scores, order, 1), counts
