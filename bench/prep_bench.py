"""Benchmark of the prep stage: watchnext's Spark job against the plain Spark job and the pandas loop.

On the same synthetic log (synthetic.generator, generated once per size and reused), each
variant runs in a fresh subprocess, so that its peak memory is its own:

    spark           jobs.prep.run_prep with only the work the pandas loop also does: no
                    hot-item down-sampling, no search tokens, no short-watch filter; the same
                    per-user cap
    spark-defaults  jobs.prep.run_prep with PrepConfig() (max_rejected_fraction=1.0)
    reference       ../shared/reference/spark_window_prep.py: the straightforward PySpark job
                    (built-in windows, collect_list over the 50 previous rows, hash down-sampling
                    and per-user cap, example age) and nothing else; its own start-up and peak
    pandas          DeepMatch's gen_data_set(data, negsample=0) with the same per-user cap
    pandas-neg5     the same with negsample=5 (negatives ~ count^0.75, not the user's items)

Wall time counts from the start of the work to the last file written (reading and writing
Parquet included; interpreter start-up and imports excluded). Spark's start-up (session
creation + one trivial action) is measured apart and reported with and without. Peak memory
is the child's ru_maxrss for pandas, and for Spark the peak sum of the RSS of the Python
driver and its descendants (the JVM), sampled every 0.2 s with psutil.

    python -m bench.prep_bench --events 1000000 --events 10000000 --workdir /tmp/wn-bench \\
        [--variants spark,spark-defaults,reference,pandas,pandas-neg5] [--markdown BENCHMARKS.md]

The log of N events has N/10 users and N/10 items unless --users and --items say otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import random
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from bench.memory import GIB, PeakRss, psutil  # psutil None: the Spark peak is reported as n/a
from synthetic import generator as synthetic
from core.config import PrepConfig, SparkConfig

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("spark", "spark-defaults", "reference", "pandas", "pandas-neg5")
REFERENCE_JOB = REPO_ROOT.parent / "shared" / "reference" / "spark_window_prep.py"
NEGSAMPLE = {"pandas": 0, "pandas-neg5": 5}
# the child prints its result as one JSON line after this marker; Spark may print other lines
RESULT_MARKER = "PREP_BENCH_RESULT "
# both sides keep the same rollback window as watchnext's default
HISTORY_LEN = PrepConfig().history_len


# ---------------------------------------------------------------- the pandas baseline


def frequency_index(data: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """(data with `item_index`: 1 .. n by click count desc, then id; counts per index, 0 = padding).

    Fitted on the whole log, as the usual LabelEncoder step before gen_data_set is: the
    held-out events count too (watchnext fits on training events only).
    """
    counts = data.groupby("item_id").size().rename("count").reset_index()
    counts = counts.sort_values(["count", "item_id"], ascending=[False, True], kind="stable")
    index = pd.Series(np.arange(1, len(counts) + 1), index=counts["item_id"].to_numpy())
    item_counts = np.concatenate([[0], counts["count"].to_numpy()]).astype(np.float64)
    return data.assign(item_index=data["item_id"].map(index).astype(np.int64)), item_counts


def gen_data_set(
    data: pd.DataFrame,
    item_counts: np.ndarray,
    negsample: int = 0,
    history_len: int = HISTORY_LEN,
    subsample_threshold: float | None = None,
    max_per_user: int = 30,
    seed: int = 42,
) -> tuple[list[tuple], list[tuple]]:
    """DeepMatch's gen_data_set, the pipeline users run today: (train_set, test_set).

    data holds user_id, item_id, item_index (from frequency_index) and ts. Rows are
    (user_id, history most recent first, item_index, label 1/0, history length). For each user:
    every watch i >= 1 is an example with the watches before it; the last one goes to the
    test set. Corrected against the original: ties in ts break by item id (a stable sort,
    not quicksort), the history keeps the last history_len watches (the original keeps all
    and truncates in pad_sequences, holding O(n²) ids per user meanwhile) and its length is
    that of the kept history, negatives are drawn ∝ count^0.75 among the items the user never
    watched (the original: uniformly) and carry the same columns as positives. Then, per user,
    hot labels are down-sampled (word2vec, p = (sqrt(f/t) + 1) t / f) and at most
    max_per_user positives are kept at random, each with its negatives.
    """
    np.random.seed(seed)
    random.seed(seed)
    data = data.sort_values(["ts", "item_id"], kind="stable")
    n_items = len(item_counts)
    negative_weight = item_counts**0.75
    if subsample_threshold is not None:
        share = item_counts / item_counts.sum()
        with np.errstate(divide="ignore"):  # the padding index has share 0 and is never a label
            keep_p = np.minimum(1.0, (np.sqrt(share / subsample_threshold) + 1) * subsample_threshold / share)
    train_set, test_set = [], []
    for reviewerID, hist in tqdm(data.groupby("user_id"), desc="users", disable=None):
        pos_list = hist["item_index"].tolist()
        user_negsample = negsample
        if negsample > 0:
            # the user's own items are not negatives; O(items) per user, as in the original
            candidate_weight = negative_weight.copy()
            candidate_weight[pos_list] = 0.0
            if candidate_weight.sum() == 0:  # the user watched every item: nothing to contrast
                user_negsample = 0
            else:
                neg_list = np.random.choice(
                    n_items, size=len(pos_list) * negsample, p=candidate_weight / candidate_weight.sum()
                ).tolist()
        user_examples = []
        for i in range(1, len(pos_list)):
            hist = pos_list[max(0, i - history_len) : i][::-1]
            if i != len(pos_list) - 1:
                group = [(reviewerID, hist, pos_list[i], 1, len(hist))]
                for negi in range(user_negsample):
                    group.append((reviewerID, hist, neg_list[i * negsample + negi], 0, len(hist)))
                user_examples.append(group)
            else:
                test_set.append((reviewerID, hist, pos_list[i], 1, len(hist)))
        if subsample_threshold is not None and user_examples:
            draws = np.random.random(len(user_examples))
            user_examples = [g for g, u in zip(user_examples, draws) if u < keep_p[g[0][2]]]
        if max_per_user and len(user_examples) > max_per_user:
            picked = np.random.choice(len(user_examples), size=max_per_user, replace=False)
            user_examples = [user_examples[j] for j in sorted(picked)]
        for group in user_examples:
            train_set.extend(group)
    random.shuffle(train_set)
    random.shuffle(test_set)
    return train_set, test_set


EXAMPLE_COLUMNS = ["user_id", "history", "item_index", "label", "history_length"]


def run_pandas(data_dir: str, out_dir: str, negsample: int, max_per_user: int) -> dict[str, Any]:
    """Read clicks/, build the examples, write examples.parquet and test.parquet."""
    started = time.perf_counter()
    data = pd.read_parquet(os.path.join(data_dir, "clicks"), columns=["user_id", "item_id", "ts"])
    data, item_counts = frequency_index(data)
    train_set, test_set = gen_data_set(data, item_counts, negsample=negsample, max_per_user=max_per_user)
    os.makedirs(out_dir, exist_ok=True)
    train = pd.DataFrame(train_set, columns=EXAMPLE_COLUMNS)
    train.to_parquet(os.path.join(out_dir, "examples.parquet"), index=False)
    pd.DataFrame(test_set, columns=EXAMPLE_COLUMNS).to_parquet(os.path.join(out_dir, "test.parquet"), index=False)
    wall = time.perf_counter() - started
    return {
        "events": len(data),
        "wall_s": wall,
        "startup_s": None,
        "examples": len(train),
        "positives": int(train["label"].sum()),
        # Linux reports ru_maxrss in KiB
        "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
    }


# ---------------------------------------------------------------- watchnext's Spark job


def prep_config(variant: str, max_per_user: int) -> PrepConfig:
    if variant == "spark":
        # only what the pandas loop does too: windows, leave-last-out, the per-user cap
        return PrepConfig(
            subsample_threshold=None,
            max_examples_per_user=max_per_user,
            search_source="none",
            min_watch_seconds=None,
            max_rejected_fraction=1.0,
        )
    return PrepConfig(max_rejected_fraction=1.0)


def run_spark(variant: str, data_dir: str, out_dir: str, max_per_user: int, driver_memory: str) -> dict[str, Any]:
    from jobs.prep import run_prep
    from core.spark_session import spark_session

    cfg = prep_config(variant, max_per_user)
    if psutil is None:
        log.warning("psutil is not installed: Spark's peak memory is reported as n/a (pip install psutil)")
    sampler = PeakRss() if psutil is not None else None
    with sampler or contextlib.nullcontext():
        started = time.perf_counter()
        spark = spark_session(SparkConfig(master="local[2]", driver_memory=driver_memory), app_name="watchnext-bench")
        spark.range(1).count()
        startup = time.perf_counter() - started
        manifest = run_prep(spark, data_dir, out_dir, cfg)
        wall = time.perf_counter() - started
    spark.stop()
    return {
        "events": manifest["counts"]["events_in"],
        "wall_s": wall,
        "startup_s": startup,
        "examples": manifest["counts"]["examples"],
        "positives": manifest["counts"]["examples"],
        "peak_gib": sampler.peak_gib if sampler is not None else None,
        "peak_by_process_gib": sampler.at_peak_gib if sampler is not None else None,
        "filtered": manifest["counts"]["filtered"],
        "rejected": manifest["counts"]["rejected"],
    }


# ---------------------------------------------------------------- the harness


def data_dir_for(args: argparse.Namespace, events: int) -> str:
    users, items = log_shape(args, events)
    return os.path.join(args.workdir, f"data-{events}-{users}u-{items}i")


def log_shape(args: argparse.Namespace, events: int) -> tuple[int, int]:
    """(users, items) of the log of this size."""
    return args.users or max(1, events // 10), args.items or max(1000, events // 10)


def run_dir_for(workdir: str, events: int, variant: str) -> str:
    return os.path.join(workdir, "runs", str(events), variant)


def ensure_data(args: argparse.Namespace, events: int) -> str:
    """The synthetic log for this size, generated once; clicks/ is written last, so its
    presence means a complete log."""
    out = data_dir_for(args, events)
    if os.path.isdir(os.path.join(out, "clicks")):
        log.info("reusing %s", out)
        return out
    if os.path.exists(out):  # an interrupted generation: start again
        shutil.rmtree(out)
    started = time.perf_counter()
    users, items = log_shape(args, events)
    summary = synthetic.generate(out, users=users, items=items, events=events, seed=1, progress=True)
    log.info("generated %s in %.1f s: %s", out, time.perf_counter() - started, summary)
    return out


def run_reference(args: argparse.Namespace, events: int) -> dict[str, Any]:
    """The reference job as its user runs it, in its own process with its own defaults; it
    reads DIR/clicks.parquet, so DIR holds a link to the log's clicks/."""
    if not REFERENCE_JOB.exists():
        return {"size": events, "variant": "reference", "failed": f"{REFERENCE_JOB} not found"}
    data_dir = data_dir_for(args, events)
    linked = os.path.join(args.workdir, "reference-input", os.path.basename(data_dir))
    os.makedirs(linked, exist_ok=True)
    clicks = os.path.join(linked, "clicks.parquet")
    if not os.path.lexists(clicks):
        os.symlink(os.path.join(data_dir, "clicks"), clicks)
    out_dir = run_dir_for(args.workdir, events, "reference")
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    result_file = os.path.join(args.workdir, "reference-result.json")
    with contextlib.suppress(FileNotFoundError):
        os.remove(result_file)
    command = [sys.executable, str(REFERENCE_JOB), "--data", linked, "--out", out_dir, "--json", result_file]
    log.info("reference, %d events: %s", events, shlex.join(command))
    done = subprocess.run(command, cwd=REPO_ROOT)
    if done.returncode != 0 or not os.path.exists(result_file):
        return {"size": events, "variant": "reference", "failed": f"exit status {done.returncode}"}
    with open(result_file) as f:
        result = json.loads(f.read().splitlines()[-1])
    # the reference times its start-up and its job (the three outputs written) apart
    return {
        "size": events, "variant": "reference", "events": result["events"],
        "wall_s": result["startup_s"] + result["job_s"], "startup_s": result["startup_s"],
        "examples": result["train_rows"], "positives": result["train_rows"], "peak_gib": result["peak_rss_gib"],
    }


def run_variant(args: argparse.Namespace, events: int, variant: str) -> dict[str, Any]:
    """Run one variant in a fresh Python process and read its JSON result line."""
    if variant == "reference":
        return run_reference(args, events)
    only = "spark" if variant.startswith("spark") else "pandas"
    command = [
        sys.executable, "-m", "bench.prep_bench", "--only", only, "--variant", variant,
        "--events", str(events), "--workdir", args.workdir, "--cap", str(args.cap),
        "--driver-memory", args.driver_memory, *(["--users", str(args.users)] if args.users else []),
        *(["--items", str(args.items)] if args.items else []),
    ]
    log.info("%s, %d events: %s", variant, events, shlex.join(command))
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    results = [line[len(RESULT_MARKER):] for line in done.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if done.returncode != 0 or not results:
        tail = "\n".join(done.stdout.splitlines()[-20:])
        log.error("%s failed with exit status %d (its stderr is above); stdout tail:\n%s", variant, done.returncode, tail)
        return {"size": events, "variant": variant, "failed": f"exit status {done.returncode}"}
    result = json.loads(results[-1])
    log.info("%s done in %.1f s (process): %s", variant, time.perf_counter() - started, result)
    if result["events"] != events:
        log.warning("%s read %d events, expected %d", variant, result["events"], events)
    return {"size": events, "variant": variant, **result}


def child_main(args: argparse.Namespace) -> None:
    """One variant in this process; prints its result after RESULT_MARKER."""
    if len(args.events) != 1:
        raise SystemExit("--only runs one size: give exactly one --events")
    events = args.events[0]
    data_dir = data_dir_for(args, events)
    out_dir = run_dir_for(args.workdir, events, args.variant)
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    if args.only == "spark":
        result = run_spark(args.variant, data_dir, out_dir, args.cap, args.driver_memory)
    else:
        result = run_pandas(data_dir, out_dir, NEGSAMPLE[args.variant], args.cap)
    print(RESULT_MARKER + json.dumps(result), flush=True)


def _size(events: int) -> str:
    for unit, name in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if events >= unit and events % (unit // 10) == 0:
            return f"{events / unit:g}{name}"
    return str(events)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| size | variant | wall s | Spark start-up s | events/s (end to end) | events/s (excl. start-up) "
        "| examples written | peak memory GiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "failed" in row:
            lines.append(f"| {_size(row['size'])} | {row['variant']} | {row['failed']} | | | | | |")
            continue
        startup = row["startup_s"] or 0.0
        work = row["wall_s"] - startup
        peak = f"{row['peak_gib']:.2f}" if row["peak_gib"] is not None else "n/a"
        lines.append(
            f"| {_size(row['size'])} | {row['variant']} | {row['wall_s']:.1f} "
            f"| {f'{startup:.1f}' if row['startup_s'] is not None else '–'} "
            f"| {row['events'] / row['wall_s']:,.0f} | {row['events'] / work:,.0f} "
            f"| {row['examples']:,} | {peak} |"
        )
    return "\n".join(lines)


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        total_kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    import pyspark

    return (
        f"{len(os.sched_getaffinity(0))} cores (nproc), {total_kib / (1 << 20):.1f} GiB memory, {model}; "
        f"Python {sys.version.split()[0]}, pyspark {pyspark.__version__}, pandas {pd.__version__}"
    )


def check_counts(rows: list[dict[str, Any]]) -> None:
    """With the same cap and no down-sampling, both sides must keep the same positives."""
    by_key = {(r["size"], r["variant"]): r for r in rows if "failed" not in r}
    for size in sorted({r["size"] for r in rows}):
        spark = by_key.get((size, "spark"))
        for variant in ("pandas", "pandas-neg5"):
            other = by_key.get((size, variant))
            if spark and other and spark["positives"] != other["positives"]:
                log.warning(
                    "%s: spark kept %d positive examples, %s %d", _size(size), spark["positives"], variant,
                    other["positives"],
                )


def append_markdown(path: str, table: str, argv: list[str]) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    section = (
        f"\n## Prep: watchnext Spark vs the pandas per-user loop ({now:%Y-%m-%d})\n\n"
        f"{table}\n\n"
        f"Command: `python -m bench.prep_bench {shlex.join(argv)}`  \n"
        f"Machine: {machine()}  \n"
        f"Date: {now:%Y-%m-%d %H:%M} UTC\n"
    )
    with open(path, "a") as f:
        f.write(section)
    log.info("appended the results to %s", path)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.prep_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, action="append", help="log size (repeatable); default 1000000")
    parser.add_argument("--workdir", default="/tmp/wn-bench", help="synthetic logs and outputs go here")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--markdown", "--out", dest="markdown", help="append the table, command and machine here")
    parser.add_argument("--cap", type=int, default=PrepConfig().max_examples_per_user,
                        help="examples per user (positives), the same on both sides")
    parser.add_argument("--driver-memory", default=SparkConfig().driver_memory)
    parser.add_argument("--users", type=int, help="users in the synthetic log (default: events / 10)")
    parser.add_argument("--items", type=int, help="items in the synthetic log (default: events / 10)")
    # internal: run one variant in this process (the harness starts one process per run)
    parser.add_argument("--only", choices=("spark", "pandas"), help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.events = args.events or [1_000_000]
    if any(n < 1 for n in args.events):
        parser.error("--events must be positive")
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.only and not args.variant:
        parser.error("--only needs --variant")
    args.workdir = os.path.abspath(args.workdir)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.only:
        child_main(args)
        return 0
    rows = []
    for events in args.events:
        ensure_data(args, events)
        for variant in args.variants:
            rows.append(run_variant(args, events, variant))
    check_counts(rows)
    table = markdown_table(rows)
    print(table)
    if args.markdown:
        append_markdown(args.markdown, table, argv)
    return 1 if any("failed" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
