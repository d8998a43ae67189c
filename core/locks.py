"""One writer per stage directory: `_lock.json`, taken before a stage empties its directory
and dropped after its manifest is written.

Two runs into the same output at once would delete each other's files and finish with a
mixture; the second one refuses instead, naming the holder. The lock records host, pid, a
random token and when it was taken. It is created exclusively where the filesystem can
(O_CREAT | O_EXCL on a local disk); on object stores, which cannot, it is written and read
back, so that of two runs racing for it within the same second the one whose token is there
wins. A lock is stale, and taken over, when its process is gone (same host), when it is this
process's own (a stage rerun in the same process), or when it is older than STALE_AFTER
(another host: a run killed without a chance to clean up must not block tomorrow's).
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import socket
import time

import pyarrow.fs as pafs

LOCK = "_lock.json"
STALE_AFTER = 24 * 3600.0  # seconds: a lock from another host this old is abandoned

_held: dict[str, tuple[pafs.FileSystem, str]] = {}  # lock path -> (filesystem, token) of this process


class StageBusy(RuntimeError):
    """Another run is writing this stage directory."""


def acquire(fs: pafs.FileSystem, stage_path: str, stage_name: str) -> None:
    """Take the stage's lock or raise StageBusy; stage_name is how the message names it."""
    path = f"{stage_path}/{LOCK}"
    for _ in range(2):  # a stale lock is removed, then taken on the second try
        holder = _read(fs, path)
        if holder is None:
            token = secrets.token_hex(8)
            body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": token,
                               "started": time.time()}).encode()
            if _create(fs, path, body) and (_read(fs, path) or {}).get("token") == token:
                _held[path] = (fs, token)
                return
            continue
        if _stale(holder):
            fs.delete_file(path)
            continue
        break
    holder = _read(fs, path) or {}
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(holder.get("started", 0)))
    raise StageBusy(
        f"{stage_name} is being written by another run (pid {holder.get('pid')} on {holder.get('host')}, "
        f"since {since}); wait for it, or if that run is dead, delete {stage_name}/{LOCK} and rerun"
    )


def release(fs: pafs.FileSystem, stage_path: str) -> None:
    """Drop the stage's lock if this process holds it."""
    path = f"{stage_path}/{LOCK}"
    held = _held.pop(path, None)
    if held is not None and (_read(fs, path) or {}).get("token") == held[1]:
        fs.delete_file(path)


def _release_all() -> None:
    for path, (fs, token) in list(_held.items()):
        try:
            if (_read(fs, path) or {}).get("token") == token:
                fs.delete_file(path)
        except OSError:
            pass  # the process is exiting: a lock left behind is stale once its pid is gone
    _held.clear()


atexit.register(_release_all)


def _stale(holder: dict) -> bool:
    if holder.get("host") == socket.gethostname():
        return holder.get("pid") == os.getpid() or not _alive(int(holder.get("pid", -1)))
    return time.time() - float(holder.get("started", 0)) > STALE_AFTER


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _create(fs: pafs.FileSystem, path: str, body: bytes) -> bool:
    """Write path unless it exists (atomically on a local disk); False if it was there."""
    if isinstance(fs, pafs.LocalFileSystem):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        return True
    with fs.open_output_stream(path) as f:
        f.write(body)
    return True


def _read(fs: pafs.FileSystem, path: str) -> dict | None:
    try:
        with fs.open_input_stream(path) as f:
            raw = f.read()
    except OSError:  # FileNotFoundError included: no lock
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return {"pid": -1, "started": 0}  # a torn write: stale
