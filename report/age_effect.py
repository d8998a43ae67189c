"""The example-age effect (Covington et al. 2016, figure 4): how the model spreads its
predicted watches over item age, beside how the watches themselves spread.

Freshness makes popularity move in time: a video is watched most just after its upload. A
model trained on a window of examples without their age can only learn the window's average
popularity, so at any instant it gives mass to items that were old, or not uploaded yet. With
example age (anchor - event time) as an input it can tell when an example happened.

An item's upload is taken to be its first watch in the training log: on a video platform the
two are hours apart, and it is known for every dataset, where catalogs' upload times may be
missing or coarse (MovieLens gives a release year). For a seeded sample of training examples
e (event time t_e = anchor - example age), the age of item i is t_e - first_i in days,
bucketed on a log2 scale, plus one bucket for items not in the log yet at t_e. The empirical
share of a bucket is the share of the examples' labels in it (never "not yet": a label is a
watch); the predicted share is the model's softmax over the whole corpus (the recall score,
the user tower at the example's own age) summed over the bucket's items, averaged over the
examples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from ray_train.data import Widths, to_batch
from ray_train.export import load_user_tower
from serving.index import item_matrix, user_queries
from core import storage
from core.contract import SECONDS_PER_UNIT
from core.layout import PrepLayout, RunLayout

SECONDS_PER_DAY = 86400.0
AGE_EDGES_DAYS = (1, 2, 4, 8, 16, 32, 64, 128)  # buckets: not yet, < 1, 1-2, ..., 64-128, >= 128 days
EMPIRICAL_EXAMPLES = 200_000  # labels read for the empirical shares
PREDICTED_SCORES = 50_000_000  # examples x items scored for the predicted shares (memory: 8 bytes each)
MAX_PREDICTED_EXAMPLES = 2_000
BLOCK_SCORES = 4_000_000  # scores per block of examples


def age_buckets() -> list[str]:
    """The buckets' labels, in days since the item's first watch."""
    edges = AGE_EDGES_DAYS
    middle = [f"{lo}-{hi}" for lo, hi in zip(edges[:-1], edges[1:])]
    return ["not yet", f"<{edges[0]}", *middle, f">={edges[-1]}"]


def age_bucket(age_days: np.ndarray) -> np.ndarray:
    """Bucket of each age in days: 0 for a negative age (not in the log yet), then by edges;
    NaN (unknown) gets -1."""
    age_days = np.asarray(age_days, dtype=np.float64)
    buckets = np.where(age_days < 0, 0, 1 + np.searchsorted(AGE_EDGES_DAYS, age_days, side="right"))
    return np.where(np.isnan(age_days), -1, buckets)


def predicted_shares(logits: np.ndarray, first_watch: np.ndarray, event_time: np.ndarray) -> np.ndarray:
    """[buckets]: the mean over rows of softmax(logits[row]) summed by the items' age bucket at
    event_time[row] (seconds); items of unknown age are left out of every bucket."""
    n_buckets = len(AGE_EDGES_DAYS) + 2
    rows = len(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    buckets = age_bucket((event_time[:, None] - first_watch[None, :]) / SECONDS_PER_DAY)
    known = buckets >= 0
    keys = (np.arange(rows)[:, None] * n_buckets + buckets)[known]
    mass = np.bincount(keys, weights=probs[known], minlength=rows * n_buckets).reshape(rows, n_buckets)
    return mass.mean(axis=0)


def empirical_shares(labels: np.ndarray, first_watch: np.ndarray, event_time: np.ndarray) -> np.ndarray:
    """[buckets]: the share of the labels (item indices) in each age bucket at their event
    time; labels of unknown age are left out."""
    buckets = age_bucket((event_time - first_watch[labels]) / SECONDS_PER_DAY)
    buckets = buckets[buckets >= 0]
    counts = np.bincount(buckets, minlength=len(AGE_EDGES_DAYS) + 2)
    return counts / max(counts.sum(), 1)


def item_first_watch(prep: PrepLayout, features: dict) -> np.ndarray:
    """Per item index (padding row 0 included): its first training watch in epoch seconds,
    NaN where unknown (an item of the previous vocabulary not watched in this window)."""
    first = np.full(int(features["item_vocab_size"]), np.nan)
    vocab = storage.parquet_dataset(prep.item_vocab).to_table()
    if "first_ts" not in vocab.column_names:  # a vocabulary written before first_ts
        return first
    seen = vocab.filter(pc.is_valid(vocab.column("first_ts")))
    first[seen.column("index").to_numpy()] = seen.column("first_ts").cast(pa.int64()).to_numpy() / 1e6
    return first


def example_age_effect(run_dir: str, prep: dict, seed: int = 0) -> dict[str, Any] | None:
    """report.json's "example_age_effect": buckets, empirical and predicted shares, the
    examples behind each and whether the model reads example age; None for a vocabulary
    without first watches."""
    run = RunLayout(run_dir)
    features = prep["features"]
    first = item_first_watch(run.prep, features)  # by item index
    if np.isnan(first).all():
        return None
    unit_seconds = SECONDS_PER_UNIT[features.get("example_age_unit", "hours")]
    anchor = float(features["anchor_ts"])
    total = storage.parquet_dataset(run.prep.examples).count_rows()
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(total, min(EMPIRICAL_EXAMPLES, total), replace=False))
    sample = storage.take_rows(run.prep.examples, sample, columns=["label", "example_age_raw"])
    empirical = empirical_shares(sample.column("label").to_numpy().astype(np.int64), first,
                                 anchor - sample.column("example_age_raw").to_numpy() * unit_seconds)

    vectors, item_index, _ = item_matrix(run.model.item_embeddings)
    first_watch = first[item_index]  # by embedding row
    tower, meta = load_user_tower(run.model.root)
    rows = max(1, min(MAX_PREDICTED_EXAMPLES, PREDICTED_SCORES // len(vectors)))
    scored = storage.take_rows(run.prep.examples, np.sort(rng.choice(total, min(rows, total), replace=False)))
    widths = Widths.from_prep_features(features)
    block = max(1, BLOCK_SCORES // len(vectors))
    mass = np.zeros(len(AGE_EDGES_DAYS) + 2)
    for start in range(0, scored.num_rows, block):
        part = scored.slice(start, block)
        with torch.no_grad():
            users = tower(*to_batch(part, widths, with_labels=False).features()).numpy()
        event_time = anchor - part.column("example_age_raw").to_numpy() * unit_seconds
        mass += predicted_shares(user_queries(users) @ vectors.T, first_watch, event_time) * part.num_rows
    return {
        "buckets": age_buckets(),
        "empirical": empirical.tolist(),
        "predicted": (mass / max(scored.num_rows, 1)).tolist(),
        "empirical_examples": sample.num_rows,
        "predicted_examples": scored.num_rows,
        "example_age": bool(meta["spec"].get("example_age", True)),
    }
