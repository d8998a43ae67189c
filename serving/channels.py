"""Multi-channel recall: the model's FAISS search merged with other candidate sources.

A production recall list is never one source. The channels:
- model: the user vector's nearest items (the FAISS search of serving/recall.py);
- item2item: the items co-watched with the user's last few watches, by cosine over every
  training user (report/baselines.py's similarity, kept to each item's top neighbours);
- popular: the most watched items; fresh: the most watched in the last prep.recent_days.
Each channel ranks its own candidates (the user's watched items never among them); the merged
list scores an item by weighted reciprocal-rank fusion (Cormack et al. 2009),

    score(i) = sum over channels c of  w_c / (offset + rank_c(i) + 1),

and keeps the top K, each item labelled with the channel that gave it the most. The weights
and the offset are chosen on the validation split (serving/recall.py), never on the test; a
weight of 0 leaves a channel out, so the model alone is always among the choices.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from serving.cowatch import PAIRS_PER_BLOCK, best_neighbours, contains, item_rows, latest, watch_pairs

CHANNELS = ("model", "item2item", "popular", "fresh")
# recall/channels/: what the scoring actors load beside the index (Channels.save, Channels.load)
NEIGHBOURS_FILE, SCORES_FILE = "item2item_neighbours.npy", "item2item_scores.npy"
ORDER_FILE = "{}.npy"  # the popular and fresh orders
# the candidate settings, cheapest first (the first of equals wins): every channel's weight
# relative to the model's 1, and the fusion's rank offset (small: the head of each list
# decides; 60, the paper's: agreement between the lists decides)
WEIGHT_GRID = {"item2item": (0.0, 0.05, 0.1, 0.25, 0.5, 1.0), "popular": (0.0, 0.05, 0.1), "fresh": (0.0, 0.05, 0.1)}
OFFSETS = (10, 60)


@dataclass(frozen=True)
class Fusion:
    """The merge's setting: a weight per channel (the model's is 1) and the rank offset."""

    weights: tuple[tuple[str, float], ...]
    offset: int

    @property
    def active(self) -> dict[str, float]:
        return {name: w for name, w in self.weights if w > 0}

    def to_dict(self) -> dict:
        return {"weights": dict(self.weights), "offset": self.offset}

    @classmethod
    def of(cls, setting: dict) -> "Fusion":
        """From to_dict()'s form."""
        return cls(tuple(setting["weights"].items()), int(setting["offset"]))


def fusion_grid(channels: tuple[str, ...]) -> list[Fusion]:
    """Every setting of the channels given (model first), the model alone first."""
    others = [c for c in channels if c != "model"]
    grid = [Fusion((("model", 1.0), *((c, 0.0) for c in others)), OFFSETS[0])]
    for weights in itertools.product(*(WEIGHT_GRID[c] for c in others)):
        if not any(weights):
            continue
        for offset in OFFSETS:
            grid.append(Fusion((("model", 1.0), *zip(others, weights)), offset))
    return grid


@dataclass(frozen=True)
class CoWatch:
    """Each item's `M` most similar items by co-watch cosine (0 = no neighbour), best first:
    row i is item i's, or, where only some items were asked for, row_of[i] (0: an empty row)."""

    neighbours: np.ndarray  # [rows, M] int32 item indices
    scores: np.ndarray  # [rows, M] float32 cosine similarities
    row_of: np.ndarray | None = None  # [num_items] int32 each item's row; None: row i is item i's

    @classmethod
    def build(cls, watched: pa.ListArray, num_items: int, neighbours: int, pairs_per_block: int = PAIRS_PER_BLOCK,
              rows: np.ndarray | None = None) -> "CoWatch":
        """From the watch lists of every training user (one row of item indices each); the
        similarity is made and cut to each row's best a block of rows at a time, so it is
        never held whole. With `rows` (item indices), only those items get neighbours, in
        rows of their own: the arrays are as large as the rows asked for, whatever the catalog."""
        row_of = None
        if rows is not None:
            rows, row_of = item_rows(rows, num_items)
        size = num_items if row_of is None else len(rows) + 1
        items = np.zeros((size, neighbours), dtype=np.int32)
        scores = np.zeros((size, neighbours), dtype=np.float32)
        for row, rank, column, value in best_neighbours(watched, num_items, neighbours, pairs_per_block, rows):
            at = row if row_of is None else row_of[row]
            items[at, rank] = column
            scores[at, rank] = value
        return cls(items, scores, row_of)

    def rows(self, items: np.ndarray) -> np.ndarray:
        """The rows of the given item indices (the empty row 0 for an item without one)."""
        return items if self.row_of is None else self.row_of[items]

    def save(self, directory: str) -> None:
        """Every item's row, row i item i's (a CoWatch built for some items only is not saved),
        as .npy files that load() maps instead of reading."""
        if self.row_of is not None:
            raise ValueError("a CoWatch of some items only is not saved: build it for every item")
        os.makedirs(directory, exist_ok=True)
        np.save(os.path.join(directory, NEIGHBOURS_FILE), self.neighbours)
        np.save(os.path.join(directory, SCORES_FILE), self.scores)

    @classmethod
    def load(cls, directory: str) -> "CoWatch":
        """The saved rows, memory-mapped: the scorers on a machine share one copy, and it
        loads at once whatever the catalog."""
        return cls(np.load(os.path.join(directory, NEIGHBOURS_FILE), mmap_mode="r"),
                   np.load(os.path.join(directory, SCORES_FILE), mmap_mode="r"))

    @staticmethod
    def saved(directory: str) -> bool:
        return os.path.exists(os.path.join(directory, NEIGHBOURS_FILE))

    def offering(self, allowed: np.ndarray) -> "CoWatch":
        """The same rows with every neighbour outside `allowed` (a mask over item indices) removed."""
        offered = np.zeros(max(len(allowed), int(self.neighbours.max(initial=0)) + 1), dtype=bool)
        offered[:len(allowed)] = allowed
        dropped = ~offered[self.neighbours]
        if not dropped.any():
            return self
        return CoWatch(np.where(dropped, 0, self.neighbours).astype(np.int32),
                       np.where(dropped, 0, self.scores).astype(np.float32), self.row_of)

    def candidates(self, recent: np.ndarray, excluded: pa.ListArray, k: int) -> np.ndarray:
        """[users, k] item indices (0 = none), best first: the neighbours of each user's
        recent item ids ([users, R], 0 = padding) by the sum of their similarities, the
        user's `excluded` items left out."""
        users, width = recent.shape
        rows = np.repeat(np.arange(users), width * self.neighbours.shape[1])
        at = self.rows(recent)
        items = self.neighbours[at].reshape(-1)
        scores = (self.scores[at] * (recent > 0)[:, :, None]).reshape(-1)
        real = (items > 0) & (scores > 0)
        return ranked(rows[real], items[real], scores[real], users, k, excluded)[0]


def top_per_row(rows: np.ndarray, items: np.ndarray, scores: np.ndarray, count: int,
                k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """([count, k] items, [count, k] scores, [count, k] positions in the input) of each row's
    k highest scores among pairs given by row, then item (summed_pairs' order; ties: the
    lower item index), 0 / 0 / -1 where a row has fewer.

    Each row's pairs are laid out in a dense [count, longest row] matrix and sorted along
    the rows: a batch's rows hold a few hundred candidates each, and sorting them in place
    beats two stable sorts of every pair of the batch."""
    out_items = np.zeros((count, k), dtype=np.int64)
    out_scores = np.zeros((count, k), dtype=np.float64)
    out_at = np.full((count, k), -1, dtype=np.int64)
    starts = np.searchsorted(rows, np.arange(count + 1))
    lengths = np.diff(starts)
    width = int(lengths.max(initial=0))
    if width == 0:
        return out_items, out_scores, out_at
    dense = np.full((count, width), -np.inf)
    dense[rows, np.arange(len(rows)) - starts[rows]] = scores
    take = min(k, width)
    place = torch.sort(torch.from_numpy(dense), dim=1, descending=True, stable=True).indices[:, :take].numpy()
    filled = place < lengths[:, None]
    at = np.where(filled, starts[:-1, None] + place, -1)
    out_at[:, :take] = at
    out_items[:, :take] = np.where(filled, items[np.maximum(at, 0)], 0)
    out_scores[:, :take] = np.where(filled, scores[np.maximum(at, 0)], 0.0)
    return out_items, out_scores, out_at


def ranked(rows: np.ndarray, items: np.ndarray, scores: np.ndarray, users: int, k: int,
           excluded: pa.ListArray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores summed per (row, item), `excluded` (row i's items never ranked) left out, then
    each row's top k: top_per_row's output, positions into the summed pairs."""
    span, unique, inverse, summed = summed_pairs(rows, items, scores)
    pair_rows, pair_items = unique // span, unique % span
    if excluded is not None and len(unique):
        flat, parents = watch_pairs(excluded)
        inside = flat < span
        gone = contains(np.unique(parents[inside] * span + flat[inside]), unique)
        pair_rows, pair_items, summed = pair_rows[~gone], pair_items[~gone], summed[~gone]
    return top_per_row(pair_rows, pair_items, summed, users, k)


def summed_pairs(rows: np.ndarray, items: np.ndarray,
                 scores: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """(span, the distinct (row, item) pairs as keys row * span + item, ascending, each
    input's pair, each pair's summed score)."""
    span = int(items.max(initial=0)) + 1
    keys = torch.from_numpy(rows.astype(np.int64) * span + items)
    # torch's unique: several times faster than numpy's with return_inverse
    unique, inverse = (t.numpy() for t in torch.unique(keys, sorted=True, return_inverse=True))
    return span, unique, inverse, np.bincount(inverse, weights=scores, minlength=len(unique))


def popular_candidates(order: np.ndarray, excluded: pa.ListArray, k: int) -> np.ndarray:
    """[users, k] the first items of `order` (item indices, most popular first) each user has
    not watched (0 = none).

    With w_0 < w_1 < ... the places in `order` of a user's watched items, the j-th unwatched
    place is j plus the number of w_i with w_i - i <= j (w_i - i: the unwatched places before
    w_i), so each list comes from the user's own watches alone, however long the order."""
    users = len(excluded)
    if len(order) == 0:
        return np.zeros((users, k), dtype=np.int64)
    place = np.full(int(order.max()) + 1, len(order), dtype=np.int64)
    place[order] = np.arange(len(order))
    flat, parents = watch_pairs(excluded)
    inside = flat < len(place)
    user, at = parents[inside], place[flat[inside]]
    listed = at < len(order)
    span = len(order) + 1
    watched_keys = np.unique(user[listed] * span + at[listed])  # by user, then place; each once
    user, at = watched_keys // span, watched_keys % span
    first = np.searchsorted(user, np.arange(users + 1))
    before = at - (np.arange(len(at)) - first[user])  # w_i - i, non-decreasing within a user
    j = np.tile(np.arange(k), users)
    query_user = np.repeat(np.arange(users), k)
    passed = np.searchsorted(user * (span + k) + before, query_user * (span + k) + j, side="right") - first[query_user]
    places = j + passed
    return np.where(places < len(order), order[np.minimum(places, len(order) - 1)], 0).reshape(users, k)


def fuse(lists: dict[str, np.ndarray], fusion: Fusion, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """([users, k] items, [users, k] fused scores, [users, k] channel of each slot as an
    index into CHANNELS, -1 for an empty slot) of the channels' ranked lists ([users, depth]
    item indices, 0 = none) merged by weighted reciprocal-rank fusion."""
    weights = fusion.active
    users = len(next(iter(lists.values())))
    rows, items, scores, sources = [], [], [], []
    for name, weight in weights.items():
        ranked_items = lists[name]
        real = ranked_items > 0
        r, position = np.nonzero(real)
        rows.append(r)
        items.append(ranked_items[real])
        scores.append(weight / (fusion.offset + position + 1.0))
        sources.append(np.full(len(r), CHANNELS.index(name), dtype=np.int8))
    sizes = [len(r) for r in rows]
    rows, items, scores, sources = (np.concatenate(x) for x in (rows, items, scores, sources))
    span, unique, inverse, summed = summed_pairs(rows, items, scores)
    # each merged item's channel: the one that gave it the largest share (the first of equals,
    # in the order of the weights); a channel lists an item once, so its entries' pairs differ
    channel = np.full(len(unique), -1, dtype=np.int8)
    share = np.full(len(unique), -np.inf)
    for lo, hi in itertools.pairwise(np.cumsum([0, *sizes])):
        pair = inverse[lo:hi]
        larger = scores[lo:hi] > share[pair]
        share[pair[larger]], channel[pair[larger]] = scores[lo:hi][larger], sources[lo:hi][larger]
    out_items, out_scores, at = top_per_row(unique // span, unique % span, summed, users, k)
    out_channels = np.where(at >= 0, channel[np.maximum(at, 0)], -1).astype(np.int8)
    return out_items, out_scores.astype(np.float32), out_channels


def list_metrics(items: np.ndarray, targets: np.ndarray, at: int = 50) -> dict[str, float]:
    """HR@at and NDCG@at of ranked lists against one target (an item index) per row: a row
    scores 1 and 1 / log2(place + 2) where its target is at `place` (from 0) among its first
    `at` items, else 0."""
    if not len(targets):
        return {f"hr@{at}": 0.0, f"ndcg@{at}": 0.0}
    hit = items[:, :at] == targets[:, None]  # one comparison of the lists for both metrics
    found = hit.any(1)
    return {f"hr@{at}": float(found.mean()),
            f"ndcg@{at}": float(np.where(found, 1.0 / np.log2(hit.argmax(1) + 2.0), 0.0).mean())}


def choose(lists: dict[str, np.ndarray], targets: np.ndarray, channels: tuple[str, ...], k: int,
           at: int = 50) -> tuple[Fusion, dict[str, float], list[dict]]:
    """The fusion setting with the highest NDCG@at of `targets` (the first of equals), its
    HR@at and NDCG@at, and every setting tried with its own and each channel's share of the
    slots.

    NDCG rather than the hit rate: the settings merge the same channels' items, so many of
    them find the same targets among the first `at` and differ in where they place them; NDCG
    counts the same hits, each the more the higher it is placed."""
    tried, best, best_measured = [], None, None
    for fusion in fusion_grid(channels):
        items, _, sources = fuse(lists, fusion, k)
        measured = list_metrics(items, targets, at)
        tried.append({**fusion.to_dict(), **measured, "slots": slot_shares(sources)})
        if best_measured is None or measured[f"ndcg@{at}"] > best_measured[f"ndcg@{at}"]:
            best, best_measured = fusion, measured
    return best, best_measured, tried


def slot_shares(sources: np.ndarray) -> dict[str, float]:
    """Each channel's share of the filled slots."""
    filled = sources[sources >= 0]
    counts = np.bincount(filled, minlength=len(CHANNELS))
    return {name: float(n / max(len(filled), 1)) for name, n in zip(CHANNELS, counts) if n}


@dataclass(frozen=True)
class Channels:
    """What a scoring actor needs to merge a batch's model lists with the other channels."""

    fusion: Fusion
    cowatch: CoWatch | None  # item2item's neighbours (items outside the index removed)
    popular: np.ndarray | None  # item indices, most watched first (index items only)
    fresh: np.ndarray | None  # the same, by watches in the last recent days
    recent: int  # item2item reads the user's last `recent` watches
    item_id: np.ndarray  # item index -> item id (object array; "" for items not in the index)

    @classmethod
    def of(cls, fusion: Fusion, recent: int, row_item_index: np.ndarray, row_item_id: np.ndarray,
           cowatch: CoWatch | None = None, popular: np.ndarray | None = None,
           fresh: np.ndarray | None = None) -> "Channels":
        """The channels the fusion weighs, offering items of the index (row_item_index, each
        row's item id in row_item_id) only: co-watch neighbours and popular or fresh items
        outside it are dropped."""
        item_id = index_item_ids(row_item_index, row_item_id)
        size = len(item_id)
        allowed = np.zeros(size, dtype=bool)
        allowed[row_item_index] = True

        def order(name: str, ranked_items: np.ndarray | None) -> np.ndarray | None:
            if ranked_items is None or name not in fusion.active:
                return None
            ranked_items = np.asarray(ranked_items, dtype=np.int64)
            return ranked_items[(ranked_items < size) & allowed[np.minimum(ranked_items, size - 1)]]

        cowatch = cowatch.offering(allowed) if cowatch is not None and "item2item" in fusion.active else None
        return cls(fusion, cowatch, order("popular", popular), order("fresh", fresh), recent, item_id)

    def save(self, directory: str) -> None:
        """recall/channels/: the inputs of every channel the fusion weighs, for load()."""
        if self.cowatch is not None:
            self.cowatch.save(directory)
        os.makedirs(directory, exist_ok=True)
        for name, ranked_items in (("popular", self.popular), ("fresh", self.fresh)):
            if ranked_items is not None:
                np.save(os.path.join(directory, ORDER_FILE.format(name)), ranked_items)

    @classmethod
    def load(cls, directory: str, fusion: Fusion, recent: int, row_item_index: np.ndarray,
             row_item_id: np.ndarray) -> "Channels":
        """What save() wrote for the same index, the channels `fusion` weighs; the co-watch
        neighbours are mapped, not read (save() already dropped those outside the index)."""
        item_id = index_item_ids(row_item_index, row_item_id)

        def order(name: str) -> np.ndarray | None:
            path = os.path.join(directory, ORDER_FILE.format(name))
            return np.load(path) if name in fusion.active and os.path.exists(path) else None

        cowatch = CoWatch.load(directory) if "item2item" in fusion.active and CoWatch.saved(directory) else None
        return cls(fusion, cowatch, order("popular"), order("fresh"), recent, item_id)

    def lists(self, model: np.ndarray, history: np.ndarray, excluded: pa.ListArray, k: int) -> dict[str, np.ndarray]:
        """Every active channel's [users, k] ranked item indices; `model` is the model's."""
        out = {"model": model}
        if self.cowatch is not None:
            out["item2item"] = self.cowatch.candidates(latest(history, self.recent), excluded, k)
        for name, ranked_items in (("popular", self.popular), ("fresh", self.fresh)):
            if ranked_items is not None:
                out[name] = popular_candidates(ranked_items, excluded, k)
        return out

    def merged(self, model: np.ndarray, history: np.ndarray, excluded: pa.ListArray,
               k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """fuse()'s (items, scores, channels) for a batch of users."""
        return fuse(self.lists(model, history, excluded, k), self.fusion, k)


def index_item_ids(row_item_index: np.ndarray, row_item_id: np.ndarray) -> np.ndarray:
    """Item index -> item id of the index's items, "" for every other index below the largest."""
    item_id = np.full(int(row_item_index.max(initial=0)) + 1, "", dtype=object)
    item_id[row_item_index] = row_item_id
    return item_id
