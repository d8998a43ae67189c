"""Item-kNN, the strongest simple baseline of next-watch recall (Sarwar et al. 2001;
Deshpande & Karypis 2004): each item keeps its N most similar items by co-watch cosine (its
neighbourhood: serving.cowatch.Neighbourhoods, cut as the item2item channel's rows), and a
user's candidates are scored by their similarity to the user's last R watches,

    score_u(c) = sum_{j in last R of u, c among j's N neighbours} sim(j, c).

The neighbourhoods are built once over every training user, a block of rows at a time and
only for the items a ranking reads. A user's scores are then at most R x N entries, so the
target's rank is counted from those entries alone: neither the whole similarity nor a
[users x items] block is made, whatever the catalog.

Every scored baseline (this one, report/als.py) ranks by the same protocol: among the items
the user has not watched, ties to the lower index (rank_unwatched).
"""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import torch

from serving.cowatch import Neighbourhoods, contains, latest, ranges, row_blocks, watch_pairs

# torch says once per process that its sparse CSR support is in beta; these products are tested
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)

MISS = np.iinfo(np.int64).max
BLOCK_SCORES = 2_000_000  # ALS's scores per [users x items] block (16 MB of float64), whatever the catalog
ENTRIES_PER_BLOCK = 4_000_000  # item-kNN's neighbour entries gathered per block of users (~200 MB of work arrays)
# a sparse score costs about twice a dense one to rank (its row and column are looked up)
DENSE_FROM = 0.5


def item_knn_scores(neighbourhoods: Neighbourhoods, recent_ids: np.ndarray, neighbours: int,
                    num_items: int) -> torch.Tensor:
    """[users, num_items] sparse CSR float64 scores: row u sums the first `neighbours`
    neighbours of u's recent item ids (0 = padding, skipped; an item twice in the recent
    watches counts twice)."""
    user, position = np.nonzero(recent_ids > 0)
    rows = neighbourhoods.rows(recent_ids[user, position])
    # each row's neighbours are its first entries: gather those alone
    lengths = np.minimum(neighbourhoods.lengths[rows], neighbours)
    at = ranges(neighbourhoods.starts[rows], lengths)
    entries = torch.from_numpy(np.stack([np.repeat(user, lengths), neighbourhoods.items[at].astype(np.int64)]))
    values = torch.from_numpy(neighbourhoods.scores[at].astype(np.float64))
    scores = torch.sparse_coo_tensor(entries, values, (len(recent_ids), num_items), check_invariants=True)
    return scores.coalesce().to_sparse_csr()


def item_knn_ranks(
    target_index: np.ndarray,  # [users] the held-out item's index (0 = unknown item)
    watched: pa.ListArray,  # [users] the items each user watched before the target (never ranked)
    history: np.ndarray,  # [users, history_len] the last watches, oldest first, 0-padded
    neighbourhoods: Neighbourhoods,  # those of the watches known at the targets' time
    recent: int,
    neighbours: int,
    num_items: int,
    entries_per_block: int = ENTRIES_PER_BLOCK,
    dense_from: float = DENSE_FROM,
) -> np.ndarray:
    """0-based rank of each target among the items the user has not watched, by item-kNN
    score over the user's last `recent` watches and each one's first `neighbours` neighbours
    (rank_unwatched's protocol).

    A user's scores are sparse: only the neighbours of the recent watches score above 0. So
    the rank is counted from those entries alone: the scored, unwatched items above the
    target, and, when the target itself scores 0, every unscored, unwatched item of a lower
    index (ties go to the lower index). Users are taken in blocks of about entries_per_block
    gathered neighbours, whatever the catalog; a block whose scores are mostly present (more
    than dense_from of them: a small catalog) is ranked as a dense block, which is then no
    larger than its sparse scores and faster to rank."""
    recent_ids = latest(history, recent)
    # the entries each user gathers (row 0, of padding and of items without neighbours, holds none)
    gathered = np.minimum(neighbourhoods.lengths, neighbours)[neighbourhoods.rows(recent_ids)].sum(1)
    ranks = np.empty(len(target_index), dtype=np.int64)
    for rows in row_blocks(gathered, entries_per_block):
        scores = item_knn_scores(neighbourhoods, recent_ids[rows], neighbours, num_items)
        targets, seen = np.asarray(target_index[rows], dtype=np.int64), watched.slice(rows.start, rows.stop - rows.start)
        if scores.values().numel() > dense_from * scores.shape[0] * scores.shape[1]:
            ranks[rows] = rank_unwatched(scores.to_dense(), targets, seen)
        else:
            ranks[rows] = sparse_ranks(scores, targets, seen)
    return ranks


def sparse_ranks(scores: torch.Tensor, targets: np.ndarray, watched: pa.ListArray) -> np.ndarray:
    """rank_unwatched of sparse CSR [users, items] scores, every absent score 0 and every
    present one above 0, counted from the present entries alone."""
    users, num_items = scores.shape
    entry_user = np.repeat(np.arange(users), np.diff(scores.crow_indices().numpy()))
    entry_item, values = scores.col_indices().numpy(), scores.values().numpy()
    seen_items, seen_users = watch_pairs(watched)
    seen = np.unique(seen_users * num_items + seen_items)
    entry_seen = contains(seen, entry_user * num_items + entry_item)
    at_target = entry_item == targets[entry_user]
    scored = np.zeros(users, dtype=bool)
    scored[entry_user[at_target]] = True
    own = np.zeros(users)
    own[entry_user[at_target]] = values[at_target]
    target = targets[entry_user]
    above = ~entry_seen & ((values > own[entry_user]) | ((values == own[entry_user]) & (entry_item < target)))
    ranks = np.bincount(entry_user[above], minlength=users)
    # a target scoring 0 also ranks behind every unscored, unwatched item of a lower index: the
    # items 1 .. target - 1 less the scored ones and the unscored watched ones among them
    below = entry_item < target
    scored_below = np.bincount(entry_user[below], minlength=users)
    seen_user, seen_item = seen // num_items, seen % num_items
    seen_below = np.bincount(seen_user[seen_item < targets[seen_user]], minlength=users)
    seen_scored_below = np.bincount(entry_user[below & entry_seen], minlength=users)
    unscored_below = np.maximum(targets - 1, 0) - scored_below - (seen_below - seen_scored_below)
    ranks = ranks + np.where(scored, 0, unscored_below)
    recommendable = (targets > 0) & ~contains(seen, np.arange(users) * num_items + targets)
    return np.where(recommendable, ranks, MISS)


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

