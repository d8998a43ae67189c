"""The scoring actor pool fits the running cluster."""

from __future__ import annotations

from serving.recall import actor_pool_size
from core.config import RecallConfig


def test_the_actor_pool_leaves_a_cpu_for_the_reads(ray_local):
    cpus = int(ray_local.cluster_resources()["CPU"])
    assert actor_pool_size(RecallConfig(actors=1)) == 1
    assert actor_pool_size(RecallConfig(actors=cpus)) == cpus - 1
    assert actor_pool_size(RecallConfig(actors=cpus - 1)) == cpus - 1
    assert actor_pool_size(RecallConfig(actors=8, faiss_threads=cpus)) == 1
