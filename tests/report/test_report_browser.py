"""The HTML report in a real headless browser (Debian's chromium): it renders, charts and all."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter

import pytest
from PIL import Image

from report.page import SERIES_COLOURS, render
from tests.report.test_report_html import PREP, RECALL, REPORT, TRAINING

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")


def headless(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
                          check=True, capture_output=True, text=True, timeout=120)


def pixels_near(counts: Counter, hex_colour: str, tolerance: int = 24) -> int:
    target = tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return sum(n for colour, n in counts.items() if all(abs(a - b) <= tolerance for a, b in zip(colour, target)))


def test_the_report_renders_its_tables_and_charts_in_chromium(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render(REPORT, TRAINING, PREP, RECALL))
    dom = headless("--dump-dom", page.as_uri()).stdout
    assert dom.count("<svg") == 5 and dom.count("<tr>") >= 4 and "item_knn" in dom

    shot = tmp_path / "report.png"
    headless("--window-size=1100,2300", f"--screenshot={shot}", page.as_uri())
    counts = Counter({colour: n for n, colour in Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 24)})
    # the model's series (blue: lines, dots, bars) and the first baseline's (red) are drawn
    assert pixels_near(counts, SERIES_COLOURS[0]) > 1500
    assert pixels_near(counts, SERIES_COLOURS[1]) > 800
    # and the text: dark pixels on the white page
    assert sum(n for (r, g, b), n in counts.items() if r + g + b < 200) > 5000
