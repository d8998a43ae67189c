"""The prep job end to end on small hand-made logs: no leak, nothing lost, clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.prep import run_prep
from jobs.validate import SchemaError
from core.config import PrepConfig
from core.contract import (CATEGORY_VOCAB, EVAL_TARGETS, EXAMPLES, ITEM_FEATURES, ITEM_SAMPLING, ITEM_VOCAB,
                                USER_FEATURES, VALID_TARGETS)

CLICKS = """user_id,item_id,ts,watch_seconds
a,x,2026-01-01T00:00:00Z,10
a,y,2026-01-01T01:00:00Z,10
a,z,2026-01-01T02:00:00Z,10
a,w,2026-01-01T03:00:00Z,10
b,y,1767225600,10
b,x,1767229200,10
b,y,1767232800,10
c,x,2026-01-01T00:30:00Z,10
a,x,2026-01-01T00:00:00Z,10
,x,2026-01-01T00:00:00Z,10
d,x,not a time,10
d,y,2026-01-01T00:00:00Z,-4
c,q,2026-01-01T04:00:00Z,10
c,x,2027-01-01T00:00:00Z,10
c,v,2026-01-01T05:00:00Z,1
"""
ITEMS = """item_id,title,genre,upload_ts
x,The X,drama,2025-12-01T02:00:00Z
y,Why,drama,2025-12-31T02:00:00Z
z,Zed,comedy,
w,Double You,drama,2025-06-01T00:00:00Z
v,Vee,comedy,2025-06-01T00:00:00Z
"""
USERS = """user_id,gender,country
a,F,fr
b,M,fr
c,F,de
"""


def write_dataset(root: Path, clicks: str = CLICKS) -> str:
    for name, text in (("clicks", clicks), ("users", USERS), ("items", ITEMS)):
        (root / name).mkdir(parents=True)
        (root / name / "part-0.csv").write_text(text)
    return str(root)


@pytest.fixture(scope="module")
def prepped(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("prep")
    data = write_dataset(root / "data")
    # every training watch a label: the rules are read most easily so; the validation split
    # has tests of its own below
    cfg = PrepConfig(
        history_len=3, min_category_count=2, example_files=2, anchor="2026-06-01T00:00:00Z",
        max_rejected_fraction=0.5, subsample_threshold=None, max_examples_per_user=0, validation=False,
    )
    manifest = run_prep(spark, data, str(root / "run" / "prep"), cfg)
    return root / "run" / "prep", manifest


def read(prep_dir: Path, name: str):
    return pq.read_table(prep_dir / name)


def test_manifest_is_written_last_and_accounts_for_every_row(prepped):
    prep_dir, manifest = prepped
    on_disk = json.loads((prep_dir / "_manifest.json").read_text())
    assert on_disk == manifest
    counts = manifest["counts"]
    assert counts["events_in"] == 15
    assert counts["rejected"] == {
        "duplicate": 1, "null_id": 1, "bad_timestamp": 1, "negative_watch_time": 1,
        "unknown_item": 1, "future_timestamp": 1,
    }
    # the first watch of a, b and c has no earlier watch: no example (min_history 1)
    assert counts["filtered"] == {"short_watch": 1, "held_out": 2, "short_history": 3}
    assert counts["examples"] == 3
    assert counts["events_in"] == sum(counts["rejected"].values()) + sum(counts["filtered"].values()) + counts["examples"]


def test_rejected_rows_keep_their_reason(prepped):
    prep_dir, _ = prepped
    rejected = read(prep_dir, "rejected").to_pylist()
    assert sorted(r["reason"] for r in rejected) == [
        "bad_timestamp", "duplicate", "future_timestamp", "negative_watch_time", "null_id", "unknown_item"
    ]
    # the times as written in the log, not as parsed
    assert [r["ts"] for r in rejected if r["reason"] == "future_timestamp"] == ["2027-01-01T00:00:00Z"]
    assert [(r["user_id"], r["ts"]) for r in rejected if r["reason"] == "bad_timestamp"] == [("d", "not a time")]


def test_held_out_events_never_appear_in_training(prepped):
    prep_dir, _ = prepped
    vocab = {r["item_id"]: r["index"] for r in read(prep_dir, "vocab/items").to_pylist()}
    targets = read(prep_dir, "eval").to_pylist()
    assert {(t["user_id"], t["item_id"]) for t in targets} == {("a", "w"), ("b", "y")}
    # w is only ever watched as a held-out event: it is not even in the vocabulary
    assert "w" not in vocab and [t["item_index"] for t in targets if t["item_id"] == "w"] == [None]
    examples = read(prep_dir, "examples").to_pylist()
    by_user = {}
    for e in examples:
        by_user.setdefault(e["user_id"], []).append((e["label"], e["history"][: e["history_length"]]))
    assert sorted(by_user["a"]) == sorted([(vocab["y"], [vocab["x"]]), (vocab["z"], [vocab["x"], vocab["y"]])])
    assert by_user["b"] == [(vocab["x"], [vocab["y"]])]


def test_item_vocabulary_is_ranked_by_training_count(prepped):
    prep_dir, _ = prepped
    vocab = read(prep_dir, "vocab/items").to_pylist()
    # training events: x three times (a, b, c), y twice (a, b), z once (a); all of them in the
    # last prep.recent_days (7) of the window
    assert [(v["item_id"], v["index"], v["count"], v["recent_count"]) for v in vocab] == [
        ("x", 1, 3, 3), ("y", 2, 2, 2), ("z", 3, 1, 1)]


def test_serving_features_hold_the_latest_history_and_every_watched_item(prepped):
    prep_dir, manifest = prepped
    rows = {r["user_id"]: r for r in read(prep_dir, "user_features").to_pylist()}
    assert rows["a"]["history"] == [1, 2, 3] and rows["a"]["watched"] == [1, 2, 3]
    assert rows["b"]["history"] == [2, 1] and rows["b"]["history_length"] == 2
    # gender F (2 users) and M (1 < min count 2 -> an OOV bucket); country fr (2) and de (OOV);
    # known values come after the 8 hashed OOV buckets
    assert manifest["features"]["user_categoricals"] == ["gender", "country"]
    assert manifest["features"]["categorical_sizes"] == [10, 10]
    assert rows["a"]["demographics"] == [9, 9]
    assert rows["b"]["demographics"][1] == 9 and 1 <= rows["b"]["demographics"][0] <= 8
    assert rows["c"]["demographics"][0] == 9 and 1 <= rows["c"]["demographics"][1] <= 8


def test_outputs_follow_the_contract(prepped):
    prep_dir, _ = prepped
    for name, schema in (("examples", EXAMPLES), ("user_features", USER_FEATURES), ("eval", EVAL_TARGETS),
                         ("vocab/items", ITEM_VOCAB), ("vocab/item_sampling", ITEM_SAMPLING),
                         ("vocab/gender", CATEGORY_VOCAB)):
        got = read(prep_dir, name).schema
        assert {f.name: f.type for f in got} == {f.name: f.type for f in schema}, name


def test_examples_weigh_one_unless_asked_and_their_labels_watch_time_when_asked(spark, prepped, tmp_path):
    prep_dir, _ = prepped
    assert {e["weight"] for e in read(prep_dir, "examples").to_pylist()} == {1.0}
    clicks = CLICKS.replace("a,y,2026-01-01T01:00:00Z,10", "a,y,2026-01-01T01:00:00Z,20").replace(
        "a,z,2026-01-01T02:00:00Z,10", "a,z,2026-01-01T02:00:00Z,30")
    cfg = PrepConfig(history_len=3, example_files=1, anchor="2026-06-01T00:00:00Z", max_rejected_fraction=0.5,
                     subsample_threshold=None, max_examples_per_user=0, example_weight="watch_seconds",
                     validation=False)
    run_prep(spark, write_dataset(tmp_path / "data", clicks), str(tmp_path / "prep"), cfg)
    vocab = {r["index"]: r["item_id"] for r in read(tmp_path / "prep", "vocab/items").to_pylist()}
    weights = {(e["user_id"], vocab[e["label"]]): e["weight"] for e in read(tmp_path / "prep", "examples").to_pylist()}
    assert weights == {("a", "y"): 20.0, ("a", "z"): 30.0, ("b", "x"): 10.0}


def test_item_features_hold_each_items_categories_and_age(prepped):
    prep_dir, manifest = prepped
    rows = read(prep_dir, "vocab/item_features").to_pylist()
    # the vocabulary's items x, y, z: drama twice (index 9, after the 8 OOV buckets), comedy
    # once (below min count: an OOV bucket); ages in days at the last training watch (a's z
    # at 02:00 on Jan 1st); z has no upload time
    assert [(r["index"], r["age_days"]) for r in rows] == [(1, 31.0), (2, 1.0), (3, None)]
    assert rows[0]["categories"] == [9] and rows[1]["categories"] == [9]
    assert 1 <= rows[2]["categories"][0] <= 8
    features = manifest["features"]
    assert features["item_categoricals"] == ["genre"] and features["item_categorical_sizes"] == [10]
    assert features["item_age_scale"] == pytest.approx(math.log1p(31.0))
    assert {f.name: f.type for f in read(prep_dir, "vocab/item_features").schema} == {
        f.name: f.type for f in ITEM_FEATURES}


def test_the_negative_sampling_table_follows_count_to_the_alpha(prepped):
    prep_dir, _ = prepped
    table = read(prep_dir, "vocab/item_sampling").to_pylist()
    weights = [3 ** 0.75, 2 ** 0.75, 1.0]
    assert [r["index"] for r in table] == [1, 2, 3]
    assert [r["probability"] for r in table] == pytest.approx([w / sum(weights) for w in weights])


def test_too_many_rejected_rows_fail_the_job_with_the_reasons(spark, tmp_path):
    data = write_dataset(tmp_path / "data")
    with pytest.raises(ValueError, match=r"40.0% of the 15 input rows were rejected .*max_rejected_fraction=0.1"):
        run_prep(spark, data, str(tmp_path / "run" / "prep"), PrepConfig(anchor="2026-06-01T00:00:00Z"))
    assert not (tmp_path / "run" / "prep" / "_manifest.json").exists()
    assert (tmp_path / "run" / "prep" / "rejected").exists()  # left to inspect


def test_a_missing_column_fails_at_once_naming_it(spark, tmp_path):
    data = write_dataset(tmp_path / "data", clicks="user_id,item,ts\na,x,2026-01-01T00:00:00Z\n")
    with pytest.raises(SchemaError, match="no column 'item_id'"):
        run_prep(spark, data, str(tmp_path / "run" / "prep"), PrepConfig())
    assert not (tmp_path / "run" / "prep" / "_manifest.json").exists()


def test_titles_stand_in_for_a_missing_search_log(prepped):
    prep_dir, manifest = prepped
    assert manifest["features"]["search_source"] == "titles"
    # every title word occurs once among the vocabulary's items: all hash into the 8 OOV buckets
    assert manifest["features"]["token_vocab_size"] == 9
    rows = {r["user_id"]: r for r in read(prep_dir, "user_features").to_pylist()}
    tokens = rows["a"]["search_tokens"]
    assert tokens and all(1 <= t <= 8 for t in tokens) and len(set(tokens)) == len(tokens)


def test_a_rerun_with_the_previous_vocabulary_keeps_every_index(spark, prepped, tmp_path):
    prep_dir, _ = prepped
    data = write_dataset(tmp_path / "data", clicks=CLICKS + "e,v,2026-01-01T06:00:00Z,10\ne,v,2026-01-01T07:00:00Z,10\ne,v,2026-01-01T08:00:00Z,10\n")
    cfg = PrepConfig(anchor="2026-06-01T00:00:00Z", max_rejected_fraction=0.5, previous_vocab=str(prep_dir),
                     subsample_threshold=None)  # on a log this small, down-sampling would leave no example
    run_prep(spark, data, str(tmp_path / "run" / "prep"), cfg)
    before = {r["item_id"]: r["index"] for r in read(prep_dir, "vocab/items").to_pylist()}
    after = {r["item_id"]: r["index"] for r in read(tmp_path / "run" / "prep", "vocab/items").to_pylist()}
    # v is new: it is appended after the known items, which keep their indices
    assert after == {**before, "v": 4}


def test_continuous_user_features_are_min_max_normalized(spark, tmp_path):
    data = write_dataset(tmp_path / "data")
    (tmp_path / "data" / "users" / "part-0.csv").write_text("user_id,gender,age\na,F,20\nb,M,60\nc,F,30\n")
    cfg = PrepConfig(anchor="2026-06-01T00:00:00Z", max_rejected_fraction=0.5, user_continuous=("age",),
                     subsample_threshold=None)
    manifest = run_prep(spark, data, str(tmp_path / "run" / "prep"), cfg)
    assert manifest["features"]["user_categoricals"] == ["gender"]
    assert manifest["features"]["continuous_stats"] == {"age": {"min": 20.0, "max": 60.0}}
    rows = {r["user_id"]: r["continuous"] for r in read(tmp_path / "run" / "prep", "user_features").to_pylist()}
    assert rows == {"a": [0.0], "b": [1.0], "c": [0.25]}


@pytest.fixture(scope="module")
def validated(spark, tmp_path_factory):
    """The same log with the default validation split."""
    root = tmp_path_factory.mktemp("validated")
    cfg = PrepConfig(history_len=3, example_files=1, anchor="2026-06-01T00:00:00Z", max_rejected_fraction=0.5,
                     subsample_threshold=None, max_examples_per_user=0)
    manifest = run_prep(spark, write_dataset(root / "data"), str(root / "prep"), cfg)
    return root / "prep", manifest


def test_validation_targets_are_each_users_second_to_last_watch_with_the_features_before_it(validated):
    prep_dir, manifest = validated
    vocab = {r["item_id"]: r["index"] for r in read(prep_dir, "vocab/items").to_pylist()}
    x, y, z = vocab["x"], vocab["y"], vocab["z"]
    valid = {r["user_id"]: r for r in read(prep_dir, "valid").to_pylist()}
    # a watched x y z w: w is the test's, z validation's; b watched y x y: y the test's, x
    # validation's; c has one training watch and gives none
    assert {u: (r["item_id"], r["item_index"]) for u, r in valid.items()} == {"a": ("z", z), "b": ("x", x)}
    assert valid["a"]["history"] == [x, y] and valid["a"]["history_length"] == 2
    assert valid["a"]["watched"] == sorted([x, y])
    assert valid["b"]["history"] == [y] and valid["b"]["watched"] == [y]
    assert {f.name: f.type for f in read(prep_dir, "valid").schema} == {f.name: f.type for f in VALID_TARGETS}
    assert manifest["counts"]["valid_users"] == 2 and manifest["counts"]["filtered"]["validation"] == 2
    counts = manifest["counts"]
    assert counts["events_in"] == sum(counts["rejected"].values()) + sum(counts["filtered"].values()) + counts["examples"]


def test_validation_targets_are_never_labels_nor_test_targets_but_serving_history(validated):
    prep_dir, _ = validated
    vocab = {r["item_id"]: r["index"] for r in read(prep_dir, "vocab/items").to_pylist()}
    valid = {(r["user_id"], r["ts"]) for r in read(prep_dir, "valid").to_pylist()}
    tests = {(r["user_id"], r["ts"]) for r in read(prep_dir, "eval").to_pylist()}
    examples = read(prep_dir, "examples").to_pylist()
    assert not valid & tests
    assert not valid & {(e["user_id"], e["ts"]) for e in examples}
    # the one example left: a's y after x (b's x is validation's, every first watch has no history)
    assert [(e["user_id"], e["label"], e["history"]) for e in examples] == [("a", vocab["y"], [vocab["x"]])]
    assert examples[0]["watches_after"] == 0  # z after it is validation's, not a training watch
    # serving (and so the test) sees the validation watch as history
    features = {r["user_id"]: r for r in read(prep_dir, "user_features").to_pylist()}
    assert features["a"]["history"] == [vocab["x"], vocab["y"], vocab["z"]]


def test_a_time_split_validates_on_each_users_last_watch_before_the_split(spark, tmp_path):
    cfg = PrepConfig(history_len=3, example_files=1, anchor="2026-06-01T00:00:00Z", max_rejected_fraction=0.5,
                     subsample_threshold=None, max_examples_per_user=0, split="time",
                     split_time="2026-01-01T02:30:00Z")
    run_prep(spark, write_dataset(tmp_path / "data"), str(tmp_path / "prep"), cfg)
    valid = {(r["user_id"], r["item_id"]) for r in read(tmp_path / "prep", "valid").to_pylist()}
    tests = {(r["user_id"], r["item_id"]) for r in read(tmp_path / "prep", "eval").to_pylist()}
    # a: x y z before the split, w after it; b: y x y, all before it
    assert valid == {("a", "z"), ("b", "y")} and tests == {("a", "w")}


def test_a_nights_held_out_users_give_their_day_to_the_evaluation_and_the_others_train_on_it(spark, tmp_path):
    import random

    rng = random.Random(5)
    day0 = 1767225600  # 2026-01-01; the night is 2026-01-03, held out for half of the users
    rows = [(f"u{u}", f"i{rng.randrange(40)}", day0 + d * 86400 + rng.randrange(86000))
            for u in range(80) for d in range(3) for _ in range(4)]
    (tmp_path / "data" / "clicks").mkdir(parents=True)
    (tmp_path / "data" / "clicks" / "part-0.csv").write_text(
        "user_id,item_id,ts\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    cfg = PrepConfig(history_len=5, example_files=1, anchor="2026-06-01T00:00:00Z", split="time",
                     split_time="2026-01-02T23:59:59.999999Z", eval_users_share=0.5)
    run_prep(spark, str(tmp_path / "data"), str(tmp_path / "prep"), cfg)
    night = day0 + 2 * 86400
    targets = read(tmp_path / "prep", "eval").to_pylist()
    held = {t["user_id"] for t in targets}
    assert 20 < len(held) < 60
    # each held-out user's target is the first watch of the night's day
    first = {u: min((t, i) for uu, i, t in rows if uu == u and t >= night) for u in held}
    assert {t["user_id"]: (int(t["ts"].timestamp()), t["item_id"]) for t in targets} == first
    # no training example of a held-out user is from the night's day; the others' days train
    examples = read(tmp_path / "prep", "examples").to_pylist()
    assert not [e for e in examples if e["user_id"] in held and e["ts"].timestamp() >= night]
    others = {e["user_id"] for e in examples if e["ts"].timestamp() >= night}
    assert others and not others & held
    assert min(e["example_age_raw"] for e in examples) >= 0


def test_conflicting_users_and_items_rows_are_quarantined_before_any_vocabulary(spark, tmp_path):
    data = tmp_path / "data"
    write_dataset(data)
    # a is given a second country (a conflict); b's row again, exactly (one row); x a second title
    (data / "users" / "part-1.csv").write_text("user_id,gender,country\na,M,us\nb,M,fr\n")
    (data / "items" / "part-1.csv").write_text("item_id,title,genre,upload_ts\nx,Another X,drama,2025-12-01T02:00:00Z\n")
    cfg = PrepConfig(history_len=3, min_category_count=1, example_files=1, anchor="2026-06-01T00:00:00Z",
                     max_rejected_fraction=0.5, validation=False)
    manifest = run_prep(spark, str(data), str(tmp_path / "prep"), cfg)
    assert manifest["counts"]["conflicts"] == {"duplicate_user": 1, "duplicate_item": 1}
    assert {"rejected_users", "rejected_items"} <= set(manifest["outputs"])
    # of conflicting rows the first by value is kept: (F, fr) for a, "Another X" for x
    assert read(tmp_path / "prep", "rejected_users").to_pylist() == [
        {"user_id": "a", "gender": "M", "country": "us", "reason": "duplicate_user"}]
    assert [(r["item_id"], r["title"], r["reason"]) for r in read(tmp_path / "prep", "rejected_items").to_pylist()] == [
        ("x", "The X", "duplicate_item")]
    assert "us" not in {r["value"] for r in read(tmp_path / "prep", "vocab/country").to_pylist()}


def test_floating_point_item_ids_holding_integers_match_the_logs_integers(spark, tmp_path):
    import pyarrow as pa

    data = tmp_path / "data"
    (data / "clicks").mkdir(parents=True)
    (data / "items").mkdir()
    (data / "clicks" / "part-0.csv").write_text(
        "user_id,item_id,ts\n" + "".join(f"u{u},{i},{1767225600 + 60 * (u * 10 + i)}\n" for u in range(3) for i in (1, 2, 3)))
    pq.write_table(pa.table({"item_id": [1.0, 2.0, 3.0, None], "genre": ["a", "b", "a", "b"]}),
                   data / "items" / "part-0.parquet")
    cfg = PrepConfig(anchor="2026-06-01T00:00:00Z", example_files=1, validation=False)
    manifest = run_prep(spark, str(data), str(tmp_path / "prep"), cfg)
    assert manifest["counts"]["rejected"] == {} and manifest["counts"]["items"] == 2  # 3 is every test target
    pq.write_table(pa.table({"item_id": [1.5, 2.0]}), data / "items" / "part-0.parquet")
    with pytest.raises(ValueError, match=r"items: column 'item_id' holds 1.5, which is not an id"):
        run_prep(spark, str(data), str(tmp_path / "again"), cfg)
    (data / "items" / "part-0.parquet").unlink()
    (data / "items" / "part-0.csv").write_text("item_id\n1.0\n2.0\n3.0\n")  # as text: no telling they are numbers
    with pytest.raises(ValueError, match=r"unknown_item: 9.*the log's item ids look like '\d', the items table's "
                                         r"like '\d\.0': the same ids written two ways\?"):
        run_prep(spark, str(data), str(tmp_path / "third"), cfg)
