"""In-batch softmax with logQ correction from streaming frequency estimation (Yi et al. 2019).

The other examples' labels in a batch are the negatives: free, but drawn in proportion to
popularity, so popular items are over-penalised unless each logit is corrected by the log of
the item's sampling probability. The corpus can be too large or change too fast for a
counted table, so the probability is estimated from the stream itself: an item that shows up
every δ steps has p ≈ 1 / δ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ray_train.sampled_softmax import weighted_mean

_PRIME = (1 << 31) - 1  # a Mersenne prime: (a * y + b) mod P stays inside int64 for y < 2^31


class StreamingFrequency:
    """Yi et al.'s Algorithm 2: per hash function, array A holds the step at which a bucket's
    item was last seen and array B an exponential moving average (rate alpha) of the gaps
    between sightings; p = 1 / max over hash functions of B (collisions only shorten gaps,
    so the largest gap is the best estimate).
    """

    def __init__(self, buckets: int, hashes: int, alpha: float, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.buckets, self.alpha = buckets, alpha
        self.a = torch.randint(1, _PRIME, (hashes, 1), generator=generator)
        self.b = torch.randint(0, _PRIME, (hashes, 1), generator=generator)
        self.last_seen = torch.full((hashes, buckets), -1.0, dtype=torch.float64)  # A
        self.gap = torch.zeros(hashes, buckets, dtype=torch.float64)  # B

    def _buckets(self, items: torch.Tensor) -> torch.Tensor:
        """[hashes, n] bucket of each item under each hash function."""
        return ((self.a * items.cpu().view(1, -1) + self.b) % _PRIME) % self.buckets

    def update(self, items: torch.Tensor, step: int) -> None:
        """Record that `items` were seen at `step` (steps count up from 1)."""
        for h, index in enumerate(self._buckets(torch.unique(items))):
            last = self.last_seen[h, index]
            # a first sighting counts as a gap since step 0
            gap = step - last.clamp(min=0.0)
            fresh = last < 0
            self.gap[h, index] = torch.where(fresh, gap, (1 - self.alpha) * self.gap[h, index] + self.alpha * gap)
            self.last_seen[h, index] = float(step)

    def log_p(self, items: torch.Tensor) -> torch.Tensor:
        """log of each item's estimated probability of appearing in a step."""
        index = self._buckets(items)
        gaps = torch.gather(self.gap, 1, index).max(dim=0).values.clamp(min=1.0)
        return (-torch.log(gaps)).float().view(items.shape).to(items.device)


def in_batch_logits(
    user: torch.Tensor,  # [B, D]
    labels: torch.Tensor,  # [B]
    item_vectors: torch.nn.Embedding,
    item_bias: torch.nn.Embedding,
    log_p_labels: torch.Tensor,  # [B] estimated log p of each label
) -> torch.Tensor:
    """[B, B] corrected logits: row i scores every label in the batch for user i, minus the
    label's log p; another example's label equal to i's own is masked (an accidental hit)."""
    logits = user @ item_vectors(labels).T + item_bias(labels).squeeze(-1) - log_p_labels.unsqueeze(0)
    same_item = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return logits.masked_fill(same_item & ~eye, float("-inf"))


def in_batch_softmax_loss(
    user: torch.Tensor,
    labels: torch.Tensor,
    item_vectors: torch.nn.Embedding,
    item_bias: torch.nn.Embedding,
    log_p_labels: torch.Tensor,
    extra_logits: torch.Tensor | None = None,  # [B, S] more negatives, already corrected
    weights: torch.Tensor | None = None,  # [B] per-example weights
) -> torch.Tensor:
    """Cross-entropy of each example's own label (the diagonal) against the batch's other
    labels, and against `extra_logits` (mixed negative sampling) when given."""
    logits = in_batch_logits(user, labels, item_vectors, item_bias, log_p_labels)
    if extra_logits is not None:
        logits = torch.cat([logits, extra_logits], dim=1)
    losses = F.cross_entropy(logits, torch.arange(len(labels), device=labels.device), reduction="none")
    return weighted_mean(losses, weights)
