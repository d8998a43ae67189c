"""Per-epoch validation: HR@50 of a sample of validation users, ranking the full corpus.

prep/valid holds each user's validation watch (the last training watch, never a label) with
the serving features the user had just before it (example age 0). Every item is scored as
training scores it (item vector · user vector + bias), the padding row and the user's earlier
watched items excluded, as in the recall stage; a validation item already watched before
counts as a miss. The test targets (prep/eval) are never read here: early stopping and tuning
choose on this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc
import torch

from ray_train.data import Batch, Widths, to_batch
from core import storage
from core.layout import PrepLayout

VAL_K = 50
# what metrics.json's val_hr@50 measures
VALIDATION_SOURCE = "prep/valid: each user's last training watch, held out of the examples"
USERS_PER_CHUNK = 256  # users scored at once: a [chunk, corpus] score matrix


@dataclass
class ValidationSet:
    users: Batch  # the sampled users' tower inputs
    targets: torch.Tensor  # [U] held-out item index, 0 = an item outside the vocabulary
    watched_offsets: np.ndarray  # [U + 1]: watched_items[offsets[u]:offsets[u + 1]] are u's
    watched_items: torch.Tensor  # flat item indices

    @classmethod
    def load(cls, prep_dir: str, widths: Widths, users: int, seed: int) -> "ValidationSet | None":
        """Up to `users` validation users, drawn with the seed; None when prep holds no
        validation targets (prep.validation=false) or users is 0."""
        path = PrepLayout(prep_dir).valid
        if users == 0 or not storage.exists(path):
            return None
        rows = storage.parquet_dataset(path).to_table()
        if rows.num_rows == 0:
            return None
        rows = rows.sort_by("user_id")  # the draw must not depend on file order
        rows = rows.take(np.sort(np.random.default_rng(seed).permutation(rows.num_rows)[:users]))
        watched = rows.column("watched").combine_chunks()
        return cls(
            users=to_batch(rows, widths, with_labels=False),
            targets=torch.from_numpy(rows.column("item_index").to_numpy().astype(np.int64)),
            watched_offsets=(watched.offsets.to_numpy() - watched.offsets[0].as_py()).astype(np.int64),
            watched_items=torch.from_numpy(pc.list_flatten(watched).to_numpy().astype(np.int64)),
        )

    def __len__(self) -> int:
        return len(self.targets)

    @torch.no_grad()
    def hit_rate(self, net: torch.nn.Module, device: torch.device, k: int = VAL_K) -> float:
        """The share of users whose held-out item ranks in the top k of the corpus."""
        was_training = net.training
        net.eval()
        items, bias = net.item_table()
        hits = 0
        for start in range(0, len(self), USERS_PER_CHUNK):
            end = min(start + USERS_PER_CHUNK, len(self))
            scores = net(*self.users.slice(start, end).to(device).features()) @ items.T + bias
            scores[:, 0] = float("-inf")  # padding
            lo, hi = self.watched_offsets[start], self.watched_offsets[end]
            rows = torch.from_numpy(np.repeat(np.arange(end - start), np.diff(self.watched_offsets[start:end + 1])))
            scores[rows.to(device), self.watched_items[lo:hi].to(device)] = float("-inf")
            targets = self.targets[start:end].to(device)
            target_scores = scores.gather(1, targets.unsqueeze(1))
            rank = (scores > target_scores).sum(dim=1)
            hit = (targets > 0) & torch.isfinite(target_scores.squeeze(1)) & (rank < k)
            hits += int(hit.sum())
        net.train(was_training)
        return hits / len(self)
