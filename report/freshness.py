"""Freshness of a night's model: do items first seen tonight get vectors and get recalled?

An item new tonight is one tonight's vocabulary holds and the previous night's does not (on
a cold start: one whose first watch in the window is on the night's last day). Each has an
id row appended to the vocabulary (stable indices) and so an output embedding, a row in the
index, and a chance to be recalled like any other item.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core import storage
from core.layout import RunLayout


def new_items(run_dir: str, previous_run: str | None) -> dict[str, Any]:
    """How many items are new in run_dir, and how many of them have an embedding, are in
    the index, and appear in at least one recall list (with their share of the list slots)."""
    run = RunLayout(run_dir)
    vocab = _table(run.prep.item_vocab, ["item_id", "first_ts"])
    if previous_run is not None:
        known = _table(RunLayout(previous_run).prep.item_vocab, ["item_id"]).column("item_id").combine_chunks()
        new = pc.filter(vocab.column("item_id"), pc.invert(pc.is_in(vocab.column("item_id"), value_set=known)))
    else:
        last_day = pc.floor_temporal(pc.max(vocab.column("first_ts")), unit="day")
        new = pc.filter(vocab.column("item_id"), pc.greater_equal(vocab.column("first_ts"), last_day))
    new = new.combine_chunks() if isinstance(new, pa.ChunkedArray) else new
    embedded = _table(run.model.item_embeddings, ["item_id"]).column("item_id")
    indexed = _table(run.recall.index_items, ["item_id"]).column("item_id")
    slots = pc.list_flatten(_table(run.recall.table, ["item_ids"]).column("item_ids"))
    in_lists = pc.is_in(slots, value_set=new).to_numpy(zero_copy_only=False)
    return {
        "items": len(new),
        "with_embeddings": _count_in(new, embedded),
        "indexed": _count_in(new, indexed),
        "recalled": int(pc.count_distinct(pc.filter(slots, pa.array(in_lists))).as_py()) if len(slots) else 0,
        "share_of_slots": float(np.mean(in_lists)) if len(in_lists) else 0.0,
    }


def _count_in(values: pa.Array, among: pa.ChunkedArray) -> int:
    return int(pc.sum(pc.is_in(values, value_set=among.combine_chunks())).as_py() or 0)


def _table(path: str, columns: list[str]) -> pa.Table:
    return storage.parquet_dataset(path).to_table(columns=columns)
