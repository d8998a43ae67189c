"""One night of the nightly retraining, `watchnext nightly --date D`.

    NIGHTLY_ROOT/
      runs/D/              the night's run directory: prep/, model/, recall/, report/, compare/
      recall/run_date=D/   the recall table that users read, one partition per night
      i2i/run_date=D/      the similar-item table, likewise
      nightly/D.json       the night's summary, written last: a night without it is unfinished

Night D reads the daily partitions of the click log (clicks/date=YYYY-MM-DD/) in the window
of nightly.window_days ending D, clipped at the log's first day; every day in it must be
there. Night D is judged on day D itself, before it is published: nightly.eval_share of the
users (by a hash of the id) give their day-D watches to the evaluation, the first of them the
target of each such user known through D-1, and every other watch up to the end of D is
training (prep's time split at the end of D-1 with prep.eval_users_share). The previous night
P is the latest published night (nightly/P.json, not refused) at most nightly.lookback_days
before D: its vocabularies are kept (stable indices, new items appended; prep.previous_vocab)
and its model warm-starts tonight's (train.warm_start); without one the night starts cold.
Tonight's lists and the lists night P published are ranked on the same targets: what users
gain from tonight's retraining over keeping yesterday's lists.

The steps, in order, each reading what the step before wrote, so that a scheduler can run
them as separate jobs (prep on Spark, train and recall on Ray): NIGHTLY_STEPS. A rerun of
night D withdraws nightly/D.json first, rebuilds runs/D stage by stage, and publish swaps
each table's run_date=D partition for the new one (storage.replace_dir).

Publish is gated (watchnext/gate.py): a night that does not look like the last published
one (its validation, its lists on the day's held-out users, its counts) is refused, its
reasons in nightly/D.json ("published": false), its tables not swapped in, and the step
fails (exit code 3); --force publishes it anyway and says so.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from core import storage
from watchnext.run import Stage
from core.config import Config, config_from_dict
from core.contract import MANIFEST
from core.layout import RunLayout

log = logging.getLogger(__name__)

NIGHTLY_STEPS = ("prep", "train", "recall", "evaluate", "publish")
RUNS, RECALL, I2I, SUMMARIES = "runs", "recall", "i2i", "nightly"


@dataclass(frozen=True)
class Night:
    """What night D reads and where it writes, decided before any job starts."""

    date: dt.date
    data: str
    root: str
    first_day: dt.date  # the window's first day
    previous: dt.date | None  # the night whose vocabularies and model this one continues

    @property
    def run_dir(self) -> str:
        return run_dir(self.root, self.date)

    @property
    def run(self) -> RunLayout:
        return RunLayout(self.run_dir)

    @property
    def eval_day(self) -> dt.date:
        """The day whose held-out share of the users judges the night: D itself."""
        return self.date

    def config(self, cfg: Config) -> Config:
        """cfg with the night's settings: the window, the time split, the previous night's
        vocabularies and model, and the run date of the tables."""
        start_of_day = dt.datetime.combine(self.date, dt.time(), dt.timezone.utc)
        raw = cfg.to_dict()
        raw["prep"].update(
            partition_from=self.first_day.isoformat(),
            partition_to=self.date.isoformat(),
            split="time",
            # time_period keeps ts <= split_time for training: the last microsecond of D - 1;
            # day D is the eval window, held out for eval_share of the users only
            split_time=(start_of_day - dt.timedelta(microseconds=1)).isoformat(),
            eval_days=1.0,
            eval_users_share=cfg.nightly.eval_share,
            anchor=(start_of_day + dt.timedelta(days=2)).isoformat(),  # later than D + 1 is the future
            previous_vocab=RunLayout(run_dir(self.root, self.previous)).prep.root if self.previous else None,
        )
        raw["train"]["warm_start"] = run_dir(self.root, self.previous) if self.previous else None
        raw["recall"]["run_date"] = self.date.isoformat()
        return config_from_dict(raw, source=f"nightly {self.date}")


def run_dir(root: str, date: dt.date) -> str:
    return storage.join(storage.absolute(root), RUNS, date.isoformat())


def summary_path(root: str, date: dt.date) -> str:
    return storage.join(storage.absolute(root), SUMMARIES, f"{date.isoformat()}.json")


def parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--date {text!r} is not a date such as 2026-11-22") from None


def plan(date: dt.date, data: str, root: str, cfg: Config) -> Night:
    """Night D's window, held-out day and previous night; a missing day of the window is an
    error here, before any job starts."""
    from jobs.sources import InputError, day_paths, logged_days

    clicks = storage.join(storage.absolute(data), "clicks")
    logged = logged_days(clicks, cfg.prep.day_marker)
    if not logged:
        raise InputError(f"{clicks}: the nightly job reads clicks partitioned by day (date=YYYY-MM-DD/ "
                         f"folders{f' holding {cfg.prep.day_marker}' if cfg.prep.day_marker else ''}); "
                         "there are none")
    first_logged = dt.date.fromisoformat(logged[0])
    if date < first_logged:
        raise InputError(f"{clicks}: night {date} is before the log's first day, {first_logged}")
    first_day = max(date - dt.timedelta(days=cfg.nightly.window_days - 1), first_logged)
    day_paths(clicks, (first_day, date), marker=cfg.prep.day_marker)  # raises, naming the days not landed
    previous = next((day for back in range(1, cfg.nightly.lookback_days + 1)
                     if published_night(root, day := date - dt.timedelta(days=back))), None)
    night = Night(date, storage.absolute(data), storage.absolute(root), first_day, previous)
    log.info("night %s: days %s..%s, judged on %.0f%% of the users' watches of %s, %s", date, first_day, date,
             100 * cfg.nightly.eval_share, date,
             f"continuing night {previous}" if previous else "a cold start (no published night before it)")
    return night


def run_night(night: Night, cfg: Config, steps: tuple[str, ...], stages: dict[str, Stage],
              force: bool = False) -> dict[str, Any] | None:
    """Run the given steps of the night, in order; returns the summary when publish ran
    (NightRefused when the gate refused it; force publishes it anyway)."""
    cfg = night.config(cfg)
    summary = None
    for step in NIGHTLY_STEPS:
        if step not in steps:
            continue
        log.info("night %s: %s", night.date, step)
        if step == "prep":
            # the night is unfinished from now until publish; its published tables stay
            _delete_if_there(summary_path(night.root, night.date))
            stages["prep"](night.data, night.run_dir, cfg)
        elif step == "train":
            stages["train"](night.run_dir, _as_prepared(night, cfg))
        elif step == "recall":
            stages["recall"](night.run_dir, cfg)
        elif step == "evaluate":
            evaluate(night, cfg, stages)
        else:
            summary = publish(night, cfg, force)
    return summary


def _as_prepared(night: Night, cfg: Config) -> Config:
    """Training warm-starts from the night whose vocabularies prep kept, whatever has
    finished since (a scheduler runs the steps as separate jobs)."""
    previous_vocab = storage.read_manifest(night.run.prep.root)["config"]["previous_vocab"]
    raw = cfg.to_dict()
    raw["train"]["warm_start"] = previous_vocab.rsplit("/", 1)[0] if previous_vocab else None
    return config_from_dict(raw, source=f"nightly {night.date}")


def evaluate(night: Night, cfg: Config, stages: dict[str, Stage]) -> dict[str, Any] | None:
    """The run's report, and runs/D/compare: tonight's lists against the lists the previous
    night published, on the same held-out users of day D."""
    from report.evaluate import table_metrics

    stages["evaluate"](night.run_dir, cfg)
    compare_dir = night.run.compare
    started = storage.begin_stage(compare_dir)
    targets = night.run.prep.eval
    top_k = int(storage.read_manifest(night.run.recall.root)["config"]["top_k"])
    tonight = table_metrics(targets, night.run.recall.table, top_k)
    result: dict[str, Any] = {"eval_day": night.eval_day.isoformat(), "users": tonight.pop("users"),
                              "tonight": {"night": night.date.isoformat(), **tonight}}
    published = partition(night.root, RECALL, night.previous) if night.previous else None
    if published is not None and storage.exists(published):
        previous = table_metrics(targets, published, top_k)
        previous.pop("users")
        result["previous"] = {"night": night.previous.isoformat(), **previous}
    log.info("night %s on %s: HR@%d %.4f tonight%s", night.date, night.eval_day, min(50, top_k),
             tonight.get("hr@50", tonight["hr@10"]),
             f", {result['previous'].get('hr@50', result['previous']['hr@10']):.4f} with night "
             f"{night.previous}'s lists" if "previous" in result else "")
    return storage.finish_stage(compare_dir, started, result)


def partition(root: str, table: str, date: dt.date) -> str:
    return storage.join(storage.absolute(root), table, f"run_date={date.isoformat()}")


class NightRefused(Exception):
    """The publish gate refused the night: yesterday's tables stay the published ones."""

    def __init__(self, date: dt.date, reasons: list[str]):
        super().__init__(f"night {date} was not published (--force publishes it anyway): " + "; ".join(reasons))
        self.reasons = reasons


def publish(night: Night, cfg: Config, force: bool = False) -> dict[str, Any]:
    """Judge the night at the publish gate; when it passes (or with force), swap its recall
    and i2i partitions in. Either way write nightly/D.json, last; a refused night raises
    NightRefused after it."""
    from report.freshness import new_items
    from report.history import write_history
    from watchnext.gate import NightStats, refusals

    run = night.run
    recall = storage.read_manifest(run.recall.root)
    prep = storage.read_manifest(run.prep.root)
    model = storage.read_manifest(run.model.root)
    day = night.date.isoformat()
    compare = storage.read_manifest(run.compare) if storage.exists(storage.join(run.compare, MANIFEST)) else None
    stats = NightStats.of(run, prep, model, recall, day, days=(night.date - night.first_day).days + 1,
                          compare=compare)
    last = _published_stats(night.root, night.previous)
    reasons = refusals(stats, last, cfg.nightly)
    published = not reasons or force
    tables = {}
    if published:
        storage.replace_dir(run.recall.table_partition(day), partition(night.root, RECALL, night.date))
        tables["recall"] = partition(night.root, RECALL, night.date)
        if "similar" in recall:
            storage.replace_dir(run.recall.similar_partition(day), partition(night.root, I2I, night.date))
            tables["i2i"] = partition(night.root, I2I, night.date)
    metrics = model["metrics"]
    summary = {
        "date": day,
        "published": published,
        "gate": {"stats": stats.to_dict(), "against": night.previous.isoformat() if last else None,
                 "refused": reasons, "forced": bool(reasons) and force},
        "days": [night.first_day.isoformat(), day],
        "eval_day": night.eval_day.isoformat(),
        "previous_night": night.previous.isoformat() if night.previous else None,
        "run": night.run_dir,
        "model_version": recall["model_version"],
        "tables": tables,
        "counts": {k: prep["counts"][k] for k in ("events_in", "examples", "users", "items")},
        "train": {"epochs": len(metrics["epochs"]), "final_loss": metrics["epochs"][-1]["loss"],
                  "examples_per_second": metrics["examples_per_second"], "warm_start": bool(night.previous)},
        "recall": {"users": recall["users"], "items_indexed": recall["index"]["items"]},
        "new_items": new_items(night.run_dir, run_dir(night.root, night.previous) if night.previous else None),
        "evaluation": _without_bookkeeping(compare) if compare else None,
    }
    storage.write_text(summary_path(night.root, night.date), json.dumps(summary, indent=2) + "\n")
    history_json, history_html = write_history(night.root)  # the page across nights, this one included
    log.info("night %s: the nights so far in %s (and %s)", night.date, history_html, history_json.rsplit("/", 1)[-1])
    if not published:
        raise NightRefused(night.date, reasons)
    if reasons:
        log.warning("night %s published with --force, although: %s", night.date, "; ".join(reasons))
    log.info("night %s published: %s", night.date, ", ".join(tables.values()))
    return summary


def published_night(root: str, date: dt.date) -> bool:
    """Whether night `date` finished and its tables were published (not refused at the gate)."""
    path = summary_path(root, date)
    return storage.exists(path) and json.loads(storage.read_text(path)).get("published", True)


def _published_stats(root: str, date: dt.date | None) -> Any:
    """The gate's stats of a published night, None without one (or one from before the gate)."""
    if date is None:
        return None
    from watchnext.gate import NightStats

    gate = json.loads(storage.read_text(summary_path(root, date))).get("gate")
    return NightStats.from_dict(gate["stats"]) if gate else None


def _without_bookkeeping(manifest: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k not in ("stage", "watchnext_version", "finished_at")}


def _delete_if_there(path: str) -> None:
    if storage.exists(path):
        fs, local = storage.filesystem(path)
        fs.delete_file(local)
