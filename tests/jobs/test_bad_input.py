"""Bad input through the prep job, fuzzed and by hand: every row ends in exactly one place,
each bad one quarantined with its reason, or the job stops with an error naming the file and
column; never a stack trace from inside Spark."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import tempfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.prep import run_prep
from core.config import PrepConfig

ANCHOR = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
T0 = 1_700_000_000  # 2023-11-14, before the anchor
CFG = PrepConfig(anchor=ANCHOR, max_rejected_fraction=1.0, subsample_threshold=None, max_examples_per_user=0,
                 example_files=1, history_len=5, validation=False)
# a user with enough clean watches that the job always has examples to write
BASE_ROWS = [f"base,i{k},{T0 + 60 * k}".encode() for k in range(1, 6)]

# each kind of row: how to write it from a draw (user, item, minute), and the reason it is
# rejected with (None = a clean watch)
KINDS = {
    "good": (lambda u, i, m: f"u{u},i{i},{T0 + 60 * m}".encode(), None),
    "integer_ids": (lambda u, i, m: f"{u},{i},{T0 + 60 * m}".encode(), None),
    "iso_time": (lambda u, i, m: f"u{u},i{i},{dt.datetime.fromtimestamp(T0 + 60 * m, dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}"
                 .encode(), None),
    "too_few_fields": (lambda u, i, m: f"u{u},i{i}".encode(), "malformed_row"),
    "too_many_fields": (lambda u, i, m: f"u{u},i{i},{T0 + 60 * m},extra".encode(), "malformed_row"),
    "empty_user": (lambda u, i, m: f",i{i},{T0 + 60 * m}".encode(), "null_id"),
    "latin1_user": (lambda u, i, m: b"caf\xe9" + str(u).encode() + f",i{i},{T0 + 60 * m}".encode(), "bad_encoding"),
    "bad_time": (lambda u, i, m: f"u{u},i{i},yesterday".encode(), "bad_timestamp"),
    "epoch_zero_time": (lambda u, i, m: f"u{u},i{i},{m - 5}".encode(), "implausible_timestamp"),
    "future_time": (lambda u, i, m: f"u{u},i{i},{int(ANCHOR.timestamp()) + 86400 * (m + 1)}".encode(),
                    "future_timestamp"),
}

rows = st.lists(st.tuples(st.sampled_from(sorted(KINDS)), st.integers(1, 4), st.integers(1, 6),
                          st.integers(1, 10_000)), max_size=30)


def write_clicks(root: Path, lines: list[bytes], name: str = "part-0.csv", header: bytes = b"user_id,item_id,ts") -> str:
    (root / "clicks").mkdir(parents=True, exist_ok=True)
    (root / "clicks" / name).write_bytes(b"\n".join([header, *lines]) + b"\n")
    return str(root)


def accounted(manifest: dict) -> int:
    counts = manifest["counts"]
    return sum(counts["rejected"].values()) + sum(counts["filtered"].values()) + counts["examples"]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=rows)
def test_fuzzed_click_rows_are_each_kept_or_quarantined_with_their_reason(spark, drawn):
    lines, expected = list(BASE_ROWS), Counter()
    events = set()
    for kind, user, item, minute in drawn:
        make, reason = KINDS[kind]
        lines.append(make(user, item, minute))
        if reason is None:  # a clean watch seen before (ISO or epoch time alike) is a duplicate
            event = (f"{user}" if kind == "integer_ids" else f"u{user}", item, minute)
            reason = "duplicate" if event in events else None
            events.add(event)
        if reason:
            expected[reason] += 1
    with tempfile.TemporaryDirectory() as tmp:
        data = write_clicks(Path(tmp) / "data", lines)
        manifest = run_prep(spark, data, f"{tmp}/run/prep", CFG)
        rejected = pq.read_table(f"{tmp}/run/prep/rejected").to_pylist() if expected else []
    assert manifest["counts"]["events_in"] == len(lines) == accounted(manifest)
    assert manifest["counts"]["rejected"] == dict(expected)
    assert Counter(r["reason"] for r in rejected) == expected
    for r in rejected:
        if r["reason"] == "malformed_row":  # the raw line is kept for inspection
            assert r["_corrupt_record"].encode() in lines
        if r["reason"] in ("bad_timestamp", "implausible_timestamp"):  # the time as it was written
            assert f"{r['user_id']},{r['item_id']},{r['ts']}".encode() in lines


@pytest.mark.parametrize("content, message", [
    (b"", "has no column 'user_id'"),  # an empty file: no header
    (b"user_id,item_id,ts\n", "no training events left"),  # a header and nothing else
    (b"user_id,item_id,ts\nsolo,i1,1700000000\n", "no training examples are left; every training watch was filtered (short_history: 1"),
    (b"user_id,item_id,ts\n,i1,1700000000\nu1,i2,never\n", "no training events left"),  # every row rejected
    (b"user,item,time\nu1,i1,1700000000\n", "has no column 'user_id' (columns: user, item, time);"),
])
def test_inputs_that_leave_nothing_to_learn_fail_naming_the_file(spark, tmp_path, content, message):
    data = tmp_path / "data"
    (data / "clicks").mkdir(parents=True)
    (data / "clicks" / "part-0.csv").write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        run_prep(spark, str(data), str(tmp_path / "run" / "prep"), CFG)
    assert str(data) in str(caught.value)
    assert not (tmp_path / "run" / "prep" / "_manifest.json").exists()


def test_too_many_rejected_rows_name_the_reasons(spark, tmp_path):
    data = write_clicks(tmp_path / "data", [*BASE_ROWS, b"u1,i1", b"u2,i2,later"])
    with pytest.raises(ValueError, match=r"28.6% of the 7 input rows were rejected \((bad_timestamp: 1, "
                                         r"malformed_row: 1|malformed_row: 1, bad_timestamp: 1)\)"):
        run_prep(spark, data, str(tmp_path / "run" / "prep"), CFG.model_copy(update={"max_rejected_fraction": 0.1}))


def test_parquet_files_with_integer_and_text_ids_are_read_as_one_log(spark, tmp_path):
    clicks = tmp_path / "data" / "clicks"
    clicks.mkdir(parents=True)
    ts = [float(T0 + 60 * k) for k in range(4)]
    pq.write_table(pa.table({"user_id": [7, 7, 8, 8], "item_id": [1, 2, 1, 3], "ts": ts}), clicks / "a.parquet")
    pq.write_table(pa.table({"user_id": ["7", "u9", "u9", "u9"], "item_id": ["3", "1", "2", "3"], "ts": ts}),
                   clicks / "b.parquet")
    manifest = run_prep(spark, str(tmp_path / "data"), str(tmp_path / "run" / "prep"), CFG)
    assert manifest["counts"]["events_in"] == 8 == accounted(manifest) and manifest["counts"]["rejected"] == {}
    assert manifest["counts"]["users"] == 3  # "7" and 7 are one user
    vocab = pq.read_table(tmp_path / "run" / "prep" / "vocab" / "items").column("item_id").to_pylist()
    assert sorted(vocab) == ["1", "2", "3"]


def test_csv_is_read_as_rfc_4180_writes_it(spark, tmp_path):
    # a byte-order mark, a doubled quote inside a quoted field, a line break inside one
    lines = [*BASE_ROWS, b'"u""q",i1,1700000060', b'"multi\nline",i2,1700000120', b'"multi\nline",i3,1700000180']
    data = write_clicks(tmp_path / "data", lines, header=b"\xef\xbb\xbfuser_id,item_id,ts")
    manifest = run_prep(spark, data, str(tmp_path / "run" / "prep"), CFG)
    assert manifest["counts"]["events_in"] == len(lines) == accounted(manifest)
    assert manifest["counts"]["rejected"] == {}
    evaluated = {r["user_id"] for r in pq.read_table(tmp_path / "run" / "prep" / "eval").to_pylist()}
    assert evaluated == {"base", "multi\nline"}  # u"q watched once: nothing to hold out


def test_epoch_milliseconds_are_read_as_such_or_refused_naming_the_unit(spark, tmp_path):
    lines = [f"base,i{k},{(T0 + 60 * k) * 1000}".encode() for k in range(1, 6)]
    data = write_clicks(tmp_path / "data", lines)
    manifest = run_prep(spark, data, str(tmp_path / "run" / "prep"), CFG)
    assert manifest["counts"]["rejected"] == {} and manifest["counts"]["examples"] == 3
    held_out = pq.read_table(tmp_path / "run" / "prep" / "eval").to_pylist()
    assert held_out[0]["ts"] == dt.datetime.fromtimestamp(T0 + 300, dt.timezone.utc)
    with pytest.raises(ValueError, match=r"column 'ts' looks like epoch milliseconds .*prep.ts_unit=s says; "
                                         r"set prep.ts_unit=ms or auto"):
        run_prep(spark, data, str(tmp_path / "again" / "prep"), CFG.model_copy(update={"ts_unit": "s"}))


def test_a_time_column_of_another_type_is_refused_before_any_pass(spark, tmp_path):
    (tmp_path / "data" / "clicks").mkdir(parents=True)
    pq.write_table(pa.table({"user_id": ["a"], "item_id": ["i"], "ts": [True]}),
                   tmp_path / "data" / "clicks" / "part-0.parquet")
    with pytest.raises(ValueError, match=r"clicks: column 'ts' has type boolean; expected a timestamp"):
        run_prep(spark, str(tmp_path / "data"), str(tmp_path / "run" / "prep"), CFG)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(users=st.lists(st.text(alphabet='ab,"\n', min_size=1, max_size=5).filter(lambda u: u.strip("\n")),
                      min_size=1, max_size=3, unique=True))
def test_ids_with_quotes_commas_and_line_breaks_come_back_as_written(spark, users):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")  # RFC 4180 quoting, as Python writes it
    writer.writerow(["user_id", "item_id", "ts"])
    records = [["base", f"i{k}", T0 + 60 * k] for k in range(1, 6)]
    records += [[user, f"i{k}", T0 + 60 * (10 * n + k)] for n, user in enumerate(users) for k in range(1, 4)]
    writer.writerows(records)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "data" / "clicks").mkdir(parents=True)
        (Path(tmp) / "data" / "clicks" / "part-0.csv").write_text(out.getvalue())
        manifest = run_prep(spark, f"{tmp}/data", f"{tmp}/run/prep", CFG)
        held_out = {r["user_id"] for r in pq.read_table(f"{tmp}/run/prep/eval").to_pylist()}
    assert manifest["counts"]["events_in"] == len(records) == accounted(manifest)
    assert manifest["counts"]["rejected"] == {}
    assert held_out == {"base", *users}
