"""Sparse embedding tables: SparseAdam steps exactly the rows a batch touched, Adam the dense
layers; under DDP (gloo), the sparse tables averaged by sparse_sync, every rank ends a step
with the same parameters."""

from __future__ import annotations

import os

import torch

from ray_train.optim import LazyAdam, Optimizer, uses_sparse_embeddings
from ray_train.model import ModelSpec, YouTubeDNN
from ray_train.objective import Objective
from ray_train.sparse_sync import average_sparse_gradients, keep_out_of_ddp
from tests.ray_train.gloo import run_two_ranks
from core.config import TrainConfig

SPEC = ModelSpec(num_items=40, categorical_sizes=(3,), embedding_dim=8, hidden_layers=(16, 8))
CFG = TrainConfig(num_negatives=5, sparse_embeddings="on", learning_rate=0.01, loss="sampled")


def _inputs(rows: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    history = torch.randint(1, 20, (rows, 4), generator=g)  # items 20 .. 39 never in a history
    return (history, torch.zeros(rows, 0, dtype=torch.long), torch.randint(0, 3, (rows, 1), generator=g),
            torch.zeros(rows, 0), torch.rand(rows, generator=g)), history[:, 0]


def test_sparse_tables_step_only_the_rows_a_batch_touched():
    net = YouTubeDNN(SPEC, sparse=True)
    optimizer = Optimizer(net, CFG)
    assert len(optimizer.parts) == 2 and isinstance(optimizer.parts[1], LazyAdam)
    history_before = net.user_tower.history.weight.detach().clone()
    mlp_before = net.user_tower.mlp[0].weight.detach().clone()
    inputs, labels = _inputs(16, 0)
    loss = Objective(CFG, SPEC, "", 0)(net(*inputs), labels, net)
    optimizer.zero_grad()
    loss.backward()
    assert net.user_tower.history.weight.grad.is_sparse
    optimizer.step()
    changed = (net.user_tower.history.weight != history_before).any(1)
    touched = torch.zeros(40, dtype=torch.bool)
    touched[inputs[0].unique()] = True
    assert torch.equal(changed, touched)  # rows 20 .. 39 and padding are untouched
    assert not net.user_tower.demographics[0].sparse  # small tables stay dense (gloo, see UserTower)
    assert not torch.equal(net.user_tower.mlp[0].weight, mlp_before)


def test_lazy_adam_makes_sparse_adams_updates():
    torch.manual_seed(0)
    tables = [torch.nn.Parameter(torch.randn(50, 4)) for _ in range(2)]
    tables[1].data.copy_(tables[0].data)
    ours, reference = LazyAdam([tables[0]], lr=0.01), torch.optim.SparseAdam([tables[1]], lr=0.01)
    for step in range(5):
        rows = torch.randint(0, 50, (12,), generator=torch.Generator().manual_seed(step))  # repeats included
        values = torch.randn(12, 4, generator=torch.Generator().manual_seed(100 + step))
        for table, optimizer in zip(tables, (ours, reference)):
            table.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), values, (50, 4))
            optimizer.step()
    assert torch.allclose(tables[0], tables[1], atol=1e-6)
    for moment in ("exp_avg", "exp_avg_sq"):
        assert torch.allclose(ours.state[tables[0]][moment], reference.state[tables[1]][moment], atol=1e-7)


def test_a_tied_table_is_stepped_once():
    tied = ModelSpec(**{**SPEC.to_dict(), "embedding_dim": 8, "tie_embeddings": True})
    net = YouTubeDNN(tied, sparse=True)
    assert sum(p is net.item_output.weight for p in net.sparse_parameters()) == 1


def test_auto_turns_sparse_on_for_large_vocabularies_on_cpu_only():
    auto = TrainConfig()
    assert not uses_sparse_embeddings(auto, 2_000) and uses_sparse_embeddings(auto, 400_000)
    assert not uses_sparse_embeddings(TrainConfig(use_gpu=True), 400_000)
    assert not uses_sparse_embeddings(TrainConfig(loss="full", sparse_embeddings="on"), 400_000)


def _ddp_rank(rank: int, out: str) -> None:
    torch.manual_seed(CFG.seed)  # as the training loop: the same initial weights everywhere
    net = YouTubeDNN(SPEC, sparse=True)
    keep_out_of_ddp(net, net.sparse_parameters())  # as the training loop: averaged by sparse_sync
    model = torch.nn.parallel.DistributedDataParallel(net)
    optimizer = Optimizer(net, CFG)
    objective = Objective(CFG, SPEC, "", rank)
    for step in range(3):
        inputs, labels = _inputs(8, seed=100 * step + rank)  # each rank its own batch
        loss = objective(model(*inputs), labels, net)
        optimizer.zero_grad()
        loss.backward()
        average_sparse_gradients(net.sparse_parameters())
        optimizer.step()
    torch.save(net.state_dict(), os.path.join(out, f"rank{rank}.pt"))


def test_after_ddp_steps_both_ranks_hold_the_same_parameters(tmp_path):
    run_two_ranks(_ddp_rank, str(tmp_path))
    first, second = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for name, value in first.items():
        assert torch.allclose(value, second[name], atol=1e-6), name
    torch.manual_seed(CFG.seed)
    initial = YouTubeDNN(SPEC).state_dict()
    assert not torch.allclose(first["user_tower.mlp.0.weight"], initial["user_tower.mlp.0.weight"])
