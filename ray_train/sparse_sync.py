"""Sparse gradients averaged across ranks with dense collectives.

DDP hands sparse gradients to the process group's sparse all-reduce. On CPU (gloo) that path
corrupted the heap of 2-worker runs on the 1M-item log now and then ("malloc(): unaligned
tcache chunk detected" after 100 to 1,500 steps, the run going on only through a restart from
its checkpoint). The sparse tables are therefore left out of DDP and their gradients averaged
here: each rank's coalesced rows and values are all-gathered as dense tensors padded to the
largest row count, and every rank sums the same pieces in the same order, so all ranks step
with the same gradient.
"""

from __future__ import annotations

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch import nn


def prepare_model(model: nn.Module) -> tuple[nn.Module, list[nn.Parameter]]:
    """Ray Train's prepare_model with the model's sparse tables (`sparse_parameters()`) kept
    out of DDP: returns the prepared model and the tables whose gradients the loop averages
    with `average_sparse_gradients` after each backward (none in a single-worker run)."""
    tables = model.sparse_parameters()
    if not tables or ray.train.get_context().get_world_size() == 1:
        return ray.train.torch.prepare_model(model), []
    table_ids = {id(p) for p in tables}
    if all(id(p) in table_ids for p in model.parameters()):  # nothing left for DDP to do
        return ray.train.torch.prepare_model(model, parallel_strategy=None), tables
    keep_out_of_ddp(model, tables)
    return ray.train.torch.prepare_model(model), tables


def keep_out_of_ddp(model: nn.Module, params: list[nn.Parameter]) -> None:
    """Mark `params` for DistributedDataParallel to ignore (call before wrapping the model)."""
    wanted = {id(p) for p in params}
    names = [name for name, p in model.named_parameters(remove_duplicate=False) if id(p) in wanted]
    nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)


def average_sparse_gradients(params: list[nn.Parameter]) -> None:
    """Replace each parameter's sparse gradient by the mean of every rank's (a rank that did
    not touch a table contributes no rows)."""
    world = dist.get_world_size()
    for p in params:
        rows, values = _rows_and_values(p)
        counts = [torch.zeros(1, dtype=torch.long) for _ in range(world)]
        dist.all_gather(counts, torch.tensor([len(rows)]))
        width = int(max(c.item() for c in counts))
        padded_rows = torch.zeros(width, dtype=torch.long)
        padded_rows[: len(rows)] = rows
        padded_values = torch.zeros(width, *p.shape[1:], dtype=p.dtype)
        padded_values[: len(rows)] = values
        all_rows = [torch.empty_like(padded_rows) for _ in range(world)]
        all_values = [torch.empty_like(padded_values) for _ in range(world)]
        dist.all_gather(all_rows, padded_rows)
        dist.all_gather(all_values, padded_values)
        n = [int(c.item()) for c in counts]
        indices = torch.cat([r[:k] for r, k in zip(all_rows, n)]).unsqueeze(0)
        gathered = torch.cat([v[:k] for v, k in zip(all_values, n)]) / world
        # valid by construction (each rank's own coalesced rows): no invariant check needed
        p.grad = torch.sparse_coo_tensor(indices, gathered, p.shape, check_invariants=False).coalesce()


def _rows_and_values(p: nn.Parameter) -> tuple[torch.Tensor, torch.Tensor]:
    if p.grad is None:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, *p.shape[1:], dtype=p.dtype)
    grad = p.grad.coalesce()
    return grad.indices()[0], grad.values()
