"""Mixed precision: a step's forward and loss under bf16 autocast where the device computes
bf16 natively.

A GPU does; so does a CPU with AVX512-BF16 or AMX tiles, where oneDNN's bf16 matrix products
ran a CPU step on ml-100k 1.75x as fast as fp32 (BENCHMARKS.md). A CPU without them would
emulate bf16, slower than fp32, and steps there stay fp32. Weights, gradients, the optimizers'
moments and the sampled softmax's cross-entropy stay fp32 either way; validation and serving
run in fp32.
"""

from __future__ import annotations

import torch

from core.config import TrainConfig


def native_bf16(use_gpu: bool) -> bool:
    """Whether this process's training device multiplies bf16 matrices natively."""
    if use_gpu:
        return True
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def step_precision(cfg: TrainConfig) -> str:
    """"bf16" (autocast) or "fp32": what this process's steps run in under `cfg`."""
    return "bf16" if cfg.amp and native_bf16(cfg.use_gpu) else "fp32"


def step_autocast(cfg: TrainConfig) -> torch.autocast:
    """The context a step's forward and loss run in."""
    return torch.autocast(device_type="cuda" if cfg.use_gpu else "cpu", dtype=torch.bfloat16,
                          enabled=step_precision(cfg) == "bf16")
