"""Sparse gradients averaged across 2 gloo ranks with dense collectives."""

from __future__ import annotations

import os

import torch
from torch import nn

from ray_train.sparse_sync import average_sparse_gradients, keep_out_of_ddp
from tests.ray_train.gloo import run_two_ranks

# rank r's gradient rows and values of a 6 x 2 table; rank 1 touches the second table not at all
ROWS = {0: [1, 2, 2], 1: [2, 5]}
VALUES = {0: [[1.0, 1.0], [2.0, 0.0], [1.0, 3.0]], 1: [[4.0, 4.0], [6.0, -2.0]]}


def _rank(rank: int, out: str) -> None:
    table, other = nn.Parameter(torch.zeros(6, 2)), nn.Parameter(torch.zeros(6, 2))
    table.grad = torch.sparse_coo_tensor(torch.tensor([ROWS[rank]]), torch.tensor(VALUES[rank]), (6, 2))
    if rank == 0:
        other.grad = torch.sparse_coo_tensor(torch.tensor([[3]]), torch.tensor([[2.0, 2.0]]), (6, 2))
    average_sparse_gradients([table, other])
    torch.save({"table": table.grad.to_dense(), "other": other.grad.to_dense(),
                "coalesced": table.grad.is_coalesced()}, os.path.join(out, f"rank{rank}.pt"))


def test_every_rank_gets_the_mean_of_all_ranks_sparse_gradients(tmp_path):
    run_two_ranks(_rank, str(tmp_path))
    expected_table = torch.zeros(6, 2)
    expected_table[1] = torch.tensor([1.0, 1.0]) / 2
    expected_table[2] = torch.tensor([2.0 + 1.0 + 4.0, 0.0 + 3.0 + 4.0]) / 2
    expected_table[5] = torch.tensor([6.0, -2.0]) / 2
    expected_other = torch.zeros(6, 2)
    expected_other[3] = torch.tensor([1.0, 1.0])  # rank 1 contributed no rows: still the mean over 2
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert torch.equal(got["table"], expected_table) and torch.equal(got["other"], expected_other)
        assert got["coalesced"]


def test_tables_kept_out_of_ddp_are_named_with_every_alias():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Embedding(4, 2, sparse=True)
            self.b = self.a  # one table, two names
            self.dense = nn.Linear(2, 2)

    model = Tied()
    keep_out_of_ddp(model, [model.a.weight])
    assert set(model._ddp_params_and_buffers_to_ignore) == {"a.weight", "b.weight"}
