"""users/ and items/ tables: one row per id, every other distinct row quarantined."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.tables import one_row_per_id

rows = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["x", "y", "z", None])),
                min_size=1, max_size=12)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=rows)
def test_each_id_keeps_its_first_row_by_value_and_its_other_distinct_rows_are_conflicts(spark, drawn):
    table = spark.createDataFrame(drawn, "user_id string, country string")
    kept, rejected = one_row_per_id(table, "user_id", "duplicate_user")
    distinct = set(drawn)  # a row repeated exactly is one row, not a conflict
    by_value = lambda row: (row[0], row[1] is None, row[1] or "")  # noqa: E731 (nulls last, as the job)
    first = {}
    for user, country in sorted(distinct, key=by_value):
        first.setdefault(user, country)
    assert sorted(kept.collect(), key=by_value) == sorted(first.items(), key=by_value)
    expected = sorted(((u, c) for u, c in distinct if c != first[u]), key=by_value)
    got = sorted(((r.user_id, r.country) for r in rejected.collect()), key=by_value)
    assert got == expected and {r.reason for r in rejected.collect()} <= {"duplicate_user"}
    assert len(first) + len(got) == len(distinct)  # every distinct row in one place
