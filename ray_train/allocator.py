"""A training worker's memory allocator, tuned for a step that frees and re-allocates the same
large tensors every time.

A CPU step allocates tensors of megabytes ([B, S] logits, their exponentials, the softmax's
gradient) and frees them before the next step asks for the same again. glibc's malloc serves
such blocks with mmap, or hands freed heap back to the system, so every step pays a page fault
per 4 KiB touched: ~2,500 faults a step on ml-100k at batch 2,048 and 1,024 negatives, 2-6%
of the step (BENCHMARKS.md). Raising the mmap threshold to glibc's largest (32 MiB) and the
trim threshold to 1 GiB keeps that memory in the process, where the next step finds it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
# blocks below this come from the heap, not their own mmap; glibc accepts at most 32 MiB
MMAP_THRESHOLD = 32 << 20
# freed heap beyond this at its top goes back to the system (the step's peak stays below it)
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks for reuse (see the module docstring); whether it
    applied (False off glibc, e.g. on macOS or musl, where nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    mallopt = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "mallopt", None)
    if mallopt is None:
        return False
    applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not applied:
        log.warning("mallopt refused the training worker's thresholds; the allocator keeps its defaults")
    return applied
