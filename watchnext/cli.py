"""The `watchnext` command: one entry point per stage, and `run` for all of them.

    watchnext generate --users N --items M --events E --seed S --out DATA_DIR
    watchnext prep     --data DATA_DIR --out RUN_DIR [--config F] [--set k=v ...]
    watchnext train    --run RUN_DIR   [--resume] [--config F] [--set k=v ...]
    watchnext recall   --run RUN_DIR   [--config F] [--set k=v ...]
    watchnext evaluate --run RUN_DIR   [--config F] [--set k=v ...]
    watchnext run      --data DATA_DIR --out RUN_DIR [--tune] [--config F] [--set k=v ...]
    watchnext tune     --data DATA_DIR --out OUT [--budget-minutes M] [--config F] [--set k=v ...]
    watchnext ablate   --data DATA_DIR --out OUT --grid GRID [--repeats R] [--config F] [--set k=v ...]
    watchnext nightly  --date D --data DATA_DIR --root ROOT [--step STEP] [--force] [--config F] [--set k=v ...]
    watchnext history  --root ROOT
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from core import storage
from core.config import Config, ConfigError, load_config
from core.console import FORMAT, discard_log_file, log_to_file, quiet_console
from core.layout import RunLayout
from core.locks import StageBusy
from watchnext.nightly import NIGHTLY_STEPS, NightRefused
from watchnext.run import STAGES, evaluate_stage, prep_stage, print_report, recall_stage, run_all, train_stage

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
                                                       "evaluates on a share of the users' watches of D")
    nightly.add_argument("--data", required=True, help="DATA_DIR whose clicks/ are partitioned date=YYYY-MM-DD/")
    nightly.add_argument("--root", required=True, help="NIGHTLY_ROOT: runs/D/, recall/, i2i/ and nightly/D.json")
    nightly.add_argument("--step", choices=("all", *NIGHTLY_STEPS), default="all",
                         help="one step alone (a scheduler runs them in order), or all of them")
    nightly.add_argument("--force", action="store_true",
                         help="publish the night even when the publish gate refuses it (the reasons are kept)")
    history = _configured(sub.add_parser("history", help="the nightly job across nights: ROOT/history.html and "
                                                         "ROOT/history.json (nightly publish writes them too)"))
    history.add_argument("--root", required=True, help="NIGHTLY_ROOT")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format=FORMAT)
    quiet_console(args.verbose)
    log_file = None
    try:
        if args.command == "generate":
            return _generate(args)
        overrides = args.overrides
        if getattr(args, "budget_minutes", None) is not None:  # the flag is a shorter --set
            overrides = [*overrides, f"tune.budget_minutes={args.budget_minutes}"]
        cfg = load_config(args.config, overrides)
        paths = {f"--{name}": getattr(args, name, None) for name in ("data", "out", "run", "root")}
        cfg.check_paths(**paths)
        if args.command != "history":  # a page from the nights' files: nothing worth a log
            log_file = log_to_file(_log_folder(args), args.command, args.verbose)
        if args.command in ("evaluate", "report"):
            print_report(evaluate_stage(args.run, cfg))
            print(f"report: {RunLayout.of(args.run).report.html}")
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
            run_all(args.data, args.out, cfg)
        elif args.command == "tune":
            _tune(args.data, args.out, cfg, args.overrides)
        elif args.command == "ablate":
            _ablate(args, cfg)
        elif args.command == "nightly":
            _nightly(args, cfg)
        elif args.command == "history":
            from report.history import write_history

            json_path, html_path = write_history(args.root)
            print(f"history: {html_path} (and {json_path.rsplit('/', 1)[-1]})")
        return 0
    except NightRefused as refused:
        # not the user's input: tonight's lists do not look like the published ones
        log.error("%s", refused)
        return 3
    except (ConfigError, storage.StageNotFinished, StageBusy, FileNotFoundError, ValueError) as err:
        # errors at the boundary are the user's to fix: say what, not a stack trace
        log.error("%s", err)
        discard_log_file()
        log_file = log_file if log_file is not None and log_file.exists() else None
        return 2
    finally:
        if log_file is not None:
            print(f"log:          {log_file}", file=sys.__stderr__)


def _log_folder(args: argparse.Namespace) -> str:
    """Where the command's whole log goes: RUN_DIR/logs/ for a stage or a run, OUT/logs/ or
    ROOT/logs/ for tune, ablate and nightly."""
    if args.command in ("train", "recall", "evaluate", "report"):
        return RunLayout.of(args.run).logs
    if args.command in ("prep", "run"):
        return RunLayout.of(args.out).logs
    return storage.join(storage.absolute(args.root if args.command == "nightly" else args.out), "logs")


def _generate(args: argparse.Namespace) -> int:
    from synthetic.generator import generate

    summary = generate(args.out, users=args.users, items=args.items, events=args.events, seed=args.seed,
                       start=args.start, days=args.days, partition_by_date=args.partition_by_date, progress=True)
    log.info("wrote %s: %s", args.out, json.dumps(summary, default=str))
    return 0


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
    run_grid(args.data, args.out, cfg, read_grid(args.grid), args.repeats, STAGES)
    out = storage.absolute(args.out)
    print(storage.read_text(storage.join(out, "ablation.md")))
    print(f"ablations: {storage.join(out, 'ablation.html')} (and ablation.json, ablation.md)")


def _nightly(args: argparse.Namespace, cfg: Config) -> None:
    from watchnext.nightly import parse_date, plan, run_night

    night = plan(parse_date(args.date), args.data, args.root, cfg)
    steps = NIGHTLY_STEPS if args.step == "all" else (args.step,)
    summary = run_night(night, cfg, steps, STAGES, force=args.force)
    if summary is not None:
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    sys.exit(main())
