"""What a person reads on the console: one line per stage and its progress, and warnings
that mean something. The engines' routine chatter stays in their own log files."""

from __future__ import annotations

import logging
import os
from pathlib import Path

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


def quiet_console(verbose: bool = False) -> None:
    """Set the console up for a command: the libraries' routine lines off (all of them on
    with verbose)."""
    if verbose:
        return
    # FAISS's loader logs every instruction set it tries before the one it loads
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    # py4j logs every connection it closes, and a closed socket's traceback, at INFO
    logging.getLogger("py4j").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(Py4jRetries())
    os.environ.setdefault(RAY_DATA_LOGGING_ENV, str(RAY_DATA_LOGGING))
