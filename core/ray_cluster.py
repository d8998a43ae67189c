"""The Ray instance every stage runs on: the configured cluster's, or a local one sized for
the stage."""

from __future__ import annotations

import logging
import os
import sys

import ray
import ray.data

from core.config import RayConfig
from core.console import share_log_file


def start_ray(cfg: RayConfig, min_cpus: int = 1, log_to_driver: bool = True) -> None:
    """Join the configured cluster, or start a local instance sized for training plus data;
    log_to_driver=False leaves the workers' logs in Ray's session files (tuning trials)."""
    # per-operator progress bars on a terminal; in a log file they are noise, and the stages
    # log their own progress
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = sys.stderr.isatty()
    # the stages ask for their actors' memory from what the actors load (serving/recall.py);
    # Ray Data's memory detector warns, every 30 s and at the end, whenever an actor's most
    # used is within 25% of its ask
    detectors = context.issue_detectors_config.detectors
    context.issue_detectors_config.detectors = [d for d in detectors if d.__name__ != "HighMemoryIssueDetector"]
    if ray.is_initialized():
        return
    if cfg.address:
        ray.init(address=cfg.address, log_to_driver=log_to_driver, logging_level=logging.WARNING)
        share_log_file("ray")  # from here Ray's INFO lines go to the command's log file
        return
    num_cpus = max(cfg.num_cpus or os.cpu_count() or 1, min_cpus)
    ray.init(
        num_cpus=num_cpus,
        object_store_memory=cfg.object_store_memory,
        log_to_driver=log_to_driver,
        configure_logging=True,
        logging_level=logging.WARNING,
    )
    share_log_file("ray")
