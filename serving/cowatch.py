"""Co-watch: items are similar when the same users watched them. The cosine over the binary
user-item matrix of the training watches,

    sim(i, j) = |U_i & U_j| / sqrt(|U_i| |U_j|),

is counted a block of rows of the sparse items x items matrix S = D X^T X D at a time (X the
binary users x items matrix, D = diag(1 / sqrt(|U_i|))), the co-watched pairs only. Each row
is cut to the item's best neighbours (best_neighbours): the recall stage's item2item channel
(serving.channels.CoWatch, rows of equal width) and the report's item-kNN baseline
(Neighbourhoods, ragged rows) both score a user's candidates by their similarity to the
user's last few watches.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

T, R = TypeVar("T"), TypeVar("R")
PAIRS_PER_BLOCK = 16_000_000  # co-watch pairs counted at once (~0.5 GB of work arrays)


@dataclass(frozen=True)
class SimilarityBlock:
    """Rows first .. first + len(crow) - 2 of S in CSR form: row r's columns and values are
    columns[crow[r - first]:crow[r - first + 1]], by column."""

    first: int
    crow: np.ndarray  # int64
    columns: np.ndarray  # int64
    values: np.ndarray  # float64


def cosine_blocks(watched: pa.ListArray, num_items: int, pairs_per_block: int = PAIRS_PER_BLOCK,
                  rows: np.ndarray | None = None) -> Iterator[SimilarityBlock]:
    """sim(i, j) over the users of watched (one row of distinct item indices per user), a
    block of item rows at a time: each block counts |U_i & U_j| from the pairs of items its
    rows' users watched, about pairs_per_block of them, so the work arrays stay bounded
    whatever the log; a block is as large as its rows' co-watched pairs. With `rows` (item
    indices), only those rows are counted and every other row is empty."""
    counter = _CoWatchCounter(watched, num_items, rows)
    yield from in_order(counter.count, row_blocks(counter.row_pairs, pairs_per_block))


class _CoWatchCounter:
    """The arrays every block of cosine_blocks reads: X and X^T as sorted index arrays, the
    rows' norms, each row's co-watched pairs."""

    def __init__(self, watched: pa.ListArray, num_items: int, rows: np.ndarray | None):
        self.num_items = num_items
        self.flat, parents = watch_pairs(watched)
        self.user_start = np.searchsorted(parents, np.arange(len(watched) + 1))  # X: users x items
        self.user_watches = np.diff(self.user_start)
        by_item = np.argsort(self.flat, kind="stable")  # X^T: items x users
        self.item_users = parents[by_item]
        self.item_start = np.searchsorted(self.flat[by_item], np.arange(num_items + 1))
        watchers = np.diff(self.item_start)  # |U_i|
        self.inverse_norm = np.where(watchers > 0, 1.0 / np.sqrt(np.maximum(watchers, 1)), 0.0)
        self.audience = watchers  # the watchers of the rows counted
        if rows is not None:
            wanted = np.zeros(num_items, dtype=bool)
            wanted[np.asarray(rows, dtype=np.int64)] = True
            self.audience = np.where(wanted, watchers, 0)
        expanded = np.concatenate([[0], np.cumsum(self.user_watches[self.item_users])])
        self.row_pairs = np.where(self.audience > 0, expanded[self.item_start[1:]] - expanded[self.item_start[:-1]], 0)

    def count(self, block: slice) -> SimilarityBlock:
        count = block.stop - block.start
        users = self.item_users[ranges(self.item_start[block], self.audience[block])]
        row = np.repeat(np.arange(count), self.audience[block])
        lengths = self.user_watches[users]
        keys = np.repeat(row, lengths) * self.num_items + self.flat[ranges(self.user_start[users], lengths)]
        keys, together = (t.numpy() for t in torch.unique(torch.from_numpy(keys), return_counts=True))
        block_row, column = keys // self.num_items, keys % self.num_items
        cosine = together * self.inverse_norm[block_row + block.start] * self.inverse_norm[column]
        return SimilarityBlock(block.start, np.searchsorted(block_row, np.arange(count + 1)), column, cosine)


def best_neighbours(watched: pa.ListArray, num_items: int, neighbours: int, pairs_per_block: int = PAIRS_PER_BLOCK,
                    rows: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Each row's `neighbours` most similar items (cosine_blocks' rows, an item never its own
    neighbour), a block of rows at a time: the (row, rank, item, similarity) of the kept
    entries, by row, then rank (best first; equal float32 similarities to the lower item index)."""
    counter = _CoWatchCounter(watched, num_items, rows)
    yield from in_order(lambda block: _best(counter.count(block), neighbours),
                        row_blocks(counter.row_pairs, pairs_per_block))


def _best(block: SimilarityBlock, neighbours: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """best_neighbours' entries of one block, its similarities as float32 (as the tables keep
    them): one stable sort by (row, similarity descending) of the entries in column order."""
    row = np.repeat(np.arange(len(block.crow) - 1), np.diff(block.crow))  # from 0 in the block
    keep = row + block.first != block.columns
    row, column, value = row[keep], block.columns[keep], block.values[keep].astype(np.float32)
    # a positive float32's bits rise with it: the key orders a row's entries highest first
    key = (row << 32) | (np.int64(0xFFFFFFFF) - value.view(np.uint32))
    order = torch.argsort(torch.from_numpy(key), stable=True).numpy()
    row, column, value = row[order], column[order], value[order]
    starts = np.flatnonzero(np.concatenate([[True], row[1:] != row[:-1]]))
    rank = np.arange(len(row)) - np.repeat(starts, np.diff(np.append(starts, len(row))))
    best = rank < neighbours
    return row[best] + block.first, rank[best], column[best], value[best]


# blocks counted at once, each on a thread of its own (numpy and torch release the GIL in
# their sorts): the two cores of a small machine are both busy, and the work arrays are twice
# one block's
BLOCKS_AT_ONCE = 2


def in_order(work: Callable[[T], R], items: Iterable[T], workers: int = BLOCKS_AT_ONCE) -> Iterator[R]:
    """work(item) of every item, in the items' order, computed on `workers` threads with at
    most `workers` results ahead of the one yielded."""
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            if len(pending) == workers:
                yield pending.popleft().result()
            pending.append(pool.submit(work, item))
        while pending:
            yield pending.popleft().result()


@dataclass(frozen=True)
class Neighbourhoods:
    """Some items' best neighbours by co-watch cosine, best first, in ragged rows: row r holds
    items[starts[r]:starts[r + 1]] and their scores; item i's row is row_of[i] (row 0, empty,
    for an item without one). A row is as long as its item's co-watched items (its cut at
    most), so an item few people watched costs little, however wide the cut."""

    items: np.ndarray  # int32 item indices
    scores: np.ndarray  # float32 cosine similarities
    starts: np.ndarray  # [rows + 1] int64
    row_of: np.ndarray  # [num_items] int32

    @classmethod
    def build(cls, watched: pa.ListArray, num_items: int, neighbours: int, pairs_per_block: int = PAIRS_PER_BLOCK,
              rows: np.ndarray | None = None) -> "Neighbourhoods":
        """The best `neighbours` of each item of `rows` (every item where None), from the watch
        lists of every training user (one row of item indices each)."""
        rows, row_of = item_rows(np.arange(1, num_items) if rows is None else rows, num_items)
        # the blocks come by item, and the rows are numbered by item: appended, they are in row order
        items, scores, lengths = [], [], np.zeros(len(rows) + 1, dtype=np.int64)
        for row, _, column, value in best_neighbours(watched, num_items, neighbours, pairs_per_block, rows):
            items.append(column.astype(np.int32))
            scores.append(value)  # float32 already
            lengths += np.bincount(row_of[row], minlength=len(lengths))
        return cls(np.concatenate([np.zeros(0, np.int32), *items]), np.concatenate([np.zeros(0, np.float32), *scores]),
                   np.concatenate([[0], np.cumsum(lengths)]), row_of)

    @property
    def lengths(self) -> np.ndarray:
        """[rows] each row's neighbours."""
        return np.diff(self.starts)

    def rows(self, items: np.ndarray) -> np.ndarray:
        """The rows of the given item indices (the empty row 0 for an item without one)."""
        return self.row_of[items]


def item_rows(items: np.ndarray, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct item indices given, ascending; [num_items] int32 each one's row, from 1
    in that order, and 0, an empty row, for every other item)."""
    items = np.unique(np.asarray(items, dtype=np.int64))
    row_of = np.zeros(num_items, dtype=np.int32)
    row_of[items] = np.arange(1, len(items) + 1, dtype=np.int32)
    return items, row_of


def contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """keys[i] in sorted_keys (ascending)."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    return sorted_keys.take(np.searchsorted(sorted_keys, keys), mode="clip") == keys


def row_blocks(sizes: np.ndarray, budget: int) -> Iterator[slice]:
    """Consecutive slices of rows whose sizes sum to about `budget` (one row at least), every
    row in one of them."""
    ends = np.searchsorted(np.cumsum(sizes), np.arange(budget, int(sizes.sum()) + budget, budget), side="right")
    start = 0
    for end in (*ends.tolist(), len(sizes)):
        if end > start:
            yield slice(start, end)
            start = end


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions starts[k] .. starts[k] + lengths[k] - 1 of every k, concatenated."""
    return np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))


def recent_items(history: np.ndarray, count: int) -> np.ndarray:
    """The distinct item indices among the last `count` watches of the histories: the rows of
    the similarity that scoring them reads."""
    items = np.unique(latest(history, count))
    return items[items > 0]


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
