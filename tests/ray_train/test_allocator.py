"""The training worker's allocator keeps a step's large freed tensors for the next step."""

import subprocess
import sys

import pytest

# a fresh interpreter: mallopt changes the whole process, not just a test
FAULTS_PER_STEP = """
import ctypes, resource, sys, torch
from ray_train.allocator import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, keep_freed_memory

def faults_per_step():
    for _ in range(12):  # the first steps fault memory in (the heap grew over up to 9 of them)
        torch.randn(2048, 1024).exp()
    counts = []
    for _ in range(20):  # a step's [2048, 1024] logits and their exponentials, then freed
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.randn(2048, 1024).exp()
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return sorted(counts)[len(counts) // 2]  # the median step

libc = ctypes.CDLL("libc.so.6")
# glibc as a process starts: 128 KiB thresholds, before its dynamic threshold has adapted
libc.mallopt(M_MMAP_THRESHOLD, 128 << 10)
libc.mallopt(M_TRIM_THRESHOLD, 128 << 10)
print(faults_per_step(), keep_freed_memory(), faults_per_step())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_step_tensors_are_reused_without_page_faults():
    out = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP], capture_output=True, text=True, check=True)
    default, applied, kept = out.stdout.split()
    assert applied == "True"
    # two 8 MiB tensors a step: 4,096 pages faulted in when each is a fresh mmap
    assert float(default) > 3000
    assert float(kept) < 50
