"""Sampled softmax with shared negatives, logQ correction and accidental hits removed.

The full softmax over millions of items is replaced by the label against S negatives drawn
once per batch from a proposal Q and shared by every example (Jean et al. 2015; the paper's
"sample negative classes from the background distribution and correct via importance
weighting"). Subtracting log(S * Q(j)) from each logit makes the sampled loss an unbiased
estimate of the full softmax's gradient direction as S grows.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


class LogUniformSampler:
    """Q(k) = log((k + 2) / (k + 1)) / log(n + 1) over frequency-ranked ids 1 .. n (Zipf)."""

    def __init__(self, num_items: int):
        self.n = num_items - 1  # ids 1 .. n; 0 is padding and never drawn
        self.log_range = math.log(self.n + 1)

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(count, generator=generator, dtype=torch.float64)
        rank = (torch.exp(u * self.log_range).floor().long() - 1).clamp(0, self.n - 1)
        return rank + 1

    def log_q(self, ids: torch.Tensor) -> torch.Tensor:
        rank = (ids - 1).double()
        return (torch.log((rank + 2) / (rank + 1)) / self.log_range).log().float()


class UniformSampler:
    """Q(j) = 1 / n over ids 1 .. n: every item alike, popular or not."""

    def __init__(self, num_items: int):
        self.n = num_items - 1

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(1, self.n + 1, (count,), generator=generator)

    def log_q(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.full(ids.shape, -math.log(self.n))


class UnigramSampler:
    """Q(j) proportional to count(j)^alpha (prep's vocab/item_sampling table, alpha = 0.75
    by default: word2vec's smoothing of popularity)."""

    def __init__(self, probabilities: np.ndarray):
        # probabilities[j] for item index j; index 0 (padding) is never drawn
        weights = np.asarray(probabilities, dtype=np.float64).copy()
        weights[0] = 0.0
        self.probs = torch.from_numpy(weights / weights.sum())
        self.log_probs = torch.log(self.probs.clamp(min=1e-30)).float()

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        return torch.multinomial(self.probs, count, replacement=True, generator=generator)

    def log_q(self, ids: torch.Tensor) -> torch.Tensor:
        return self.log_probs[ids]


def sampled_softmax_loss(
    user: torch.Tensor,  # [B, D] user vectors
    labels: torch.Tensor,  # [B] item indices
    item_vectors: torch.nn.Embedding,  # W_out
    item_bias: torch.nn.Embedding,  # b_out
    negatives: torch.Tensor,  # [S] shared negative item indices
    log_q_labels: torch.Tensor,  # [B] log Q of each label
    log_q_negatives: torch.Tensor,  # [S]
    weights: torch.Tensor | None = None,  # [B] per-example weights
    extra_logits: torch.Tensor | None = None,  # [B, k] more negatives (hard negatives)
) -> torch.Tensor:
    pos = (user * item_vectors(labels)).sum(-1) + item_bias(labels).squeeze(-1)
    pos = pos - (log_q_labels + math.log(negatives.numel()))
    neg = sampled_logits(user, labels, item_vectors, item_bias, negatives, log_q_negatives)
    if extra_logits is not None:
        neg = torch.cat([neg, extra_logits], dim=1)
    return weighted_mean(_SoftmaxCrossEntropy.apply(pos.float(), neg.float()), weights)  # fp32 under autocast too


class _SoftmaxCrossEntropy(torch.autograd.Function):
    """-log(e^pos / (e^pos + sum_j e^neg_j)) per row: the cross-entropy of a label logit
    `pos` [B] against its negatives' `neg` [B, S], without building the [B, 1 + S] logits
    the library's cross_entropy wants (a copy of the largest tensor of the step). Forward
    keeps exp(neg - max) and backward turns it into the softmax's gradient in place (so the
    graph is backwarded once: a second backward raises). With the addmm in sampled_logits and
    the mean bags' backward it took 4-10% off a CPU step on ml-100k (BENCHMARKS.md)."""

    @staticmethod
    def forward(ctx, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        top = torch.maximum(neg.amax(1), pos)
        shares = torch.exp(neg - top.unsqueeze(1))
        pos_share = torch.exp(pos - top)
        total = shares.sum(1) + pos_share
        ctx.save_for_backward(shares, pos_share, total)
        return total.log() + top - pos

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if getattr(ctx, "consumed", False):
            raise RuntimeError("the sampled softmax's saved shares were turned into its gradient already")
        ctx.consumed = True
        shares, pos_share, total = ctx.saved_tensors
        scale = grad / total
        return pos_share * scale - grad, shares.mul_(scale.unsqueeze(1))


def weighted_mean(losses: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """The batch's loss: each example's weighed by its weight (prep.example_weight), or the
    plain mean."""
    if weights is None:
        return losses.mean()
    return (losses * weights).sum() / weights.sum().clamp(min=1e-12)


def sampled_logits(
    user: torch.Tensor,  # [B, D]
    labels: torch.Tensor,  # [B]
    item_vectors: torch.nn.Embedding,
    item_bias: torch.nn.Embedding,
    negatives: torch.Tensor,  # [S]
    log_q_negatives: torch.Tensor,  # [S]
) -> torch.Tensor:
    """[B, S] logits of the shared negatives, minus log(S * Q(j)) (the logQ correction; log S
    is shared and kept for calibration), an example's own label among them masked (an
    accidental hit, not a negative)."""
    shift = item_bias(negatives).squeeze(-1) - (log_q_negatives + math.log(negatives.numel()))
    neg = torch.addmm(shift.unsqueeze(0), user, item_vectors(negatives).T)
    rows, columns = accidental_hits(labels, negatives)
    return _MaskHits.apply(neg, rows, columns)


def accidental_hits(labels: torch.Tensor, negatives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, columns) of every negative equal to its example's label: from the sorted
    negatives and a binary search per label, without building the [B, S] comparison (a hit
    per label and per copy of it among the negatives)."""
    ordered, order = negatives.sort()
    first = torch.searchsorted(ordered, labels)
    counts = torch.searchsorted(ordered, labels, right=True) - first
    rows = torch.repeat_interleave(torch.arange(len(labels), device=labels.device), counts)
    # the k-th hit of a row is the (first + k)-th sorted negative
    offset = torch.repeat_interleave(first - (counts.cumsum(0) - counts), counts)
    return rows, order[offset + torch.arange(len(rows), device=labels.device)]


class _MaskHits(torch.autograd.Function):
    """Logits set to -inf at (rows, columns), in place, and the gradient passed through: a
    -inf logit has no softmax share, so the softmax's gradient there is 0 already (its
    callers' logits all go to a softmax in which they are never the target). Neither the
    comparison nor a masked copy of the gradient is built: the masking was a tenth of a
    step with 2,048 negatives."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        ctx.mark_dirty(logits)
        logits[rows, columns] = float("-inf")
        return logits

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return grad, None, None


CHUNK_SCORES = 1 << 20  # logits the exact softmax holds at once (4 MiB in fp32: a core's cache)


def full_softmax_loss(
    user: torch.Tensor, labels: torch.Tensor, item_table: tuple[torch.Tensor, torch.Tensor],
    weights: torch.Tensor | None = None, chunk_scores: int = CHUNK_SCORES,
) -> torch.Tensor:
    """The exact objective over (vectors, bias) of every item, for corpora small enough to
    score whole and for testing the sampled estimate. Logits larger than chunk_scores are
    scored a chunk of items at a time (_ExactSoftmax), the products in autocast's dtype and
    the softmax in fp32, as F.cross_entropy would have them."""
    vectors, bias = item_table
    chunk = max(1, chunk_scores // max(len(user), 1))
    if chunk >= len(vectors) - 1:  # the logits fit in one chunk: cross-entropy's fused kernels
        return weighted_mean(F.cross_entropy(user @ vectors[1:].T + bias[1:], labels - 1, reduction="none"), weights)
    device = user.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else user.dtype
    losses = _ExactSoftmax.apply(user, vectors[1:], bias[1:], labels - 1, dtype, chunk)
    return weighted_mean(losses, weights)


class _ExactSoftmax(torch.autograd.Function):
    """Each example's -log softmax(u . v_j + b_j)[label] over every item j, its [N, items]
    logits computed a chunk of items at a time in forward and again in backward, never held
    whole: the batch's scores stay in cache instead of making several passes over memory.

        d loss_n / d logit_nj = grad_n (softmax_nj - [j = label_n])"""

    @staticmethod
    def forward(ctx, user: torch.Tensor, vectors: torch.Tensor, bias: torch.Tensor, labels: torch.Tensor,
                dtype: torch.dtype, chunk: int) -> torch.Tensor:
        with torch.autocast(user.device.type, enabled=False):
            lse = torch.full((len(user),), float("-inf"), device=user.device)
            target = torch.zeros(len(user), device=user.device)
            for start, _, logits in _chunk_logits(user.to(dtype), vectors, bias, dtype, chunk):
                lse = torch.logaddexp(lse, torch.logsumexp(logits, 1))
                inside = (labels >= start) & (labels < start + logits.shape[1])
                target[inside] = logits[inside, labels[inside] - start]
        ctx.save_for_backward(user, vectors, bias, labels, lse)
        ctx.dtype, ctx.chunk = dtype, chunk
        return lse - target

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        user, vectors, bias, labels, lse = ctx.saved_tensors
        low = user.to(ctx.dtype)
        grad_user = torch.zeros(user.shape, device=user.device)
        grad_vectors = torch.zeros(vectors.shape, device=vectors.device)
        grad_bias = torch.zeros(bias.shape, device=bias.device)
        for start, block, logits in _chunk_logits(low, vectors, bias, ctx.dtype, ctx.chunk):
            end = start + logits.shape[1]
            scores = torch.exp(logits - lse.unsqueeze(1)) * grad.unsqueeze(1)
            inside = (labels >= start) & (labels < end)
            scores[inside, labels[inside] - start] -= grad[inside]
            part = scores.to(ctx.dtype)
            grad_user += (part @ block).float()
            grad_vectors[start:end] = (part.T @ low).float()
            grad_bias[start:end] = scores.sum(0)
        return grad_user.to(user.dtype), grad_vectors.to(vectors.dtype), grad_bias.to(bias.dtype), None, None, None


def _chunk_logits(low: torch.Tensor, vectors: torch.Tensor, bias: torch.Tensor, dtype: torch.dtype,
                  chunk: int):
    """(first item, the chunk's vectors in `dtype`, [N, chunk] fp32 logits) of every chunk of
    the items, in order; `low` is the user vectors already in `dtype`."""
    for start in range(0, len(vectors), chunk):
        block = vectors[start:start + chunk].to(dtype)
        yield start, block, (low @ block.T).float() + bias[start:start + chunk].float()


def pointwise_loss(
    user: torch.Tensor,  # [B, D]
    labels: torch.Tensor,  # [B]
    item_vectors: torch.nn.Module,
    item_bias: torch.nn.Module,
    negatives: torch.Tensor,  # [S] shared negatives
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """DSSM's pointwise objective: sigmoid cross-entropy of each label as a positive and of
    the shared negatives as negatives (an example's own label among them is masked), the
    negatives' mean weighing as much as the positive. No logQ: a pointwise score estimates
    P(watch), not a softmax share."""
    pos = (user * item_vectors(labels)).sum(-1) + item_bias(labels).squeeze(-1)
    neg = user @ item_vectors(negatives).T + item_bias(negatives).squeeze(-1)
    real = negatives.unsqueeze(0) != labels.unsqueeze(1)
    negative_loss = (F.softplus(neg) * real).sum(1) / real.sum(1).clamp(min=1)
    return weighted_mean(F.softplus(-pos) + negative_loss, weights)
