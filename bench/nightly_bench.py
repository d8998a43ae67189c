"""Nights of the nightly job on a synthetic log that lands a day at a time, with new items
every day, as a scheduler runs them: each night `python -m watchnext nightly --date D` in its
own process, its wall time and peak memory (the summed PSS of the process tree: the Spark
JVM, Ray's processes) recorded.

Two nights go wrong on purpose:
- a corrupted day: night C's day arrives with its item ids mixed up (each id of the day
  mapped to another of them: every id still known, so prep passes; an id unknown to the
  items table would stop prep itself). The publish gate must refuse night C (exit code 3, its reason in nightly/C.json)
  and keep night C-1's lists the published ones. The day is then delivered again, correct,
  and the nights go on from the last published one.
- a truncated day: night T's day is still being written (its folder has no _SUCCESS). The
  night must stop before any job starts, naming the day (exit code 2); once the marker lands,
  the night runs again and is published.
Every other night must be judged on its own day and published.

    python -m bench.nightly_bench --workdir /tmp/nightly-bench [--nights 14] [--users 1500 \\
        --items 1200 --events 50000] [--set section.key=value ...] [--markdown BENCHMARKS.md]

with DEFAULTS' settings before --set's.

The exit code is 1 when a night does not end as it should.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.memory import PeakRss, psutil

FIRST_NIGHT_AFTER_DAYS = 3  # the log's first days are history before the first night
# the nights are judged by the gate and on their held-out users; the scored baselines (an ALS
# grid on Spark every night) are the report's business, and a warm-started model moves little
# after a few epochs
DEFAULTS = ["train.epochs=3", "report.baselines=[]"]


def run_night(date: dt.date, data: Path, root: Path, overrides: list[str], log_path: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "watchnext", "nightly", "--date", date.isoformat(), "--data", str(data),
               "--root", str(root), *(a for item in overrides for a in ("--set", item))]
    started = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        with PeakRss(interval_s=0.5, pid=proc.pid, measure="pss") as peak:
            returncode = proc.wait()
    summary_path = root / "nightly" / f"{date}.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    evaluation = summary.get("evaluation") or {}
    return {"date": date.isoformat(), "returncode": returncode, "seconds": round(time.time() - started, 1),
            "peak_gib": round(peak.peak_gib, 2), "published": summary.get("published"),
            "refused": (summary.get("gate") or {}).get("refused", []),
            "hr@50": (evaluation.get("tonight") or {}).get("hr@50"),
            "previous_hr@50": (evaluation.get("previous") or {}).get("hr@50"),
            "eval_users": evaluation.get("users"), "new_items": (summary.get("new_items") or {}).get("items"),
            "log": str(log_path), "command": shlex.join(command)}


def mix_up_item_ids(day_dir: Path, seed: int) -> Path:
    """Rewrite the day's clicks through a wrong id mapping: each item id the day holds becomes
    another of them (a seeded permutation), so every id is still a known one and prep passes;
    returns where the original went."""
    original = day_dir.with_name(day_dir.name + ".original")
    shutil.copytree(day_dir, original)
    rng = np.random.default_rng(seed)
    for path in day_dir.glob("*.parquet"):
        table = pq.read_table(path)
        ids = table["item_id"]
        distinct = pc.unique(ids)
        swapped = distinct.take(pa.array(rng.permutation(len(distinct))))
        mixed = swapped.take(pc.index_in(ids, value_set=distinct))
        pq.write_table(table.set_column(table.schema.get_field_index("item_id"), "item_id", mixed), path)
    return original


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--nights", type=int, default=14)
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--items", type=int, default=1200)
    parser.add_argument("--events", type=int, default=50000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="SECTION.KEY=VALUE")
    parser.add_argument("--markdown", type=Path, help="append the table to this file")
    args = parser.parse_args(argv)
    args.overrides = [*DEFAULTS, *args.overrides]
    if psutil is None:
        print("bench.nightly_bench needs psutil (pip install psutil)", file=sys.stderr)
        return 2
    if args.nights < 6:
        print("--nights needs at least 6: a corrupted night, a truncated one and regular nights around them",
              file=sys.stderr)
        return 2
    work = args.workdir
    if work.exists():
        shutil.rmtree(work)
    data, root, logs = work / "data", work / "root", work / "logs"
    logs.mkdir(parents=True)
    start = dt.date(2026, 3, 1)
    days = FIRST_NIGHT_AFTER_DAYS + args.nights
    subprocess.run([sys.executable, "-m", "watchnext", "generate", "--users", str(args.users), "--items",
                    str(args.items), "--events", str(args.events), "--seed", str(args.seed), "--start",
                    start.isoformat(), "--days", str(days), "--partition-by-date", "--out", str(data)],
                   check=True, capture_output=True)
    nights = [start + dt.timedelta(days=FIRST_NIGHT_AFTER_DAYS - 1 + i) for i in range(args.nights)]
    corrupted, truncated = nights[args.nights // 2], nights[args.nights // 2 + 3]
    clicks = data / "clicks"
    rows, failures = [], []
    for night in nights:
        day_dir = clicks / f"date={night}"
        if night == corrupted:
            original = mix_up_item_ids(day_dir, args.seed)
            row = run_night(night, data, root, args.overrides, logs / f"{night}-corrupted.log")
            row["case"] = "corrupted day (item ids mapped to other items)"
            previous = nights[nights.index(night) - 1].isoformat()
            kept = (root / "recall" / f"run_date={previous}").is_dir() and not (
                root / "recall" / f"run_date={night}").exists()
            if row["returncode"] != 3 or row["published"] is not False or not row["refused"] or not kept:
                failures.append(f"{night}: the corrupted night was not refused with yesterday kept ({row})")
            rows.append(row)
            shutil.rmtree(day_dir)  # the day is delivered again, correct
            original.rename(day_dir)
            continue
        if night == truncated:
            (day_dir / "_SUCCESS").unlink()
            row = run_night(night, data, root, args.overrides, logs / f"{night}-landing.log")
            row["case"] = "day still landing (no _SUCCESS)"
            said = f"the day {night} of" in Path(row["log"]).read_text() and "has not landed whole" in Path(
                row["log"]).read_text()
            if row["returncode"] != 2 or not said or (root / "runs" / night.isoformat()).exists():
                failures.append(f"{night}: the landing day was not waited for ({row})")
            rows.append(row)
            (day_dir / "_SUCCESS").touch()  # it lands: the night runs again
        row = run_night(night, data, root, args.overrides, logs / f"{night}.log")
        row["case"] = "rerun once the day landed" if night == truncated else "regular"
        if row["returncode"] != 0 or not row["published"] or row["hr@50"] is None:
            failures.append(f"{night}: a regular night was not judged and published ({row})")
        rows.append(row)

    table = markdown(rows, args, root)
    print(table)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write("\n" + table)
    return 1 if failures else 0


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, root: Path) -> str:
    machine = f"{platform.machine()}, {psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / (1 << 30):.0f} GiB"
    lines = [
        f"### Nightly: {args.nights} nights ({dt.date.today()}, {machine})", "",
        f"`python -m bench.nightly_bench --workdir WORKDIR --nights {args.nights} --users {args.users} "
        f"--items {args.items} --events {args.events} --seed {args.seed}"
        + "".join(f" --set {item}" for item in args.overrides) + "`; the history page: "
        f"`{root / 'history.html'}`.", "",
        "| night | case | exit | published | HR@50 held-out | previous lists | eval users | new items | "
        "seconds | peak GiB | refused because |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        hr = "" if r["hr@50"] is None else f"{r['hr@50']:.4f}"
        prev = "" if r["previous_hr@50"] is None else f"{r['previous_hr@50']:.4f}"
        lines.append(f"| {r['date']} | {r['case']} | {r['returncode']} | {r['published']} | {hr} | {prev} | "
                     f"{r['eval_users'] or ''} | {r['new_items'] or ''} | {r['seconds']} | {r['peak_gib']} | "
                     f"{'; '.join(r['refused'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
