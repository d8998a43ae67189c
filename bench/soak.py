"""Soak: the whole pipeline on a large synthetic log, stage by stage, with each stage's wall
time and peak memory.

Each stage runs as the command line runs it (`python -m watchnext <stage>`, in its own
process), so its peak is its own: the summed PSS of the process and every descendant (the
Spark JVM; Ray's GCS, raylet and workers, whose shared object store PSS counts once),
sampled every 0.5 s. The log is generated once into WORKDIR/data and reused.

    python -m bench.soak --users 1000000 --items 2500000 --events 10000000 --workdir /tmp/soak \\
        [--bound-gib 16] [--set section.key=value ...] [--stages evaluate ...] [--markdown BENCHMARKS.md]

The exit code is 1 when a stage fails or peaks above --bound-gib (the README's bound).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.memory import PeakRss, psutil

STAGES = ("prep", "train", "recall", "evaluate")
# settings for a log of a million users on 2 cores (BENCHMARKS.md, "Soak"): the driver holds
# the broadcast vocabulary; one epoch of large batches with 1,024 shared negatives
DEFAULTS = ["spark.driver_memory=10g", "train.epochs=1", "train.batch_size=2048", "train.num_negatives=1024",
            "train.learning_rate=0.006", "train.val_users=200"]


def run_stage(stage: str, args: list[str], log_path: Path) -> dict[str, Any]:
    """One stage in its own process: wall seconds, peak GiB, the processes at the peak."""
    command = [sys.executable, "-m", "watchnext", stage, *args]
    started = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        with PeakRss(interval_s=0.5, pid=proc.pid, measure="pss") as peak:
            returncode = proc.wait()
    return {"stage": stage, "returncode": returncode, "seconds": round(time.time() - started, 1),
            "peak_gib": round(peak.peak_gib, 2), "at_peak_gib": peak.at_peak_gib, "command": shlex.join(command)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=2_500_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--bound-gib", type=float, default=16.0, help="peak memory a stage may reach")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="SECTION.KEY=VALUE")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                        help="run only these, on WORKDIR/run as the earlier stages left it")
    parser.add_argument("--markdown", type=Path, help="append the table to this file")
    args = parser.parse_args(argv)
    if psutil is None:
        parser.error("the soak measures memory with psutil: pip install -e '.[bench]'")

    args.workdir.mkdir(parents=True, exist_ok=True)
    data, run = args.workdir / "data", args.workdir / "run"
    if not (data / "clicks").exists():
        generated = run_stage("generate", ["--users", str(args.users), "--items", str(args.items), "--events",
                                           str(args.events), "--seed", str(args.seed), "--out", str(data)],
                              args.workdir / "generate.log")
        if generated["returncode"]:
            print(f"generate failed: see {args.workdir / 'generate.log'}", file=sys.stderr)
            return 1
    settings = [a for s in [*DEFAULTS, *args.overrides] for a in ("--set", s)]
    results = []
    for stage in args.stages:
        stage_args = ["--run", str(run)] if stage != "prep" else ["--data", str(data), "--out", str(run)]
        result = run_stage(stage, stage_args + settings, args.workdir / f"{stage}.log")
        results.append(result)
        print(json.dumps(result), flush=True)
        if result["returncode"]:
            print(f"{stage} failed: see {args.workdir / f'{stage}.log'}", file=sys.stderr)
            return 1
    table = markdown(results, args)
    print(table)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write("\n" + table)
    return 0 if all(r["peak_gib"] <= args.bound_gib for r in results) else 1


def markdown(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    prep = json.loads((args.workdir / "run" / "prep" / "_manifest.json").read_text())["counts"]
    lines = [
        f"`python -m bench.soak --users {args.users} --items {args.items} --events {args.events} --workdir "
        f"{args.workdir}{''.join(' --set ' + s for s in args.overrides)}"
        f"{' --stages ' + ' '.join(args.stages) if args.stages != list(STAGES) else ''}`, {platform.processor() or platform.machine()}, "
        f"{dt.date.today().isoformat()}: {prep['events_in']:,} events, {prep['users']:,} users, "
        f"{prep['items']:,} items, {prep['examples']:,} examples.",
        "",
        "| stage | seconds | peak GiB (PSS, process tree) | largest at the peak |",
        "|---|---:|---:|---|",
    ]
    for r in results:
        top = sorted(r["at_peak_gib"].items(), key=lambda kv: -kv[1])[:3]
        lines.append(f"| {r['stage']} | {r['seconds']:.0f} | {r['peak_gib']:.2f} | "
                     + ", ".join(f"{name.rsplit(':', 1)[0]} {gib:.2f}" for name, gib in top) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
