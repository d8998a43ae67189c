"""The whole pipeline on MovieLens-100K: prep, Ray Train on 2 workers, FAISS recall, report.

Trains briefly and must beat the most-popular baseline's HR@50 computed in the same run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import torch

from ray_train.precision import step_precision
from ray_train.trainer import run_train
from report.evaluate import KNN_RECENT_GRID
from serving.recall import run_recall
from tests.e2e.conftest import RUN_SETTINGS
from tests.processes import descendants_named, kill_one
from core import locks
from core.config import TrainConfig, load_config
from core.contract import RECALL

TOP_K = 100  # the run_dir fixture's recall.top_k (tests/e2e/conftest.py)


def test_every_stage_is_finished_by_its_manifest(run_dir):
    for stage in ("prep", "model", "recall", "report"):
        manifest = json.loads((run_dir / stage / "_manifest.json").read_text())
        assert manifest["stage"] == stage and manifest["seconds"] > 0
    metrics = json.loads((run_dir / "model" / "metrics.json").read_text())
    assert metrics["workers"] == 2 and metrics["device"] == "cpu" and len(metrics["epochs"]) == 3
    assert metrics["precision"] == step_precision(TrainConfig())  # bf16 where this CPU has it natively
    assert metrics["examples_per_second"] > 0


def test_model_beats_most_popular(run_dir):
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert report["dataset"] == "ml-100k" and report["users"] == 943
    model, popular = report["model"], report["baselines"]["most_popular"]
    assert set(model) >= {"hr@10", "hr@50", "hr@100", "ndcg@10", "recall@50"}
    assert model["hr@50"] > popular["hr@50"], report


def test_item_knn_and_als_baselines_are_tuned_on_validation_and_scored_on_every_user(run_dir):
    report = json.loads((run_dir / "report" / "report.json").read_text())
    knn, als, popular = (report["baselines"][name] for name in ("item_knn", "als", "most_popular"))
    assert report["baseline_settings"]["chosen_on"] == "validation"
    assert knn["users"] == als["users"] == 943 and knn["recent"] in KNN_RECENT_GRID
    assert (knn["recent"], knn["neighbours"]) in [(p["recent"], p["neighbours"]) for p in knn["validation"]]
    # co-watching beats popularity on MovieLens by a wide margin (0.40 and 0.38 vs 0.19 at HR@50)
    assert knn["hr@50"] > popular["hr@50"] + 0.1 and als["hr@50"] > popular["hr@50"] + 0.1, report


def test_report_has_the_recent_baseline_intervals_and_the_popularity_of_the_lists(run_dir):
    report = json.loads((run_dir / "report" / "report.json").read_text())
    model, recent = report["model"], report["baselines"]["recently_popular"]
    assert recent["days"] == report["recent_days"] == 7.0 and 0 < recent["hr@50"] < 1
    for metrics in (model, recent, report["baselines"]["most_popular"], report["baselines"]["item_knn"]):
        for m in ("hr@50", "ndcg@10"):
            low, high = metrics[f"{m}_ci95"]
            assert low <= metrics[m] <= high and high - low < 0.15
    dist = model["popularity_distribution"]
    assert len(dist["buckets"]) == len(dist["recommended"]) == len(dist["catalog"])
    assert abs(sum(dist["recommended"]) - 1) < 1e-9 and abs(sum(dist["catalog"]) - 1) < 1e-9
    page = (run_dir / "report" / "report.html").read_text()
    assert page.count("<svg") == 5 and "recently_popular" in page and f"{model['hr@50']:.4f}" in page


def test_the_example_age_effect_compares_predicted_and_empirical_watches_by_item_age(run_dir):
    effect = json.loads((run_dir / "report" / "report.json").read_text())["example_age_effect"]
    assert effect["example_age"] and effect["predicted_examples"] == 2000
    prep = json.loads((run_dir / "prep" / "_manifest.json").read_text())
    assert effect["empirical_examples"] == prep["counts"]["examples"]  # fewer than the sample size: all of them
    assert effect["empirical"][0] == 0.0  # a label's item has been watched by the label's time
    assert sum(effect["empirical"]) == pytest.approx(1) and sum(effect["predicted"]) == pytest.approx(1)
    # most of MovieLens' ratings are of items first rated months earlier, and the model knows it
    assert sum(effect["empirical"][-3:]) > 0.6 and sum(effect["predicted"][-3:]) > 0.6


def test_validation_reads_the_validation_split_and_the_export_is_its_best_epoch(run_dir):
    metrics = json.loads((run_dir / "model" / "metrics.json").read_text())
    epochs = metrics["epochs"]
    assert all(0 <= e["val_hr@50"] <= 1 for e in epochs)
    assert metrics["validation"].startswith("prep/valid")
    scores = [e["val_hr@50"] for e in epochs]
    assert metrics["best_epoch"] == scores.index(max(scores)) + 1


def test_every_recall_row_has_k_distinct_unwatched_items(run_dir):
    table = pads.dataset(run_dir / "recall" / "table", format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 943
    assert set(table.column("run_date").to_pylist()) == {"2026-11-23"}
    vocab = {r["index"]: r["item_id"] for r in pq.read_table(run_dir / "prep" / "vocab" / "items").to_pylist()}
    watched = {
        r["user_id"]: {vocab[i] for i in r["watched"]}
        for r in pq.read_table(run_dir / "prep" / "user_features").to_pylist()
    }
    for row in table.select(["user_id", "item_ids", "scores"]).to_pylist():
        items = row["item_ids"]
        assert len(items) == len(set(items)) == TOP_K
        assert not set(items) & watched[row["user_id"]]
        assert row["scores"] == sorted(row["scores"], reverse=True)
    assert {f.name for f in table.schema} == {f.name for f in RECALL}


def test_resume_continues_from_the_latest_checkpoint(run_dir, tmp_path):
    import shutil

    run = tmp_path / "resumed"
    run.mkdir()
    (run / "prep").symlink_to(run_dir / "prep")
    shutil.copytree(run_dir / "model", run / "model")  # the shared run's 3 epochs and their checkpoints
    settings = [s for s in RUN_SETTINGS if not s.startswith("train.epochs=")]
    with pytest.raises(ValueError, match="3 epochs already"):
        run_train(str(run), load_config(None, [*settings, "train.epochs=3"]), resume=True)
    run_train(str(run), load_config(None, [*settings, "train.epochs=4"]), resume=True)
    epochs = json.loads((run / "model" / "metrics.json").read_text())["epochs"]
    # epochs 1-3 are the shared run's, restored from its checkpoint, not trained again
    first = json.loads((run_dir / "model" / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4] and epochs[:3] == first
    assert json.loads((run / "model" / "_manifest.json").read_text())["stage"] == "model"


def test_resume_without_a_checkpoint_is_a_clear_error(run_dir, tmp_path):
    run = tmp_path / "fresh"
    run.mkdir()
    (run / "prep").symlink_to(run_dir / "prep")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run_train(str(run), load_config(None, ["train.epochs=1"]), resume=True)


def test_warm_start_begins_where_the_previous_run_ended(run_dir, tmp_path):
    run = tmp_path / "warm"
    run.mkdir()
    (run / "prep").symlink_to(run_dir / "prep")
    run_train(str(run), load_config(None, ["train.epochs=1", f"train.warm_start={run_dir}"]))
    warm = json.loads((run / "model" / "metrics.json").read_text())["epochs"]
    cold = json.loads((run_dir / "model" / "metrics.json").read_text())["epochs"]
    # one epoch on top of the previous run's weights is far ahead of a first epoch from scratch
    assert warm[0]["val_hr@50"] > cold[0]["val_hr@50"] + 0.03, (warm, cold)
    assert (run / "model" / "warm_start.pt").exists()


def test_item2vec_pretraining_initializes_the_history_table(run_dir, tmp_path):
    run = tmp_path / "item2vec"
    run.mkdir()
    (run / "prep").symlink_to(run_dir / "prep")
    run_train(str(run), load_config(None, ["train.epochs=1", "train.item2vec_epochs=1", "train.val_users=0"]))
    initial = torch.load(run / "model" / "warm_start.pt", weights_only=True)["user_tower.history.weight"]
    saved = list((run / "model" / "item2vec").rglob("item2vec.pt"))
    assert len(saved) == 1  # the pretraining's checkpoint, under RUN_DIR/model/item2vec
    center = torch.load(saved[0], weights_only=True)["center"]
    assert torch.equal(initial, center) and center[1:].norm(dim=1).min() > 0
    assert (run / "model" / "metrics.json").exists()


@pytest.mark.slow
def test_a_training_worker_killed_mid_run_resumes_from_its_checkpoint(run_dir, tmp_path):
    import subprocess
    import sys
    import time

    run = tmp_path / "killed"
    run.mkdir()
    (run / "prep").symlink_to(run_dir / "prep")
    # small batches: epochs long enough to kill a worker between two checkpoints
    settings = ["train.epochs=3", "train.batch_size=64", "train.val_users=0", "ray.num_cpus=3"]
    command = [sys.executable, "-m", "watchnext", "train", "--run", str(run)]
    driver = subprocess.Popen([*command, *(a for s in settings for a in ("--set", s))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    checkpoints = run / "model" / "checkpoints"
    deadline = time.time() + 600
    # two checkpoints written (the last epoch under way): the first is surely registered with Ray Train by then
    while len(list(checkpoints.rglob("train_state.json"))) < 2:
        assert driver.poll() is None and time.time() < deadline, "training ended before its second checkpoint"
        time.sleep(0.5)
    workers = descendants_named(driver.pid, "RayTrainWorker")
    assert workers, "no training worker found"
    workers[-1].kill()
    _, stderr = driver.communicate(timeout=900)
    assert driver.returncode == 0, stderr[-3000:]
    assert not workers[-1].is_running()
    metrics = json.loads((run / "model" / "metrics.json").read_text())
    assert metrics["recoveries"] == 1  # the restarted workers went on from a checkpoint
    epochs = metrics["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]  # every epoch once: none lost, none twice
    assert epochs[0]["recoveries"] == 0  # epoch 1 came from the checkpoint, trained before the kill
    assert json.loads((run / "model" / "_manifest.json").read_text())["stage"] == "model"


def test_recall_manifest_describes_the_index_and_the_similar_items(run_dir):
    manifest = json.loads((run_dir / "recall" / "_manifest.json").read_text())
    assert manifest["users"] == 943 and manifest["seconds"] > 0 and manifest["users_per_second"] > 0
    items = pq.read_table(run_dir / "model" / "item_embeddings.parquet").num_rows
    # 1.7k items: auto is an exact flat index
    assert {k: manifest["index"][k] for k in ("type", "shards", "items")} == {"type": "flat", "shards": 1,
                                                                              "items": items}
    index = json.loads((run_dir / "recall" / "index" / "index.json").read_text())
    assert index["model_version"] == manifest["model_version"] and len(index["shards"]) == 1
    assert manifest["similar"]["items"] == items and manifest["similar"]["k"] == 20
    assert "ann_check_items" not in manifest["similar"]  # an exact index: nothing to check


def test_similar_items_are_each_items_nearest_by_cosine_without_itself(run_dir):
    embeddings = pq.read_table(run_dir / "model" / "item_embeddings.parquet").to_pydict()
    vectors = torch.tensor(embeddings["vector"])
    unit = vectors / vectors.norm(dim=1, keepdim=True)
    similar = pads.dataset(run_dir / "recall" / "similar", format="parquet", partitioning="hive").to_table()
    assert similar.num_rows == len(vectors) and set(similar.column("run_date").to_pylist()) == {"2026-11-23"}
    rows = {r["item_id"]: r for r in similar.to_pylist()}
    for i in range(0, len(vectors), 97):
        expected = (unit @ unit[i]).argsort(descending=True, stable=True)
        expected = [embeddings["item_id"][j] for j in expected.tolist() if j != i][:20]
        row = rows[embeddings["item_id"][i]]
        assert row["similar_item_ids"] == expected
        assert row["scores"] == sorted(row["scores"], reverse=True)


def test_sharded_approximate_recall_with_an_exclusion_list(run_dir, tmp_path):
    run = tmp_path / "ivf"
    run.mkdir()
    for stage in ("prep", "model"):
        (run / stage).symlink_to(run_dir / stage)
    vocab = pq.read_table(run_dir / "prep" / "vocab" / "items").to_pydict()
    banned = [item for item, index in zip(vocab["item_id"], vocab["index"]) if index <= 10]  # the 10 most watched
    (tmp_path / "banned.txt").write_text("\n".join(banned) + "\n")
    cfg = load_config(None, [f"recall.top_k={TOP_K}", "recall.run_date=2026-11-24", "recall.index_type=ivf_flat",
                             "recall.shards=3", "recall.nlist=16", "recall.nprobe=4",
                             f"recall.exclude_items={tmp_path / 'banned.txt'}"])
    manifest = run_recall(str(run), cfg)
    index = manifest["index"]
    assert index["type"] == "ivf_flat" and index["shards"] == 3 and index["excluded_items"] == 10
    # the search width rose from the configured nprobe, doubling, until recall@K reached 0.98,
    # then came down to the least width that reaches it
    tuning = index["search_tuning"]
    assert index["ann_check_users"] == 943 and tuning["parameter"] == "nprobe" and tuning["target"] == 0.98
    recall = {step["nprobe"]: step["recall"] for step in tuning["tried"]}
    chosen = tuning["chosen"]
    assert tuning["tried"][0]["nprobe"] == 4 and index["params"]["nprobe"] == chosen
    assert index[f"ann_recall@{TOP_K}"] == recall[chosen] >= 0.98
    assert all(r < 0.98 for width, r in recall.items() if width < chosen)
    saved = json.loads((run / "recall" / "index" / "index.json").read_text())
    assert saved["params"]["nprobe"] == chosen  # the actors search at the chosen width
    table = pads.dataset(run / "recall" / "table", format="parquet", partitioning="hive").to_table()
    assert sorted(table.column("user_id").to_pylist()) == sorted(
        pq.read_table(run_dir / "prep" / "user_features", columns=["user_id"]).column("user_id").to_pylist())
    recommended = {item for items in table.column("item_ids").to_pylist() for item in items}
    similar = pads.dataset(run / "recall" / "similar", format="parquet", partitioning="hive").to_table()
    listed = {item for items in similar.column("similar_item_ids").to_pylist() for item in items}
    assert not (recommended | listed | set(similar.column("item_id").to_pylist())) & set(banned)
    # the similar items' search, checked against an exact scan of 1,000 sampled items: about
    # the share of every item's exact 20 nearest that the table lists
    checked = manifest["similar"]
    assert checked["ann_check_items"] == 1000
    embeddings = pq.read_table(run_dir / "model" / "item_embeddings.parquet").to_pydict()
    kept = [i for i, item in enumerate(embeddings["item_id"]) if item not in set(banned)]
    vectors = torch.tensor(embeddings["vector"])[kept]
    unit = vectors / vectors.norm(dim=1, keepdim=True)
    ids = [embeddings["item_id"][i] for i in kept]
    listed_of = dict(zip(similar.column("item_id").to_pylist(), similar.column("similar_item_ids").to_pylist()))
    shares = []
    for i in range(len(ids)):
        exact = [ids[j] for j in (unit @ unit[i]).argsort(descending=True, stable=True).tolist() if j != i][:20]
        shares.append(len(set(exact) & set(listed_of[ids[i]])) / 20)
    assert abs(checked["ann_recall@20"] - np.mean(shares)) < 0.03, (checked, np.mean(shares))


def test_a_run_holds_no_pickle_and_every_torch_file_loads_as_plain_weights(run_dir):
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pkl", ".pickle", ".joblib")]
    torch_files = [p for p in files if p.suffix == ".pt"]
    assert {p.name for p in torch_files} >= {"user_tower.pt", "model.pt", "optimizer.pt"}
    for path in torch_files:
        torch.load(path, weights_only=True)  # raises on anything but tensors and plain containers
    assert not [p for p in run_dir.rglob(locks.LOCK)]  # every stage finished and let go


def recall_rows(run: Path) -> dict[str, tuple]:
    table = pads.dataset(run / "recall" / "table", partitioning="hive").to_table(columns=["user_id", "item_ids", "scores"])
    users = table.column("user_id").to_pylist()
    assert len(users) == len(set(users)), "a user written twice"
    return dict(zip(users, zip(table.column("item_ids").to_pylist(), table.column("scores").to_pylist())))


def assert_same_lists(got: dict[str, tuple], expected: dict[str, tuple], tie: float = 1e-4) -> None:
    """The same users, and for each the same scores and the same items, up to the order of
    near-ties: another batch size sums the dot products in another order (float rounding)."""
    assert got.keys() == expected.keys()
    for user, (items, scores) in got.items():
        want_items, want_scores = expected[user]
        assert scores == pytest.approx(want_scores, abs=tie), user
        last = min(scores[-1], want_scores[-1])
        # an item may move past a near-tie, or across the list's end only when tied with its last
        differ = set(items) ^ set(want_items)
        score_of = {**dict(zip(want_items, want_scores)), **dict(zip(items, scores))}
        assert all(score_of[i] - last < tie for i in differ), user
        for position, (a, b) in enumerate(zip(items, want_items)):
            assert a == b or abs(score_of[a] - score_of[b]) < tie, (user, position)


@pytest.mark.slow
def test_a_recall_actor_killed_mid_run_is_replaced_and_no_user_is_lost_or_doubled(run_dir, tmp_path):
    import subprocess
    import sys

    run = tmp_path / "recall-killed"
    run.mkdir()
    for stage in ("prep", "model"):
        (run / stage).symlink_to(run_dir / stage)
    # batches of 4 users through one actor: ~240 calls, time to kill it in the middle
    settings = ["recall.batch_size=4", f"recall.top_k={TOP_K}", "recall.run_date=2026-11-23", "recall.similar_items=0",
                "recall.ann_check_users=0", "ray.num_cpus=3"]
    command = [sys.executable, "-m", "watchnext", "recall", "--run", str(run)]
    driver = subprocess.Popen([*command, *(a for s in settings for a in ("--set", s))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed = kill_one(driver, "RecallScorer", delay_s=1.0)  # past the index load: scoring batches
    _, stderr = driver.communicate(timeout=600)
    assert driver.returncode == 0, stderr[-3000:]
    assert not killed.is_running()
    # every user once, with the same list as the undisturbed run (the same model, exact search)
    assert_same_lists(recall_rows(run), recall_rows(run_dir))
    assert json.loads((run / "recall" / "_manifest.json").read_text())["users"] == 943


def test_recall_channels_merge_the_model_with_co_watched_and_popular_items_weighed_on_validation(run_dir, tmp_path):
    from serving.channels import CHANNELS

    run = tmp_path / "channels"
    run.mkdir()
    for stage in ("prep", "model"):
        (run / stage).symlink_to(run_dir / stage)
    run_recall(str(run), load_config(None, ["recall.channels=[model, item2item, popular, fresh]",
                                            f"recall.top_k={TOP_K}", "recall.run_date=2026-11-23"]))
    channels = json.loads((run / "recall" / "_manifest.json").read_text())["channels"]
    prep = json.loads((run_dir / "prep" / "_manifest.json").read_text())
    assert channels["validation_users"] == prep["counts"]["valid_users"] and channels["metric"] == "ndcg@50"
    chosen = next(t for t in channels["validation"] if t["weights"] == channels["chosen"]["weights"]
                  and t["offset"] == channels["chosen"]["offset"])
    # the merge is the best setting tried by NDCG@50, the model alone among them
    best = max(t["ndcg@50"] for t in channels["validation"])
    assert chosen["ndcg@50"] == best >= channels["alone"]["model"]["ndcg@50"]
    assert channels["merged"] == {"hr@50": chosen["hr@50"], "ndcg@50": chosen["ndcg@50"]}
    assert set(channels["alone"]) == set(CHANNELS)
    active = {name for name, weight in channels["chosen"]["weights"].items() if weight > 0}
    assert set(channels["slots"]) <= active and abs(sum(channels["slots"].values()) - 1) < 1e-9
    vocab = {r["index"]: r["item_id"] for r in pq.read_table(run_dir / "prep" / "vocab" / "items").to_pylist()}
    watched = {r["user_id"]: {vocab[i] for i in r["watched"]}
               for r in pq.read_table(run_dir / "prep" / "user_features").to_pylist()}
    table = pads.dataset(run / "recall" / "table" / "run_date=2026-11-23", format="parquet").to_table()
    assert table.num_rows == 943
    for row in table.select(["user_id", "item_ids", "scores", "channels"]).to_pylist():
        items = row["item_ids"]
        assert len(items) == len(set(items)) == len(row["channels"]) == TOP_K
        assert not set(items) & watched[row["user_id"]] and set(row["channels"]) <= active
        assert row["scores"] == sorted(row["scores"], reverse=True)
