"""Per-epoch validation: HR@50 of a sample of held-out users, ranking the full corpus.

The sampled users' serving features (example age 0) meet their held-out watch from
prep/eval. Every item is scored as training scores it (item vector · user vector + bias), the
padding row and the user's watched items excluded, as in the recall stage; a held-out item
the training events never saw, or one already watched, counts as a miss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import torch

from ray_train.data import Batch, Widths, to_batch
from watchnext import storage

VAL_K = 50
USERS_PER_CHUNK = 256  # users scored at once: a [chunk, corpus] score matrix


@dataclass
class ValidationSet:
    users: Batch  # the sampled users' tower inputs
    targets: torch.Tensor  # [U] held-out item index, 0 = an item outside the vocabulary
    watched_offsets: np.ndarray  # [U + 1]: watched_items[offsets[u]:offsets[u + 1]] are u's
    watched_items: torch.Tensor  # flat item indices

    @classmethod
    def load(cls, prep_dir: str, widths: Widths, users: int, seed: int) -> "ValidationSet | None":
        """Up to `users` held-out users, drawn with the seed from every evaluated user."""
        targets = pq.read_table(storage.join(prep_dir, "eval"), columns=["user_id", "item_index"])
        if targets.num_rows == 0 or users == 0:
            return None
        targets = targets.sort_by("user_id")  # the draw must not depend on file order
        picked = np.sort(np.random.default_rng(seed).permutation(targets.num_rows)[:users])
        targets = targets.take(picked)
        features = pads.dataset(storage.join(prep_dir, "user_features")).to_table(
            filter=pc.field("user_id").isin(targets.column("user_id"))
        )
        rows = features.sort_by("user_id")
        target_rows = pc.index_in(rows.column("user_id"), value_set=targets.column("user_id"))
        held_out = targets.column("item_index").take(target_rows).fill_null(0)
        watched = rows.column("watched").combine_chunks()
        return cls(
            users=to_batch(rows, widths, with_labels=False),
            targets=torch.from_numpy(held_out.to_numpy().astype(np.int64)),
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
