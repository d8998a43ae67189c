"""One SparkSession and one Ray instance for the whole suite (2 cores: start each once)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ML_100K = (REPO / ".." / "shared" / "data" / "ml-100k").resolve()


@pytest.fixture(scope="session")
def spark():
    from core.spark_session import spark_session
    from core.config import SparkConfig

    session = spark_session(SparkConfig(master="local[2]", driver_memory="2g", shuffle_partitions=4), "watchnext-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def ray_local():
    import ray

    from core.ray_cluster import start_ray
    from core.config import RayConfig

    # 2 training workers + Ray Data's readers need 3 logical CPUs on this 2-core machine
    start_ray(RayConfig(num_cpus=3, object_store_memory=400 << 20))
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def ml100k() -> str:
    if not (ML_100K / "ml-100k.inter").exists():
        pytest.skip(f"MovieLens-100K not found at {ML_100K}")
    return str(ML_100K)
