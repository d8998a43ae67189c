"""The recall stage: serving features -> user vectors -> FAISS top-K -> recall table.

Ray Data streams user_features/ through a pool of scoring actors; each actor loads the user
tower and the index once (`__init__`) and scores a batch of users per call (`__call__`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import ray
import ray.data
import torch

from ray_train.data import Widths, to_batch
from ray_train.export import ITEM_EMBEDDINGS_FILE, load_user_tower
from ray_train.trainer import start_ray
from serving.index import (
    INDEX_FILE,
    build_flat_index,
    item_keys,
    item_matrix,
    load_index,
    save_index,
    user_queries,
)
from serving.search import search_excluding
from watchnext import storage
from watchnext.config import Config
from watchnext.contract import RECALL

log = logging.getLogger(__name__)


class RecallScorer:
    """One Ray Data actor: user tower + index loaded once, a batch of users per call."""

    def __init__(self, model_dir: str, index_path: str, widths: dict, top_k: int,
                 exclude_watched: bool, faiss_threads: int, run_date: str):
        faiss.omp_set_num_threads(faiss_threads)
        torch.set_num_threads(faiss_threads)
        self.tower, meta = load_user_tower(model_dir)
        self.model_version = meta["model_version"]
        self.index = load_index(index_path)
        self.row_item_index, self.row_item_id = item_keys(storage.join(model_dir, ITEM_EMBEDDINGS_FILE))
        self.widths = Widths(**widths)
        self.top_k = top_k
        self.exclude_watched = exclude_watched
        self.run_date = run_date

    def __call__(self, users: pa.Table) -> pa.Table:
        # example age 0: the user vector is computed for "now", once per user
        batch = to_batch(users, self.widths, with_labels=False)
        with torch.no_grad():
            vectors = self.tower(*batch.features()).numpy()
        excluded = users.column("watched").combine_chunks()
        if not self.exclude_watched:
            excluded = pa.array([[]] * users.num_rows, pa.list_(pa.int32()))
        rows, scores, counts = search_excluding(
            self.index, user_queries(vectors), self.row_item_index, excluded, self.top_k
        )
        valid = np.arange(rows.shape[1])[None, :] < counts[:, None]
        offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
        item_ids = pa.ListArray.from_arrays(offsets, pa.array(self.row_item_id[rows[valid]], pa.string()))
        item_scores = pa.ListArray.from_arrays(offsets, pa.array(scores[valid], pa.float32()))
        n = users.num_rows
        return pa.table(
            {
                "user_id": users.column("user_id"),
                "item_ids": item_ids,
                "scores": item_scores,
                "model_version": pa.array([self.model_version] * n, pa.string()),
                "run_date": pa.array([self.run_date] * n, pa.string()),
            },
            schema=RECALL,
        )


def run_recall(run_dir: str, cfg: Config) -> dict[str, Any]:
    run_dir = storage.absolute(run_dir)
    prep_dir, model_dir = storage.join(run_dir, "prep"), storage.join(run_dir, "model")
    recall_dir = storage.join(run_dir, "recall")
    prep = storage.read_manifest(prep_dir)
    model = storage.read_manifest(model_dir)
    rc = cfg.recall
    run_date = rc.run_date or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    started = storage.begin_stage(recall_dir)

    vectors, _, _ = item_matrix(storage.join(model_dir, ITEM_EMBEDDINGS_FILE))
    index_path = storage.join(recall_dir, "index", INDEX_FILE)
    save_index(build_flat_index(vectors), index_path)

    start_ray(cfg.ray)
    users = ray.data.read_parquet(storage.join(prep_dir, "user_features"))
    table_dir = storage.join(recall_dir, "table", f"run_date={run_date}")
    search_started = time.time()
    users.map_batches(
        RecallScorer,
        fn_constructor_kwargs={
            "model_dir": model_dir,
            "index_path": index_path,
            "widths": dataclasses.asdict(Widths.from_prep_features(prep["features"])),
            "top_k": rc.top_k,
            "exclude_watched": rc.exclude_watched,
            "faiss_threads": rc.faiss_threads,
            "run_date": run_date,
        },
        batch_size=rc.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=rc.actors),
        num_cpus=rc.faiss_threads,
    ).write_parquet(table_dir)
    seconds = time.time() - search_started
    written = ray.data.read_parquet(table_dir).count()
    return storage.finish_stage(
        recall_dir,
        started,
        {
            "inputs": {"prep": prep_dir, "model": model_dir},
            "config": rc.model_dump(mode="json"),
            "model_version": model["model_version"],
            "run_date": run_date,
            "users": written,
            "users_per_second": written / max(seconds, 1e-9),
            "index": {"type": "Flat", "shards": 1, "items": int(len(vectors)), "dim": int(vectors.shape[1])},
            "outputs": ["table", "index"],
        },
    )
