"""Training examples from Ray Data batches to tensors.

Demographics are fixed-length int lists in the Parquet contract and histories and search
tokens lists of at most a fixed length, so an Arrow batch turns into dense tensors with a
reshape or one scatter (core.contract.padded_lists), with no per-row Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from core.contract import fixed_lists, padded_lists

EXAMPLE_COLUMNS = ["label", "history", "search_tokens", "example_age", "demographics", "continuous", "weight"]


@dataclass(frozen=True)
class Widths:
    """The fixed widths of the list features, from the prep manifest."""

    history_len: int
    max_search_tokens: int
    num_categoricals: int
    num_continuous: int

    @property
    def row_bytes(self) -> int:
        """An example's approximate size in Arrow memory: 4-byte values and list offsets."""
        return 4 * (self.history_len + self.max_search_tokens + self.num_categoricals + self.num_continuous) + 32

    @property
    def tensor_bytes(self) -> int:
        """An example's size as training tensors: int64 ids, float32 values (Batch)."""
        return 8 * (self.history_len + self.max_search_tokens + self.num_categoricals + 1) + 4 * (self.num_continuous + 2)

    @classmethod
    def from_prep_features(cls, features: dict) -> "Widths":
        return cls(int(features["history_len"]), int(features.get("max_search_tokens", 0)),
                   len(features["user_categoricals"]), len(features.get("user_continuous", [])))


@dataclass
class Batch:
    history: torch.Tensor  # [B, history_len] int64, 0 = padding
    search_tokens: torch.Tensor  # [B, max_search_tokens] int64, 0 = padding
    demographics: torch.Tensor  # [B, F] int64
    continuous: torch.Tensor  # [B, C] float32 in [0, 1]
    example_age: torch.Tensor  # [B] float32
    labels: torch.Tensor | None = None  # [B] int64
    weights: torch.Tensor | None = None  # [B] float32, each example's weight in the loss

    def _tensors(self) -> tuple[torch.Tensor | None, ...]:
        return (self.history, self.search_tokens, self.demographics, self.continuous, self.example_age,
                self.labels, self.weights)

    def to(self, device: torch.device) -> "Batch":
        return Batch(*(t.to(device, non_blocking=True) if t is not None else None for t in self._tensors()))

    def slice(self, start: int, end: int) -> "Batch":
        """Rows start .. end - 1."""
        return Batch(*(t[start:end] if t is not None else None for t in self._tensors()))

    def take(self, rows: torch.Tensor) -> "Batch":
        """The given rows, in their order."""
        return Batch(*(t.index_select(0, rows) if t is not None else None for t in self._tensors()))

    @classmethod
    def concat(cls, batches: list["Batch"]) -> "Batch":
        """One batch of all the rows of `batches` (which all have labels, or all none)."""
        columns = zip(*(b._tensors() for b in batches))
        return cls(*(torch.cat(parts) if parts[0] is not None else None for parts in columns))

    def __len__(self) -> int:
        return self.history.shape[0]

    def features(self) -> tuple[torch.Tensor, ...]:
        """The user tower's inputs, in its forward's order."""
        return self.history, self.search_tokens, self.demographics, self.continuous, self.example_age


def _ints(table: pa.Table, column: str, width: int) -> torch.Tensor:
    return torch.from_numpy(padded_lists(table.column(column), width).astype(np.int64))


def to_batch(table: pa.Table, widths: Widths, with_labels: bool = True) -> Batch:
    """One Arrow batch of examples (or of serving features) as tensors."""
    if "example_age" in table.column_names:
        age = table.column("example_age").to_numpy().astype(np.float32)
    else:  # serving: the user vector is computed "now", at example age 0
        age = np.zeros(table.num_rows, dtype=np.float32)
    labels = torch.from_numpy(table.column("label").to_numpy().astype(np.int64)) if with_labels else None
    weights = (
        torch.from_numpy(table.column("weight").to_numpy().astype(np.float32))
        if with_labels and "weight" in table.column_names
        else None
    )
    return Batch(
        _ints(table, "history", widths.history_len),
        _ints(table, "search_tokens", widths.max_search_tokens),
        torch.from_numpy(fixed_lists(table.column("demographics"), widths.num_categoricals).astype(np.int64)),
        torch.from_numpy(fixed_lists(table.column("continuous"), widths.num_continuous).astype(np.float32)),
        torch.from_numpy(age),
        labels,
        weights,
    )


class WorkerExamples:
    """A worker's batches, epoch after epoch.

    Streamed from its Ray Data shard (`ray.train.get_dataset_shard`), locally shuffled; or,
    with `keep`, streamed the first epoch only: the worker keeps that epoch's rows as
    tensors and from then on draws its batches from them in a fresh seeded order each epoch,
    with no Ray Data round (on ml-100k each round cost ~0.15 s of a ~1.3 s epoch, and its
    iterator thread CPU time the step wanted). Every rank keeps as many rows as it was given
    in the first epoch, equal across ranks (`streaming_split(equal=True)`), so every rank
    runs the same number of steps, as DDP needs."""

    def __init__(self, shard, widths: Widths, batch_size: int, seed: int, rank: int, keep: bool):
        self.shard, self.widths, self.batch_size = shard, widths, batch_size
        self.seed, self.rank = seed, rank
        self.keep = keep
        self.kept: Batch | None = None

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of one epoch (0-based), on the CPU."""
        order_seed = self.seed + epoch * 1009 + self.rank
        if self.kept is not None:
            order = torch.randperm(len(self.kept), generator=torch.Generator().manual_seed(order_seed))
            for start in range(0, len(order), self.batch_size):
                yield self.kept.take(order[start:start + self.batch_size])
            return
        collected = []
        for table in self.shard.iter_batches(batch_size=self.batch_size, batch_format="pyarrow",
                                             local_shuffle_buffer_size=self.batch_size * 8,
                                             local_shuffle_seed=order_seed):
            batch = to_batch(table.select(EXAMPLE_COLUMNS), self.widths)
            if self.keep:
                collected.append(batch)
            yield batch
        if self.keep and collected:
            self.kept = Batch.concat(collected)
