"""Mixed precision: bf16 autocast only where the device computes bf16 natively, and a step
under it computing the fp32 step's loss and gradients to bf16's precision, with the weights,
the loss and every gradient (the sparse tables' too) left fp32."""

from __future__ import annotations

import pytest
import torch

from ray_train.model import ModelSpec
from ray_train.models import build_model
from ray_train.objective import Objective
from ray_train.precision import step_autocast, step_precision
from core.config import TrainConfig

SPEC = ModelSpec(num_items=60, categorical_sizes=(3,), embedding_dim=16, hidden_layers=(32, 16), num_tokens=10)


def _cpu_has(monkeypatch, avx512_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


def test_bf16_only_where_amp_is_on_and_the_device_has_it_natively(monkeypatch):
    _cpu_has(monkeypatch, avx512_bf16=False, amx=False)
    assert step_precision(TrainConfig()) == "fp32"  # emulated bf16 would be slower than fp32
    assert step_precision(TrainConfig(use_gpu=True)) == "bf16"
    with step_autocast(TrainConfig()):
        assert not torch.is_autocast_enabled("cpu")
    for avx512_bf16, amx in ((True, False), (False, True)):
        _cpu_has(monkeypatch, avx512_bf16, amx)
        assert step_precision(TrainConfig()) == "bf16"
        assert step_precision(TrainConfig(amp=False)) == "fp32"
        with step_autocast(TrainConfig()):
            assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def _inputs(rows: int = 64):
    g = torch.Generator().manual_seed(3)
    history = torch.randint(0, SPEC.num_items, (rows, 6), generator=g)
    inputs = (history, torch.randint(0, SPEC.num_tokens, (rows, 4), generator=g),
              torch.randint(0, 3, (rows, 1), generator=g), torch.zeros(rows, 0), torch.rand(rows, generator=g))
    return inputs, torch.randint(1, SPEC.num_items, (rows,), generator=g)


@pytest.mark.parametrize("loss,sparse", [("sampled", False), ("sampled", True), ("in_batch", False),
                                         ("mixed", False), ("full", False), ("pointwise", False)])
def test_a_bf16_step_matches_the_fp32_step_to_bf16_precision(monkeypatch, loss, sparse):
    _cpu_has(monkeypatch, avx512_bf16=True, amx=False)  # forced: emulated where the CPU lacks it
    torch.manual_seed(0)
    net = build_model(SPEC, sparse=sparse)
    inputs, labels = _inputs()

    def loss_and_gradients(cfg: TrainConfig):
        net.zero_grad(set_to_none=True)
        objective = Objective(cfg, SPEC, "", 0)  # the same seed: the same shared negatives
        with step_autocast(cfg):
            loss = objective(net(*inputs), labels, net)
        loss.backward()
        return loss, {name: p.grad for name, p in net.named_parameters()}

    settings = {"num_negatives": 20, "loss": loss, "frequency_buckets": 256}
    loss16, grads16 = loss_and_gradients(TrainConfig(**settings, amp=True))
    loss32, grads32 = loss_and_gradients(TrainConfig(**settings, amp=False))
    assert loss16.dtype == torch.float32
    assert loss16.item() != loss32.item()  # the products really ran in bf16
    assert loss16.item() == pytest.approx(loss32.item(), rel=0.02)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert grads16.keys() == grads32.keys()
    for name, g16 in grads16.items():
        g32 = grads32[name]
        assert g16.dtype == torch.float32 and g16.is_sparse == g32.is_sparse, name
        a, b = g16.to_dense().flatten(), g32.to_dense().flatten()
        if b.norm() > 0:
            assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.99, name
    assert grads16["user_tower.history.weight"].is_sparse == sparse
