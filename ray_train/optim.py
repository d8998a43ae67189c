"""The optimizers: Adam for the dense layers, a lazy Adam for the sparse embedding tables.

A step touches a few thousand rows of a table that may hold millions: LazyAdam moves only
those rows and their moments (the update torch.optim.SparseAdam makes), with row-wise index
operations on the coalesced gradient, which ran about twice as fast as SparseAdam's sparse
tensor arithmetic on a 412k x 64 table (BENCHMARKS.md).
"""

from __future__ import annotations

import logging

import torch

from core.config import TrainConfig

log = logging.getLogger(__name__)


class LazyAdam(torch.optim.Optimizer):
    """Adam for sparse gradients: the rows a step's gradient holds are updated, moments and
    values; other rows are left as they are. Bias corrections count the table's steps."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ARG002 - the Optimizer interface
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.coalesce()
                rows, values = grad.indices()[0], grad.values()
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = float(state["step"])
                m = state["exp_avg"].index_select(0, rows).mul_(beta1).add_(values, alpha=1 - beta1)
                v = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(values, values, value=1 - beta2)
                state["exp_avg"].index_copy_(0, rows, m)
                state["exp_avg_sq"].index_copy_(0, rows, v)
                denominator = v.div_(1 - beta2 ** t).sqrt_().add_(group["eps"])
                # scaled before, not by index_add_'s alpha: that path ran 5x slower on CPU
                p.index_add_(0, rows, m.div_(denominator).mul_(-group["lr"] / (1 - beta1 ** t)))


SPARSE_MIN_ITEMS = 20_000


def uses_sparse_embeddings(cfg: TrainConfig, num_items: int) -> bool:
    """See train.sparse_embeddings: CPU only, and not for the full softmax (it reads every row)."""
    if cfg.use_gpu or cfg.for_corpus(num_items).loss == "full" or cfg.sparse_embeddings == "off":
        return False
    return cfg.sparse_embeddings == "on" or num_items >= SPARSE_MIN_ITEMS


class Optimizer:
    """Adam on the dense layers and LazyAdam on the sparse embedding tables."""

    def __init__(self, net: torch.nn.Module, cfg: TrainConfig):
        sparse = net.sparse_parameters()
        sparse_ids = {id(p) for p in sparse}
        dense = [p for p in net.parameters() if id(p) not in sparse_ids]
        self.parts = [torch.optim.Adam(dense, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=True)]
        if sparse:
            self.parts.append(LazyAdam(sparse, lr=cfg.learning_rate))

    def zero_grad(self) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none=True)

    def step(self) -> None:
        for part in self.parts:
            part.step()

    def set_learning_rate(self, lr: float) -> None:
        for part in self.parts:
            for group in part.param_groups:
                group["lr"] = lr

    def state_dict(self) -> dict:
        return {"parts": [part.state_dict() for part in self.parts]}

    def load_state_dict(self, state: dict) -> None:
        if len(state.get("parts", ())) != len(self.parts):
            log.warning("the checkpoint's optimizer state does not match train.sparse_embeddings; moments restart")
            return
        for part, part_state in zip(self.parts, state["parts"]):
            part.load_state_dict(part_state)
