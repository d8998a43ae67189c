"""item2vec (Barkan & Koenigstein 2016): skip-gram with negative sampling over users' watch
sequences, pretraining the watch-history embeddings (train.item2vec_epochs), as the paper
initialized its watch embeddings from a word2vec-style model.

The pairs come from the training examples themselves: each label with each of its last
`window` watches. Per pair the loss is word2vec's, -log σ(c · x) - K E_n[log σ(-c · n)], the
expectation over negatives drawn once per batch from count^0.75 (prep's item_sampling), with
K = `NEGATIVES_PER_PAIR`. It runs on the same stack as training: Ray Train workers, Ray
Data shards of prep/examples, DDP, sparse tables and SparseAdam. Its center vectors become
the history table of the model trained next.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.nn.functional as F
from torch import nn

from ray_train.allocator import keep_freed_memory
from ray_train.loop import learning_rate
from ray_train.model import last_watches
from ray_train.objective import make_sampler
from ray_train.optim import Optimizer
from ray_train.sparse_sync import prepare_model
from ray_train.step import train_step
from core.config import TrainConfig
from core.contract import padded_lists

log = logging.getLogger(__name__)

ITEM2VEC_COLUMNS = ["label", "history"]
NEGATIVES_PER_PAIR = 5
VECTORS = "item2vec.pt"


class SkipGram(nn.Module):
    """Center and context vectors of every item (index 0 is padding)."""

    def __init__(self, num_items: int, dim: int, sparse: bool):
        super().__init__()
        self.center = nn.Embedding(num_items, dim, padding_idx=0, sparse=sparse)
        self.context = nn.Embedding(num_items, dim, padding_idx=0, sparse=sparse)
        nn.init.uniform_(self.center.weight, -0.5 / dim, 0.5 / dim)  # word2vec's initialization
        nn.init.zeros_(self.context.weight)

    def sparse_parameters(self) -> list[nn.Parameter]:
        return [self.center.weight, self.context.weight] if self.center.sparse else []

    def forward(self, labels: torch.Tensor, history: torch.Tensor, negatives: torch.Tensor,
                window: int) -> torch.Tensor:
        """The mean loss over the batch's (label, recent watch) pairs."""
        context = last_watches(history, window)
        present = (context > 0).float()
        center = self.center(labels)  # [B, D]
        positive = (self.context(context) * center.unsqueeze(1)).sum(-1)  # [B, window-ish]
        negative = F.softplus(center @ self.context(negatives).T).mean(1)  # [B]: E_n[-log σ(-c·n)]
        pairs = present.sum(1)
        total = (F.softplus(-positive) * present).sum() + NEGATIVES_PER_PAIR * (negative * pairs).sum()
        return total / pairs.sum().clamp(min=1.0)


def item2vec_loop_per_worker(config: dict[str, Any]) -> None:
    cfg = TrainConfig.model_validate(config["train"])
    num_items, history_len = int(config["num_items"]), int(config["history_len"])
    rank = ray.train.get_context().get_world_rank()
    torch.manual_seed(cfg.seed)
    keep_freed_memory()  # the step's large tensors are reused, not page-faulted in again
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    sparse = bool(config["sparse"])
    model, synced_tables = prepare_model(SkipGram(num_items, cfg.embedding_dim, sparse))
    net: SkipGram = model.module if hasattr(model, "module") else model
    device = ray.train.torch.get_device()
    optimizer = Optimizer(net, cfg)
    # word2vec's unigram^0.75 table: prep's item_sampling, whatever train.sampler says
    sampler = make_sampler("unigram", num_items, config["item_sampling_path"])
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    shard = ray.train.get_dataset_shard("train")
    for epoch in range(cfg.item2vec_epochs):
        optimizer.set_learning_rate(learning_rate(cfg, epoch))
        loss_sum, steps = 0.0, 0
        for table in shard.iter_batches(batch_size=cfg.batch_size, batch_format="pyarrow",
                                        local_shuffle_buffer_size=cfg.batch_size * 8,
                                        local_shuffle_seed=cfg.seed + epoch * 1013 + rank):
            labels = torch.from_numpy(table.column("label").to_numpy().astype(np.int64)).to(device)
            history = torch.from_numpy(padded_lists(table.column("history"), history_len).astype(np.int64)).to(device)
            negatives = sampler.sample(min(cfg.num_negatives, num_items - 1), generator).to(device)
            loss, _ = train_step(lambda: (model(labels, history, negatives, cfg.item2vec_window), len(labels)),
                                 optimizer, synced_tables)
            loss_sum, steps = loss_sum + float(loss.detach()), steps + 1
        metrics = {"item2vec_epoch": epoch + 1, "item2vec_loss": loss_sum / max(steps, 1)}
        if rank == 0:
            log.info("item2vec epoch %d/%d: loss %.4f", epoch + 1, cfg.item2vec_epochs, metrics["item2vec_loss"])
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                torch.save({"center": net.center.weight.detach().cpu()}, os.path.join(tmp, VECTORS))
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)

