"""What a person reads on the console: one line per stage and its progress, and warnings
that mean something. The engines' routine chatter stays in their own log files."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

# the packages whose INFO lines are the console's: the commands, the base and the stages
OWN_PACKAGES = frozenset({"watchnext", "core", "jobs", "ray_train", "serving", "report", "synthetic", "bench"})
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Ray Data's logging, as Ray ships it but with the console at WARNING (its per-dataset
# "Starting execution" / "Execution plan" / "execution finished" lines still reach
# ray-data.log); read by every Ray process started after it is set, workers included
RAY_DATA_LOGGING = Path(__file__).with_name("ray_data_logging.yaml")
RAY_DATA_LOGGING_ENV = "RAY_DATA_LOGGING_CONFIG"


class RayDataNotices(logging.Filter):
    """Ray Data's notice that its progress bars are off: the stages log their own progress."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Progress bars")


class Py4jRetries(logging.Filter):
    """py4j logs a retried send, after Spark's gateway dropped an idle connection, with its
    traceback at INFO on the root logger; the retry succeeds, so it is no news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno < logging.WARNING and f"{os.sep}py4j{os.sep}" in record.pathname)


_quiet = False  # quiet_console was called without verbose
_log_file: Path | None = None
_created_dirs: list[Path] = []  # the folders log_to_file made, deepest first


class OwnLinesAndWarnings(logging.Filter):
    """The console's share of the log: the pipeline's own lines, and anyone's warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.partition(".")[0] in OWN_PACKAGES


class _Tee:
    """sys.stderr that also appends to the log file: what the libraries print rather than log
    (the Ray workers' lines the driver relays, Python's warnings) reaches the file too."""

    def __init__(self, stream, handler: logging.StreamHandler) -> None:
        self._stream, self._handler = stream, handler

    def write(self, text: str) -> int:
        with self._handler.lock:  # the file handler's own lock: a printed line and a logged one never mix
            self._handler.stream.write(text)
            self._handler.stream.flush()
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str):  # isatty, fileno, encoding: the console's
        return getattr(self._stream, name)


def log_to_file(folder: str, command: str, verbose: bool = False) -> Path | None:
    """Write the whole log of this command (every library's INFO lines too, DEBUG with
    verbose, and what is printed to stderr) to folder/COMMAND-UTCTIME.log; None where folder
    is not a local path (an object store's run directory: the console is the log)."""
    if "://" in folder and not folder.startswith("file://"):
        return None
    logs = Path(folder.removeprefix("file://"))
    global _created_dirs
    _created_dirs = [d for d in (logs, *logs.parents) if not d.exists()]
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"{command}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG if verbose else logging.INFO)
    handler.setFormatter(logging.Formatter(FORMAT))
    logging.getLogger().addHandler(handler)
    global _log_file
    _log_file = path
    # the console's handler keeps the real stderr, so a logged line is written to the file once
    sys.stderr = _Tee(sys.stderr, handler)
    return path


def discard_log_file() -> None:
    """A command refused before it wrote anything (bad input, bad settings) leaves nothing
    behind, its log file included: the console said why. Where this command made the output
    folder and nothing but its log is in it, the log and the folders go; else the log stays."""
    global _log_file
    if _log_file is None or _log_file.parent.parent not in _created_dirs:
        return
    logs, top = _log_file.parent, _created_dirs[-1]
    if any(p.is_file() and p.parent != logs for p in top.rglob("*")):
        return
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(handler)
        handler.close()
    if isinstance(sys.stderr, _Tee):
        sys.stderr = sys.stderr._stream
    for path in logs.glob(_log_file.stem + "*"):  # the command's log and its Spark log
        path.unlink()
    for folder in _created_dirs:  # deepest first
        if folder.exists() and not any(folder.iterdir()):
            folder.rmdir()
    _log_file = None


def log_file() -> Path | None:
    """This command's log file (log_to_file), if it has one."""
    return _log_file


def share_log_file(logger_name: str) -> None:
    """Give a library's logger that keeps its records to itself (Ray's) the command's log file,
    its INFO lines included; its own console handlers print warnings only, unless verbose."""
    logger = logging.getLogger(logger_name)
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    if logger.propagate or not files:
        return
    for handler in logger.handlers:
        if not getattr(handler, "_watchnext_file", False):
            handler.setLevel(logging.WARNING if _quiet else logging.NOTSET)
    logger.setLevel(min(logging.INFO, logging.getLogger().level))
    if any(getattr(h, "_watchnext_file", False) for h in logger.handlers):
        return
    # what its console handler prints reaches the file through the teed stderr; the rest here
    below_warnings = logging.StreamHandler(files[0].stream)
    below_warnings.addFilter(lambda record: _quiet and record.levelno < logging.WARNING)
    below_warnings.setFormatter(files[0].formatter)
    below_warnings._watchnext_file = True
    logger.addHandler(below_warnings)


def quiet_console(verbose: bool = False) -> None:
    """Set the console up for a command: the libraries' routine lines off (all of them on
    with verbose)."""
    global _quiet
    if verbose:
        return
    _quiet = True
    # FAISS's loader logs every instruction set it tries before the one it loads
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    # py4j logs every connection it closes, and a closed socket's traceback, at INFO
    logging.getLogger("py4j").setLevel(logging.WARNING)
    # a local Ray instance announces that its token authentication is on: as it should be
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    for handler in logging.getLogger().handlers:
        handler.addFilter(Py4jRetries())
        handler.addFilter(OwnLinesAndWarnings())
    os.environ.setdefault(RAY_DATA_LOGGING_ENV, str(RAY_DATA_LOGGING))
