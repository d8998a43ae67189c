"""Training throughput: watchnext's Ray Train job with 1 and 2 workers against torch-rechub's
YoutubeDNN on the same examples, in the same run.

    python -m bench.train_bench --run ml100k=RUN_DIR --run synthetic-1m=RUN_DIR2 \
        --workers 1 2 --epochs 2 --out /tmp/train-bench.md [--set train.batch_size=1024 ...]

Each RUN_DIR needs its prep/ (watchnext prep). Every measurement is a fresh process:
`watchnext train` into a scratch run whose prep/ links to the given one, read back from
model/metrics.json (examples per second over the epochs' training time: Ray Data streaming
included, Ray start-up and export not; the end-to-end wall time is reported beside it). The
peer runs bench/rechub_peer.py in .venv-rechub (--setup-peer creates it: torch-rechub is a
peer to measure against, not a dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ray_train.precision import native_bf16

ROOT = Path(__file__).resolve().parent.parent
PEER_ENV = ROOT / ".venv-rechub"
PEER_PACKAGES = ["torch==2.13.0", "torch-rechub==0.9.0", "pyarrow"]


def setup_peer() -> None:
    subprocess.run([sys.executable, "-m", "venv", str(PEER_ENV)], check=True)
    subprocess.run([str(PEER_ENV / "bin" / "python"), "-m", "pip", "install", "--quiet", *PEER_PACKAGES], check=True)


def watchnext_train(prep: Path, workers: int, epochs: int, overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="train-bench-") as scratch:
        os.symlink(prep.resolve(), Path(scratch) / "prep")
        command = [sys.executable, "-m", "watchnext", "train", "--run", scratch,
                   "--set", f"train.workers={workers}", "--set", f"train.epochs={epochs}"]
        for item in overrides:
            command += ["--set", item]
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT)
        wall = time.perf_counter() - started
        metrics = json.loads((Path(scratch) / "model" / "metrics.json").read_text())
    last = metrics["epochs"][-1]
    epoch_examples = metrics["examples_per_second"] * sum(e["seconds"] for e in metrics["epochs"]) / epochs
    # the first epoch carries the data pipeline's start-up; the later ones are the steady state
    later = [e["seconds"] for e in metrics["epochs"][1:]] or [last["seconds"]]
    return {"examples_per_second": metrics["examples_per_second"], "wall_seconds": wall,
            "last_epoch_seconds": last["seconds"], "steady_rate": epoch_examples * len(later) / sum(later),
            "data_wait": last["data_wait_seconds"], "val_hr@50": last.get("val_hr@50")}


def peer_train(prep: Path, epochs: int, threads: int, max_rows: int) -> dict:
    python = PEER_ENV / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} is missing: run python -m bench.train_bench --setup-peer first")
    out = subprocess.run([str(python), str(ROOT / "bench" / "rechub_peer.py"), "--prep", str(prep), "--epochs",
                          str(epochs), "--threads", str(threads), "--max-rows", str(max_rows)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_name() -> str:
    """The CPU's model and family, and whether it has native bf16 (train.amp uses it): results
    differ most between CPU generations."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]  # the first processor's block
    except OSError:
        first = ""
    info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first.splitlines() if ":" in line)}
    return (f"{info.get('model name', platform.processor() or platform.machine())} "
            f"(family {info.get('cpu family', '?')}, {'native' if native_bf16(use_gpu=False) else 'no'} bf16)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", action="append", default=[], metavar="NAME=RUN_DIR")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="SECTION.KEY=VALUE")
    parser.add_argument("--peer-threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--peer-max-rows", type=int, default=0, help="time the peer on the first N examples")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--setup-peer", action="store_true")
    parser.add_argument("--out", required=False)
    args = parser.parse_args()
    if args.setup_peer:
        setup_peer()
        if not args.run:
            return
    lines = [f"machine: {cpu_name()}, {os.cpu_count()} cores; "
             f"{time.strftime('%Y-%m-%d')}; overrides: {' '.join(args.overrides) or '(defaults)'}", "",
             "| data | trainer | examples/s | epochs 2-N: examples/s | last epoch s (waiting for data) | wall s | val HR@50 |",
             "|---|---|---|---|---|---|---|"]
    for name, run_dir in (item.split("=", 1) for item in args.run):
        prep = Path(run_dir) / "prep"
        for workers in args.workers:
            r = watchnext_train(prep, workers, args.epochs, args.overrides)
            hr = f"{r['val_hr@50']:.3f}" if r["val_hr@50"] is not None else "-"
            lines.append(f"| {name} | watchnext, {workers} worker(s) | {r['examples_per_second']:,.0f} | "
                         f"{r['steady_rate']:,.0f} | {r['last_epoch_seconds']:.1f} ({r['data_wait']:.1f}) | "
                         f"{r['wall_seconds']:.1f} | {hr} |")
            print(lines[-1], flush=True)
        for threads in [] if args.no_peer else args.peer_threads:
            r = peer_train(prep, args.epochs, threads, args.peer_max_rows)
            lines.append(f"| {name} | torch-rechub YoutubeDNN, {r['threads']} thread(s), batch {r['batch_size']}, "
                         f"{r['negatives']} negatives/row | {r['rows_per_second']:,.0f} | - | "
                         f"{r['seconds'] / args.epochs:.1f} | - | - |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
