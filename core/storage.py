"""Stage directories on any filesystem, finished by a manifest written last.

A stage directory (RUN_DIR/prep, RUN_DIR/model, ...) is finished when, and only when, its
`_manifest.json` exists: a stage deletes the old manifest before anything else and writes the
new one after everything else, so a crash leaves a directory that no reader accepts.
Paths are local paths or filesystem URIs (file://, s3://, gs://, hdfs://) through pyarrow.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import time
import uuid
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from core import __version__, locks
from core.contract import MANIFEST


class StageNotFinished(RuntimeError):
    """An input stage has no manifest: it never ran, or it was interrupted."""


class StaleStage(ValueError):
    """A stage's manifest names another build of an upstream stage than the one now there."""


def is_uri(path: str) -> bool:
    # a one-letter scheme is a Windows drive ("C:\\data"), not a URI
    return len(urlparse(str(path)).scheme) > 1


def absolute(path: str) -> str:
    """A local path made absolute; URIs pass through unchanged."""
    return str(path) if is_uri(path) else os.path.abspath(os.path.expanduser(str(path)))


def join(base: str, *parts: str) -> str:
    return "/".join([str(base).rstrip("/"), *parts])


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(absolute(path))


def parquet_dataset(path: str) -> pads.Dataset:
    """A stage's folder of Parquet files (hive-partitioned where it is) as one dataset."""
    fs, local = filesystem(path)
    return pads.dataset(local, filesystem=fs, format="parquet", partitioning="hive")


def take_rows(path: str, rows: Any, columns: list[str] | None = None) -> pa.Table:
    """Rows of a Parquet folder by position (ascending; numbered file by file as its dataset
    reads them), read a row group at a time and only the row groups that hold them: the
    memory is one row group's and the rows', however large the folder (a Dataset's take
    reads every file whole)."""
    dataset = parquet_dataset(path)
    rows = np.asarray(rows, dtype=np.int64)
    parts, first = [], 0
    for fragment in dataset.get_fragments():
        for group in fragment.split_by_row_group():
            count = group.row_groups[0].num_rows
            inside = rows[np.searchsorted(rows, first):np.searchsorted(rows, first + count)] - first
            if len(inside):
                parts.append(group.to_table(schema=dataset.schema, columns=columns).take(pa.array(inside)))
            first += count
    if not parts:
        empty = dataset.schema.empty_table()
        return empty.select(columns) if columns is not None else empty
    return pa.concat_tables(parts)


def exists(path: str) -> bool:
    fs, p = filesystem(path)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def list_names(path: str) -> list[str]:
    fs, p = filesystem(path)
    if fs.get_file_info(p).type != pafs.FileType.Directory:
        return []
    return sorted(info.base_name for info in fs.get_file_info(pafs.FileSelector(p)))


def size_bytes(path: str) -> int:
    """The bytes under path: a file's size, or the sum of a folder's files (0 if missing)."""
    fs, local = filesystem(path)
    info = fs.get_file_info(local)
    if info.type == pafs.FileType.File:
        return int(info.size)
    if info.type != pafs.FileType.Directory:
        return 0
    return sum(int(f.size) for f in fs.get_file_info(pafs.FileSelector(local, recursive=True))
               if f.type == pafs.FileType.File)


def read_bytes(path: str) -> bytes:
    fs, p = filesystem(path)
    with fs.open_input_stream(p) as f:
        return f.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode()


def write_bytes(path: str, data: bytes) -> None:
    fs, p = filesystem(path)
    fs.create_dir(p.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(p) as f:
        f.write(data)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode())


def replace_dir(src: str, dst: str) -> None:
    """Copy the folder src to dst, replacing what dst held: the copy is made beside dst under
    a hidden name (readers of a partitioned table skip names that start with "."), then the
    old folder is renamed away and the copy renamed in, so a reader finds the old files or
    the new ones, never a mix, and a failed copy leaves dst as it was. A rename is atomic on
    local disks and HDFS; on object stores it is a copy, and readers go by a manifest."""
    src_fs, src_path = filesystem(src)
    fs, path = filesystem(dst)
    if src_fs.get_file_info(src_path).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"{src}: no such folder to publish")
    parent, name = path.rsplit("/", 1)
    fs.create_dir(parent, recursive=True)
    for entry in fs.get_file_info(pafs.FileSelector(parent)):  # what an interrupted replace left
        if entry.base_name.startswith(f".{name}."):
            fs.delete_dir(entry.path)
    token = uuid.uuid4().hex[:8]
    staging, old = f"{parent}/.{name}.new-{token}", f"{parent}/.{name}.old-{token}"
    fs.create_dir(staging)
    pafs.copy_files(src_path, staging, source_filesystem=src_fs, destination_filesystem=fs)
    replacing = fs.get_file_info(path).type != pafs.FileType.NotFound
    if replacing:
        fs.move(path, old)
    fs.move(staging, path)
    if replacing:
        fs.delete_dir(old)


def is_under(path: str, root: str) -> bool:
    """Is path inside root (or root itself)? Local paths are compared after resolving links
    and "..", URIs by their normalized prefix; a local path is never under a URI root, nor
    the reverse."""
    path_uri, root_uri = "://" in path, "://" in root
    if path_uri != root_uri:
        return False
    if path_uri:
        scheme, _, rest = path.partition("://")
        root_scheme, _, root_rest = root.partition("://")
        parts = [p for p in rest.split("/") if p not in ("", ".")]
        if ".." in parts:
            return False
        root_parts = [p for p in root_rest.split("/") if p]
        return scheme.lower() == root_scheme.lower() and parts[:len(root_parts)] == root_parts
    resolved = os.path.realpath(os.path.expanduser(path))
    base = os.path.realpath(os.path.expanduser(root))
    return resolved == base or resolved.startswith(base.rstrip(os.sep) + os.sep)


def links_within(path: str) -> list[tuple[str, str]]:
    """(link, where it resolves) for every symbolic link at or below a local path, folders
    and files alike, without following them; [] for a URI or a path that is not there."""
    if is_uri(path) or not os.path.lexists(path):
        return []
    found = [(path, os.path.realpath(path))] if os.path.islink(path) else []
    for folder, dirs, files in os.walk(os.path.realpath(path)):
        for name in dirs + files:
            entry = os.path.join(folder, name)
            if os.path.islink(entry):
                found.append((entry, os.path.realpath(entry)))
    return found


def begin_stage(stage_dir: str, keep: tuple[str, ...] = (), inputs: tuple[str | None, ...] = ()) -> float:
    """Take the stage's lock (core.locks: a second run into the same directory at once
    is refused), then unfinish and empty the directory, all but the entries named in `keep`;
    returns the start time. Refused, before anything is deleted, when one of `inputs` (the
    paths the stage will read) lies inside the directory. A link inside it is removed, never
    what it points to."""
    for source in inputs:
        if source is not None and is_under(source, stage_dir):
            raise ValueError(f"{source} lies inside {stage_dir}, which this stage empties before it writes: "
                             "move the input out of it, or write the run elsewhere")
    fs, p = filesystem(stage_dir)
    if fs.get_file_info(p).type == pafs.FileType.File:
        raise FileExistsError(f"{stage_dir} is a file, expected a stage directory")
    fs.create_dir(p, recursive=True)
    locks.acquire(fs, p, stage_dir)
    manifest = f"{p}/{MANIFEST}"
    if fs.get_file_info(manifest).type != pafs.FileType.NotFound:
        fs.delete_file(manifest)
    for entry in fs.get_file_info(pafs.FileSelector(p)):
        if entry.base_name in keep or entry.base_name == locks.LOCK:
            continue
        if entry.type == pafs.FileType.Directory:
            fs.delete_dir(entry.path)
        else:
            fs.delete_file(entry.path)
    return time.time()


def finish_stage(stage_dir: str, started: float, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the manifest, last: from now on readers accept the directory; then drop the lock.
    The manifest gets this build's `fingerprint`: of what it was built from (the manifest's
    `built_from`, its inputs and configuration) and of the build itself, so a rebuilt stage
    never carries the fingerprint its downstream stages recorded (check_built_from)."""
    body = {
        "stage": stage_dir.rstrip("/").rsplit("/", 1)[-1],
        "watchnext_version": __version__,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - started, 3),
        # the peak resident memory of the process that ran the stage, up to its end (the
        # driver's: Spark executors and Ray workers are processes of their own)
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **manifest,
    }
    body["fingerprint"] = fingerprint(body.get("built_from"), body.get("inputs"), body.get("config"),
                                      body["finished_at"], uuid.uuid4().hex)
    write_text(join(stage_dir, MANIFEST), json.dumps(body, indent=2, sort_keys=True) + "\n")
    locks.release(*filesystem(stage_dir))
    return body


def fingerprint(*parts: Any) -> str:
    """16 hex digits of the SHA-256 of parts as JSON."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tree_fingerprint(path: str) -> str:
    """The fingerprint of the files under a folder (or of one file): names, sizes, mtimes."""
    fs, p = filesystem(path)
    info = fs.get_file_info(p)
    entries = [info] if info.type == pafs.FileType.File else fs.get_file_info(pafs.FileSelector(p, recursive=True))
    return fingerprint(sorted((e.path[len(p):], e.size, e.mtime_ns) for e in entries if e.type == pafs.FileType.File))


def check_built_from(stage_dir: str, manifest: dict[str, Any], upstream: dict[str, dict[str, Any]]) -> None:
    """Refuse (StaleStage) a finished stage whose manifest records another build of an upstream
    stage (its `built_from` fingerprints) than the one `upstream` holds now: e.g. a model
    trained before a new prep into the same RUN_DIR. A manifest that records none passes."""
    recorded = manifest.get("built_from") or {}
    for name, current in upstream.items():
        if name in recorded and recorded[name] != current.get("fingerprint"):
            raise StaleStage(
                f"{stage_dir} was built from another {name} (fingerprint {recorded[name]}) than the one now "
                f"beside it ({current.get('fingerprint')}): {name} was rebuilt since; run the "
                f"{manifest.get('stage', 'stage')} stage and the ones after it again"
            )


def read_manifest(stage_dir: str) -> dict[str, Any]:
    path = join(stage_dir, MANIFEST)
    if not exists(path):
        raise StageNotFinished(
            f"{stage_dir} has no {MANIFEST}: that stage has not finished; run it first"
        )
    return json.loads(read_text(path))
