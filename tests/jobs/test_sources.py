"""DATA_DIR detection: canonical layout and the MovieLens formats map to one schema."""

from __future__ import annotations

import pytest

from jobs.sources import InputError, read_sources


def test_recbole_ml100k_reads_every_rating(spark, ml100k):
    src = read_sources(spark, ml100k)
    assert (src.name, src.layout) == ("ml-100k", "recbole")
    assert src.clicks.count() == 100_000
    assert src.clicks.where("ts IS NULL OR user_id IS NULL OR item_id IS NULL").count() == 0
    assert src.users.count() == 943 and src.items.count() == 1682
    toy = src.items.where("item_id = '1'").first()
    assert toy.title == "Toy Story" and toy.upload_ts.year == 1995


def test_ml1m_dat_files(spark, tmp_path):
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n2::661::3::978302109\n")
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    (tmp_path / "movies.dat").write_bytes("1193::Caf\xe9 (1975)::Drama\n661::Toy (1996)::Animation|Children's\n".encode("latin-1"))
    src = read_sources(spark, str(tmp_path))
    assert src.layout == "ml-1m"
    rows = sorted((r.user_id, r.item_id, int(r.ts.timestamp())) for r in src.clicks.collect())
    assert rows == [("1", "1193", 978300760), ("2", "661", 978302109)]
    movies = {r.item_id: (r.title, r.upload_ts.year, r.genres) for r in src.items.collect()}
    assert movies["1193"] == ("Café", 1975, "Drama")
    assert movies["661"][2] == "Animation Children's"
    assert sorted(src.users.columns) == ["age", "gender", "occupation", "user_id", "zip_code"]


def test_ml_latest_csv_files(spark, tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n")
    (tmp_path / "movies.csv").write_text('movieId,title,genres\n1,"Toy Story (1995)",Adventure|Animation\n')
    src = read_sources(spark, str(tmp_path))
    assert src.layout == "ml-latest" and src.users is None
    assert src.items.first().title == "Toy Story"
    assert src.clicks.first().user_id == "1"


def test_an_unknown_layout_is_a_clear_error(tmp_path, spark):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="neither the canonical layout"):
        read_sources(spark, str(tmp_path))


def test_canonical_parquet_with_integer_ids_and_epoch_seconds(spark, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name, table in {
        "clicks": pa.table({"user_id": [1, 2], "item_id": [10, 11], "ts": [1767225600, 1767229200]}),
        "users": pa.table({"user_id": [1, 2], "country": ["fr", "de"]}),
    }.items():
        (tmp_path / name).mkdir()
        pq.write_table(table, tmp_path / name / "part-0.parquet")
    src = read_sources(spark, str(tmp_path))
    assert src.layout == "canonical" and src.items is None and src.searches is None
    clicks = sorted((r.user_id, r.item_id, int(r.ts.timestamp())) for r in src.clicks.collect())
    assert clicks == [(1, 10, 1767225600), (2, 11, 1767229200)]
    assert sorted(r.user_id for r in src.users.collect()) == ["1", "2"]


def _daily_clicks(root, days: dict[str, list[int]], landing: tuple[str, ...] = ()) -> None:
    """clicks/date=D/ partitions, one click per listed hour of the day, each with its _SUCCESS
    marker but the days in `landing` (still being written)."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    for day, hours in days.items():
        start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc)
        ts = [start + dt.timedelta(hours=h) for h in hours]
        (root / "clicks" / f"date={day}").mkdir(parents=True)
        pq.write_table(pa.table({"user_id": ["u"] * len(ts), "item_id": [f"{day}/{h}" for h in hours],
                                 "ts": pa.array(ts, pa.timestamp("us", tz="UTC"))}),
                       root / "clicks" / f"date={day}" / "part-0.parquet")
        if day not in landing:
            (root / "clicks" / f"date={day}" / "_SUCCESS").touch()


def test_a_range_of_days_reads_those_partitions_only(spark, tmp_path):
    import datetime as dt

    _daily_clicks(tmp_path, {"2026-03-01": [1], "2026-03-02": [2, 3], "2026-03-03": [4], "2026-03-04": [5]})
    src = read_sources(spark, str(tmp_path), (dt.date(2026, 3, 2), dt.date(2026, 3, 3)))
    assert sorted(r.item_id for r in src.clicks.collect()) == ["2026-03-02/2", "2026-03-02/3", "2026-03-03/4"]
    assert "date" not in src.clicks.columns  # the day is in ts; no partition column is added
    every = read_sources(spark, str(tmp_path))
    assert every.clicks.count() == 5 and "date" not in every.clicks.columns


def test_a_missing_day_in_the_range_is_a_clear_error(spark, tmp_path):
    import datetime as dt

    _daily_clicks(tmp_path, {"2026-03-01": [1], "2026-03-03": [4]})
    with pytest.raises(InputError, match=r"the day 2026-03-02 of 2026-03-01..2026-03-03 is missing"):
        read_sources(spark, str(tmp_path), (dt.date(2026, 3, 1), dt.date(2026, 3, 3)))


def test_a_day_without_its_marker_is_not_read_and_a_range_that_needs_it_says_so(spark, tmp_path, caplog):
    import datetime as dt

    _daily_clicks(tmp_path, {"2026-03-01": [1], "2026-03-02": [2, 3], "2026-03-03": [4]}, landing=("2026-03-03",))
    every = read_sources(spark, str(tmp_path))
    assert sorted(r.item_id for r in every.clicks.collect()) == ["2026-03-01/1", "2026-03-02/2", "2026-03-02/3"]
    assert "left out 1 day(s) not landed whole yet (their folders hold no _SUCCESS): 2026-03-03" in caplog.text
    with pytest.raises(InputError, match=r"the day 2026-03-03 of 2026-03-02..2026-03-03 has not landed whole "
                                         r"\(date=2026-03-03/ holds no _SUCCESS.*prep.day_marker=null"):
        read_sources(spark, str(tmp_path), (dt.date(2026, 3, 2), dt.date(2026, 3, 3)))
    # a log written without markers: every folder is a landed day
    assert read_sources(spark, str(tmp_path), (dt.date(2026, 3, 2), dt.date(2026, 3, 3)), day_marker=None
                        ).clicks.count() == 3
