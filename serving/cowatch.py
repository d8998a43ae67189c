"""Co-watch: items are similar when the same users watched them. The cosine over the binary
user-item matrix of the training watches,

    sim(i, j) = |U_i & U_j| / sqrt(|U_i| |U_j|),

is built as a sparse items x items matrix S = D X^T X D (X the binary users x items matrix,
D = diag(1 / sqrt(|U_i|))) holding the co-watched pairs only. The recall stage's item2item
channel and the report's item-kNN baseline both score a user's candidates by their
similarity to the user's last few watches.
"""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

# torch says once per process that its sparse CSR support is in beta; these products are tested
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)


def cosine_similarity(watched: pa.ListArray, num_items: int) -> torch.Tensor:
    """sim(i, j) over the users of watched (one row of distinct item indices per user), as a
    sparse CSR [num_items, num_items] float64 tensor holding the co-watched pairs only.
    float64: the sums of a few similarities then rank exactly as a brute-force computation."""
    flat, parents = watch_pairs(watched)
    ones = torch.ones(len(flat), dtype=torch.float64)
    users_items = torch.sparse_coo_tensor(np.stack([parents, flat]), ones, (len(watched), num_items),
                                          check_invariants=True).coalesce()
    together = torch.sparse.mm(users_items.t().coalesce(), users_items).coalesce()  # |U_i & U_j|
    counts = torch.bincount(torch.from_numpy(flat), minlength=num_items).double()  # |U_i|
    inverse_norm = torch.where(counts > 0, counts.rsqrt(), torch.zeros_like(counts))
    i, j = together.indices()
    cosine = together.values() * inverse_norm[i] * inverse_norm[j]
    return torch.sparse_coo_tensor(together.indices(), cosine, together.shape,
                                   check_invariants=False).to_sparse_csr()  # indices from a coalesced tensor


def latest(history: np.ndarray, count: int) -> np.ndarray:
    """[users, count] the last `count` watches of oldest-first, right-padded histories, oldest
    first (0 where a user has fewer)."""
    history = np.asarray(history, dtype=np.int64)
    length = (history > 0).sum(1, keepdims=True)
    at = length - count + np.arange(count)[None, :]
    return np.where(at >= 0, np.take_along_axis(history, np.maximum(at, 0), axis=1), 0)


def watch_pairs(watched: pa.ListArray) -> tuple[np.ndarray, np.ndarray]:
    """The (item index, row) of every watch in a list column, as int64 arrays."""
    flat = pc.list_flatten(watched).to_numpy(zero_copy_only=False).astype(np.int64)
    parents = pc.list_parent_indices(watched).to_numpy().astype(np.int64)
    return flat, parents
