"""Finding a running process of a stage (an executor, a training worker, a recall actor) to
kill in a fault test."""

from __future__ import annotations

import psutil


def descendants_named(pid: int, marker: str) -> list[psutil.Process]:
    """The live descendants of pid whose command line contains marker (zombies and processes
    that exit while being listed are skipped)."""
    found = []
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            if marker in " ".join(proc.cmdline()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return found
