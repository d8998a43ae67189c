"""The scoring actor pool fits the running cluster, and each actor asks for the memory of
what it loads."""

from __future__ import annotations

import os

import numpy as np

from core.config import RecallConfig
from core.layout import RunLayout
from serving.channels import CoWatch
from serving.index import IndexParams
from serving.recall import ACTOR_OVERHEAD_BYTES, actor_memory, actor_pool_size, local_actors, similar_search


def test_the_actor_pool_leaves_a_cpu_for_the_reads(ray_local):
    cpus = int(ray_local.cluster_resources()["CPU"])
    assert actor_pool_size(RecallConfig(actors=1), 1 << 20) == 1
    assert actor_pool_size(RecallConfig(actors=cpus), 1 << 20) == cpus - 1
    assert actor_pool_size(RecallConfig(actors=cpus - 1), 1 << 20) == cpus - 1
    assert actor_pool_size(RecallConfig(actors=8, faiss_threads=cpus), 1 << 20) == 1


def test_by_default_the_pool_takes_every_cpu_beside_the_reads_and_what_memory_holds(ray_local):
    cpus = int(ray_local.cluster_resources()["CPU"])
    node = int(ray_local.nodes()[0]["Resources"]["memory"])
    assert RecallConfig().actors == 0
    assert actor_pool_size(RecallConfig(), 1 << 20) == cpus - 1
    assert actor_pool_size(RecallConfig(faiss_threads=cpus - 1), 1 << 20) == 1
    assert actor_pool_size(RecallConfig(), node // 2 + 1) == 1  # one actor's memory fits, not two
    assert actor_pool_size(RecallConfig(), node + 1) == 1  # at least one: its ask is cut to the node's
    # a local instance started for recall: one actor per core
    assert local_actors(RecallConfig()) == os.cpu_count() and local_actors(RecallConfig(actors=3)) == 3


def test_an_actor_asks_for_its_index_tower_items_and_neighbours_and_at_most_a_node(ray_local, tmp_path):
    run = RunLayout.of(str(tmp_path))
    sizes = {run.recall.index + "/shard-00000.faiss": 3000, run.recall.index + "/shard-00001.faiss": 2000,
             run.model.user_tower: 700, run.recall.index_items: 50}
    for path, size in sizes.items():
        (tmp_path / path[len(str(tmp_path)) + 1:]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path[len(str(tmp_path)) + 1:]).write_bytes(b"x" * size)
    # 30 items' 7 neighbours: 4 + 4 bytes each, in two .npy files of a 128-byte header each
    CoWatch(np.ones((30, 7), np.int32), np.ones((30, 7), np.float32)).save(run.recall.channels)
    assert actor_memory(run, None) == 5750 + ACTOR_OVERHEAD_BYTES
    spec = {"fusion": {"weights": {"model": 1.0, "item2item": 1.0}, "offset": 10}, "recent": 5}
    assert actor_memory(run, spec) == 5750 + 2 * (128 + 30 * 7 * 4) + ACTOR_OVERHEAD_BYTES
    largest = max(node["Resources"]["memory"] for node in ray_local.nodes() if node["Alive"])
    with open(tmp_path / "model" / "user_tower.pt", "wb") as f:  # a tower larger than any node
        f.truncate(int(largest) + 1)
    assert actor_memory(run, None) == int(largest)


def test_the_similar_items_search_no_narrower_than_configured_where_users_came_down():
    configured = RecallConfig(nprobe=32, ef_search=128)
    assert similar_search(IndexParams("ivf_flat", nprobe=20), configured).nprobe == 32
    assert similar_search(IndexParams("ivf_flat", nprobe=64), configured).nprobe == 64
    assert similar_search(IndexParams("hnsw", ef_search=40), configured).ef_search == 128
