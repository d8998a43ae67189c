"""Peak memory of a process tree (a stage with its JVM, or its Ray cluster), sampled in a
thread."""

from __future__ import annotations

import threading
import time

try:
    import psutil
except ImportError:  # callers report the peak as n/a; `pip install psutil` fixes it
    psutil = None

GIB = 1 << 30


# PSS costs the kernel a walk of a process's pages: 0.16 s of CPU for the process tree of a
# recall over 1M items, against 5 ms for RSS. Sampled every 0.5 s, it took a fifth of a core
# from the stage it measured; a process whose RSS has not moved by this much keeps its last
# PSS, and every process is read afresh every PSS_REFRESH_S (a sharer's exit moves the others'
# PSS without moving their RSS)
PSS_REREAD_BYTES = 32 << 20
PSS_REFRESH_S = 5.0


class PeakRss:
    """Peak of the summed memory of a process (by default this one) and its descendants,
    sampled every interval_s. `measure` is "rss", or "pss" where processes share memory
    (Ray's object store is mapped by every worker: their RSS counts it once each, their PSS
    splits it among them)."""

    def __init__(self, interval_s: float = 0.2, pid: int | None = None, measure: str = "rss"):
        self.interval_s = interval_s
        self.pid = pid
        self.measure = measure
        self.peak_bytes = 0
        self.at_peak_gib: dict[str, float] = {}
        self._pss: dict[int, tuple[int, int]] = {}  # pid -> (RSS, PSS) at its last PSS read
        self._refreshed = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB

    def sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:  # the watched process has exited
            return
        refresh = time.monotonic() - self._refreshed >= PSS_REFRESH_S
        if refresh:
            self._refreshed = time.monotonic()
        tree = {}
        for proc in procs:
            try:
                with proc.oneshot():
                    memory = proc.memory_info()
                    tree[proc.pid] = (proc.ppid(), proc.name(), proc.exe(), memory, self._measured(proc, memory, refresh))
            except (psutil.NoSuchProcess, psutil.AccessDenied):  # gone between the listing and the read
                continue
        by_process = {}
        for pid, (ppid, name, exe, memory, measured) in tree.items():
            parent = tree.get(ppid)
            # the JVM spawns helpers (Hadoop's chmod) with vfork: until they exec they share its
            # address space (same executable, same virtual size) and report its RSS as theirs
            if pid != root.pid and parent is not None and (parent[2], parent[3].vms) == (exe, memory.vms):
                continue
            by_process[f"{name}:{pid}"] = measured
        total = sum(by_process.values())
        if total > self.peak_bytes:
            self.peak_bytes = total
            # which processes made the peak, for the log
            self.at_peak_gib = {k: round(v / GIB, 3) for k, v in by_process.items() if v >= 1 << 20}

    def _measured(self, proc, memory, refresh: bool) -> int:
        """The process's RSS, or its PSS: read again where its RSS moved or on a refresh."""
        if self.measure != "pss":
            return memory.rss
        last = self._pss.get(proc.pid)
        if refresh or last is None or abs(memory.rss - last[0]) >= PSS_REREAD_BYTES:
            last = (memory.rss, proc.memory_full_info().pss)
            self._pss[proc.pid] = last
        return last[1]

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()
