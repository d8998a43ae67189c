"""The training objective of one batch, as configured by train.loss.

- sampled: the label against S negatives shared by the batch, drawn log-uniformly over
  frequency-ranked ids or from the count^0.75 table, with logQ correction (sampled_softmax).
- in_batch: the label against the batch's other labels, corrected by streaming frequency
  estimates (in_batch; Yi et al. 2019).
- mixed: both sets of negatives in one softmax, each with its own correction: both are logs
  of the expected number of times an item is among the candidates.
- full: the exact softmax over the corpus, for small corpora.
- pointwise: sigmoid cross-entropy of the label and the shared negatives (DSSM).
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn

from ray_train.hard_negatives import hard_negative_logits, hard_negatives, pool_band
from ray_train.in_batch import StreamingFrequency, in_batch_softmax_loss
from ray_train.model import ModelSpec
from ray_train.sampled_softmax import (
    LogUniformSampler,
    UniformSampler,
    UnigramSampler,
    full_softmax_loss,
    pointwise_loss,
    sampled_logits,
    sampled_softmax_loss,
)
from core.config import TrainConfig


def make_sampler(kind: str, num_items: int, item_sampling_path: str):
    """The negative sampler train.sampler names (unigram reads prep's count^alpha table)."""
    if kind == "uniform":
        return UniformSampler(num_items)
    if kind == "log_uniform":
        return LogUniformSampler(num_items)
    table = pq.read_table(item_sampling_path, columns=["index", "probability"])
    probabilities = np.zeros(num_items, dtype=np.float64)
    probabilities[table.column("index").to_numpy()] = table.column("probability").to_numpy()
    return UnigramSampler(probabilities)


class Objective:
    """Called with a batch's user vectors and labels, returns its loss; keeps the sampler's
    generator and the frequency estimates across batches."""

    def __init__(self, cfg: TrainConfig, spec: ModelSpec, item_sampling_path: str, rank: int):
        cfg = cfg.for_corpus(spec.num_items)  # loss=auto: exact or sampled by the corpus size
        self.loss = cfg.loss
        uses_sampled = cfg.loss in ("sampled", "mixed", "pointwise")
        self.sampler = make_sampler(cfg.sampler, spec.num_items, item_sampling_path) if uses_sampled else None
        self.num_negatives = min(cfg.num_negatives, spec.num_items - 1)
        self.generator = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
        self.frequency = (
            StreamingFrequency(cfg.frequency_buckets, cfg.frequency_hashes, cfg.frequency_alpha, cfg.seed)
            if cfg.loss in ("in_batch", "mixed")
            else None
        )
        self.step = 0
        self.correct = cfg.logq_correction
        self.hard_count = cfg.hard_negatives
        self.pool_size = min(cfg.hard_negative_pool, spec.num_items - 1)
        self.pool_sampler = UniformSampler(spec.num_items)
        self.band = pool_band(cfg.hard_negative_ranks, self.pool_size, spec.num_items - 1)

    def __call__(self, user: torch.Tensor, labels: torch.Tensor, net: nn.Module,
                 weights: torch.Tensor | None = None) -> torch.Tensor:
        """The batch's loss; `weights` (per example) weigh each example's term."""
        self.step += 1
        vectors, bias = net.item_output, net.item_bias
        if self.loss == "full":
            return full_softmax_loss(user, labels, net.item_table(), weights)
        extra = [self._hard_logits(user, labels, net)] if self.hard_count else []
        if self.sampler is not None:
            negatives = self.sampler.sample(self.num_negatives, self.generator)
            if self.loss == "pointwise":
                return pointwise_loss(user, labels, vectors, bias, negatives.to(user.device), weights)
            log_q = self._log_q(negatives).to(user.device)
            negatives = negatives.to(user.device)
            if self.frequency is None:
                log_q_labels = self._log_q(labels.cpu()).to(user.device)
                return sampled_softmax_loss(user, labels, vectors, bias, negatives, log_q_labels, log_q, weights,
                                            torch.cat(extra, dim=1) if extra else None)
            extra.append(sampled_logits(user, labels, vectors, bias, negatives, log_q))
        self.frequency.update(labels, self.step)
        log_p = self.frequency.log_p(labels) if self.correct else torch.zeros(labels.shape, device=labels.device)
        return in_batch_softmax_loss(user, labels, vectors, bias, log_p,
                                     torch.cat(extra, dim=1) if extra else None, weights)

    def _log_q(self, ids: torch.Tensor) -> torch.Tensor:
        """log Q of sampled ids, or 0 without the correction (train.logq_correction)."""
        return self.sampler.log_q(ids) if self.correct else torch.zeros(ids.shape)

    def _hard_logits(self, user: torch.Tensor, labels: torch.Tensor, net: nn.Module) -> torch.Tensor:
        """[B, k] logits of each example's hard negatives (ray_train.hard_negatives)."""
        if self.pool_size >= self.pool_sampler.n:  # a small corpus: rank all of it
            pool = torch.arange(1, self.pool_sampler.n + 1)
        else:
            pool = self.pool_sampler.sample(self.pool_size, self.generator)
        chosen = hard_negatives(user, net.item_output, net.item_bias, pool.to(user.device), self.band,
                                self.hard_count, self.generator)
        return hard_negative_logits(user, labels, net.item_output, net.item_bias, chosen)
