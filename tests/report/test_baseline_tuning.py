"""The baselines' settings in the report: chosen on prep/valid by HR@50, as a brute-force
computation chooses them, never on the test targets in prep/eval; fixed defaults without a
validation split. Above their bounds, the settings are chosen on a seeded sample of the
validation users and item-kNN and ALS scored on a seeded sample of the evaluated users, the
same for both, their similarity and factors still from every training user."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from report import als
from report.console import summary
from report.evaluate import KNN_NEIGHBOURS_GRID, KNN_RECENT_DEFAULT, KNN_RECENT_GRID, evaluate, sample_rows
from tests.report.test_baselines import neighbourhoods

NUM_ITEMS = 121  # index 0 is padding: more than 50 items, so that HR@50 tells settings apart
HISTORY_LEN = 8
# three fits per evaluation instead of the full grid: the choice, not the grid, is under test
GRID = (als.AlsParams(2, 0.1, 1.0), als.AlsParams(8, 0.01, 10.0), als.AlsParams(8, 1.0, 1.0))
WATCHES = pa.list_(pa.int32())
CHOICE_USERS, BASELINE_USERS = 30, 40  # the sampled run's bounds: 30 of 70 validation users, 40 of 80 evaluated
# item-kNN's settings: the grid's neighbourhoods narrower than the catalog, and every neighbour
EVERY = NUM_ITEMS - 1
KNN_GRID = list(itertools.product(KNN_RECENT_GRID, [n for n in KNN_NEIGHBOURS_GRID if n < EVERY] + [EVERY]))


def user_logs(seed: int = 0) -> list[list[int]]:
    """80 users, each watching 6-14 distinct items in order, mostly from one of four tastes
    of 30 items, the head of each taste more often."""
    rng = np.random.default_rng(seed)
    taste = 1.0 / np.arange(1, 31)
    logs = []
    for user in range(80):
        own = 1 + 30 * (user % 4) + np.arange(30)
        weights = np.full(NUM_ITEMS - 1, 0.1 / (NUM_ITEMS - 31))
        weights[own - 1] = 0.9 * taste / taste.sum()
        logs.append(rng.choice(np.arange(1, NUM_ITEMS), rng.integers(6, 15), replace=False,
                               p=weights / weights.sum()).tolist())
    return logs


def padded(watches: list[int]) -> list[int]:
    last = watches[-HISTORY_LEN:]
    return last + [0] * (HISTORY_LEN - len(last))


def write(path: Path, table: pa.Table) -> None:
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path / "part-0.parquet")


def write_run(run: Path, logs: list[list[int]], eval_targets: list[int]) -> None:
    """A finished run: each user's last watch is the test target, the one before it the
    validation target; the 10 users with an odd id below 20 have no validation watch."""
    users = [f"u{u}" for u in range(len(logs))]
    training = [log[:-1] for log in logs]
    valid_users = [u for u in range(len(logs)) if not (u < 20 and u % 2)]
    ts = pa.array([0] * len(logs), pa.timestamp("us", tz="UTC"))
    write(run / "prep" / "user_features", pa.table({
        "user_id": users, "history": pa.array([padded(t) for t in training], WATCHES),
        "watched": pa.array([sorted(t) for t in training], WATCHES)}))
    write(run / "prep" / "valid", pa.table({
        "user_id": [users[u] for u in valid_users],
        "item_index": pa.array([training[u][-1] for u in valid_users], pa.int32()),
        "history": pa.array([padded(training[u][:-1]) for u in valid_users], WATCHES),
        "watched": pa.array([sorted(training[u][:-1]) for u in valid_users], WATCHES)}))
    write(run / "prep" / "eval", pa.table({
        "user_id": users, "item_id": [f"i{t}" for t in eval_targets],
        "item_index": pa.array(eval_targets, pa.int32()), "ts": ts}))
    counts = np.bincount(np.concatenate(training), minlength=NUM_ITEMS)
    write(run / "prep" / "vocab" / "items", pa.table({
        "item_id": [f"i{i}" for i in range(1, NUM_ITEMS)], "index": pa.array(range(1, NUM_ITEMS), pa.int32()),
        "count": counts[1:]}))
    write(run / "prep" / "vocab" / "item_features", pa.table({
        "index": pa.array(range(1, NUM_ITEMS), pa.int32()), "age_days": pa.nulls(NUM_ITEMS - 1, pa.float64())}))
    write(run / "recall" / "table", pa.table({
        "user_id": users, "item_ids": pa.array([[f"i{i}" for i in range(1, 21)]] * len(logs), pa.list_(pa.string()))}))
    manifests = {
        "prep": {"config": {"recent_days": 7.0}, "inputs": {"dataset": "hand-made"},
                 "features": {"item_vocab_size": NUM_ITEMS, "history_len": HISTORY_LEN}},
        "recall": {"config": {"top_k": 20}, "index": {"type": "flat", "shards": 1, "items": NUM_ITEMS - 1},
                   "model_version": "v0"},
    }
    for stage, manifest in manifests.items():
        (run / stage / "_manifest.json").write_text(json.dumps(manifest))


def brute_force_hr50(ranks_of_target) -> float:
    return float(np.mean([r < 50 for r in ranks_of_target]))


def brute_force_rank(scores: np.ndarray, target: int, watched: list[int]) -> float:
    candidates = [i for i in range(1, NUM_ITEMS) if i not in watched]
    if target not in candidates:
        return np.inf
    return sum(scores[i] > scores[target] or (scores[i] == scores[target] and i < target) for i in candidates)


def cosine(watched: list[list[int]]) -> np.ndarray:
    x = np.zeros((len(watched), NUM_ITEMS))
    for user, items in enumerate(watched):
        x[user, items] = 1
    norms = np.sqrt(x.sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(x.T @ x / np.outer(norms, norms))


def validation_time_matrix(logs: list[list[int]]) -> tuple[list[list[int]], list[int], list[list[int]]]:
    """(watched lists, validation targets, validation histories): the validation users' watches
    before their validation watch first, in prep/valid's order, then the other users' own
    (evaluate's order: ALS's seeded initialization depends on it)."""
    training = [log[:-1] for log in logs]
    valid = [u for u in range(len(logs)) if not (u < 20 and u % 2)]
    others = [u for u in range(len(logs)) if u not in valid]
    watched = [sorted(training[u][:-1]) for u in valid] + [sorted(training[u]) for u in others]
    return watched, [training[u][-1] for u in valid], [training[u][:-1][-HISTORY_LEN:] for u in valid]


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    """Two runs that differ only in their test targets, evaluated with GRID, a third without
    prep/valid, and the first again with the baselines sampled (small bounds)."""
    logs = user_logs()
    rng = np.random.default_rng(1)
    reports = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(als, "GRID", GRID)
        for name, targets in (("last", [log[-1] for log in logs]),
                              ("random", rng.integers(1, NUM_ITEMS, len(logs)).tolist()),
                              ("no_valid", [log[-1] for log in logs]),
                              ("sampled", [log[-1] for log in logs])):
            run = tmp_path_factory.mktemp(name)
            write_run(run, logs, targets)
            if name == "no_valid":
                shutil.rmtree(run / "prep" / "valid")
            bounds = {"choice_users": CHOICE_USERS, "baseline_users": BASELINE_USERS} if name == "sampled" else {}
            reports[name] = evaluate(str(run), **bounds)
            reports[name + "_html"] = (run / "report" / "report.html").read_text()
    return logs, reports


@pytest.fixture(scope="module")
def validation_fits(spark, runs):
    """Each GRID point's (user factors, item factors) on the validation-time matrix."""
    watched, _, _ = validation_time_matrix(runs[0])
    with als.ratings_frame(spark, pa.array(watched, WATCHES)) as ratings:
        return [als.fit_factors(ratings, len(watched), NUM_ITEMS, point) for point in GRID]


def test_item_knn_recent_watches_and_neighbours_are_the_best_validation_hr50_by_brute_force(runs):
    logs, reports = runs
    watched, targets, histories = validation_time_matrix(logs)
    sims = {n: neighbourhoods(cosine(watched), n) for n in {n for _, n in KNN_GRID}}
    expected = [brute_force_hr50(brute_force_rank(sims[n][history[-r:]].sum(0), target, watched[user])
                                 for user, (target, history) in enumerate(zip(targets, histories)))
                for r, n in KNN_GRID]
    assert len(set(expected)) > 1  # the candidates differ, so the choice means something
    knn = reports["last"]["baselines"]["item_knn"]
    assert [point["hr@50"] for point in knn["validation"]] == pytest.approx(expected, abs=1e-12)
    assert [(point["recent"], point["neighbours"]) for point in knn["validation"]] == KNN_GRID
    assert (knn["recent"], knn["neighbours"]) == KNN_GRID[int(np.argmax(expected))]
    assert knn["users"] == len(logs)


def test_als_parameters_are_the_best_validation_hr50_by_brute_force(runs, validation_fits):
    logs, reports = runs
    watched, targets, _ = validation_time_matrix(logs)
    expected = [brute_force_hr50(brute_force_rank(items @ users[user], target, watched[user])
                                 for user, target in enumerate(targets)) for users, items in validation_fits]
    result = reports["last"]["baselines"]["als"]
    assert [point["hr@50"] for point in result["validation"]] == pytest.approx(expected, abs=1e-12)
    assert len(set(expected)) > 1  # the grid points differ, so the choice means something
    best = GRID[int(np.argmax(expected))]
    assert {k: result[k] for k in ("rank", "reg_param", "alpha")} == best.to_dict()
    assert result["users"] == len(logs) and result["max_iter"] == als.MAX_ITER
    settings = reports["last"]["baseline_settings"]
    assert settings == {"chosen_on": "validation", "validation_users": len(targets), "metric": "hr@50"}
    assert f"rank {best.rank}, regParam {best.reg_param:g}" in reports["last_html"]


def test_the_choice_reads_the_validation_split_never_the_test_targets(runs):
    _, reports = runs
    last, other = reports["last"]["baselines"], reports["random"]["baselines"]
    for name in ("item_knn", "als"):
        assert other[name]["hr@50"] != last[name]["hr@50"]  # other test targets, other test metrics
        assert other[name]["validation"] == last[name]["validation"]  # the same choice, to the last digit
    assert all(other["item_knn"][k] == last["item_knn"][k] for k in ("recent", "neighbours"))
    assert all(other["als"][k] == last["als"][k] for k in ("rank", "reg_param", "alpha"))


def test_without_a_validation_split_the_baselines_keep_their_defaults_and_say_so(runs):
    _, reports = runs
    report = reports["no_valid"]
    assert report["baseline_settings"] == {"chosen_on": "defaults", "validation_users": 0, "metric": "hr@50"}
    knn, result = report["baselines"]["item_knn"], report["baselines"]["als"]
    assert (knn["recent"], knn["neighbours"]) == (KNN_RECENT_DEFAULT, EVERY)
    assert knn["validation"] == []
    assert {k: result[k] for k in ("rank", "reg_param", "alpha")} == als.DEFAULT.to_dict()
    assert result["validation"] == [] and 0 < result["hr@50"] <= 1
    assert "fixed defaults" in reports["no_valid_html"]


def test_samples_are_seeded_bounded_and_every_row_below_the_bound():
    rows = sample_rows(80, 40, seed=3)
    assert len(rows) == 40 and len(set(rows.tolist())) == 40 and rows.tolist() == sorted(rows.tolist())
    assert 0 <= rows.min() and rows.max() < 80 and rows.tolist() != list(range(40))
    assert np.array_equal(rows, sample_rows(80, 40, seed=3)) and not np.array_equal(rows, sample_rows(80, 40, seed=4))
    assert sample_rows(80, 80).tolist() == sample_rows(80, 1000).tolist() == list(range(80))
    with pytest.raises(ValueError, match="at least 1 user"):
        sample_rows(80, 0)


def test_sampled_settings_are_chosen_on_the_same_validation_sample_with_every_users_watches(runs, validation_fits):
    logs, reports = runs
    watched, targets, histories = validation_time_matrix(logs)
    rows = sample_rows(len(targets), CHOICE_USERS)
    # every training user's watches, not only the sample's
    sims = {n: neighbourhoods(cosine(watched), n) for n in {n for _, n in KNN_GRID}}
    knn = [brute_force_hr50(brute_force_rank(sims[n][histories[u][-r:]].sum(0), targets[u], watched[u])
                            for u in rows) for r, n in KNN_GRID]
    fits = [brute_force_hr50(brute_force_rank(items @ users[u], targets[u], watched[u]) for u in rows)
            for users, items in validation_fits]
    baselines = reports["sampled"]["baselines"]
    assert [point["hr@50"] for point in baselines["item_knn"]["validation"]] == pytest.approx(knn, abs=1e-12)
    assert [point["hr@50"] for point in baselines["als"]["validation"]] == pytest.approx(fits, abs=1e-12)
    assert baselines["item_knn"]["validation"] != reports["last"]["baselines"]["item_knn"]["validation"]
    assert reports["sampled"]["baseline_settings"] == {
        "chosen_on": "validation", "validation_users": CHOICE_USERS, "metric": "hr@50",
        "validation_sample_of": len(targets), "sample_seed": 0}


def test_item_knn_and_als_are_scored_on_the_same_sample_of_evaluated_users(spark, runs):
    logs, reports = runs
    report = reports["sampled"]
    training = [sorted(log[:-1]) for log in logs]
    rows = sample_rows(len(logs), BASELINE_USERS)
    knn, fitted = report["baselines"]["item_knn"], report["baselines"]["als"]
    sim = neighbourhoods(cosine(training), knn["neighbours"])
    expected_knn = [brute_force_rank(sim[logs[u][:-1][-HISTORY_LEN:][-knn["recent"]:]].sum(0), logs[u][-1],
                                     training[u]) for u in rows]
    params = als.AlsParams(fitted["rank"], fitted["reg_param"], fitted["alpha"])
    with als.ratings_frame(spark, pa.array(training, WATCHES)) as ratings:
        users, items = als.fit_factors(ratings, len(training), NUM_ITEMS, params)
    expected_als = [brute_force_rank(items @ users[u], logs[u][-1], training[u]) for u in rows]
    assert knn["hr@50"] == pytest.approx(brute_force_hr50(expected_knn), abs=1e-12)
    assert fitted["hr@50"] == pytest.approx(brute_force_hr50(expected_als), abs=1e-12)
    assert knn["users"] == fitted["users"] == BASELINE_USERS
    assert knn["hr@50_ci95"][0] <= knn["hr@50"] <= knn["hr@50_ci95"][1]
    assert report["baseline_sample"] == {"baselines": ["item_knn", "als"], "users": BASELINE_USERS,
                                         "of": len(logs), "seed": 0}
    # the model and the popularity baselines stay on every user
    assert report["users"] == report["baselines"]["most_popular"]["users"] == len(logs)
    assert report["model"]["hr@10"] == reports["last"]["model"]["hr@10"]


def test_sampled_baselines_are_named_as_samples_on_the_page_and_the_console(runs):
    _, reports = runs
    assert "item_knn (sample of 40 users)" in reports["sampled_html"]
    assert "als (sample of 40 users)" in reports["sampled_html"]
    assert "a seeded sample of 30 of 70 users" in reports["sampled_html"]
    assert "sample of" not in reports["last_html"] and "baseline_sample" not in reports["last"]
    lines = summary(reports["sampled"]).splitlines()
    assert any(line.startswith("als (sample of 40 users) ") for line in lines)
    assert any(line.startswith("most_popular ") for line in lines)
