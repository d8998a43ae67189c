"""The `watchnext` command: one entry point per stage, and `run` for all of them.

    watchnext generate --users N --items M --events E --seed S --out DATA_DIR
    watchnext prep     --data DATA_DIR --out RUN_DIR [--config F] [--set k=v ...]
    watchnext train    --run RUN_DIR   [--resume] [--config F] [--set k=v ...]
    watchnext recall   --run RUN_DIR   [--config F] [--set k=v ...]
    watchnext evaluate --run RUN_DIR   [--config F] [--set k=v ...]
    watchnext run      --data DATA_DIR --out RUN_DIR [--tune] [--config F] [--set k=v ...]
    watchnext tune     --data DATA_DIR --out OUT [--budget-minutes M] [--config F] [--set k=v ...]
    watchnext ablate   --data DATA_DIR --out OUT --grid GRID [--repeats R] [--config F] [--set k=v ...]
    watchnext nightly  --date D --data DATA_DIR --root ROOT [--step STEP] [--config F] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from watchnext import storage
from watchnext.config import Config, ConfigError, load_config
from watchnext.console import quiet_console
from watchnext.locks import StageBusy
from watchnext.nightly import NIGHTLY_STEPS

log = logging.getLogger("watchnext")


def _configured(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", help="YAML file with spark/ray/prep/train/recall sections")
    parser.add_argument(
        "--set", action="append", default=[], dest="overrides", metavar="SECTION.KEY=VALUE",
        help="override one setting, e.g. --set train.epochs=3 (repeatable)",
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="watchnext", description="Deep candidate generation, batch.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a deterministic synthetic click log")
    gen.add_argument("--users", type=int, required=True)
    gen.add_argument("--items", type=int, required=True)
    gen.add_argument("--events", type=int, required=True)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--out", required=True, help="DATA_DIR to write (canonical layout)")
    gen.add_argument("--start", default="2026-01-01", help="first day of the log's window (UTC)")
    gen.add_argument("--days", type=int, default=60, help="days in the log's window")
    gen.add_argument("--partition-by-date", action="store_true",
                     help="write clicks/ and searches/ as date=YYYY-MM-DD/ partitions, as a nightly log lands")

    prep = _configured(sub.add_parser("prep", help="PySpark: click log -> examples, features"))
    prep.add_argument("--data", required=True, help="DATA_DIR: canonical layout or MovieLens")
    prep.add_argument("--out", required=True, help="RUN_DIR; writes RUN_DIR/prep")

    for name, text in (("train", "Ray Train: examples -> model"), ("recall", "FAISS: model -> recall table")):
        stage = _configured(sub.add_parser(name, help=text))
        stage.add_argument("--run", required=True, help="RUN_DIR")
        if name == "train":
            stage.add_argument("--resume", action="store_true",
                               help="continue from the latest checkpoint in RUN_DIR/model/checkpoints")

    for name in ("evaluate", "report"):
        stage = _configured(sub.add_parser(name, help="metrics of the recall table vs baselines: report/report.json "
                                                      "and report/report.html (the spark section runs ALS)"))
        stage.add_argument("--run", required=True, help="RUN_DIR")

    run = _configured(sub.add_parser("run", help="prep, train, recall and evaluate"))
    run.add_argument("--data", required=True, help="DATA_DIR: canonical layout or MovieLens")
    run.add_argument("--out", required=True, help="RUN_DIR")
    run.add_argument("--tune", action="store_true",
                     help="tune into RUN_DIR/tune first, then run with its best.yaml over --config (--set wins)")

    tune = _configured(sub.add_parser("tune", help="Ray Tune's ASHA over prep and train settings on the validation "
                                                   "split: OUT/tune/best.yaml, results.md, .json, tune.html"))
    tune.add_argument("--data", required=True, help="DATA_DIR: canonical layout or MovieLens")
    tune.add_argument("--out", required=True, help="local directory; writes OUT/tune/")
    tune.add_argument("--budget-minutes", type=float, help="wall-clock budget (tune.budget_minutes)")

    ablate = _configured(sub.add_parser("ablate", help="run a grid of variants of the configuration and tabulate "
                                                       "them: OUT/ablation.md, .json, .html"))
    ablate.add_argument("--data", required=True, help="DATA_DIR: canonical layout or MovieLens")
    ablate.add_argument("--out", required=True, help="local directory for the variants' runs and the table")
    ablate.add_argument("--grid", required=True, help="YAML file of variants (configs/ablations.yaml)")
    ablate.add_argument("--repeats", type=int, default=1, help="trainings per variant, seeds train.seed + r")

    nightly = _configured(sub.add_parser(
        "nightly", help="one night of retraining: the window of daily partitions ending --date, warm-started "
                        "from the previous night; recall/ and i2i/ tables partitioned by run_date"))
    nightly.add_argument("--date", required=True, help="the night's date D (YYYY-MM-DD): trains on days up to D, "
                                                       "evaluates on D+1 when that day is there")
    nightly.add_argument("--data", required=True, help="DATA_DIR whose clicks/ are partitioned date=YYYY-MM-DD/")
    nightly.add_argument("--root", required=True, help="NIGHTLY_ROOT: runs/D/, recall/, i2i/ and nightly/D.json")
    nightly.add_argument("--step", choices=("all", *NIGHTLY_STEPS), default="all",
                         help="one step alone (a scheduler runs them in order), or all of them")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    quiet_console(args.verbose)
    try:
        if args.command == "generate":
            return _generate(args)
        overrides = args.overrides
        if getattr(args, "budget_minutes", None) is not None:  # the flag is a shorter --set
            overrides = [*overrides, f"tune.budget_minutes={args.budget_minutes}"]
        cfg = load_config(args.config, overrides)
        paths = {f"--{name}": getattr(args, name, None) for name in ("data", "out", "run", "root")}
        cfg.check_paths(**paths)
        if args.command in ("evaluate", "report"):
            _print_report(evaluate_stage(args.run, cfg))
            print(f"report: {storage.join(storage.absolute(args.run), 'report', 'report.html')}")
        elif args.command == "prep":
            prep_stage(args.data, args.out, cfg)
        elif args.command == "train":
            train_stage(args.run, cfg, resume=args.resume)
        elif args.command == "recall":
            recall_stage(args.run, cfg)
        elif args.command == "run":
            if args.tune:
                # defaults < --config < the tuned settings < --set (fixed: tune leaves them out)
                cfg = load_config(_tune(args.data, args.out, cfg, args.overrides), args.overrides)
                cfg.check_paths(**paths)
            _run(args.data, args.out, cfg)
        elif args.command == "tune":
            _tune(args.data, args.out, cfg, args.overrides)
        elif args.command == "ablate":
            _ablate(args, cfg)
        elif args.command == "nightly":
            _nightly(args, cfg)
        return 0
    except (ConfigError, storage.StageNotFinished, StageBusy, FileNotFoundError, ValueError) as err:
        # errors at the boundary are the user's to fix: say what, not a stack trace
        log.error("%s", err)
        return 2


def _generate(args: argparse.Namespace) -> int:
    from watchnext.synthetic import generate

    summary = generate(args.out, users=args.users, items=args.items, events=args.events, seed=args.seed,
                       start=args.start, days=args.days, partition_by_date=args.partition_by_date, progress=True)
    log.info("wrote %s: %s", args.out, json.dumps(summary, default=str))
    return 0


def prep_stage(data: str, run_dir: str, cfg: Config) -> dict[str, Any]:
    from jobs.prep import run_prep
    from jobs.spark import spark_session

    spark = spark_session(cfg.spark)
    try:
        manifest = run_prep(spark, data, storage.join(storage.absolute(run_dir), "prep"), cfg.prep)
    finally:
        spark.stop()
    counts = manifest["counts"]
    log.info("prep: %d events -> %d examples, %d users, %d items in %.1fs",
             counts["events_in"], counts["examples"], counts["users"], counts["items"], manifest["seconds"])
    return manifest


def train_stage(run_dir: str, cfg: Config, resume: bool = False) -> dict[str, Any]:
    from ray_train.trainer import run_train

    manifest = run_train(run_dir, cfg, resume=resume)
    metrics = manifest["metrics"]
    log.info("train: %d epochs, final loss %.4f, %.0f examples/s on %s x%d", len(metrics["epochs"]),
             metrics["epochs"][-1]["loss"], metrics["examples_per_second"], metrics["device"], metrics["workers"])
    return manifest


def recall_stage(run_dir: str, cfg: Config) -> dict[str, Any]:
    from serving.recall import run_recall

    manifest = run_recall(run_dir, cfg)
    log.info("recall: %d users at %.0f users/s -> %s", manifest["users"], manifest["users_per_second"],
             storage.join(storage.absolute(run_dir), "recall", "table"))
    return manifest


def evaluate_stage(run_dir: str, cfg: Config | None = None) -> dict[str, Any]:
    from serving.evaluate import evaluate

    return evaluate(run_dir, cfg)


def _run(data: str, run_dir: str, cfg: Config) -> None:
    started = time.time()
    prep_stage(data, run_dir, cfg)
    train_stage(run_dir, cfg)
    recall_stage(run_dir, cfg)
    report = evaluate_stage(run_dir, cfg)
    _print_report(report)
    run_dir = storage.absolute(run_dir)
    print(f"recall table: {storage.join(run_dir, 'recall', 'table')}")
    print(f"report:       {storage.join(run_dir, 'report', 'report.html')} (and report.json)")
    print(f"total time:   {time.time() - started:.0f}s")


def _tune(data: str, out: str, cfg: Config, overrides: list[str]) -> str:
    """Tune into OUT/tune (settings given with --set stay fixed) and print the table; returns
    best.yaml's path."""
    from watchnext.tune import run_tune

    run_tune(data, out, cfg, fixed=[item.partition("=")[0].strip() for item in overrides], prep=prep_stage)
    tune_dir = storage.join(storage.absolute(out), "tune")
    print(storage.read_text(storage.join(tune_dir, "results.md")))
    print(f"tuning: {storage.join(tune_dir, 'tune.html')} (and results.json, results.md); "
          f"best configuration: {storage.join(tune_dir, 'best.yaml')}")
    return storage.join(tune_dir, "best.yaml")


def _ablate(args: argparse.Namespace, cfg: Config) -> None:
    from watchnext.ablate import read_grid, run_grid

    if args.repeats < 1:
        raise ConfigError(f"--repeats needs at least 1, got {args.repeats}")
    stages = {"prep": prep_stage, "train": train_stage, "recall": recall_stage, "evaluate": evaluate_stage}
    run_grid(args.data, args.out, cfg, read_grid(args.grid), args.repeats, stages)
    out = storage.absolute(args.out)
    print(storage.read_text(storage.join(out, "ablation.md")))
    print(f"ablations: {storage.join(out, 'ablation.html')} (and ablation.json, ablation.md)")


def _nightly(args: argparse.Namespace, cfg: Config) -> None:
    from watchnext.nightly import parse_date, plan, run_night

    night = plan(parse_date(args.date), args.data, args.root, cfg)
    steps = NIGHTLY_STEPS if args.step == "all" else (args.step,)
    stages = {"prep": prep_stage, "train": train_stage, "recall": recall_stage, "evaluate": evaluate_stage}
    summary = run_night(night, cfg, steps, stages)
    if summary is not None:
        print(json.dumps(summary, indent=2))


def _print_report(report: dict[str, Any]) -> None:
    from serving.evaluate import CI_METRICS
    from serving.report_html import TABLE_METRICS, row_name

    model = report["model"]
    keys = [k for k in TABLE_METRICS if k in model]
    rows = [("model", model)] + [(row_name(name, m, report["users"]), m) for name, m in report["baselines"].items()]
    width = max(18, max(len(name) for name, _ in rows) + 1)
    print(f"\n{report['dataset']}: {report['users']} users, held-out last event each")
    print(f"{'':<{width}}" + "".join(f"{k:>11}" for k in keys))
    for name, metrics in rows:
        print(f"{name:<{width}}" + "".join(f"{metrics[k]:>11.4f}" if k in metrics else f"{'-':>11}" for k in keys))
    intervals = [f"{m} [{model[m + '_ci95'][0]:.4f}, {model[m + '_ci95'][1]:.4f}]"
                 for m in CI_METRICS if m + "_ci95" in model]
    if intervals:
        print("model, 95% bootstrap intervals: " + ", ".join(intervals))
    index = report.get("index", {})
    ann = "".join(f", {k} {v:.4f} against exact" for k, v in index.items() if k.startswith("ann_recall@"))
    fresh = (f", fresh items {model['fresh_share']:.3f} of the slots (catalog {model['catalog_fresh_share']:.3f})"
             if "fresh_share" in model else "")
    print(f"model: catalog coverage {model['coverage']:.3f}, mean popularity of recommended items "
          f"{model['mean_popularity']:.1f} (catalog {model['catalog_mean_popularity']:.1f}){fresh}; "
          f"index {index.get('type', '?')} x{index.get('shards', 1)}{ann}\n")


if __name__ == "__main__":
    sys.exit(main())
