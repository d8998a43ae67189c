"""Quality with the defaults: `watchnext run` with no config file and no --set (only the
seeds vary) on every real data set, the model beside the report's baselines.

    python -m bench.quality_bench --data ml-100k=../shared/data/ml-100k \
        --data amazon-sports=../shared/data/amazon-sports --seeds 0 1 2 --out /tmp/quality.md

Each seed is a whole run in a fresh process (prep's seed and train's seed both set to it),
timed end to end. The table is the mean over seeds of HR@50 and NDCG@10 of the model and of
each baseline, the model's ratio to the best of item-kNN and ALS (the issue's bar: 1.05),
the seed spread (min-max) and the run's wall time. Every baseline's settings, like the
model's epochs, were chosen on the validation split inside the run; the test targets are
read once, by the report.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("hr@50", "ndcg@10")
BARS = ("item_knn", "als")  # the baselines the model must beat by 5%


def run_once(data: str, seed: int, scratch: Path, extra: list[str]) -> dict:
    out = scratch / f"seed-{seed}"
    command = [sys.executable, "-m", "watchnext", "run", "--data", data, "--out", str(out),
               "--set", f"prep.seed={seed}", "--set", f"train.seed={seed}", *extra]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    report = json.loads((out / "report" / "report.json").read_text())
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    return {"report": report, "wall": wall, "best_epoch": metrics.get("best_epoch"),
            "epochs": len(metrics["epochs"])}


def summarize(name: str, runs: list[dict]) -> list[str]:
    rows = {"model": [r["report"]["model"] for r in runs]}
    for baseline in runs[0]["report"]["baselines"]:
        rows[baseline] = [r["report"]["baselines"][baseline] for r in runs]
    mean = {row: {m: statistics.mean(v[m] for v in values) for m in METRICS} for row, values in rows.items()}
    lines = [f"### {name} ({len(runs)} seeds; wall {statistics.mean(r['wall'] for r in runs):.0f} s a run; "
             f"epochs run {[r['epochs'] for r in runs]}, best {[r['best_epoch'] for r in runs]})", "",
             "| | " + " | ".join(METRICS) + " | " + " | ".join(f"{m} min-max" for m in METRICS) + " |",
             "|---|" + "---:|" * (2 * len(METRICS))]
    for row, values in rows.items():
        spread = [f"{min(v[m] for v in values):.4f}-{max(v[m] for v in values):.4f}" for m in METRICS]
        lines.append(f"| {row} | " + " | ".join(f"{mean[row][m]:.4f}" for m in METRICS) + " | "
                     + " | ".join(spread) + " |")
    bars = [b for b in BARS if b in mean]
    if bars:
        ratios = [f"{m} {mean['model'][m] / max(mean[b][m] for b in bars):.3f}x" for m in METRICS]
        lines += ["", f"model / best of {', '.join(bars)}: " + ", ".join(ratios)]
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", required=True, metavar="NAME=DATA_DIR")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], dest="overrides",
                        help="an override for every run (the defaults are the point: use for contrast only)")
    parser.add_argument("--out", help="write the table here too (Markdown)")
    args = parser.parse_args(argv)
    extra = [x for item in args.overrides for x in ("--set", item)]
    lines = [f"{dt.date.today()}, {platform.processor() or platform.machine()}, "
             f"overrides: {args.overrides or 'none'}", ""]
    for entry in args.data:
        name, _, data = entry.partition("=")
        with tempfile.TemporaryDirectory(prefix="quality-bench-") as scratch:
            runs = [run_once(data, seed, Path(scratch), extra) for seed in args.seeds]
        lines += summarize(name, runs)
        print("\n".join(lines), flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
