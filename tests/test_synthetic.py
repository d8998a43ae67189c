"""The synthetic log: the canonical contract, exact sizes, determinism, and the realism the
freshness and popularity experiments rely on."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synthetic import generator as synthetic
from core.contract import CLICKS, SEARCHES

SIZE = dict(users=1_000, items=3_000, events=12_000, start="2026-01-01", days=60)
DAY_US = 86_400_000_000
USERS, ITEMS, EVENTS = SIZE["users"], SIZE["items"], SIZE["events"]


def _generate(out: Path, seed: int = 7, **overrides) -> dict:
    args = {**SIZE, "seed": seed, "chunk_events": 4_000, **overrides}
    return synthetic.generate(str(out), **args)


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "data"
    summary = _generate(out)
    tables = {t: pq.read_table(out / t) for t in ("clicks", "users", "items", "searches")}
    return out, summary, tables


@pytest.fixture(scope="module")
def world():
    return synthetic.build_world(**SIZE, seed=7)


def _index(ids: pa.ChunkedArray) -> np.ndarray:
    """'i0000123' -> 123."""
    return np.array([int(i[1:]) for i in ids.to_pylist()])


def _us(ts: pa.ChunkedArray) -> np.ndarray:
    return ts.cast(pa.int64()).to_numpy()


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.parquet"))}


def test_every_file_follows_the_contract(log):
    out, _, _ = log
    for table, schema in (("clicks", CLICKS), ("searches", SEARCHES),
                          ("users", synthetic.USERS), ("items", synthetic.ITEMS)):  # fmt: skip
        files = sorted((out / table).glob("part-*.parquet"))
        assert files, table
        for f in files:
            assert pq.read_schema(f).equals(schema, check_metadata=False), f
    assert synthetic.USERS.names == ["user_id", "age_bucket", "gender", "country", "device"]
    assert synthetic.ITEMS.names == ["item_id", "title", "upload_ts", "category", "language"]
    assert synthetic.ITEMS.field("upload_ts").type == pa.timestamp("us", tz="UTC")


def test_row_counts_equal_the_arguments(log):
    out, summary, t = log
    assert t["clicks"].num_rows == EVENTS
    assert t["users"].num_rows == USERS
    assert t["items"].num_rows == ITEMS
    assert 0.17 < t["searches"].num_rows / EVENTS < 0.23  # about one query per 5 clicks
    assert len(list((out / "clicks").glob("part-*.parquet"))) == 3  # chunks of whole users
    assert summary["clicks"] == EVENTS and summary["users"] == USERS and summary["items"] == ITEMS
    assert summary["searches"] == t["searches"].num_rows and summary["seed"] == 7
    assert summary["window_start"] == "2026-01-01T00:00:00+00:00"
    assert summary["window_end"] == "2026-03-02T00:00:00+00:00"


def test_ids_are_zero_padded_and_every_user_clicks(log):
    _, _, t = log
    assert t["users"]["user_id"].to_pylist() == [f"u{i:07d}" for i in range(USERS)]
    assert t["items"]["item_id"].to_pylist() == [f"i{i:07d}" for i in range(ITEMS)]
    per_user = np.bincount(_index(t["clicks"]["user_id"]), minlength=USERS)
    assert per_user.min() >= 1


def test_same_seed_gives_identical_files_and_another_seed_does_not(log, tmp_path):
    out, _, _ = log
    _generate(tmp_path / "again")
    assert _files(tmp_path / "again") == _files(out)
    _generate(tmp_path / "other", seed=8)
    other = _files(tmp_path / "other")
    assert other.keys() == _files(out).keys()
    assert all(other[name] != data for name, data in _files(out).items())


def test_every_click_is_on_an_item_uploaded_at_or_before_it(log):
    _, _, t = log
    item = _index(t["clicks"]["item_id"])
    assert item.max() < ITEMS
    upload = _us(t["items"]["upload_ts"])[item]
    ts = _us(t["clicks"]["ts"])
    assert (upload <= ts).all()
    start = _us(t["items"]["upload_ts"]).min() // DAY_US * DAY_US
    window = synthetic._parse_start("2026-01-01"), synthetic._parse_start("2026-03-02")
    assert ts.min() >= window[0] and ts.max() < window[1] and start < window[0]  # back catalog
    q = _us(t["searches"]["ts"])
    assert q.min() >= window[0] and q.max() < window[1]


def test_item_clicks_are_heavy_tailed(log):
    _, _, t = log
    clicks = np.sort(np.bincount(_index(t["clicks"]["item_id"]), minlength=ITEMS))[::-1]
    assert clicks[: ITEMS // 100].sum() / clicks.sum() > 0.10  # top 1% of items
    assert clicks[: ITEMS // 10].sum() / clicks.sum() > 0.40  # top 10%


def test_fresh_items_get_far_more_than_their_share_of_time(log):
    _, _, t = log
    start, end = synthetic._parse_start("2026-01-01"), synthetic._parse_start("2026-03-02")
    upload = _us(t["items"]["upload_ts"])
    age = _us(t["clicks"]["ts"]) - upload[_index(t["clicks"]["item_id"])]
    clicks_fresh = (age < 7 * DAY_US).mean()
    # of all item-days in the window (from upload or window start), those in the first week
    alive_from = np.maximum(upload, start)
    item_days = (end - alive_from).sum()
    fresh_days = np.clip(np.minimum(upload + 7 * DAY_US, end) - alive_from, 0, None).sum()
    assert fresh_days / item_days < 0.25
    assert clicks_fresh > 0.45
    assert clicks_fresh > 2.5 * fresh_days / item_days


def test_users_mostly_click_within_their_interest_topics(log, world):
    _, _, t = log
    user = _index(t["clicks"]["user_id"])
    topic = world.item_topic[_index(t["clicks"]["item_id"])]
    inside = (world.user_topics[user] == topic[:, None]).any(axis=1)
    assert 0.84 < inside.mean() < 0.95  # 85% on topic, plus explore clicks that land there
    someone_else = np.random.default_rng(0).permutation(user)
    shuffled = (world.user_topics[someone_else] == topic[:, None]).any(axis=1)
    assert shuffled.mean() < 0.35
    # and the category column is the latent topic
    assert t["items"]["category"].to_pylist() == [world.topic_names[k] for k in world.item_topic]


def test_queries_and_titles_use_their_topics_words(log, world):
    _, _, t = log
    words = np.array(world.topic_words.to_pylist()).reshape(world.n_topics, -1)
    topic_of = {w: k for k, ws in enumerate(words) for w in ws}
    assert len(topic_of) == words.size  # no word is shared by two topics
    for title, k in zip(t["items"]["title"].to_pylist(), world.item_topic):
        assert 2 <= len(title.split()) <= 5
        assert {topic_of[w.lower()] for w in title.split()} == {k}
    query_user = _index(t["searches"]["user_id"])
    for query, u in zip(t["searches"]["query"].to_pylist(), query_user):
        terms = query.split()
        assert 1 <= len(terms) <= 4 and len(set(terms)) == len(terms)
        (k,) = {topic_of[w] for w in terms}
        assert k in world.user_topics[u]


def test_activity_is_heavy_tailed_and_repeats_are_rare(log):
    _, _, t = log
    user = _index(t["clicks"]["user_id"])
    per_user = np.sort(np.bincount(user, minlength=USERS))[::-1]
    assert per_user[: USERS // 10].sum() / per_user.sum() > 0.30  # top 10% of users
    pairs = user * ITEMS + _index(t["clicks"]["item_id"])
    _, first = np.unique(pairs, return_index=True)
    repeat = np.ones(len(pairs), bool)
    repeat[first] = False
    assert 0 < repeat.mean() < 0.15
    # most repeats come from the heaviest users, whose clicks outnumber their topics' items
    light = np.bincount(user)[user] <= 30
    assert repeat[light].mean() < 0.03


def test_watch_time_is_lognormal_with_a_few_short_views(log):
    _, _, t = log
    seconds = t["clicks"]["watch_seconds"].to_numpy()
    fraction = t["clicks"]["watch_fraction"].to_numpy()
    assert (seconds > 0).all() and (fraction > 0).all() and (fraction <= 1).all()
    assert 0.005 < (seconds < 3).mean() < 0.06
    assert 30 < np.median(seconds) < 150
    assert 0.03 < (fraction == 1).mean() < 0.3  # some watched to the end


def test_demographics_are_filled_with_a_few_missing(log):
    _, _, t = log
    users = t["users"]
    assert set(users["age_bucket"].drop_null().to_pylist()) <= set(synthetic.AGE_BUCKETS)
    assert 0.02 * USERS < users["age_bucket"].null_count < 0.08 * USERS  # 5% missing
    assert users["country"].null_count == 0 and users["device"].null_count == 0


def test_refuses_to_overwrite_and_leaves_no_temporary_folder(log):
    out, _, _ = log
    with pytest.raises(ValueError, match="already holds clicks/"):
        _generate(out)
    assert sorted(os.listdir(out)) == ["clicks", "items", "searches", "users"]


def test_an_interrupted_run_leaves_nothing_that_looks_finished(tmp_path, monkeypatch):
    real_chunk = synthetic._chunk
    calls = []

    def crash_on_second_chunk(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("interrupted")
        return real_chunk(*args)

    monkeypatch.setattr(synthetic, "_chunk", crash_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        _generate(tmp_path / "data")
    assert os.listdir(tmp_path / "data") == []


def test_bad_sizes_are_refused_with_the_argument_named(tmp_path):
    with pytest.raises(ValueError, match="events=5 < users=10"):
        synthetic.generate(str(tmp_path / "a"), users=10, items=5, events=5)
    with pytest.raises(ValueError, match="items=0"):
        synthetic.generate(str(tmp_path / "b"), users=1, items=0, events=5)
    assert not (tmp_path / "a").exists()


@settings(max_examples=20, deadline=None)
@given(
    users=st.integers(1, 30),
    items=st.integers(1, 40),
    extra_events=st.integers(0, 300),
    days=st.integers(1, 10),
    seed=st.integers(0, 2**32),
    chunk_events=st.integers(1, 200),
)
def test_any_small_log_is_exact_and_causal(users, items, extra_events, days, seed, chunk_events):
    events = users + extra_events
    with tempfile.TemporaryDirectory() as tmp:
        s = synthetic.generate(tmp, users=users, items=items, events=events, seed=seed,
                               days=days, chunk_events=chunk_events)  # fmt: skip
        clicks, items_t = pq.read_table(f"{tmp}/clicks"), pq.read_table(f"{tmp}/items")
    assert s["clicks"] == clicks.num_rows == events
    assert items_t.num_rows == items
    user = _index(clicks["user_id"])
    assert np.bincount(user, minlength=users).min() >= 1 and user.max() < users
    item = _index(clicks["item_id"])
    assert (_us(items_t["upload_ts"])[item] <= _us(clicks["ts"])).all()
    assert (clicks["watch_fraction"].to_numpy() <= 1).all()


def test_daily_partitions_hold_the_same_rows_each_in_its_own_day(log, tmp_path):
    out, summary, tables = log
    _generate(tmp_path / "daily", partition_by_date=True)
    for table in ("clicks", "searches"):
        days = sorted(p.name for p in (tmp_path / "daily" / table).iterdir())
        assert days[0] == "date=2026-01-01" and all(d.startswith("date=2026-") for d in days)
        parts = []
        for day in days:
            part = pq.read_table(tmp_path / "daily" / table / day)
            start = int(np.datetime64(day.removeprefix("date="), "us").astype(np.int64))
            assert start <= _us(part["ts"]).min() and _us(part["ts"]).max() < start + DAY_US
            parts.append(part)
        every = pa.concat_tables(parts).sort_by([("user_id", "ascending"), ("ts", "ascending")])
        assert every.equals(tables[table].sort_by([("user_id", "ascending"), ("ts", "ascending")]))
