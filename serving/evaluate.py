"""Evaluation on the held-out events: the recall table against most-popular and item-kNN.

Each evaluated user has one held-out watch (leave-last-out). Its rank r (0-based) in the
user's recommendation list gives HR@K = P(r < K), NDCG@K = E[1 / log2(r + 2) ; r < K] and,
with one relevant item per user, Recall@K = HR@K. Items the user already watched are excluded
from every list, the baseline's included, so both are judged by the same protocol.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from serving.baselines import item_knn_ranks
from watchnext import storage
from watchnext.contract import fixed_lists

KS = (10, 50, 100, 200)
KNN_RECENT = 3  # item-kNN scores candidates against the last 3 watches (best of 1-50 on ml-100k)
KNN_MAX_USERS = 20_000  # item-kNN costs O(watches x users): a seeded sample beyond this
KNN_SEED = 0
MISS = np.iinfo(np.int64).max  # rank of an item that is not in the list at all


def ranking_metrics(ranks: np.ndarray, max_k: int | None = None) -> dict[str, float]:
    """hr@K, recall@K and ndcg@K for K in KS up to max_k (a list of max_k items says nothing
    beyond it), and mrr, from 0-based ranks (MISS = not recommended)."""
    ranks = np.asarray(ranks, dtype=np.int64)
    if len(ranks) == 0:
        raise ValueError("no evaluated users")
    clipped = np.minimum(ranks, MISS - 1)
    metrics = {}
    for k in (k for k in KS if max_k is None or k <= max_k):
        metrics[f"hr@{k}"] = float(np.mean(ranks < k))
        metrics[f"recall@{k}"] = metrics[f"hr@{k}"]  # one relevant item per user
        metrics[f"ndcg@{k}"] = float(np.where(ranks < k, 1.0 / np.log2(np.minimum(clipped, k) + 2.0), 0.0).mean())
    metrics["mrr"] = float(np.where(ranks < MISS, 1.0 / (clipped + 1.0), 0.0).mean())
    return metrics


def list_statistics(item_lists: pa.ListArray, popularity: dict[str, int], catalog: int) -> dict[str, float]:
    """Catalog coverage (distinct recommended items / items that could be recommended) and
    the mean training popularity (watch count) of the recommended items, every slot counted,
    beside the catalog's mean."""
    flat = pc.list_flatten(item_lists).to_numpy(zero_copy_only=False)
    counts = pd.Series(flat, dtype=object).map(popularity).fillna(0).to_numpy(dtype=np.float64)
    catalog_mean = sum(popularity.values()) / max(len(popularity), 1)
    return {
        "coverage": len(np.unique(flat)) / max(catalog, 1),
        "mean_popularity": float(counts.mean()) if len(counts) else 0.0,
        "catalog_mean_popularity": float(catalog_mean),
    }


def ranks_in_lists(lists: pa.ListArray, targets: np.ndarray) -> np.ndarray:
    """0-based position of targets[i] in lists[i], or MISS."""
    flat = pc.list_flatten(lists).to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(lists).to_numpy()
    offsets = lists.offsets.to_numpy()
    starts = offsets[:-1] - offsets[0]
    hit = flat == targets[parents]
    ranks = np.full(len(targets), MISS, dtype=np.int64)
    # positions of hits, first hit per user wins (np.minimum.at keeps the smallest)
    np.minimum.at(ranks, parents[hit], np.flatnonzero(hit) - starts[parents[hit]])
    return ranks


def most_popular_ranks(target_index: np.ndarray, watched: pa.ListArray) -> np.ndarray:
    """Rank of each target in the popularity list with the user's watched items removed.

    Item index i is the i-th most-watched item in training, so the target's rank among all
    items is index - 1, less the watched items ranked above it; a watched or unknown target
    is never recommended.
    """
    known = target_index > 0
    flat = pc.list_flatten(watched).to_numpy(zero_copy_only=False).astype(np.int64)
    parents = pc.list_parent_indices(watched).to_numpy()
    above = np.bincount(parents[flat < target_index[parents]], minlength=len(target_index))
    watched_target = np.zeros(len(target_index), dtype=bool)
    watched_target[parents[flat == target_index[parents]]] = True
    ranks = target_index - 1 - above
    return np.where(known & ~watched_target, ranks, MISS)


def evaluate(run_dir: str) -> dict[str, Any]:
    """Compute report.json for a finished run; returns it."""
    run_dir = storage.absolute(run_dir)
    prep_dir, recall_dir = storage.join(run_dir, "prep"), storage.join(run_dir, "recall")
    report_dir = storage.join(run_dir, "report")
    prep = storage.read_manifest(prep_dir)
    recall = storage.read_manifest(recall_dir)
    started = storage.begin_stage(report_dir)

    targets = _read(storage.join(prep_dir, "eval"), ["user_id", "item_id", "item_index"])
    table = _read(storage.join(recall_dir, "table"), ["user_id", "item_ids"])
    features = _read(storage.join(prep_dir, "user_features"), ["user_id", "watched", "history"])
    # every evaluated user is kept: one without a recall row counts as a miss
    item_lists = _fill_empty(_lookup(targets, table, "item_ids"), pa.string())
    watched = _fill_empty(_lookup(targets, features, "watched"), pa.int32())
    target_index = targets.column("item_index").fill_null(0).to_numpy().astype(np.int64)
    target_ids = targets.column("item_id").to_numpy(zero_copy_only=False)

    top_k = int(recall["config"]["top_k"])
    model = ranking_metrics(ranks_in_lists(item_lists, target_ids), max_k=top_k)
    vocab = _read(storage.join(prep_dir, "vocab", "items"), ["item_id", "count"])
    popularity = dict(zip(vocab.column("item_id").to_pylist(), vocab.column("count").to_pylist()))
    model.update(list_statistics(table.column("item_ids").combine_chunks(), popularity,
                                 int(recall["index"]["items"])))
    popular = ranking_metrics(most_popular_ranks(target_index, watched))
    knn = _item_knn(target_index, watched, _lookup(targets, features, "history"), prep["features"])
    report = {
        "dataset": prep["inputs"]["dataset"],
        "users": targets.num_rows,
        "model_version": recall["model_version"],
        "top_k": top_k,
        "index": {k: v for k, v in recall["index"].items() if k in ("type", "shards", "items")
                  or k.startswith("ann_recall@")},
        "model": model,
        "baselines": {"most_popular": popular, "item_knn": knn},
    }
    storage.write_text(storage.join(report_dir, "report.json"), json.dumps(report, indent=2) + "\n")
    storage.finish_stage(report_dir, started, {"inputs": {"prep": prep_dir, "recall": recall_dir},
                                               "outputs": ["report.json"], "users": targets.num_rows})
    return report


def _item_knn(target_index: np.ndarray, watched: pa.ListArray, history: pa.ListArray, features: dict) -> dict:
    """item-kNN's metrics (serving.baselines) on all evaluated users, or a seeded sample."""
    users = np.arange(len(target_index))
    if len(users) > KNN_MAX_USERS:
        users = np.sort(np.random.default_rng(KNN_SEED).choice(users, KNN_MAX_USERS, replace=False))
    history_len = int(features["history_len"])
    history = history.take(pa.array(users))
    last = np.zeros((len(users), history_len), dtype=np.int64)  # no serving features: no history
    present = history.is_valid().to_numpy(zero_copy_only=False)
    last[present] = fixed_lists(history.filter(pa.array(present)), history_len)
    ranks = item_knn_ranks(target_index[users], watched.take(pa.array(users)), last,
                           int(features["item_vocab_size"]), recent=KNN_RECENT)
    return {**ranking_metrics(ranks), "users": int(len(users)), "recent": KNN_RECENT}


def _read(path: str, columns: list[str]) -> pa.Table:
    fs, local = storage.filesystem(path)
    return pads.dataset(local, filesystem=fs, format="parquet", partitioning="hive").to_table(columns=columns)


def _lookup(left: pa.Table, right: pa.Table, column: str) -> pa.Array:
    """right[column] for each row of left, matched on user_id (null where right has none).

    Arrow's hash join does not carry list columns, so the match is a hash lookup of row
    positions followed by a take."""
    positions = pd.Index(right.column("user_id").to_pandas()).get_indexer(left.column("user_id").to_pandas())
    positions = pa.array(positions, mask=positions < 0)
    return right.column(column).combine_chunks().take(positions)


def _fill_empty(array: pa.ListArray, value_type: pa.DataType) -> pa.ListArray:
    """A list column with null rows (users without a match) turned into empty lists."""
    if array.null_count == 0:
        return array
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy()
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pc.list_flatten(array).cast(value_type))
