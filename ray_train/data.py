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

EXAMPLE_COLUMNS = ["label", "history", "example_age", "demographics"]
FEATURE_COLUMNS = ["history", "example_age", "demographics"]


@dataclass
class Batch:
    history: torch.Tensor  # [B, history_len] int64, 0 = padding
    demographics: torch.Tensor  # [B, F] int64
    example_age: torch.Tensor  # [B] float32
    labels: torch.Tensor | None = None  # [B] int64

    def to(self, device: torch.device) -> "Batch":
        return Batch(*(t.to(device, non_blocking=True) if t is not None else None for t in
                       (self.history, self.demographics, self.example_age, self.labels)))


def to_batch(table: pa.Table, history_len: int, num_categoricals: int, with_labels: bool = True) -> Batch:
    """One Arrow batch of examples (or of serving features) as tensors."""
    history = torch.from_numpy(fixed_lists(table.column("history"), history_len).astype(np.int64))
    demo = fixed_lists(table.column("demographics"), num_categoricals).astype(np.int64)
    if "example_age" in table.column_names:
        age = table.column("example_age").to_numpy().astype(np.float32)
    else:  # serving: the user vector is computed "now", at example age 0
        age = np.zeros(table.num_rows, dtype=np.float32)
    labels = torch.from_numpy(table.column("label").to_numpy().astype(np.int64)) if with_labels else None
    return Batch(history, torch.from_numpy(demo), torch.from_numpy(age), labels)
