"""Hard negatives: items the model already scores fairly high for the user but which are not
the label (Facebook's embedding-based retrieval; Yi et al.'s "moderate score" items).

Each step, the batch's users score a uniform pool of P items with the current weights (no
gradient: this only chooses), and every example takes k items ranked within a band of its
scores — ranks lo .. hi - 1 of the corpus, scaled to the pool (rank r of N is about rank
r P / N of P). The very top is avoided on purpose: the best-scored unwatched items are often
items the user would watch, i.e. false negatives. The chosen items join the softmax as extra
negatives without a logQ correction (they come from no fixed proposal); an example's own
label among them is masked.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def pool_band(band: tuple[int, int], pool_size: int, corpus_size: int) -> tuple[int, int]:
    """The ranks within a uniform pool that stand for corpus ranks band[0] .. band[1] - 1."""
    scale = pool_size / corpus_size
    lo = min(int(band[0] * scale), pool_size - 1)
    hi = min(max(lo + 1, math.ceil(band[1] * scale)), pool_size)
    return lo, hi


def hard_negatives(
    user: torch.Tensor,  # [B, D]
    item_vectors: nn.Module,
    item_bias: nn.Module,
    pool: torch.Tensor,  # [P] candidate item indices
    band: tuple[int, int],  # ranks lo .. hi - 1 within the pool
    count: int,  # k per example
    generator: torch.Generator,
) -> torch.Tensor:
    """[B, k] item indices ranked within `band` of the pool by each user's scores."""
    lo, hi = band
    with torch.no_grad():
        scores = user @ item_vectors(pool).T + item_bias(pool).squeeze(-1)
        top = scores.topk(hi, dim=1).indices  # [B, hi], best first
        pick = torch.randint(lo, hi, (len(user), count), generator=generator).to(user.device)
        return pool[top.gather(1, pick)]


def hard_negative_logits(
    user: torch.Tensor, labels: torch.Tensor, item_vectors: nn.Module, item_bias: nn.Module, chosen: torch.Tensor
) -> torch.Tensor:
    """[B, k] logits of each example's own hard negatives, its label among them masked."""
    logits = (user.unsqueeze(1) * item_vectors(chosen)).sum(-1) + item_bias(chosen).squeeze(-1)
    return logits.masked_fill(chosen == labels.unsqueeze(1), float("-inf"))
