"""`watchnext tune`: Ray Tune's ASHA over prep and train settings, chosen on the validation split.

The search space (SEARCH_SPACE below, or the `tune.space` setting) gives each knob
`section.key` a distribution. The first trial is the base configuration itself, so the choice
is never worse than it on validation; then come its neighbours (one knob changed at a time),
then random draws over the whole space until the budget is spent. Each trial is a
Ray Tune function that trains with `ray_train.trainer.run_train` on the prep of its prep
settings; Ray Train's TuneReportCallback hands every epoch's report to ASHAScheduler, which
stops a trial at a rung (tune.grace_epochs, then x3 epochs) unless it is in the top third of
the trials that reached that rung; train.epochs is the cap. tune.budget_minutes ends the
search (Ray Tune's time budget). Every choice reads val_hr@50 alone (HR@50 of held-out
validation users ranking the whole corpus), never prep/eval nor a report.

Settings given with --set are fixed: they leave the space, and the trials keep them.

Outputs, under OUT/tune/: best.yaml (a --config file: the base configuration's settings that
differ from the defaults, with the best trial's over them), results.json and results.md (a
row per trial: settings, best val_hr@50 and its epoch, epochs run, how it ended, seconds),
tune.html (val_hr@50 per epoch per trial, the table); preps/<settings>/prep, the preps the
trials share; trials/<trial id>/model, each trial's training; ray_tune/, Ray Tune's own
records (a trial's error.txt is there).
"""

from __future__ import annotations

import html
import itertools
import json
import logging
import os
import shutil
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import ray
import yaml
from ray import tune
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from ray_train.validation import VAL_K
from core import storage
from watchnext.ablate import resolve
from watchnext.run import Stage
from core.config import Config, ConfigError, TrainConfig
from core.contract import MANIFEST
from core.layout import RunLayout

log = logging.getLogger(__name__)

METRIC = f"val_hr@{VAL_K}"
# ASHA keeps a trial going past a rung when it is in the top 1/3 of the trials that reached
# that rung: rungs at grace, 3 x grace, 9 x grace epochs. Ray's default of 4 keeps too few of
# the dozen or so trials a small machine runs in its budget; 2 stops too few to save time
REDUCTION_FACTOR = 3
DISTRIBUTIONS = ("choice", "uniform", "loguniform")
# a trial's function only drives Ray Train, whose workers hold the CPUs; Ray Tune refuses a
# trial that asks for nothing, and a hundredth of a CPU leaves the workers' whole CPUs free
TRIAL_CPU = 0.01
RAY_TUNE = "ray_tune"  # Ray Tune's experiment folder under OUT/tune: each trial's results and error.txt

# The default search space, one distribution per knob. Prep knobs are choices only: each
# combination is one Spark prep, made before the trials (2 x 2 = 4 here, and the base's own
# when it is not among them). Numbers are from BENCHMARKS.md (MovieLens-100K) where cited.
SEARCH_SPACE: dict[str, dict[str, list[Any]]] = {
    # no cap, or the paper's 30 a user: the cap cost 0.10 HR@50 where users rated most of
    # what they watched, yet guards the loss against heavy users (and bots) on real logs
    "prep.max_examples_per_user": {"choice": [0, 30]},
    # hot-item down-sampling off, or word2vec's threshold: it matters where a few items hold
    # much of the log, not where watches spread evenly
    "prep.subsample_threshold": {"choice": [None, 1e-3]},
    # the last R watches pooled beside the history's mean: 3-5 added 0.03-0.05 HR@50
    "train.recent_items": {"choice": [0, 3, 5]},
    # the paper's freshness feature; off only wins on logs without a time trend
    "train.example_age": {"choice": [True, False]},
    # a decade around the default 0.003 for Adam, on a log scale: the effect is multiplicative
    "train.learning_rate": {"loguniform": [1e-3, 1e-2]},
    # a cosine decay over the epoch cap, or the constant rate early stopping was chosen with
    "train.lr_schedule": {"choice": ["constant", "cosine"]},
    # half, the default and twice the width: wider tables fit more and overfit small logs
    "train.embedding_dim": {"choice": [32, 64, 128]},
    # shared negatives per batch: a quarter, the default and 4x (capped at the corpus size)
    "train.num_negatives": {"choice": [512, 2048, 8192]},
    # auto (the exact softmax up to train.full_softmax_items items, sampled beyond) beside the
    # approximations that scale; pointwise (DSSM's objective) scored 0.26 HR@50 to sampled's 0.44
    "train.loss": {"choice": ["auto", "sampled", "in_batch", "mixed"]},
    # the paper's user tower against item embeddings, the sequence tower over the ordered
    # history, or Yi et al.'s item tower (0.42 HR@50 against 0.44 on ml-100k, where items
    # have few features; more where they have many)
    "train.model": {"choice": ["youtube_dnn", "sequence", "two_tower"]},
    # L2 on the dense weights (the item tables too, below the sparse-table threshold): none,
    # the default and ten times it
    "train.weight_decay": {"choice": [0.0, 1e-4, 1e-3]},
}
TUNABLE_SECTIONS = ("prep", "train")


@dataclass(frozen=True)
class Knob:
    """One setting of the search space and its distribution."""

    key: str  # section.key
    kind: str  # one of DISTRIBUTIONS
    values: tuple[Any, ...]  # the choices, or (low, high)

    @property
    def is_prep(self) -> bool:
        return self.key.startswith("prep.")

    def domain(self) -> Any:
        """The knob as a Ray Tune search domain."""
        if self.kind == "choice":
            return tune.choice(list(self.values))
        return getattr(tune, self.kind)(*self.values)


def parse_space(raw: Any, base: Config, fixed: Iterable[str] = ()) -> dict[str, Knob]:
    """The knobs of a space {section.key: {kind: values}}, each checked against the base
    configuration; knobs named in `fixed` (set with --set) are left out. ConfigError names the
    knob and says what to give instead."""
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("tune.space: expected a mapping {section.key: {choice: [...]}}, e.g. "
                          "{train.learning_rate: {loguniform: [0.001, 0.01]}}")
    fixed = set(fixed)
    knobs = {}
    for key, spec in raw.items():
        if key in fixed:
            log.info("tune: %s is fixed by --set: not searched", key)
            continue
        knobs[key] = _knob(key, spec, base)
    if not knobs:
        raise ConfigError("tune.space: every knob is fixed by --set; nothing is left to tune")
    return knobs


def _knob(key: Any, spec: Any, base: Config) -> Knob:
    """One knob, checked: a prep or train setting, one known distribution with valid values."""
    where = f"tune.space.{key}"
    section, _, name = str(key).partition(".")
    if section not in TUNABLE_SECTIONS or not name:
        raise ConfigError(f"{where}: only prep.* and train.* settings can be tuned")
    field = type(getattr(base, section)).model_fields.get(name)
    if field is None:
        raise ConfigError(f"{where}: unknown key")
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: expected one of {{choice: [values]}}, {{uniform: [low, high]}}, "
                          "{loguniform: [low, high]}")
    kind, values = next(iter(spec.items()))
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: {kind} needs a list of values")
    if kind != "choice":
        if section == "prep":
            raise ConfigError(f"{where}: each prep setting is one Spark prep made before the trials: "
                              "give it as {choice: [values]}")
        if field.annotation is not float:
            raise ConfigError(f"{where}: {kind} draws real numbers; give this setting as {{choice: [values]}}")
        if len(values) != 2 or not all(isinstance(v, (int, float)) for v in values) or values[0] >= values[1]:
            raise ConfigError(f"{where}: {kind} needs [low, high] with low < high")
        if kind == "loguniform" and values[0] <= 0:
            raise ConfigError(f"{where}: loguniform needs a positive low end")
    for value in values:  # the ends of a range, every choice: each must make a valid configuration
        resolve(base, {key: value}, where).check_paths()
    return Knob(key, kind, tuple(values))


def base_settings(base: Config, keys: Iterable[str]) -> dict[str, Any]:
    """The base configuration's values of the given section.key settings."""
    raw = base.to_dict()
    return {key: raw[key.split(".")[0]][key.split(".")[1]] for key in keys}


def neighbours(base: Config, knobs: dict[str, Knob]) -> list[dict[str, Any]]:
    """The settings one knob away from the base's: each other choice of a choice knob, and for a
    range the midpoints between the base's value and each end (geometric for loguniform), the
    others at the base's values. They are tried first, after the base itself: the defaults were
    chosen across data sets, so a log's best setting is most often a step or two away from them,
    which random draws over the whole space rarely land on (a draw changes every knob at once)."""
    own = base_settings(base, knobs)
    points = []
    for key, knob in knobs.items():
        if knob.kind == "choice":
            steps = [value for value in knob.values if value != own[key]]
        else:
            low, high = knob.values
            value = min(max(float(own[key]), low), high)
            middle = (lambda a, b: (a * b) ** 0.5) if knob.kind == "loguniform" else (lambda a, b: (a + b) / 2)
            steps = [float(f"{middle(value, end):.4g}") for end in (low, high) if end != value]
        points += [{**own, key: step} for step in steps]
    return points


def prep_settings(knobs: dict[str, Knob], base: Config) -> list[dict[str, Any]]:
    """The preps the trials need: every combination of the prep knobs' choices, with the
    base's own (the first trial's) first and its neighbours' when they are not among them."""
    prep_knobs = [k.key for k in knobs.values() if k.is_prep]
    combos = [dict(zip(prep_knobs, values)) for values in itertools.product(*(knobs[k].values for k in prep_knobs))]
    needed = [base_settings(base, prep_knobs), *({k: p[k] for k in prep_knobs} for p in neighbours(base, knobs))]
    extra = [settings for i, settings in enumerate(needed) if settings not in combos and settings not in needed[:i]]
    return [*extra, *combos]


def prep_key(settings: dict[str, Any]) -> str:
    """A prep's folder name, from the prep settings of a trial (e.g.
    max_examples_per_user=0,subsample_threshold=null); "base" when none is tuned."""
    parts = [f"{k.split('.', 1)[1]}={json.dumps(v)}" for k, v in sorted(settings.items()) if k.startswith("prep.")]
    return ",".join(parts) or "base"


def run_tune(data: str, out: str, base: Config, fixed: Iterable[str], prep: Stage) -> dict[str, Any]:
    """Make the preps, search with ASHA until the budget is spent, and write OUT/tune/
    (prep: the prep stage, `prep(data, run_dir, cfg)`, as the command line's). Returns
    results.json's content."""
    if storage.is_uri(out):
        raise ConfigError(f"tune writes its trials to a local directory, not {out}")
    if not base.train.val_users:
        raise ConfigError("tune chooses on val_hr@50: train.val_users must be above 0")
    started = time.monotonic()
    knobs = parse_space(base.tune.space or SEARCH_SPACE, base, fixed)
    tune_dir = Path(storage.absolute(out)) / "tune"
    preps = make_preps(data, tune_dir / "preps", base, prep_settings(knobs, base), prep)
    left = base.tune.budget_minutes * 60 - (time.monotonic() - started)
    if left <= 0:
        raise ConfigError(f"the {len(preps)} preps took all of tune.budget_minutes={base.tune.budget_minutes:g}; "
                          "raise it (finished preps are kept)")
    trials = search(knobs, base, preps, tune_dir, left)
    if not any(t[METRIC] is not None for t in trials):
        raise RuntimeError(f"no trial reported {METRIC} within the budget; see the trials' error.txt under "
                           f"{tune_dir / RAY_TUNE}, or raise tune.budget_minutes")
    best = best_trial(trials)
    chosen = best_config(base, best["settings"])
    summary = {
        "data": data, "metric": METRIC, "budget_minutes": base.tune.budget_minutes,
        "seconds": round(time.monotonic() - started, 1),
        "scheduler": {"name": "ASHA", "time_attr": "epoch", "max_t": base.train.epochs,
                      "grace_period": _grace(base), "reduction_factor": REDUCTION_FACTOR},
        "space": {k: {kn.kind: list(kn.values)} for k, kn in knobs.items()},
        "fixed": sorted(set(fixed)), "preps": preps,
        "best": {"trial": best["trial"], "settings": best["settings"], METRIC: best[METRIC],
                 "best_epoch": best["best_epoch"]},
        "trials": trials,
    }
    write_outputs(tune_dir, summary, chosen)
    return summary


def make_preps(data: str, preps_dir: Path, base: Config, combos: list[dict[str, Any]],
               prep: Stage) -> dict[str, str]:
    """{prep key: prep directory} for every combination, each prepped once.

    The preps run here, in the driver, one after the other and before any trial: a Spark job
    inside a trial would start a JVM per trial on cores the training needs and race trials of
    equal settings to the same prep, while run first each is made once and Spark is gone
    before Ray's trials start. A prep finished earlier from the same data and settings is kept,
    so a rerun goes straight to the trials."""
    preps = {}
    for settings in combos:
        key = prep_key(settings)
        cfg = resolve(base, settings, f"prep {key}")
        run_dir = str(preps_dir / key)
        prep_dir = RunLayout(run_dir).prep.root
        if not _prepped(Path(prep_dir), data, cfg):
            log.info("tune: prep %s (%d of %d)", key, len(preps) + 1, len(combos))
            prep(data, run_dir, cfg)
        preps[key] = prep_dir
    return preps


def _prepped(prep_dir: Path, data: str, cfg: Config) -> bool:
    manifest = prep_dir / MANIFEST
    if not manifest.exists():
        return False
    made = json.loads(manifest.read_text())
    return made["config"] == cfg.prep.model_dump(mode="json") and made["inputs"]["data"] == storage.absolute(data)


def _grace(base: Config) -> int:
    return min(base.tune.grace_epochs, base.train.epochs)


def trials_at_once(base: Config, resources: dict[str, float]) -> int:
    """tune.trials_at_once, or as many trials as the cluster's resources hold: each needs its
    workers' CPUs plus one for its data reads (GPUs: one per worker)."""
    if base.tune.trials_at_once:
        return base.tune.trials_at_once
    train: TrainConfig = base.train
    fits = int(resources.get("CPU", 0) // (train.workers * train.cpus_per_worker + 1 + TRIAL_CPU))
    if train.use_gpu:
        fits = min(fits, int(resources.get("GPU", 0) // train.workers))
    return max(fits, 1)


def search(knobs: dict[str, Knob], base: Config, preps: dict[str, str], tune_dir: Path,
           budget_seconds: float) -> list[dict[str, Any]]:
    """Run the trials with ASHA until max_trials ran or the budget is spent; a row per trial
    that reported or failed, in the order they were drawn."""
    from core.ray_cluster import start_ray

    _quiet_tune()
    started_here = not ray.is_initialized()
    # room for one trial: its workers, its data reads, its function's TRIAL_CPU rounded up; the
    # workers' logs of every epoch stay in Ray's session files (a line per trial comes here)
    start_ray(base.ray, min_cpus=int(base.train.workers * base.train.cpus_per_worker) + 2, log_to_driver=False)
    # each trial's run (its model/) goes straight to trials/<id>, not to Ray Tune's trial folder,
    # which is staged under Ray's session directory and copied to ray_tune/<id> as it goes
    trials_dir = tune_dir / "trials"
    for folder in (trials_dir, tune_dir / RAY_TUNE):  # a rerun draws its trials afresh (the preps stay)
        if folder.exists():
            shutil.rmtree(folder)
    try:
        concurrency = trials_at_once(base, ray.cluster_resources())
        # stop_last_trials=False: a trial that reaches train.epochs ends on its own, its model exported
        scheduler = _RecordingASHA(time_attr="epoch", metric=METRIC, mode="max", max_t=base.train.epochs,
                                   grace_period=_grace(base), reduction_factor=REDUCTION_FACTOR,
                                   stop_last_trials=False)
        first_points = [base_settings(base, knobs), *neighbours(base, knobs)][:base.tune.max_trials]
        log.info("tune: %d knobs, %d preps, up to %d trials (%d at once) in %.1f minutes",
                 len(knobs), len(preps), base.tune.max_trials, concurrency, budget_seconds / 60)
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(_trial, base=base, preps=preps, trials_dir=str(trials_dir)),
                                {"CPU": TRIAL_CPU}),
            param_space={key: knob.domain() for key, knob in knobs.items()},
            tune_config=tune.TuneConfig(
                scheduler=scheduler,
                # the base configuration first, then its neighbours, then random draws (the generator
                # limits the trials at once: Tune's max_concurrent_trials applies to other searchers only)
                search_alg=BasicVariantGenerator(points_to_evaluate=first_points,
                                                 max_concurrent=concurrency, random_state=base.tune.seed),
                num_samples=base.tune.max_trials, time_budget_s=budget_seconds,
                trial_dirname_creator=_trial_dirname,
            ),
            run_config=tune.RunConfig(name=RAY_TUNE, storage_path=str(tune_dir), verbose=0,
                                      callbacks=[_TrialLines(scheduler.stopped, base.train.epochs, trials_dir)]),
        )
        grid = tuner.fit()
    finally:
        if started_here:
            ray.shutdown()
    rows = [_row(result, scheduler.stopped, base.train.epochs, trials_dir) for result in grid]
    rows = sorted((r for r in rows if r is not None), key=lambda r: r["id"])
    for number, row in enumerate(rows):
        row["trial"] = number
    return rows


def _quiet_tune(environ: MutableMapping[str, str] = os.environ) -> None:
    """Keep Ray Tune's console output to the lines of _TrialLines: its newer output engine
    prints the experiment's header and paths whatever the verbosity, the classic one nothing
    at verbose=0 (a value the user set is kept); the TensorBoard logger would say on every
    result that "val_hr@50" is no TensorBoard name, and the search that the base's values
    lie outside the choices (trial 0 is the base on purpose)."""
    environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    logging.getLogger("tensorboardX").setLevel(logging.WARNING)
    logging.getLogger("ray.tune.search.variant_generator").setLevel(logging.ERROR)


def _trial(params: dict[str, Any], base: Config, preps: dict[str, str], trials_dir: str) -> None:
    """One trial: the base configuration with the trial's settings, trained on the prep of its
    prep settings into trials_dir/<trial id>; TuneReportCallback hands each epoch's report to
    ASHA, which may stop the trial after any of them."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from ray_train.trainer import run_train

    context = tune.get_context()
    settings = {key: _plain(value) for key, value in params.items()}
    cfg = resolve(base, settings, f"trial {context.get_trial_id()}")
    run_train(storage.join(trials_dir, context.get_trial_id()), cfg, prep_dir=preps[prep_key(settings)],
              callbacks=[TuneReportCallback()])


def _trial_dirname(trial: Any) -> str:
    return trial.trial_id


def _plain(value: Any) -> Any:
    """A Python value for a sampled one (Ray Tune draws numpy scalars): JSON and YAML take it."""
    return value.item() if isinstance(value, np.generic) else value


class _RecordingASHA(ASHAScheduler):
    """ASHA that remembers the trials it stopped before train.epochs (its stop at the cap is
    the trial's natural end), for the results' "stopped by ASHA"."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.stopped: set[str] = set()

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP and result.get("epoch", self._max_t) < self._max_t:
            self.stopped.add(trial.trial_id)
        return decision


class _TrialLines(tune.Callback):
    """One console line per trial as it ends (Ray Tune's own output is off)."""

    def __init__(self, stopped: set[str], cap: int, trials_dir: Path):
        self.stopped, self.cap, self.trials_dir, self.ended = stopped, cap, trials_dir, 0

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, error=None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, error=f"see {trial.path}/error.txt")

    def _line(self, trial: Any, error: str | None) -> None:
        self.ended += 1
        last = trial.last_result or {}
        best = trial.metric_analysis.get(METRIC, {}).get("max")
        ended = _ending(trial.trial_id, int(last.get("epoch", 0)), self.cap, error, self.stopped,
                        _model_manifest(self.trials_dir, trial.trial_id))
        score = f"{METRIC} {best:.4f}" if best is not None else f"no {METRIC}"
        settings = " ".join(f"{k}={_cell(_plain(v))}" for k, v in trial.config.items())
        log.info("tune: trial %s (%d ended): %s, %d epochs, %s%s, %.0fs; %s", trial.trial_id, self.ended, score,
                 int(last.get("epoch", 0)), ended, f" ({error})" if error else "",
                 float(last.get("time_total_s", 0.0)), settings)


def _ending(trial_id: str, epochs: int, cap: int, error: str | None, stopped: set[str], manifest: Path) -> str:
    """How a trial ended: error; stopped by ASHA; finished (the cap, or the trainer's own early
    stopping: its model is exported); else the time budget cut it."""
    if error:
        return "error"
    if trial_id in stopped:
        return "stopped by ASHA"
    if epochs >= cap:
        return "finished"
    return "early stopping" if manifest.exists() else "cut by the budget"


def _model_manifest(trials_dir: Path, trial_id: str) -> Path:
    """The manifest a trial's training writes when it ends by itself."""
    return Path(RunLayout(str(trials_dir / trial_id)).model.root) / MANIFEST


def _row(result: Any, stopped: set[str], cap: int, trials_dir: Path) -> dict[str, Any] | None:
    """A trial's row from its Ray Tune result: settings, val_hr@50 per epoch, its best, how it
    ended; None for a trial drawn but never started (the budget ran out first)."""
    frame = result.metrics_dataframe
    history = []
    if frame is not None and METRIC in frame:
        history = [[int(e), float(v)] for e, v in zip(frame["epoch"], frame[METRIC]) if not np.isnan(v)]
    if not history and result.error is None:
        return None
    trial_id = Path(result.path).name
    epochs = int(frame["epoch"].iloc[-1]) if frame is not None and "epoch" in frame else 0
    best_value, best_epoch = max(((v, -e) for e, v in history), default=(None, 0))
    error = f"{type(result.error).__name__}: see {result.path}/error.txt" if result.error is not None else None
    return {
        "id": trial_id,
        "settings": {key: _plain(value) for key, value in result.config.items()},
        METRIC: best_value, "best_epoch": -best_epoch or None, "epochs": epochs,
        "ended": _ending(trial_id, epochs, cap, error, stopped, _model_manifest(trials_dir, trial_id)),
        "seconds": round(float(frame["time_total_s"].iloc[-1]), 1) if frame is not None and len(frame) else None,
        "history": history, "error": error, "run": str(trials_dir / trial_id),
    }


def best_trial(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The trial of the highest val_hr@50 at any of its epochs; of equals, the first drawn
    (the base configuration is the first)."""
    return max((t for t in trials if t[METRIC] is not None), key=lambda t: (t[METRIC], -t["trial"]))


def best_config(base: Config, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """best.yaml's sections: the base configuration's settings that differ from the defaults,
    and every tuned setting at the best trial's value."""
    chosen = resolve(base, settings, "the best trial").to_dict()
    defaults = Config().to_dict()
    sections = {}
    for section, values in chosen.items():
        kept = {k: v for k, v in values.items() if v != defaults[section][k] or f"{section}.{k}" in settings}
        if kept:
            sections[section] = kept
    return sections


def write_outputs(tune_dir: Path, summary: dict[str, Any], chosen: dict[str, dict[str, Any]]) -> None:
    """best.yaml, results.json, results.md and tune.html, each written whole, then renamed."""
    best = summary["best"]
    best_yaml = (f"# watchnext tune: the base configuration's settings that differ from the defaults, with the\n"
                 f"# best trial's over them (trial {best['trial']}: {METRIC} {best[METRIC]:.4f} at epoch "
                 f"{best['best_epoch']}). Use it as --config.\n" + yaml.safe_dump(chosen, sort_keys=False))
    texts = {"best.yaml": best_yaml, "results.json": json.dumps(summary, indent=2) + "\n",
             "results.md": markdown(summary), "tune.html": page(summary, best_yaml)}
    tune_dir.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        tmp = tune_dir / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(tune_dir / name)


def _cell(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _cells(trial: dict[str, Any], keys: list[str], best: int) -> list[str]:
    tags = [tag for tag, on in (("base", trial["trial"] == 0), ("best", trial["trial"] == best)) if on]
    score = f"{trial[METRIC]:.4f}" if trial[METRIC] is not None else "–"
    seconds = f"{trial['seconds']:.0f}" if trial["seconds"] is not None else "–"
    return [f"{trial['trial']}" + (f" ({', '.join(tags)})" if tags else ""),
            *(_cell(trial["settings"].get(k)) for k in keys), score, _cell(trial["best_epoch"] or "–"),
            str(trial["epochs"]), trial["ended"], seconds]


def _header(keys: list[str]) -> list[str]:
    return ["trial", *keys, f"best {METRIC}", "best epoch", "epochs", "ended", "seconds"]


def markdown(summary: dict[str, Any]) -> str:
    """results.md: a row per trial in the order drawn (trial 0 is the base configuration)."""
    keys = list(summary["space"])
    rows = [_header(keys), ["---"] * len(_header(keys))]
    rows += [_cells(t, keys, summary["best"]["trial"]) for t in summary["trials"]]
    best = summary["best"]
    return (f"Best: trial {best['trial']}, {METRIC} {best[METRIC]:.4f} at epoch {best['best_epoch']} "
            f"(best.yaml)\n\n" + "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n")


def page(summary: dict[str, Any], best_yaml: str) -> str:
    """tune.html: val_hr@50 per epoch of every trial, the table, best.yaml."""
    from report.page import STYLE, line_chart

    e = html.escape
    keys = list(summary["space"])
    series = {f"#{t['trial']}": [tuple(p) for p in t["history"]] for t in summary["trials"] if t["history"]}
    stopped = sum(t["ended"] == "stopped by ASHA" for t in summary["trials"])
    table = "<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in _header(keys)) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{e(c)}</td>" for c in _cells(t, keys, summary["best"]["trial"])) + "</tr>"
        for t in summary["trials"]) + "</table>"
    best = summary["best"]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>watchnext tune</title>',
             f"<style>{STYLE}</style></head><body>", f"<h1>Tuning: {e(str(summary['data']))}</h1>",
             f'<p class="sub">{len(summary["trials"])} trials in {summary["seconds"] / 60:.1f} minutes (budget '
             f'{summary["budget_minutes"]:g}), {stopped} stopped by ASHA; best: trial {best["trial"]}, {METRIC} '
             f'{best[METRIC]:.4f} at epoch {best["best_epoch"]}. {METRIC}: held-out validation users ranking the '
             "whole corpus.</p>",
             f"<figure>{line_chart(series, 'epoch', METRIC)}<figcaption>{METRIC} after each epoch, one line per "
             "trial (#0 is the base configuration)</figcaption></figure>",
             table, "<h2>best.yaml</h2>", f"<pre>{e(best_yaml)}</pre>", "</body></html>"]
    return "\n".join(parts) + "\n"
