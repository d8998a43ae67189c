"""Item-kNN, the strongest simple baseline of next-watch recall: items are similar when the
same users watched them (cosine over the binary user-item matrix of the training watches),
and a user's candidates are scored by their similarity to the user's last few watches.

    sim(i, j) = |U_i & U_j| / sqrt(|U_i| |U_j|)        score_u(c) = sum_{j in last R of u} sim(j, c)

Computed in batches of users with two sparse products over the watch matrix X (users x
items): for a batch's recent-item rows Q, scores = ((Q / sqrt(n)) X^T X) / sqrt(n), never the
items x items matrix. The cost is O(nnz(X) x users), so the evaluation scores a seeded sample
of at most `max_users` users (all of them on MovieLens-100K).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from ray_train.model import last_watches

MISS = np.iinfo(np.int64).max


def item_knn_ranks(
    target_index: np.ndarray,  # [users] the held-out item's index (0 = unknown item)
    watched: pa.ListArray,  # [users] every training watch (item indices) of each user
    history: np.ndarray,  # [users, history_len] the last watches, oldest first, 0-padded
    num_items: int,
    recent: int = 5,
    batch_size: int = 256,
) -> np.ndarray:
    """0-based rank of each target among the items the user has not watched, by item-kNN
    score (ties: the more popular item, i.e. the lower index, first); MISS for a watched or
    unknown target."""
    users = len(target_index)
    flat = pc.list_flatten(watched).to_numpy(zero_copy_only=False).astype(np.int64)
    parents = pc.list_parent_indices(watched).to_numpy().astype(np.int64)
    matrix = torch.sparse_coo_tensor(np.stack([parents, flat]), torch.ones(len(flat)), (users, num_items),
                                     check_invariants=True).coalesce()
    counts = torch.bincount(torch.from_numpy(flat), minlength=num_items).double()
    inverse_norm = torch.where(counts > 0, counts.rsqrt(), torch.zeros_like(counts)).float()
    by_item = matrix.t().coalesce()
    recent_ids = last_watches(torch.from_numpy(np.asarray(history, dtype=np.int64)), recent)
    ranks = np.full(users, MISS, dtype=np.int64)
    for start in range(0, users, batch_size):
        rows = slice(start, min(start + batch_size, users))
        query = torch.zeros(rows.stop - start, num_items)
        ids = recent_ids[rows]
        query.scatter_add_(1, ids, (ids > 0).float())
        query[:, 0] = 0.0
        query *= inverse_norm
        # ((Q / sqrt(n)) X^T X) / sqrt(n): two sparse-dense products through the users
        scores = torch.sparse.mm(by_item, torch.sparse.mm(matrix, query.t())).t() * inverse_norm
        ranks[rows] = _ranks(scores, target_index[rows], flat, parents, start)
    return ranks


def _ranks(scores: torch.Tensor, targets: np.ndarray, flat: np.ndarray, parents: np.ndarray, start: int) -> np.ndarray:
    """Rank of each target in its row of scores with padding and watched items removed."""
    rows = len(targets)
    mine = (parents >= start) & (parents < start + rows)
    scores[:, 0] = -np.inf
    scores[torch.from_numpy(parents[mine] - start), torch.from_numpy(flat[mine])] = -np.inf
    target = torch.from_numpy(targets.astype(np.int64))
    own = scores.gather(1, target.unsqueeze(1))
    index = torch.arange(scores.shape[1]).unsqueeze(0)
    above = (scores > own) | ((scores == own) & (index < target.unsqueeze(1)))
    ranks = above.sum(1).numpy().astype(np.int64)
    valid = (targets > 0) & torch.isfinite(own.squeeze(1)).numpy()
    return np.where(valid, ranks, MISS)
