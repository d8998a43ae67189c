"""Sharded FAISS indexes: exact merges, every index type, manifests, checksums, auto, and
inner-product search through the L2 augmentation."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.contract import ITEM_EMBEDDINGS
from serving.index import (INDEX_MANIFEST, IndexParams, ShardedIndex, augment, item_matrix, normalized, recall_at_k,
                           tune_search)
from serving.search import search_excluding


def clustered(n: int, d: int, seed: int) -> np.ndarray:
    """Vectors around 32 centres, as trained item vectors are (and as k-means cells assume)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(32, d))
    return (centres[rng.integers(0, 32, n)] + 0.3 * rng.normal(size=(n, d))).astype(np.float32)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("shards", [1, 3, 7])
def test_sharded_flat_search_equals_one_exact_scan(shards):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(1000, 9)).astype(np.float32)
    queries = rng.normal(size=(50, 9)).astype(np.float32)
    scores, rows = ShardedIndex.build(vectors, IndexParams("flat"), shards).search(queries, 25)
    assert (rows == exact_top(vectors, queries, 25)).all()
    assert np.allclose(scores, np.take_along_axis(queries @ vectors.T, rows, 1), atol=1e-4)


def test_more_shards_than_k_items_each_still_merge_to_the_global_top():
    vectors = np.eye(12, dtype=np.float32)
    queries = np.arange(12, dtype=np.float32)[None, :]  # item 11 best, then 10, ...
    _, rows = ShardedIndex.build(vectors, IndexParams("flat"), 6).search(queries, 5)  # 2 items a shard
    assert rows.tolist() == [[11, 10, 9, 8, 7]]


def test_asking_for_more_than_the_index_holds_pads_with_not_found():
    vectors = np.eye(3, dtype=np.float32)
    scores, rows = ShardedIndex.build(vectors, IndexParams("flat"), 2).search(np.ones((1, 3), np.float32), 5)
    assert sorted(rows[0, :3].tolist()) == [0, 1, 2] and rows[0, 3:].tolist() == [-1, -1]
    assert np.isneginf(scores[0, 3:]).all()


@pytest.mark.parametrize(
    "params, least_recall",
    [
        (IndexParams("hnsw", hnsw_m=16, ef_search=128), 0.95),
        (IndexParams("ivf_flat", nlist=32, nprobe=8), 0.95),
        (IndexParams("ivf_pq", nlist=32, nprobe=8, pq_m=8), 0.5),
    ],
)
def test_approximate_indexes_find_most_of_the_exact_top_k(params, least_recall):
    vectors = clustered(4000, 17, 1)  # 17 + padding: ivf_pq pads to 24 for 8 sub-quantizers
    queries = clustered(100, 17, 2)
    _, rows = ShardedIndex.build(vectors, params, 2).search(queries, 20)
    exact = exact_top(vectors, queries, 20)
    recall = np.mean([len(np.intersect1d(a, e)) / 20 for a, e in zip(rows, exact)])
    assert recall >= least_recall
    assert ((rows >= 0) & (rows < 4000)).all()


@pytest.mark.parametrize("params", [IndexParams("ivf_flat", nlist=64, nprobe=1),
                                    IndexParams("hnsw", hnsw_m=4, ef_search=4)])
def test_the_search_width_rises_to_the_least_that_reaches_the_target_and_is_saved(params, tmp_path):
    vectors, queries = clustered(6000, 16, 4), clustered(200, 16, 5)
    index = ShardedIndex.build(vectors, params, 2)
    tuning = tune_search(index, vectors, queries, 50, 0.98)
    name = "nprobe" if params.kind.startswith("ivf") else "ef_search"
    widths = [step[name] for step in tuning["tried"]]
    doubled = next(i for i, step in enumerate(tuning["tried"]) if step["recall"] >= 0.98)
    assert doubled > 0 and widths[:doubled + 1] == [getattr(params, name) * 2 ** i for i in range(doubled + 1)]
    assert tuning["chosen"] == getattr(index.params, name)  # the index is left at the chosen width
    # each width's recall is what a search at it finds of a brute-force oracle's top 50
    exact = exact_top(vectors, queries, 50)
    for step in tuning["tried"]:
        index.set_search_width(step[name])
        assert step["recall"] == recall_at_k(index.search(queries, 50)[1], exact, 50)
    assert_least_reaching(tuning, name, 0.98)
    index.set_search_width(tuning["chosen"])
    index.save(str(tmp_path), "v1", search_tuning=tuning)
    loaded = ShardedIndex.load(str(tmp_path))
    assert getattr(loaded.params, name) == tuning["chosen"]
    assert json.loads((tmp_path / INDEX_MANIFEST).read_text())["search_tuning"] == tuning


def test_a_width_wider_than_needed_comes_down_to_the_least_that_reaches_the_target():
    vectors, queries = clustered(6000, 16, 4), clustered(200, 16, 5)
    index = ShardedIndex.build(vectors, IndexParams("ivf_flat", nlist=64, nprobe=64), 1)  # every cell: exact
    tuning = tune_search(index, vectors, queries, 50, 0.98)
    widths = [step["nprobe"] for step in tuning["tried"]]
    assert widths[:2] == [64, 32] and tuning["chosen"] < 64
    assert_least_reaching(tuning, "nprobe", 0.98)
    # every narrower width falls short, measured one by one
    exact = exact_top(vectors, queries, 50)
    index.set_search_width(tuning["chosen"] - 1)
    assert recall_at_k(index.search(queries, 50)[1], exact, 50) < 0.98


def assert_least_reaching(tuning: dict, name: str, target: float) -> None:
    """The chosen width reaches the target, every narrower one tried falls short, and the
    widest of those is within a sixteenth of it."""
    chosen, tried = tuning["chosen"], tuning["tried"]
    assert tuning["reached"] and tuning["ann_recall@50"] == next(s["recall"] for s in tried if s[name] == chosen)
    assert tuning["ann_recall@50"] >= target
    narrower = [s for s in tried if s[name] < chosen]
    assert all(s["recall"] < target for s in narrower) and all(s["recall"] >= target for s in tried if s[name] > chosen)
    assert chosen - max((s[name] for s in narrower), default=0) <= max(1, chosen // 16)


def test_an_unreachable_target_stops_at_every_cell_and_says_so():
    vectors, queries = clustered(3000, 16, 6), clustered(50, 16, 7)
    index = ShardedIndex.build(vectors, IndexParams("ivf_pq", nlist=16, nprobe=4, pq_m=2), 1)
    tuning = tune_search(index, vectors, queries, 20, 0.999)
    assert [step["nprobe"] for step in tuning["tried"]] == [4, 8, 16] and tuning["chosen"] == 16
    assert not tuning["reached"] and tuning["ann_recall@20"] < 0.999


def test_exclusion_search_works_through_a_sharded_approximate_index():
    vectors = clustered(2000, 8, 3)
    index = ShardedIndex.build(vectors, IndexParams("ivf_flat", nlist=16, nprobe=16), 3)  # every cell: exact
    queries = clustered(20, 8, 4)
    row_items = np.arange(1, 2001)
    watched = [np.argsort(-(vectors @ q))[:30] + 1 for q in queries]  # each user's 30 best are watched
    rows, _, counts = search_excluding(index, queries, row_items, pa.array([w.tolist() for w in watched]), 10)
    assert (counts == 10).all()
    for q, w, r in zip(queries, watched, rows):
        assert not set(row_items[r]) & set(w.tolist())
        assert r.tolist() == np.argsort(-(vectors @ q), kind="stable")[30:40].tolist()


def test_manifest_round_trips_and_search_params_can_change_at_load(tmp_path):
    vectors = clustered(3000, 8, 5)
    built = ShardedIndex.build(vectors, IndexParams("ivf_flat", nlist=24, nprobe=4), 2)
    built.save(str(tmp_path), "v1")
    manifest = json.loads((tmp_path / INDEX_MANIFEST).read_text())
    assert manifest["type"] == "ivf_flat" and manifest["items"] == 3000 and manifest["model_version"] == "v1"
    assert [s["items"] for s in manifest["shards"]] == [1500, 1500] and manifest["params"]["nlist"] == 24
    loaded = ShardedIndex.load(str(tmp_path))
    queries = clustered(10, 8, 6)
    assert (loaded.search(queries, 10)[1] == built.search(queries, 10)[1]).all()
    every_cell = ShardedIndex.load(str(tmp_path), nprobe=24)
    scores, rows = every_cell.search(queries, 10)
    assert (rows == exact_top(vectors, queries, 10)).all()
    # searched as L2 over augmented vectors, returned as the inner products they rank by
    assert np.allclose(scores, np.take_along_axis(queries @ vectors.T, rows, 1), atol=1e-3)


def test_a_corrupted_or_missing_shard_fails_with_a_clear_error(tmp_path):
    ShardedIndex.build(np.eye(8, dtype=np.float32), IndexParams("flat"), 2).save(str(tmp_path), "v1")
    shard = tmp_path / "shard-00001.faiss"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="shard-00001.faiss is corrupted"):
        ShardedIndex.load(str(tmp_path))
    shard.unlink()
    with pytest.raises(FileNotFoundError, match="shard-00001.faiss is missing"):
        ShardedIndex.load(str(tmp_path))
    (tmp_path / INDEX_MANIFEST).unlink()
    with pytest.raises(FileNotFoundError, match="index.json is missing"):
        ShardedIndex.load(str(tmp_path))


def test_auto_picks_flat_then_ivf_flat_then_ivf_pq_by_size_and_memory():
    assert IndexParams.resolve("auto", 50_000, 65, memory_gb=8).kind == "flat"
    big = IndexParams.resolve("auto", 1_000_000, 65, memory_gb=8)
    assert big.kind == "ivf_flat" and big.nlist == 4000
    assert IndexParams.resolve("auto", 1_000_000, 65, memory_gb=0.1).kind == "ivf_pq"
    assert IndexParams.resolve("hnsw", 10, 65, memory_gb=8).kind == "hnsw"
    with pytest.raises(ValueError, match="unknown index type 'annoy'"):
        IndexParams.resolve("annoy", 10, 65, memory_gb=8)


def test_normalized_rows_have_unit_length_and_zero_rows_stay_zero():
    unit = normalized(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32))
    assert np.allclose(unit, [[0.6, 0.8], [0.0, 0.0]])


def test_the_augmentation_turns_inner_product_order_into_l2_order():
    rng = np.random.default_rng(7)
    items = rng.normal(size=(200, 5)).astype(np.float32) * rng.uniform(0.1, 3, size=(200, 1)).astype(np.float32)
    query = rng.normal(size=5).astype(np.float32)
    augmented = augment(items, float((items.astype(np.float64) ** 2).sum(1).max()))
    distances = ((augmented - np.append(query, 0)) ** 2).sum(1)
    assert (np.argsort(distances, kind="stable")[:20] == np.argsort(-(items @ query), kind="stable")[:20]).all()


def test_item_matrix_reads_every_row_group_into_vectors_with_the_bias_appended(tmp_path):
    rng = np.random.default_rng(0)
    vectors, bias = rng.normal(size=(10, 3)).astype(np.float32), rng.normal(size=10).astype(np.float32)
    table = pa.table({"item_id": [f"i{i}" for i in range(10)], "index": pa.array(np.arange(1, 11), pa.int32()),
                      "vector": pa.array(vectors.tolist(), pa.list_(pa.float32())), "bias": bias},
                     schema=ITEM_EMBEDDINGS)
    pq.write_table(table, tmp_path / "items.parquet", row_group_size=4)  # three groups, the last of two rows
    matrix, index, ids = item_matrix(str(tmp_path / "items.parquet"))
    assert matrix.dtype == np.float32 and np.array_equal(matrix, np.hstack([vectors, bias[:, None]]))
    assert index.tolist() == list(range(1, 11)) and ids.tolist() == [f"i{i}" for i in range(10)]
