"""Evaluation on the held-out events: the recall table against most-popular, recently-popular,
item-kNN and ALS.

Each evaluated user has one held-out watch (leave-last-out). Its rank r (0-based) in the
user's recommendation list gives HR@K = P(r < K), NDCG@K = E[1 / log2(r + 2) ; r < K] and,
with one relevant item per user, Recall@K = HR@K. Items the user already watched are excluded
from every list, the baselines' included, so all are judged by the same protocol. HR@50 and
NDCG@10 come with percentile bootstrap intervals over users (1,000 resamples, seeded). The
recommended items are described by catalog coverage, their popularity (mean and distribution
beside the catalog's) and the share of fresh items (uploaded within prep.recent_days of the
end of the training window) beside the catalog's.

The baselines' own settings (item-kNN's number of recent watches, ALS's rank, lambda and
alpha) are chosen on the validation split (prep/valid: each user's last training watch,
ranked with what was known before it), never on the test targets; a prep without one
(prep.validation=false, or older) leaves them at fixed defaults, and the report says so.

item-kNN and ALS rank the whole catalog for every user they score, so on a large log they
are chosen and scored on seeded samples of users (CHOICE_SCORES, BASELINE_SCORES); their
similarity and factors still come from every training user's watches. Both real logs fit
whole and are chosen and scored on every user."""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from report import als
from report.age_effect import example_age_effect
from report.baselines import item_knn_ranks
from report.page import render
from serving.cowatch import Neighbourhoods, recent_items
from core import storage
from core.config import Config
from core.contract import MANIFEST, padded_lists
from core.layout import PrepLayout, RunLayout

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from core.config import SparkConfig

KS = (10, 50, 100, 200)
KNN_RECENT_GRID = (1, 2, 3, 5, 10, 20, 50)  # item-kNN's recent watches R, chosen on the validation split
# and each item's neighbours N, with R: these, and every neighbour as far as
# KNN_NEIGHBOUR_ENTRIES allows over the rows a ranking reads (~0.8 GB were every row that
# wide; a row holds its item's co-watched items alone: every one on both real logs)
KNN_NEIGHBOURS_GRID = (20, 50, 100, 200)
KNN_NEIGHBOUR_ENTRIES = 100_000_000
# co-watch pairs counted at once for item-kNN's neighbourhoods (~0.15 GB of work arrays):
# a quarter of the recall stage's, for the report holds the evaluated users' lists beside them
KNN_PAIRS_PER_BLOCK = 4_000_000
KNN_RECENT_DEFAULT = 3  # without a validation split: ml-100k's best (Amazon's is 20, 7% above 3)
# The baselines' settings are chosen by their HR@50 on the validation targets: the report's
# headline metric (a recall stage is judged by whether the item reaches the ranker's ~50-200
# candidates, not by its place among the first 10), and with one target per user the
# least noisy of the list metrics on a few hundred users.
SELECTION_METRIC = "hr@50"
# Ranking one user costs up to a score per catalog item (ALS: 10-25 ms at 1M items on 2 cores;
# item-kNN: the neighbours of the user's recent watches), so the samples are bounded in
# scores, users x items. At the soak's 1M items that is 10,000 validation users, on which
# every candidate setting is compared (the choice needs a ranking of the candidates, not
# every user's rank: HR@50 ~0.1 has a standard error of sqrt(0.1 x 0.9 / 10,000) = 0.003, and
# candidates scored on the same users differ by less), and 20,000 evaluated users, on which
# item-kNN and ALS report their test metrics (0.002; the model is judged on every user).
# Both real logs fit whole (Amazon: 35,598 users x 18,348 items = 6.5e8 scores), so they are
# chosen and scored on every user.
CHOICE_SCORES = 10_000 * 1_000_000
BASELINE_SCORES = 20_000 * 1_000_000
SAMPLE_SEED = 0
CI_METRICS = ("hr@50", "ndcg@10")  # with bootstrap intervals in the report
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0
DEFAULT_RECENT_DAYS = 7.0  # prep.recent_days of runs that predate it
POPULARITY_BUCKETS = 12  # watch counts 0, 1, 2-3, 4-7, ..., >= 1024
MISS = np.iinfo(np.int64).max  # rank of an item that is not in the list at all
TABLE_BATCH_USERS = 32_768  # recall rows read at once: ~40 MB of item ids at 100 per user
WATCHED_TYPE = pa.list_(pa.int32())  # prep's watched lists, one type whichever folder they come from

log = logging.getLogger(__name__)


def per_user(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Each user's term of hr@K or ndcg@K (their mean is the metric), from 0-based ranks."""
    name, k = metric.split("@")
    ranks = np.asarray(ranks, dtype=np.int64)
    hit = ranks < int(k)
    if name in ("hr", "recall"):  # one relevant item per user
        return hit.astype(np.float64)
    if name == "ndcg":
        return np.where(hit, 1.0 / np.log2(np.minimum(ranks, int(k)) + 2.0), 0.0)
    raise ValueError(f"no per-user form of {metric!r}")


def ranking_metrics(ranks: np.ndarray, max_k: int | None = None) -> dict[str, float]:
    """hr@K, recall@K and ndcg@K for K in KS up to max_k (a list of max_k items says nothing
    beyond it), and mrr, from 0-based ranks (MISS = not recommended)."""
    ranks = np.asarray(ranks, dtype=np.int64)
    if len(ranks) == 0:
        raise ValueError("no evaluated users")
    metrics = {}
    for k in (k for k in KS if max_k is None or k <= max_k):
        metrics[f"hr@{k}"] = float(per_user(ranks, f"hr@{k}").mean())
        metrics[f"recall@{k}"] = metrics[f"hr@{k}"]  # one relevant item per user
        metrics[f"ndcg@{k}"] = float(per_user(ranks, f"ndcg@{k}").mean())
    metrics["mrr"] = float(np.where(ranks < MISS, 1.0 / (np.minimum(ranks, MISS - 1) + 1.0), 0.0).mean())
    return metrics


def bootstrap_intervals(ranks: np.ndarray, metrics: tuple[str, ...] = CI_METRICS, samples: int = BOOTSTRAP_SAMPLES,
                        seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of the metrics over users: "<metric>_ci95": [low, high],
    from `samples` resamples of the users with replacement (seeded)."""
    values = np.stack([per_user(ranks, m) for m in metrics])  # [metrics, users]
    n = values.shape[1]
    # A user's terms take few distinct values (one per rank below the largest K), so a resample
    # of n users is a multinomial draw of how many fall on each: the same distribution as
    # drawing the users, at a cost that does not grow with them
    terms, users_with = np.unique(values, axis=1, return_counts=True)
    counts = np.random.default_rng(seed).multinomial(n, users_with / n, size=samples)  # [samples, terms]
    means = counts @ terms.T / n
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0)
    suffix = f"_ci{round(level * 100)}"
    return {m + suffix: [float(lo), float(hi)] for m, lo, hi in zip(metrics, low, high)}


class ListStatistics:
    """Catalog coverage (distinct recommended items / items that could be recommended), the
    training popularity (watch count) of the recommended items, every slot counted: its mean
    beside the catalog's and its distribution over log2 buckets beside the catalog's, and,
    given which items are fresh, their share of the slots beside their share of the catalog.
    item_ids, counts and fresh describe the vocabulary row by row; an item outside it counts 0.
    The lists are added a batch at a time, so a table of any size is described in one pass."""

    def __init__(self, item_ids: pa.Array, counts: np.ndarray, catalog: int, fresh: np.ndarray | None = None):
        self.item_ids, self.counts, self.catalog, self.fresh = item_ids, np.asarray(counts, np.float64), catalog, fresh
        self.recommended = np.zeros(len(item_ids), dtype=bool)
        self.unknown: set[str] = set()  # recommended items outside the vocabulary
        self.slots = self.fresh_slots = 0
        self.popularity = 0.0
        self.buckets = np.zeros(POPULARITY_BUCKETS, dtype=np.int64)

    def add(self, item_lists: pa.ListArray) -> None:
        flat = pc.list_flatten(item_lists)
        rows = pc.index_in(flat, value_set=self.item_ids).to_numpy(zero_copy_only=False)  # NaN: not in the vocabulary
        known = ~np.isnan(rows)
        rows = np.where(known, rows, 0).astype(np.int64)
        slot_counts = np.where(known, self.counts[rows], 0.0)
        self.recommended[rows[known]] = True
        if not known.all():
            self.unknown.update(pc.unique(flat.filter(pa.array(~known))).to_pylist())
        self.slots += len(flat)
        self.popularity += float(slot_counts.sum())
        self.buckets += np.bincount(popularity_bucket(slot_counts), minlength=POPULARITY_BUCKETS)
        if self.fresh is not None:
            self.fresh_slots += int((known & self.fresh[rows]).sum())

    def result(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "coverage": (int(self.recommended.sum()) + len(self.unknown)) / max(self.catalog, 1),
            "mean_popularity": self.popularity / self.slots if self.slots else 0.0,
            "catalog_mean_popularity": float(np.mean(self.counts)) if len(self.counts) else 0.0,
            "popularity_distribution": {
                "buckets": popularity_buckets(),
                "recommended": (self.buckets / max(self.buckets.sum(), 1)).tolist(),
                "catalog": _shares(popularity_bucket(self.counts)),
            },
        }
        if self.fresh is not None:
            stats["fresh_share"] = self.fresh_slots / self.slots if self.slots else 0.0
            stats["catalog_fresh_share"] = float(np.mean(self.fresh)) if len(self.fresh) else 0.0
        return stats


def list_statistics(item_lists: pa.ListArray, item_ids: pa.Array, counts: np.ndarray, catalog: int,
                    fresh: np.ndarray | None = None) -> dict[str, Any]:
    """ListStatistics of one array of lists."""
    stats = ListStatistics(item_ids, counts, catalog, fresh)
    stats.add(item_lists)
    return stats.result()


def popularity_bucket(counts: np.ndarray) -> np.ndarray:
    """Bucket b of each watch count: 0 for 0, then b = 1 + floor(log2(count)), capped."""
    counts = np.asarray(counts, dtype=np.float64)
    buckets = np.where(counts > 0, 1 + np.floor(np.log2(np.maximum(counts, 1))), 0)
    return np.minimum(buckets, POPULARITY_BUCKETS - 1).astype(np.int64)


def popularity_buckets() -> list[str]:
    """The buckets' labels: "0", "1", "2-3", ..., ">=1024"."""
    labels = ["0"] + [str(2 ** (b - 1)) if b == 1 else f"{2 ** (b - 1)}-{2 ** b - 1}"
                      for b in range(1, POPULARITY_BUCKETS - 1)]
    return labels + [f">={2 ** (POPULARITY_BUCKETS - 2)}"]


def _shares(buckets: np.ndarray) -> list[float]:
    counts = np.bincount(buckets, minlength=POPULARITY_BUCKETS)
    return (counts / max(counts.sum(), 1)).tolist()


def ranks_in_lists(lists: pa.ListArray, targets: pa.Array | np.ndarray) -> np.ndarray:
    """0-based position of targets[i] in lists[i], or MISS (a null target is never found)."""
    targets = targets if isinstance(targets, pa.Array) else pa.array(targets)
    parents = pc.list_parent_indices(lists)
    hit = pc.fill_null(pc.equal(pc.list_flatten(lists), targets.take(parents)), False).to_numpy(zero_copy_only=False)
    parents = parents.to_numpy()
    offsets = lists.offsets.to_numpy()
    starts = offsets[:-1] - offsets[0]
    ranks = np.full(len(targets), MISS, dtype=np.int64)
    # positions of hits, first hit per user wins (np.minimum.at keeps the smallest)
    np.minimum.at(ranks, parents[hit], np.flatnonzero(hit) - starts[parents[hit]])
    return ranks


def table_ranks(table_dir: str, targets: pa.Table, statistics: ListStatistics | None = None) -> np.ndarray:
    """Each target's (user_id, item_id) rank in its user's list of a recall table, MISS where
    the user has no list or the list lacks it; the table is read a batch of users at a time,
    and every list is added to `statistics` on the way."""
    target_row = pd.Index(targets.column("user_id").to_pandas())
    target_ids = targets.column("item_id").combine_chunks()
    ranks = np.full(targets.num_rows, MISS, dtype=np.int64)
    for batch in storage.parquet_dataset(table_dir).to_batches(columns=["user_id", "item_ids"],
                                                                batch_size=TABLE_BATCH_USERS):
        lists = batch.column("item_ids")
        if statistics is not None:
            statistics.add(lists)
        rows = target_row.get_indexer(batch.column("user_id").to_pandas())
        present = np.flatnonzero(rows >= 0)
        if len(present):
            ranks[rows[present]] = ranks_in_lists(lists.take(present), target_ids.take(rows[present]))
    return ranks


def most_popular_ranks(target_index: np.ndarray, watched: pa.ListArray,
                       position: np.ndarray | None = None) -> np.ndarray:
    """Rank of each target in a popularity list with the user's watched items removed.

    position[i] is item i's place in the list (0 = first); by default item index i is the
    i-th most-watched item in training, so position = index - 1. The target's rank is its
    position less the watched items placed above it; a watched or unknown target is never
    recommended.
    """
    if position is None:
        position = np.arange(-1, int(max(target_index.max(initial=0), _max_item(watched))) + 1)
    known = target_index > 0
    flat = pc.list_flatten(watched).to_numpy(zero_copy_only=False).astype(np.int64)
    parents = pc.list_parent_indices(watched).to_numpy()
    target_position = position[target_index]
    above = np.bincount(parents[position[flat] < target_position[parents]], minlength=len(target_index))
    watched_target = np.zeros(len(target_index), dtype=bool)
    watched_target[parents[flat == target_index[parents]]] = True
    ranks = target_position - above
    return np.where(known & ~watched_target, ranks, MISS)


def recent_positions(recent_count: np.ndarray) -> np.ndarray:
    """position[i] of each item index in the recently-popular list: by recent_count desc,
    ties by overall popularity (the lower index); recent_count[0] is the padding's."""
    order = np.lexsort((np.arange(len(recent_count)), -recent_count))  # padding sorts with the zeros
    order = order[order != 0]
    position = np.empty(len(recent_count), dtype=np.int64)
    position[order] = np.arange(len(order))
    position[0] = len(recent_count)  # never recommended
    return position


def _max_item(watched: pa.ListArray) -> int:
    flat = pc.list_flatten(watched)
    return int(pc.max(flat).as_py() or 0) if len(flat) else 0


def evaluate(run_dir: str, cfg: Config | None = None, choice_users: int | None = None,
             baseline_users: int | None = None) -> dict[str, Any]:
    """Compute report.json for a finished run; returns it. cfg.spark sets up the SparkSession
    ALS runs in (default: Config()'s); an active session, e.g. a test's, is used as it is.
    choice_users and baseline_users bound the validation users the baselines' settings are
    chosen on and the evaluated users item-kNN and ALS are scored on (default: as many as
    CHOICE_SCORES and BASELINE_SCORES allow over the catalog)."""
    run = RunLayout.of(run_dir)
    prep_dir, recall_dir, report_dir, model_dir = run.prep.root, run.recall.root, run.report.root, run.model.root
    prep = storage.read_manifest(prep_dir)
    recall = storage.read_manifest(recall_dir)
    finished_model = storage.exists(storage.join(model_dir, MANIFEST))
    upstream = {"prep": prep, **({"model": storage.read_manifest(model_dir)} if finished_model else {})}
    storage.check_built_from(recall_dir, recall, upstream)
    started = storage.begin_stage(report_dir, inputs=(prep_dir, recall_dir))
    # first, while nothing else is held: it reads the item vectors and a sample of examples
    effect = example_age_effect(run.root, prep)

    targets = _read(run.prep.eval, ["user_id", "item_id", "item_index"])
    features = _read(run.prep.user_features, ["user_id", "watched", "history"])
    watched = _fill_empty(_lookup(targets, features, "watched"), pa.int32())
    target_index = targets.column("item_index").fill_null(0).to_numpy().astype(np.int64)

    top_k = int(recall["config"]["top_k"])
    recent_days = float(prep["config"].get("recent_days", DEFAULT_RECENT_DAYS))
    num_items, history_len = int(prep["features"]["item_vocab_size"]), int(prep["features"]["history_len"])
    vocab = _read(run.prep.item_vocab, None)
    statistics = ListStatistics(vocab.column("item_id").combine_chunks(), vocab.column("count").to_numpy(),
                                int(recall["index"]["items"]), _fresh_items(run.prep, vocab, recent_days))
    # every evaluated user is kept: one without a recall row counts as a miss
    clock = time.time()
    model_ranks = table_ranks(run.recall.table, targets, statistics)
    model = {**ranking_metrics(model_ranks, max_k=top_k), **bootstrap_intervals(model_ranks),
             **statistics.result()}
    log.info("the model's lists: %d of %d users' targets found in %.1fs", int((model_ranks < MISS).sum()),
             len(model_ranks), time.time() - clock)
    popular_ranks = most_popular_ranks(target_index, watched)
    baselines = {"most_popular": {**ranking_metrics(popular_ranks), **bootstrap_intervals(popular_ranks),
                                  "users": targets.num_rows}}
    if "recent_count" in vocab.column_names:
        recent = np.zeros(num_items, dtype=np.int64)
        recent[vocab.column("index").to_numpy()] = vocab.column("recent_count").to_numpy()
        recent_ranks = most_popular_ranks(target_index, watched, recent_positions(recent))
        baselines["recently_popular"] = {**ranking_metrics(recent_ranks), **bootstrap_intervals(recent_ranks),
                                         "users": targets.num_rows, "days": recent_days}
    validation = _validation_split(run.prep, features, history_len)
    training_watched = features.column("watched").combine_chunks().cast(WATCHED_TYPE)
    # item-kNN and ALS: every candidate setting compared on the same validation users, and
    # both scored on the same evaluated users
    if choice_users is None:
        choice_users = users_within(CHOICE_SCORES, num_items)
    if baseline_users is None:
        baseline_users = users_within(BASELINE_SCORES, num_items)
    choice = None if validation is None else sample_rows(validation.users, choice_users)
    scored = sample_rows(targets.num_rows, baseline_users)
    scored_watched = watched.take(pa.array(scored))
    # a user without serving features has no history: all padding
    history = padded_lists(_lookup(targets.take(pa.array(scored)), features, "history"), history_len).astype(np.int64)
    cfg = cfg or Config()
    if "item_knn" in cfg.report.baselines:
        clock = time.time()
        baselines["item_knn"] = _item_knn(target_index[scored], scored_watched, history, training_watched,
                                          validation, choice, num_items)
        log.info("item-kNN: %d users ranked in %.1fs", len(scored), time.time() - clock)
    if "als" in cfg.report.baselines:
        clock = time.time()
        with _spark(cfg.spark) as spark:
            baselines["als"] = _als(spark, target_index[scored], scored_watched,
                                    _positions(targets, features)[scored], training_watched, validation, choice,
                                    num_items)
        log.info("ALS: %d users ranked in %.1fs", len(scored), time.time() - clock)
    report = {
        "dataset": prep["inputs"]["dataset"],
        "users": targets.num_rows,
        "model_version": recall["model_version"],
        "top_k": top_k,
        "index": {k: v for k, v in recall["index"].items() if k in ("type", "shards", "items")
                  or k.startswith("ann_recall@")},
        "recent_days": recent_days,
        "model": model,
        "baselines": baselines,
        "baseline_settings": {"chosen_on": "defaults" if validation is None else "validation",
                              "validation_users": 0 if choice is None else len(choice),
                              "metric": SELECTION_METRIC},
    }
    if choice is not None and len(choice) < validation.users:
        report["baseline_settings"].update(validation_sample_of=validation.users, sample_seed=SAMPLE_SEED)
    if len(scored) < targets.num_rows:
        report["baseline_sample"] = {"baselines": list(cfg.report.baselines), "users": len(scored),
                                     "of": targets.num_rows, "seed": SAMPLE_SEED}
    if effect is not None:
        report["example_age_effect"] = effect
    storage.write_text(run.report.json, json.dumps(report, indent=2) + "\n")
    metrics_path = run.model.metrics
    metrics = json.loads(storage.read_text(metrics_path)) if storage.exists(metrics_path) else None
    storage.write_text(run.report.html, render(report, metrics, prep, recall))
    storage.finish_stage(report_dir, started, {"inputs": {"prep": prep_dir, "recall": recall_dir},
                                               "built_from": {"prep": prep.get("fingerprint"),
                                                              "recall": recall.get("fingerprint")},
                                               "outputs": ["report.json", "report.html"], "users": targets.num_rows})
    return report


def users_within(scores: int, num_items: int) -> int:
    """The users whose rankings of num_items items take `scores` scores (one at least)."""
    return max(1, scores // max(num_items, 1))


def sample_rows(count: int, at_most: int, seed: int = SAMPLE_SEED) -> np.ndarray:
    """Row numbers of a seeded sample of at most `at_most` of `count` rows, in order; every row
    when there are no more."""
    if at_most < 1:
        raise ValueError(f"a sample of users needs at least 1 user, got at_most={at_most}")
    if count <= at_most:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, at_most, replace=False))


def table_metrics(targets_dir: str, table_dir: str, top_k: int) -> dict[str, Any]:
    """The ranking metrics (with intervals) of any recall table on the held-out targets of
    targets_dir (a prep/eval folder), and "users"; a user without a list counts as a miss.
    Lets two tables, e.g. two nights' lists, be judged on the same users."""
    targets = _read(targets_dir, ["user_id", "item_id"])
    ranks = table_ranks(table_dir, targets)
    return {"users": targets.num_rows, **ranking_metrics(ranks, max_k=top_k), **bootstrap_intervals(ranks)}


@dataclass(frozen=True)
class ValidationSplit:
    """The validation targets (prep/valid) with what was known at their time. Row i <
    `users` of `watched` holds validation user i's watches before the validation watch; the
    rows after it, the training users without a validation watch (all their watches)."""

    targets: np.ndarray  # [users] item index of each user's validation watch
    history: np.ndarray  # [users, history_len] the watches before it, oldest first, 0-padded
    watched: pa.ListArray  # [training users] the validation-time watch matrix

    @property
    def users(self) -> int:
        return len(self.targets)

    def watched_before(self) -> pa.ListArray:
        """The validation users' rows: what their validation target is ranked without."""
        return self.watched.slice(0, self.users)

    def sample(self, rows: np.ndarray) -> tuple[np.ndarray, pa.ListArray, np.ndarray]:
        """The targets, watches before them and histories of the validation users `rows`."""
        return self.targets[rows], self.watched_before().take(pa.array(rows)), self.history[rows]


def _validation_split(prep: PrepLayout, features: pa.Table, history_len: int) -> ValidationSplit | None:
    """prep/valid against user_features (every training user), or None when prep wrote no
    validation split (prep.validation=false, or a run from before it) or an empty one."""
    path = prep.valid
    valid = _read(path, ["user_id", "item_index", "history", "watched"]) if storage.exists(path) else None
    if valid is None or valid.num_rows == 0:
        log.info("%s: no validation split; the baselines keep their default settings", path)
        return None
    valid_users = valid.column("user_id").combine_chunks()
    others = features.filter(pc.invert(pc.is_in(features.column("user_id"), value_set=valid_users)))
    watched = pa.concat_arrays([valid.column("watched").combine_chunks().cast(WATCHED_TYPE),
                                others.column("watched").combine_chunks().cast(WATCHED_TYPE)])
    return ValidationSplit(valid.column("item_index").to_numpy().astype(np.int64),
                           padded_lists(valid.column("history"), history_len), watched)


def _choose(candidates: Sequence[Any], validation_ranks: Callable[[Any], np.ndarray]) -> tuple[Any, list[float]]:
    """The candidate whose ranks of the validation targets have the best SELECTION_METRIC
    (the first of equals: the grids list the cheaper settings first), and every candidate's."""
    scores = [float(per_user(validation_ranks(c), SELECTION_METRIC).mean()) for c in candidates]
    return candidates[int(np.argmax(scores))], scores


def _item_knn(target_index: np.ndarray, watched: pa.ListArray, history: np.ndarray, training_watched: pa.ListArray,
              validation: ValidationSplit | None, choice: np.ndarray | None, num_items: int) -> dict[str, Any]:
    """item-kNN (report.baselines) on the given evaluated users, with the neighbourhoods of
    every training user's watches; R and N chosen on the validation users `choice`, where
    there is a validation split, with the neighbourhoods of every training user's watches
    known then (built once with the widest N: a narrower one is the first N of each row).
    Without one: R = KNN_RECENT_DEFAULT and every neighbour."""
    if validation is None:
        recent, tried = KNN_RECENT_DEFAULT, []
        rows = recent_items(history, recent)
        neighbours = widest_neighbourhood(num_items, rows)
    else:
        targets, before, last = validation.sample(choice)
        # the neighbourhoods of the sampled users' recent watches are all the ranking reads
        rows = recent_items(last, max(KNN_RECENT_GRID))
        widest = widest_neighbourhood(num_items, rows)
        neighbourhoods = Neighbourhoods.build(validation.watched, num_items, widest, KNN_PAIRS_PER_BLOCK, rows=rows)
        grid = list(itertools.product(KNN_RECENT_GRID, sorted({n for n in KNN_NEIGHBOURS_GRID if n < widest} |
                                                              {widest})))
        (recent, neighbours), scores = _choose(
            grid, lambda point: item_knn_ranks(targets, before, last, neighbourhoods, *point, num_items))
        del neighbourhoods  # one set in memory at a time
        tried = [{"recent": r, "neighbours": n, SELECTION_METRIC: score} for (r, n), score in zip(grid, scores)]
        log.info("item-kNN: the last %d watches and up to %d neighbours each, chosen on %d of %d validation users "
                 "(HR@50 %.4f; %d settings from %.4f)", recent, neighbours, len(choice), validation.users,
                 max(scores), len(grid), min(scores))
        rows = recent_items(history, recent)
    neighbourhoods = Neighbourhoods.build(training_watched, num_items, neighbours, KNN_PAIRS_PER_BLOCK, rows=rows)
    ranks = item_knn_ranks(target_index, watched, history, neighbourhoods, recent, neighbours, num_items)
    return {**ranking_metrics(ranks), **bootstrap_intervals(ranks), "users": int(len(target_index)),
            "recent": recent, "neighbours": neighbours, "validation": tried}


def widest_neighbourhood(num_items: int, rows: np.ndarray) -> int:
    """The most neighbours item-kNN keeps for each of `rows`: every other item, as far as
    KNN_NEIGHBOUR_ENTRIES allows, and never fewer than the grid's widest."""
    return max(1, min(num_items - 1, max(max(KNN_NEIGHBOURS_GRID), KNN_NEIGHBOUR_ENTRIES // max(len(rows), 1))))


def _als(spark: SparkSession, target_index: np.ndarray, watched: pa.ListArray, feature_rows: np.ndarray,
         training_watched: pa.ListArray, validation: ValidationSplit | None, choice: np.ndarray | None,
         num_items: int) -> dict[str, Any]:
    """ALS (report.als) on the given evaluated users (feature_rows: each one's row of
    training_watched, -1 for none): each grid point fitted on the whole validation-time matrix
    and judged on the validation targets of the users `choice`, the best refitted on every
    training watch."""
    params, tried = als.DEFAULT, []
    if validation is not None:
        targets, before, _ = validation.sample(choice)
        with als.ratings_frame(spark, validation.watched) as ratings:
            def validation_ranks(point: als.AlsParams) -> np.ndarray:
                users, items = als.fit_factors(ratings, len(validation.watched), num_items, point)
                return als.als_ranks(users[choice], items, targets, before)

            params, scores = _choose(als.GRID, validation_ranks)
        tried = [{**point.to_dict(), SELECTION_METRIC: score} for point, score in zip(als.GRID, scores)]
        log.info("ALS: %s, chosen on %d of %d validation users (%s %.4f)", params, len(choice), validation.users,
                 SELECTION_METRIC, max(scores))
    with als.ratings_frame(spark, training_watched) as ratings:
        users, items = als.fit_factors(ratings, len(training_watched), num_items, params)
    # a user without serving features watched nothing in training: the zero vector, as in ALS
    user_factors = np.where((feature_rows >= 0)[:, None], users[feature_rows], 0).astype(np.float32)
    ranks = als.als_ranks(user_factors, items, target_index, watched)
    return {**ranking_metrics(ranks), **bootstrap_intervals(ranks), "users": int(len(target_index)),
            **params.to_dict(), "max_iter": als.MAX_ITER, "validation": tried}


@contextmanager
def _spark(cfg: SparkConfig) -> Iterator[SparkSession]:
    """The active SparkSession (a test's, or one the caller made) as it is, else a new one
    from cfg, stopped when done."""
    from pyspark.sql import SparkSession

    from core.spark_session import spark_session

    active = SparkSession.getActiveSession()
    spark = active or spark_session(cfg, "watchnext-evaluate")
    try:
        yield spark
    finally:
        if active is None:
            spark.stop()


def _fresh_items(prep: PrepLayout, vocab: pa.Table, recent_days: float) -> np.ndarray | None:
    """Per vocabulary row: was the item uploaded within the last recent_days of the training
    window (None when the catalog has no upload times)."""
    ages = _read(prep.item_features, ["index", "age_days"])
    if ages.column("age_days").null_count == ages.num_rows:
        return None
    fresh_index = ages.filter(pc.less_equal(ages.column("age_days"), recent_days)).column("index")
    return pc.is_in(vocab.column("index"), value_set=fresh_index.combine_chunks()).to_numpy(zero_copy_only=False)


def _read(path: str, columns: list[str] | None) -> pa.Table:
    return storage.parquet_dataset(path).to_table(columns=columns)


def _lookup(left: pa.Table, right: pa.Table, column: str) -> pa.Array:
    """right[column] for each row of left, matched on user_id (null where right has none).

    Arrow's hash join does not carry list columns, so the match is a hash lookup of row
    positions followed by a take."""
    positions = _positions(left, right)
    positions = pa.array(positions, mask=positions < 0)
    return right.column(column).combine_chunks().take(positions)


def _positions(left: pa.Table, right: pa.Table) -> np.ndarray:
    """The row of right with each row of left's user_id, -1 where right has none."""
    return pd.Index(right.column("user_id").to_pandas()).get_indexer(left.column("user_id").to_pandas())


def _fill_empty(array: pa.ListArray, value_type: pa.DataType) -> pa.ListArray:
    """A list column with null rows (users without a match) turned into empty lists."""
    if array.null_count == 0:
        return array
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy()
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pc.list_flatten(array).cast(value_type))
