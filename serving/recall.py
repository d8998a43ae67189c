"""The recall stage: serving features -> user vectors -> FAISS top-K -> recall table, and the
similar-item table.

The item vectors go into a sharded FAISS index (serving.index) saved under recall/index/
with its manifest. Ray Data streams user_features/ through a pool of scoring actors; each
actor loads the user tower and the index once (`__init__`) and scores a batch of users per
call (`__call__`). An approximate index is checked against exact search on a sample of users
and its recall@K goes into the stage's manifest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import time
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import ray
import ray.data
import torch

from ray_train.data import Widths, to_batch
from ray_train.export import load_user_tower
from serving.channels import CHANNELS, Channels, CoWatch, Fusion, choose, fusion_grid, list_metrics
from serving.cowatch import recent_items
from serving.index import (IndexParams, ShardedIndex, item_keys, item_matrix, normalized, recall_at_k,
                           search_width_name, tune_search, user_queries)
from serving.search import search_excluding
from core import storage
from core.config import Config, RecallConfig
from core.contract import RECALL, SIMILAR, padded_lists
from core.layout import RecallLayout, RunLayout
from core.ray_cluster import start_ray

log = logging.getLogger(__name__)

SIMILAR_BATCH = 16_384  # items per similar-item search
BATCHES_PER_FILE = 8  # users' lists per file of the recall table, in scoring batches


class RecallScorer:
    """One Ray Data actor: user tower + index loaded once, a batch of users per call."""

    def __init__(self, model_dir: str, recall_dir: str, widths: dict, top_k: int,
                 exclude_watched: bool, faiss_threads: int, run_date: str, channels: dict | None = None):
        faiss.omp_set_num_threads(faiss_threads)
        torch.set_num_threads(faiss_threads)
        self.tower, meta = load_user_tower(model_dir)
        self.model_version = meta["model_version"]
        recall = RecallLayout(recall_dir)
        self.index = ShardedIndex.load(recall.index)
        self.row_item_index, self.row_item_id = item_keys(recall.index_items)
        self.widths = Widths(**widths)
        self.top_k = top_k
        self.exclude_watched = exclude_watched
        self.run_date = run_date
        self.channels = None
        if channels:
            self.channels = Channels.load(recall.channels, Fusion.of(channels["fusion"]), channels["recent"],
                                          self.row_item_index, self.row_item_id)

    def __call__(self, users: pa.Table) -> pa.Table:
        vectors = user_vectors(self.tower, users, self.widths)
        excluded = users.column("watched").combine_chunks()
        if not self.exclude_watched:
            excluded = pa.array([[]] * users.num_rows, pa.list_(pa.int32()))
        rows, scores, counts = search_excluding(
            self.index, user_queries(vectors), self.row_item_index, excluded, self.top_k
        )
        n = users.num_rows
        if self.channels is None:
            item_ids, sources = self.row_item_id[rows], np.zeros(rows.shape, dtype=np.int8)
        else:
            model = np.where(np.arange(rows.shape[1])[None, :] < counts[:, None], self.row_item_index[rows], 0)
            history = padded_lists(users.column("history"), self.widths.history_len)
            items, scores, sources = self.channels.merged(model, history, excluded, self.top_k)
            counts = (items > 0).sum(1)
            item_ids = self.channels.item_id[items]
        return pa.table(
            {
                "user_id": users.column("user_id"),
                "item_ids": ranked_lists(item_ids, counts, pa.string()),
                "scores": ranked_lists(scores, counts, pa.float32()),
                "model_version": pa.array([self.model_version] * n, pa.string()),
                "run_date": pa.array([self.run_date] * n, pa.string()),
                "channels": ranked_lists(np.array(CHANNELS, dtype=object)[np.maximum(sources, 0)], counts,
                                         pa.string()),
            },
            schema=RECALL,
        )


def user_vectors(tower: torch.nn.Module, users: pa.Table, widths: Widths) -> np.ndarray:
    """The user tower's vectors of a batch of serving features, at example age 0 (the
    vector is computed for "now", once per user)."""
    batch = to_batch(users, widths, with_labels=False)
    with torch.no_grad():
        return tower(*batch.features()).numpy()


def ranked_lists(values: np.ndarray, counts: np.ndarray, value_type: pa.DataType) -> pa.ListArray:
    """Row i's first counts[i] values as one list per row."""
    valid = np.arange(values.shape[1])[None, :] < counts[:, None]
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values[valid], value_type))


def run_recall(run_dir: str, cfg: Config) -> dict[str, Any]:
    run = RunLayout.of(run_dir)
    prep_dir, model_dir, recall_dir = run.prep.root, run.model.root, run.recall.root
    prep, model = storage.read_manifest(prep_dir), storage.read_manifest(model_dir)
    storage.check_built_from(model_dir, model, {"prep": prep})
    model_version = model["model_version"]
    rc = cfg.recall
    run_date = rc.run_date or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    started = storage.begin_stage(recall_dir, inputs=(prep_dir, model_dir, rc.exclude_items))
    faiss.omp_set_num_threads(os.cpu_count() or 1)  # the driver's own searches use every core

    widths = Widths.from_prep_features(prep["features"])
    vectors, item_ids, excluded, search_tuning = _build_index(run, rc, widths, model_version, cfg.train.seed)
    build_seconds = time.time() - started
    index = ShardedIndex.load(run.recall.index)  # as the actors will: checksums checked
    start_ray(cfg.ray, min_cpus=local_actors(rc) * rc.faiss_threads + 1)  # the actors, and Ray Data's reads beside them
    search_started = time.time()
    channels, channel_summary = None, None
    if len(rc.channels) > 1:
        channels, channel_summary = _choose_channels(run, index, widths, rc, cfg.train.seed)
    scoring_started = time.time()
    users = _write_recall_table(run, widths, rc, run_date, channels)
    seconds = time.time() - search_started
    log.info("%d users' lists written in %.1fs", users, time.time() - scoring_started)

    index_summary = {"type": index.params.kind, "shards": len(index.shards), "items": int(index.ntotal),
                     "dim": int(vectors.shape[1]), "params": dataclasses.asdict(index.params),
                     "build_seconds": build_seconds, "excluded_items": excluded}
    if search_tuning is not None:
        k = f"ann_recall@{min(rc.top_k, index.ntotal)}"
        index_summary.update({k: search_tuning[k], "ann_check_users": search_tuning["queries"],
                              "search_tuning": search_tuning})
    extra = {}
    if channel_summary is not None:
        extra["channels"] = {**channel_summary, "slots": _slot_shares(run.recall.table)}
    if rc.similar_items:
        extra["similar"] = write_similar_items(vectors, item_ids, similar_search(index.params, rc), rc, model_version,
                                               run_date, run.recall.similar_partition(run_date), cfg.train.seed)
    return storage.finish_stage(
        recall_dir,
        started,
        {
            "inputs": {"prep": prep_dir, "model": model_dir},
            "built_from": {"prep": prep.get("fingerprint"), "model": model.get("fingerprint")},
            "config": rc.model_dump(mode="json"),
            "model_version": model_version,
            "run_date": run_date,
            "users": users,
            "seconds": seconds,
            "users_per_second": users / max(seconds, 1e-9),
            "index": index_summary,
            **extra,
            "outputs": ["table", "index", *extra],
        },
    )


def _build_index(run: RunLayout, rc: RecallConfig, widths: Widths, model_version: str,
                 seed: int) -> tuple[np.ndarray, np.ndarray, int, dict | None]:
    """The item vectors (excluded items left out) into a sharded index, an approximate one's
    search width chosen on a sample of users (serving.index.tune_search), saved in
    recall/index/; returns (vectors, item ids of the index rows, how many items were
    excluded, what the search tuning measured or None)."""
    started = time.time()
    vectors, item_index, item_ids = item_matrix(run.model.item_embeddings)
    keep = ~np.isin(item_ids, read_item_list(rc.exclude_items)) if rc.exclude_items else np.ones(len(item_ids), bool)
    vectors, item_index, item_ids = vectors[keep], item_index[keep], item_ids[keep]
    params = index_params(rc, len(vectors), vectors.shape[1])
    index = ShardedIndex.build(vectors, params, rc.shards, seed=seed)
    tuning, searched = None, ""
    if params.kind != "flat" and rc.ann_check_users:
        queries = sample_user_queries(run.prep.user_features, run.model.root, widths, rc.ann_check_users, seed)
        k = min(rc.top_k, index.ntotal)
        tuning = tune_search(index, vectors, queries, k, rc.ann_target)
        searched = f", {tuning['parameter']} {tuning['chosen']} for ANN recall@{k} {tuning[f'ann_recall@{k}']:.3f}"
        if not tuning["reached"]:
            log.warning("recall: the %s index reaches ANN recall@%d %.3f at its widest search (%s %d), under "
                        "recall.ann_target %.2f; more memory keeps vectors whole (recall.index_memory_gb), more "
                        "bytes per vector help ivf_pq (recall.pq_m), and recall.index_type=flat is exact",
                        params.kind, k, tuning[f"ann_recall@{k}"], tuning["parameter"], tuning["chosen"],
                        rc.ann_target)
    _write_table(pa.table({"index": item_index, "item_id": pa.array(item_ids, pa.string())}),
                 run.recall.index_items)
    index.save(run.recall.index, model_version, search_tuning=tuning)
    log.info("%s index over %d items in %d shard(s)%s: %.1fs", index.params.kind, len(vectors), len(index.shards),
             searched, time.time() - started)
    return vectors, item_ids, int((~keep).sum()), tuning


def local_actors(rc: RecallConfig) -> int:
    """The actors a local Ray instance is started for: the configured ones, or one per core."""
    return rc.actors or max(1, (os.cpu_count() or 1) // rc.faiss_threads)


def actor_pool_size(rc: RecallConfig, memory: int) -> int:
    """The configured actors, as many as the running cluster can hold beside one CPU for Ray
    Data's read and write tasks: a pool that takes every CPU leaves the reads unscheduled and
    the stage waits for ever (e.g. when training started a 2-CPU local instance before).
    recall.actors=0: all that the CPUs hold, and each node's memory at `memory` bytes an actor."""
    cpus = int(ray.cluster_resources().get("CPU", 1))
    fits = max(1, (cpus - 1) // rc.faiss_threads)
    if rc.actors == 0:
        held = sum(int(node["Resources"].get("memory", 0) // max(memory, 1)) for node in ray.nodes() if node["Alive"])
        return max(1, min(fits, held))
    if rc.actors > fits:
        log.warning("recall.actors=%d x faiss_threads=%d needs %d CPUs beside the reads; the cluster has %d: "
                    "%d actor(s)", rc.actors, rc.faiss_threads, rc.actors * rc.faiss_threads + 1, cpus, fits)
    return min(rc.actors, fits)


# Python, torch and FAISS themselves, and a batch in flight with its channels' candidates: a
# scorer of 1M items with channels held up to 1.7 GiB beyond what it loads (batches of 4,096
# users); Ray Data warns of an actor that holds more than it asked for
ACTOR_OVERHEAD_BYTES = 2 << 30


def actor_memory(run: RunLayout, channels: dict | None) -> int:
    """The memory a scoring actor asks Ray for: what it loads (recall/index/: the shards and
    the item table; the user tower; recall/channels/: the co-watch neighbours, mapped, and the
    popular orders) and its overhead; at most the largest node's, so that the pool always fits."""
    loaded = sum(storage.size_bytes(path) for path in (run.recall.index, run.model.user_tower))
    loaded += storage.size_bytes(run.recall.channels) if channels else 0
    wanted = loaded + ACTOR_OVERHEAD_BYTES
    largest = max((node["Resources"].get("memory", 0) for node in ray.nodes() if node["Alive"]), default=0)
    if largest and wanted > largest:
        log.warning("a recall actor needs ~%.1f GiB (its index, tower and channels); the largest node offers "
                    "%.1f GiB: it asks for that", wanted / 2**30, largest / 2**30)
        return int(largest)
    return int(wanted)


def _write_recall_table(run: RunLayout, widths: Widths, rc: RecallConfig, run_date: str,
                        channels: dict | None = None) -> int:
    """Serving features through the actor pool into recall/table/run_date=D/; the users written."""
    table_dir = run.recall.table_partition(run_date)
    # the reader's blocks hold a few hundred thousand users each, and an actor takes a whole
    # block at a time: with few blocks one actor can be left with the last while the others
    # idle. Blocks of one batch keep every actor busy to the end; the files stay large.
    memory = actor_memory(run, channels)
    actors = actor_pool_size(rc, memory)
    log.info("scoring with %d actor(s) of %d thread(s)", actors, rc.faiss_threads)
    ray.data.read_parquet(run.prep.user_features).repartition(target_num_rows_per_block=rc.batch_size).map_batches(
        RecallScorer,
        fn_constructor_kwargs={
            "model_dir": run.model.root,
            "recall_dir": run.recall.root,
            "widths": dataclasses.asdict(widths),
            "top_k": rc.top_k,
            "exclude_watched": rc.exclude_watched,
            "faiss_threads": rc.faiss_threads,
            "run_date": run_date,
            "channels": channels,
        },
        batch_size=rc.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=rc.faiss_threads,
        memory=memory,
    ).write_parquet(table_dir, min_rows_per_file=BATCHES_PER_FILE * rc.batch_size)
    return storage.parquet_dataset(table_dir).count_rows()


def _choose_channels(run: RunLayout, index: ShardedIndex, widths: Widths, rc: RecallConfig,
                     seed: int) -> tuple[dict, dict]:
    """The other channels' inputs (the co-watch neighbours of every training user's watches;
    the popular and fresh orders), written to recall/channels/, and the fusion setting chosen
    on a seeded sample of rc.channel_users validation users, everything the way it was known
    at their validation watch: (the actors' spec, the manifest's summary)."""
    started = time.time()
    vocab = storage.parquet_dataset(run.prep.item_vocab).to_table()
    num_items = int(storage.read_manifest(run.prep.root)["features"]["item_vocab_size"])
    features = storage.parquet_dataset(run.prep.user_features).to_table(columns=["user_id", "watched"])
    watched = features.column("watched").combine_chunks()
    row_item_index, row_item_id = item_keys(run.recall.index_items)
    count = np.zeros(num_items, dtype=np.int64)
    count[vocab.column("index").to_numpy()] = vocab.column("count").to_numpy()
    recent = None
    if "recent_count" in vocab.column_names:
        recent = np.zeros(num_items, dtype=np.int64)
        recent[vocab.column("index").to_numpy()] = vocab.column("recent_count").to_numpy()
    every = Fusion.of({"weights": {name: 1.0 for name in rc.channels}, "offset": 0})
    with_fresh = "fresh" in rc.channels and recent is not None
    Channels.of(every, rc.channel_recent, row_item_index, row_item_id,
                cowatch=CoWatch.build(watched, num_items, rc.channel_neighbours) if "item2item" in rc.channels else None,
                popular=_by_count(count), fresh=_by_count(recent) if with_fresh else None).save(run.recall.channels)
    valid_path = run.prep.valid
    valid = storage.parquet_dataset(valid_path).to_table() if storage.exists(valid_path) else None
    if valid is None or valid.num_rows == 0:
        log.warning("recall.channels: no validation split (prep.validation=false) to weigh the channels on; "
                    "the lists are the model's alone")
        fusion = fusion_grid(rc.channels)[0]
        return ({"fusion": fusion.to_dict(), "recent": rc.channel_recent},
                {"chosen": fusion.to_dict(), "validation_users": 0})
    sample = np.sort(np.random.default_rng(seed).choice(valid.num_rows, min(rc.channel_users, valid.num_rows),
                                                        replace=False))
    users = valid.take(pa.array(sample))
    before = users.column("watched").combine_chunks()
    # what was known at the validation watches: their users' watches before them, the others' all
    valid_ids = valid.column("user_id").combine_chunks()
    others = watched.filter(pc.invert(pc.is_in(features.column("user_id").combine_chunks(), value_set=valid_ids)))
    then = pa.concat_arrays([valid.column("watched").combine_chunks().cast(watched.type), others.cast(watched.type)])
    tower, _ = load_user_tower(run.model.root)
    rows, _, counts = search_excluding(index, user_queries(user_vectors(tower, users, widths)), row_item_index,
                                       before, rc.top_k)
    model = np.where(np.arange(rows.shape[1])[None, :] < counts[:, None], row_item_index[rows], 0)
    then_count = np.bincount(pc.list_flatten(then).to_numpy().astype(np.int64), minlength=num_items)
    # a validation watch is its user's latest training watch: the recent counts without them
    targets = valid.column("item_index").to_numpy().astype(np.int64)
    then_recent = None if recent is None else np.maximum(recent - np.bincount(targets, minlength=num_items), 0)
    history = padded_lists(users.column("history"), widths.history_len)
    # the neighbours of the sampled users' recent watches are all the choice reads
    chooser = Channels.of(
        every, rc.channel_recent, row_item_index, np.full(len(row_item_index), "", dtype=object),
        cowatch=CoWatch.build(then, num_items, rc.channel_neighbours, rows=recent_items(history, rc.channel_recent))
        if "item2item" in rc.channels else None,
        popular=_by_count(then_count), fresh=_by_count(then_recent) if with_fresh else None)
    lists = chooser.lists(model, history, before, rc.top_k)
    targets = targets[sample]
    at = min(VALIDATION_AT, rc.top_k)
    fusion, merged, tried = choose(lists, targets, rc.channels, rc.top_k, at)
    alone = {name: list_metrics(ranked_items, targets, at) for name, ranked_items in lists.items()}
    log.info("recall.channels: %s chosen on %d validation users (NDCG@%d %.4f, HR@%d %.4f; HR@%d alone: %s) in %.1fs",
             fusion.to_dict(), len(sample), at, merged[f"ndcg@{at}"], at, merged[f"hr@{at}"], at,
             ", ".join(f"{n} {v[f'hr@{at}']:.4f}" for n, v in alone.items()), time.time() - started)
    return ({"fusion": fusion.to_dict(), "recent": rc.channel_recent},
            {"chosen": fusion.to_dict(), "validation_users": len(sample), "metric": f"ndcg@{at}",
             "merged": merged, "alone": alone, "validation": tried})


# the channels' weights are chosen by NDCG@50 (serving.channels.choose): the settings merge the
# same lists, and the hit rate alone cannot tell those that place the targets higher
VALIDATION_AT = 50
POPULAR_KEPT = 100_000  # items of the popular and fresh orders an actor holds


def _by_count(count: np.ndarray) -> np.ndarray:
    """Item indices by count, highest first (ties: the lower index), padding and unwatched
    items left out; the first POPULAR_KEPT."""
    order = np.lexsort((np.arange(len(count)), -count))
    order = order[count[order] > 0][:POPULAR_KEPT]
    return order[order > 0]


def _slot_shares(table_dir: str) -> dict[str, float]:
    """Each channel's share of the recall table's slots, the table read a batch at a time."""
    counts: dict[str, int] = {}
    for batch in storage.parquet_dataset(table_dir).to_batches(columns=["channels"]):
        for entry in pc.value_counts(pc.list_flatten(batch.column("channels"))).to_pylist():
            counts[entry["values"]] = counts.get(entry["values"], 0) + entry["counts"]
    total = max(sum(counts.values()), 1)
    return {name: counts[name] / total for name in CHANNELS if name in counts}


def index_params(rc: RecallConfig, num_items: int, dim: int) -> IndexParams:
    """recall.index_type and its parameters, "auto" decided for this corpus."""
    return IndexParams.resolve(
        rc.index_type, num_items, dim, rc.index_memory_gb, nlist=rc.nlist, nprobe=rc.nprobe, pq_m=rc.pq_m,
        hnsw_m=rc.hnsw_m, ef_construction=rc.ef_construction, ef_search=rc.ef_search,
        train_sample=rc.index_train_sample,
    )


def read_item_list(path: str) -> np.ndarray:
    """Item ids from a Parquet file or folder (column item_id) or a text file, one per line."""
    if not storage.exists(path):
        raise FileNotFoundError(f"recall.exclude_items: {path} does not exist")
    fs, local = storage.filesystem(path)
    if path.endswith(".parquet") or fs.get_file_info(local).type.name == "Directory":
        table = pads.dataset(local, filesystem=fs, format="parquet").to_table()
        if "item_id" not in table.column_names:
            raise ValueError(f"recall.exclude_items: {path} has no item_id column (it has {table.column_names})")
        return table.column("item_id").cast(pa.string()).to_numpy(zero_copy_only=False)
    lines = [line.strip() for line in storage.read_text(path).splitlines()]
    return np.array([line for line in lines if line], dtype=object)


def sample_user_queries(user_features: str, model_dir: str, widths: Widths, users: int, seed: int) -> np.ndarray:
    """The index queries of a seeded sample of the users of user_features."""
    total = storage.parquet_dataset(user_features).count_rows()
    sample = np.sort(np.random.default_rng(seed).choice(total, min(users, total), replace=False))
    tower, _ = load_user_tower(model_dir)
    return user_queries(user_vectors(tower, storage.take_rows(user_features, sample), widths))


def similar_search(tuned: IndexParams, rc: RecallConfig) -> IndexParams:
    """The similar-item table's search: the width chosen on user queries, never narrower than
    the configured one. An item's own neighbourhood needs a wider search than a user's (the
    20 nearest of 1M items: 0.313 found at nprobe 32, where users' searches found 0.995), so
    the narrower width that users' searches may come down to is not given to it."""
    name = search_width_name(tuned.kind)
    return dataclasses.replace(tuned, **{name: max(getattr(tuned, name), getattr(rc, name))})


def write_similar_items(vectors: np.ndarray, item_ids: np.ndarray, params: IndexParams, rc: RecallConfig,
                        model_version: str, run_date: str, out_dir: str, seed: int) -> dict[str, Any]:
    """recall/similar/: each item's `similar_items` nearest items by cosine of the item
    vectors (the bias left out: similarity is not popularity), itself excluded, through an
    index of the same type as the recall index."""
    started = time.time()
    unit = normalized(vectors[:, :-1])
    index = ShardedIndex.build(unit, params, rc.shards, seed=seed)
    k = min(rc.similar_items, len(unit) - 1)
    sample = np.zeros(0, dtype=np.int64)  # items whose rows are checked against an exact scan
    if params.kind != "flat" and rc.ann_check_users:
        sample = np.sort(np.random.default_rng(seed).choice(len(unit), min(rc.ann_check_users, len(unit)),
                                                            replace=False))
    parts, sampled_rows = [], []
    for lo in range(0, len(unit), SIMILAR_BATCH):
        hi = min(lo + SIMILAR_BATCH, len(unit))
        scores, rows = index.search(unit[lo:hi], k + 1)
        sampled_rows.append(rows[sample[(sample >= lo) & (sample < hi)] - lo])
        # the item itself (usually first) and FAISS's empty slots go; stable keeps the order
        keep = (rows >= 0) & (rows != np.arange(lo, hi)[:, None])
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        counts = np.minimum(keep.sum(1), k)
        parts.append(pa.table(
            {
                "item_id": pa.array(item_ids[lo:hi], pa.string()),
                "similar_item_ids": ranked_lists(item_ids[np.take_along_axis(np.maximum(rows, 0), order, 1)],
                                                 counts, pa.string()),
                "scores": ranked_lists(np.take_along_axis(scores, order, 1), counts, pa.float32()),
                "model_version": pa.array([model_version] * (hi - lo), pa.string()),
                "run_date": pa.array([run_date] * (hi - lo), pa.string()),
            },
            schema=SIMILAR,
        ))
    _write_table(pa.concat_tables(parts), storage.join(out_dir, "part-00000.parquet"))
    checked, measured = {}, ""
    if len(sample):
        checked = {f"ann_recall@{k}": similar_recall(unit, sample, np.concatenate(sampled_rows), k),
                   "ann_check_items": len(sample)}
        measured = f" (ANN recall@{k} {checked[f'ann_recall@{k}']:.3f} on {len(sample)} items)"
    seconds = time.time() - started
    log.info("similar items of %d items written in %.1fs%s", len(unit), seconds, measured)
    return {"items": len(unit), "k": k, **checked, "seconds": seconds}


def similar_recall(unit: np.ndarray, sample: np.ndarray, found: np.ndarray, k: int) -> float:
    """The mean share of each sampled item's exact k nearest items (itself left out) among the
    k + 1 rows the table's search `found` for it: recall's search width is chosen on user
    queries, and items' own neighbourhoods can need a wider one."""
    _, exact = ShardedIndex.build(unit, IndexParams("flat")).search(unit[sample], k + 1)
    others = lambda rows: [r[r != item][:k] for r, item in zip(rows, sample)]  # noqa: E731
    return recall_at_k(others(found), others(exact), k)


def _write_table(table: pa.Table, path: str) -> None:
    fs, local = storage.filesystem(path)
    fs.create_dir(os.path.dirname(local), recursive=True)
    pq.write_table(table, local, filesystem=fs)
