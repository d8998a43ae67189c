"""Finding a running process of a stage (an executor, a training worker, a recall actor) to
kill in a fault test."""

from __future__ import annotations

import subprocess
import time
from typing import Callable

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


def kill_one(driver: subprocess.Popen, marker: str, ready: Callable[[], bool] = lambda: True,
             delay_s: float = 0.0, timeout_s: float = 300) -> psutil.Process:
    """Kill the first descendant of a running command whose command line contains marker,
    once `ready()` holds (and delay_s after it is seen); returns it. Fails if the command
    ends first."""
    deadline = time.time() + timeout_s
    while True:
        assert driver.poll() is None and time.time() < deadline, f"the command ended before a {marker} was seen"
        found = descendants_named(driver.pid, marker)
        if found and ready():
            time.sleep(delay_s)
            found[0].kill()
            return found[0]
        time.sleep(0.05)
