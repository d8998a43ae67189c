"""Item-kNN, the strongest simple baseline of next-watch recall: a user's candidates are
scored by their co-watch similarity (serving.cowatch) to the user's last few watches,

    score_u(c) = sum_{j in last R of u} sim(j, c).

The similarity S is built once over every training user; a batch of users' scores is then
Q S, Q the sparse rows of their last R watches, and no dense block larger than
[batch x items] is ever made.

Every scored baseline (this one, report/als.py) ranks by the same protocol, rank_unwatched.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from serving.cowatch import latest, watch_pairs

MISS = np.iinfo(np.int64).max
BLOCK_SCORES = 2_000_000  # scores per [users x items] block (16 MB of float64), whatever the catalog


def item_knn_scores(similarity: torch.Tensor, recent_ids: torch.Tensor) -> torch.Tensor:
    """[users, items] scores Q S: row u sums the similarity rows of u's recent item ids
    (0 = padding, skipped; an item twice in the recent watches counts twice)."""
    users, num_items = len(recent_ids), similarity.shape[0]
    rows, positions = (recent_ids > 0).nonzero(as_tuple=True)
    query = torch.sparse_coo_tensor(torch.stack([rows, recent_ids[rows, positions]]),
                                    torch.ones(len(rows), dtype=torch.float64), (users, num_items),
                                    check_invariants=True).coalesce()
    return (query.to_sparse_csr() @ similarity).to_dense()


def item_knn_ranks(
    target_index: np.ndarray,  # [users] the held-out item's index (0 = unknown item)
    watched: pa.ListArray,  # [users] the items each user watched before the target (never ranked)
    history: np.ndarray,  # [users, history_len] the last watches, oldest first, 0-padded
    similarity: torch.Tensor,  # cosine_similarity of the watches known at the targets' time
    recent: int,
    batch_size: int | None = None,  # users per block; default: BLOCK_SCORES // items
) -> np.ndarray:
    """0-based rank of each target among the items the user has not watched, by item-kNN
    score over the user's last `recent` watches (rank_unwatched's protocol)."""
    batch_size = batch_size or users_per_block(similarity.shape[0])
    recent_ids = torch.from_numpy(latest(history, recent))
    ranks = np.empty(len(target_index), dtype=np.int64)
    for start in range(0, len(target_index), batch_size):
        rows = slice(start, start + batch_size)
        scores = item_knn_scores(similarity, recent_ids[rows])
        ranks[rows] = rank_unwatched(scores, target_index[rows], watched.slice(start, batch_size))
    return ranks


def rank_unwatched(scores: torch.Tensor, targets: np.ndarray, watched: pa.ListArray) -> np.ndarray:
    """0-based rank of each target in its row of scores [users, items] among the items the
    user has not watched, padding (index 0) excluded; ties go to the more popular item (the
    lower index). A watched or unknown (0) target is never recommended: MISS. Overwrites the
    excluded scores."""
    flat, parents = watch_pairs(watched)
    scores[:, 0] = -np.inf
    scores[torch.from_numpy(parents), torch.from_numpy(flat)] = -np.inf
    target = torch.from_numpy(np.asarray(targets, dtype=np.int64)).unsqueeze(1)
    own = scores.gather(1, target)
    index = torch.arange(scores.shape[1]).unsqueeze(0)
    above = (scores > own) | ((scores == own) & (index < target))
    ranks = above.sum(1).numpy().astype(np.int64)
    recommendable = torch.isfinite(own.squeeze(1)).numpy()  # neither padding nor watched
    return np.where(recommendable, ranks, MISS)


def users_per_block(num_items: int) -> int:
    """Users in a score block of num_items columns (BLOCK_SCORES at most, one user at least)."""
    return max(1, BLOCK_SCORES // num_items)

