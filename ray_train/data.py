"""Training examples from Ray Data batches to tensors.

Histories and demographics are fixed-length int lists in the Parquet contract, so an Arrow
batch turns into dense tensors with one reshape and no per-row Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from watchnext.contract import fixed_lists

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

    def features(self) -> tuple[torch.Tensor, ...]:
        """The user tower's inputs, in its forward's order."""
        return self.history, self.search_tokens, self.demographics, self.continuous, self.example_age


def _ints(table: pa.Table, column: str, width: int) -> torch.Tensor:
    return torch.from_numpy(fixed_lists(table.column(column), width).astype(np.int64))


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
        _ints(table, "demographics", widths.num_categoricals),
        torch.from_numpy(fixed_lists(table.column("continuous"), widths.num_continuous).astype(np.float32)),
        torch.from_numpy(age),
        labels,
        weights,
    )
