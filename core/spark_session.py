"""The SparkSession every job runs in: embedded local[*] by default, the cluster's under spark-submit."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from core.config import SparkConfig
from core.console import log_file

log = logging.getLogger(__name__)

LOG4J2 = Path(__file__).with_name("log4j2.properties")  # the embedded driver's logging


def spark_session(cfg: SparkConfig, app_name: str = "watchnext-prep") -> SparkSession:
    """Get or create the session; settings already fixed by spark-submit are left alone."""
    builder = (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        # Parquet timestamps are written as UTC instants, the contract's timestamp[us, UTC]
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        # stage progress bars redraw one line of a terminal; in a log file they are noise
        .config("spark.ui.showConsoleProgress", str(sys.stderr.isatty()).lower())
        # the job shuffles and sorts the events by user once and caches them; later steps rely
        # on Spark keeping that partitioning for the cached data (jobs/order.py)
        .config("spark.sql.optimizer.canChangeCachedPlanOutputPartitioning", "false")
    )
    # spark-submit starts the Python driver with a gateway already open: its --master and
    # --driver-memory are the cluster's choice and must not be overridden here
    launched_by_spark_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    command_log = log_file()
    if not launched_by_spark_submit:
        java_options = f"-Dlog4j2.configurationFile={LOG4J2}"
        if command_log is not None:  # Spark's INFO lines beside the command's log
            java_options += f" -Dwatchnext.spark.log={command_log.with_suffix('.spark.log')} -Dwatchnext.spark.level=info"
        builder = (builder.master(cfg.master).config("spark.driver.memory", cfg.driver_memory)
                   .config("spark.driver.extraJavaOptions", java_options))
    spark = builder.getOrCreate()
    # the console shows errors only (log4j2.properties); global rankings (vocabularies) use an
    # unpartitioned window by design, and its warning is noise there
    spark.sparkContext.setLogLevel("INFO" if command_log is not None and not launched_by_spark_submit else "ERROR")
    log.info("spark %s on %s", spark.version, spark.sparkContext.master)
    return spark
