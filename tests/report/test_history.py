"""The nightly history page and JSON: every night in order, what the gate decided and why, the
evaluation with its interval, the new items, each step's seconds and peak memory; and the page
in a real headless browser."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from report.history import STEP_FOLDERS, collect, write_history
from report.page import SERIES_COLOURS

NIGHTS = {
    # date: (published, forced, refused reasons, HR@50 tonight, HR@50 of the previous lists)
    "2026-03-04": (True, False, [], 0.31, None),
    "2026-03-05": (False, False, ["12 events a day is outside 50% of the last published night's 3000"], 0.05, 0.30),
    "2026-03-06": (True, True, ["validation HR@50 0.1 is more than 20% below"], 0.33, 0.30),
}


def write_nights(root: Path) -> None:
    (root / "nightly").mkdir(parents=True)
    for n, (date, (published, forced, refused, hr, previous)) in enumerate(NIGHTS.items()):
        evaluation = {"eval_day": date, "users": 100 + n,
                      "tonight": {"night": date, "hr@50": hr, "hr@50_ci95": [hr - 0.02, hr + 0.02], "ndcg@10": hr / 3}}
        if previous is not None:
            evaluation["previous"] = {"night": "2026-03-04", "hr@50": previous}
        summary = {"date": date, "published": published,
                   "gate": {"stats": {"val_hr50": hr + 0.1, "coverage": 0.4, "full_lists": 1.0, "days": 4 + n,
                                      "events_in": 3000 * (4 + n), "users": 400, "items": 300,
                                      "rejected_share": 0.0},
                            "against": None, "refused": refused, "forced": forced},
                   "evaluation": evaluation, "counts": {"events_in": 3000 * (4 + n), "items": 300 + n},
                   "new_items": {"items": 5 + n, "recalled": 4, "share_of_slots": 0.01 * (n + 1)}}
        (root / "nightly" / f"{date}.json").write_text(json.dumps(summary))
        for i, folder in enumerate(STEP_FOLDERS.values()):
            (root / "runs" / date / folder).mkdir(parents=True)
            (root / "runs" / date / folder / "_manifest.json").write_text(
                json.dumps({"seconds": 10.0 * (i + 1), "peak_rss_mb": 500.0 + 100 * i + n}))


def test_the_history_holds_every_night_in_order_with_the_gates_decision_and_each_step(tmp_path):
    root = tmp_path / "root"
    write_nights(root)
    json_path, html_path = write_history(str(root))
    history = json.loads(Path(json_path).read_text())
    assert history == collect(str(root))
    nights = history["nights"]
    assert [n["date"] for n in nights] == list(NIGHTS)
    assert [(n["published"], n["forced"], n["refused"]) for n in nights] == [(p, f, r) for p, f, r, _, _ in
                                                                           NIGHTS.values()]
    assert [n["evaluation"]["hr@50"] for n in nights] == [0.31, 0.05, 0.33]
    assert nights[0]["evaluation"]["previous_lists_hr@50"] is None
    assert nights[2]["evaluation"]["hr@50_ci95"] == pytest.approx([0.31, 0.35])
    assert nights[1]["steps"]["prep"] == {"seconds": 10.0, "peak_rss_mb": 501.0}
    assert nights[1]["steps"]["compare"] == {"seconds": 50.0, "peak_rss_mb": 901.0}
    page = Path(html_path).read_text()
    assert "3 nights, 2 published, 1 refused at the gate" in page
    assert "refused" in page and "yes (forced)" in page and "outside 50% of the last published night" in page
    assert "0.3100 <span" in page and "150" in page and "901 MiB" in page  # HR@50, seconds, peak memory
    assert page.count("<svg") == 3


def test_a_root_without_nights_gives_an_empty_history(tmp_path):
    json_path, html_path = write_history(str(tmp_path))
    assert json.loads(Path(json_path).read_text())["nights"] == []
    assert "0 nights" in Path(html_path).read_text()


def test_the_history_command_writes_both_files_and_names_the_page(tmp_path):
    write_nights(tmp_path / "root")
    done = subprocess.run([sys.executable, "-m", "watchnext", "history", "--root", str(tmp_path / "root")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"history: {tmp_path / 'root' / 'history.html'} (and history.json)" in done.stdout
    assert not (tmp_path / "root" / "logs").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_history_page_renders_its_table_and_charts_in_chromium(tmp_path):
    from PIL import Image

    from tests.report.test_report_browser import headless, pixels_near

    root = tmp_path / "root"
    write_nights(root)
    _, html_path = write_history(str(root))
    page = Path(html_path).as_uri()
    dom = headless("--dump-dom", page).stdout
    assert dom.count("<svg") == 3 and dom.count("<tr>") == 4 and "yes (forced)" in dom
    shot = tmp_path / "history.png"
    headless("--window-size=1100,1400", f"--screenshot={shot}", page)
    counts = Counter({colour: n for n, colour in Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 24)})
    assert pixels_near(counts, SERIES_COLOURS[0]) > 800 and pixels_near(counts, SERIES_COLOURS[1]) > 400
