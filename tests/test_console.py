"""The console: Ray Data's routine lines and py4j's retried sends stay off it, warnings stay on."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from core.console import RAY_DATA_LOGGING, Py4jRetries, RayDataNotices


def _record(level: int, message: str, pathname: str = "/x/app.py") -> logging.LogRecord:
    return logging.LogRecord("root", level, pathname, 1, message, None, None)


def test_py4j_retries_are_dropped_and_its_warnings_kept():
    retried = os.path.join(os.sep, "venv", "py4j", "java_gateway.py")
    assert not Py4jRetries().filter(_record(logging.INFO, "Exception while sending command.", retried))
    assert Py4jRetries().filter(_record(logging.ERROR, "Exception while sending command.", retried))
    assert Py4jRetries().filter(_record(logging.INFO, "recall: 943 users"))


def test_ray_data_prints_warnings_but_not_its_execution_lines():
    script = (
        "import logging, ray.data\n"  # Ray Data sets its loggers up on import, from the file
        "log = logging.getLogger('ray.data._internal.execution.streaming_executor')\n"
        "log.info('Starting execution of Dataset x')\n"
        "logging.getLogger('ray.data._internal.progress').warning('Progress bars disabled. To enable...')\n"
        "log.warning('a real warning')\n"
    )
    env = {**os.environ, "RAY_DATA_LOGGING_CONFIG": str(RAY_DATA_LOGGING)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    printed = done.stdout + done.stderr
    assert "a real warning" in printed
    assert "Starting execution" not in printed and "Progress bars" not in printed
    assert not RayDataNotices().filter(_record(logging.WARNING, "Progress bars disabled."))


def test_the_embedded_spark_starts_without_its_banner_or_start_up_warnings():
    script = (
        "from core.spark_session import spark_session\n"
        "from core.config import SparkConfig\n"
        "spark_session(SparkConfig(master='local[1]', driver_memory='1g'), 'quiet').stop()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for noise in ("log4j profile", "Setting default log level", "WARN Utils", "NativeCodeLoader"):
        assert noise not in done.stderr, done.stderr


def test_the_log_file_holds_everything_and_the_console_the_pipelines_lines_and_warnings(tmp_path):
    script = (
        "import logging, sys\n"
        "from core.console import FORMAT, log_to_file, quiet_console\n"
        "logging.basicConfig(level=logging.INFO, format=FORMAT)\n"
        "quiet_console()\n"
        f"path = log_to_file({str(tmp_path / 'logs')!r}, 'run')\n"
        "logging.getLogger('jobs.prep').info('prep: 12 events')\n"
        "logging.getLogger('urllib3.connectionpool').info('routine line')\n"
        "logging.getLogger('urllib3.connectionpool').warning('a warning to act on')\n"
        "print('(RayTrainWorker pid=1) epoch 1/2', file=sys.stderr)\n"
        "print(path)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    path = done.stdout.strip()
    assert path.startswith(str(tmp_path / "logs" / "run-")) and path.endswith(".log")
    logged = open(path).read()
    for line in ("prep: 12 events", "routine line", "a warning to act on", "epoch 1/2"):
        assert logged.count(line) == 1, (line, logged)
    for line in ("prep: 12 events", "a warning to act on", "epoch 1/2"):
        assert line in done.stderr
    assert "routine line" not in done.stderr


def test_a_command_refused_before_it_wrote_anything_leaves_no_log_behind(tmp_path):
    def refused(folder) -> subprocess.CompletedProcess:
        script = (
            "import logging\n"
            "from core.console import FORMAT, discard_log_file, log_to_file\n"
            "logging.basicConfig(level=logging.INFO, format=FORMAT)\n"
            f"log_to_file({str(folder / 'logs')!r}, 'nightly')\n"
            "logging.getLogger('watchnext').error('the day 2026-03-02 is missing')\n"
            "discard_log_file()\n"
        )
        return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)

    assert refused(tmp_path / "fresh" / "root").returncode == 0
    assert not (tmp_path / "fresh").exists()  # every folder it made is gone again
    used = tmp_path / "used"
    (used / "prep").mkdir(parents=True)
    (used / "prep" / "part-0.parquet").write_bytes(b"x")
    assert refused(used).returncode == 0
    # a folder that holds more than the log keeps it
    assert "the day 2026-03-02 is missing" in next((used / "logs").glob("nightly-*.log")).read_text()


def test_ray_datas_memory_detector_is_off_for_the_stages_size_their_actors_and_the_others_stay(ray_local):
    import ray.data

    from core.config import RayConfig
    from core.ray_cluster import start_ray

    start_ray(RayConfig())
    detectors = [d.__name__ for d in ray.data.DataContext.get_current().issue_detectors_config.detectors]
    assert "HighMemoryIssueDetector" not in detectors and "HashShuffleAggregatorIssueDetector" in detectors
