"""`watchnext ablate`: a grid of variants of one configuration on one dataset, and one table.

A grid file (configs/ablations.yaml) names variants, each a mapping of `section.key` overrides
applied over the base configuration (--config, --set). Every variant is a whole run under
OUT/runs/<variant>/r<repeat> (repeat r trains with train.seed + r). Variants with equal prep
settings share one prep, the slow Spark part: their RUN_DIR/prep links to the first one's. A
variant that resolves to the base configuration is not run again; it is listed as the base.
A variant whose finished report was made from the same configuration is kept, so an
interrupted grid resumes where it stopped.

Outputs, written after every variant: OUT/ablation.json (each variant's overrides, metrics,
intervals, training throughput and the example-age effect), OUT/ablation.md (the table) and
OUT/ablation.html (the table, HR@50 per variant, the example-age figure with the feature on
and off beside the training watches).
"""

from __future__ import annotations

import html
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from core import storage
from watchnext.run import Stage
from core.config import Config, ConfigError, config_from_dict
from core.contract import MANIFEST
from core.layout import RunLayout

log = logging.getLogger(__name__)

BASE = "base"
VARIANT_FILE = "variant.json"  # the resolved configuration a variant's run was made from
SUMMARY_METRICS = ("hr@10", "hr@50", "ndcg@10", "mrr", "coverage")


def read_grid(path: str) -> dict[str, dict[str, Any]]:
    """{variant: {"section.key": value}} from a grid file; the base variant comes first."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read grid file {path}: {err}") from err
    variants = raw.get("variants") if isinstance(raw, dict) else None
    if not isinstance(variants, dict) or not variants:
        raise ConfigError(f"grid file {path}: expected a mapping 'variants: {{name: {{section.key: value}}}}'")
    grid: dict[str, dict[str, Any]] = {BASE: {}}
    for name, overrides in variants.items():
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"grid file {path}: variant name {name!r} is not a plain word (letters, digits, _ -)")
        overrides = overrides or {}
        if not isinstance(overrides, dict) or not all(isinstance(k, str) and k.count(".") == 1 for k in overrides):
            raise ConfigError(f"grid file {path}: variant {name!r} needs a mapping of section.key: value")
        grid[name] = {**grid.get(name, {}), **overrides}
    return grid


def resolve(base: Config, overrides: dict[str, Any], name: str) -> Config:
    """The base configuration with a variant's overrides, validated."""
    raw = base.to_dict()
    for key, value in overrides.items():
        section, field = key.split(".")
        if section not in raw:
            raise ConfigError(f"variant {name!r}: {key}: unknown section {section!r}")
        raw[section][field] = value
    return config_from_dict(raw, source=f"variant {name!r}")


def run_grid(data: str, out: str, base: Config, grid: dict[str, dict[str, Any]], repeats: int,
             stages: dict[str, Stage]) -> dict[str, Any]:
    """Run every variant (stages: prep, train, recall, evaluate, as the command line's) and
    write the summary; returns ablation.json's content."""
    if storage.is_uri(out):
        raise ConfigError(f"ablate writes its runs to a local directory, not {out}")
    out_dir = Path(storage.absolute(out))
    configs = {name: resolve(base, overrides, name) for name, overrides in grid.items()}
    same_as_base = [n for n, c in configs.items() if n != BASE and c == configs[BASE]]
    preps: dict[str, Path] = {}  # prep settings -> the prep directory that has them
    summary: dict[str, Any] = {"data": data, "repeats": repeats, "base": base.to_dict(), "variants": {}}
    for name, cfg in configs.items():
        if name in same_as_base:
            summary["variants"][name] = {"overrides": grid[name], "same_as": BASE}
            continue
        runs = []
        for r in range(repeats):
            run_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": cfg.train.seed + r})})
            run_dir = out_dir / "runs" / name / f"r{r}"
            runs.append(_run_variant(data, run_dir, run_cfg, preps, stages))
        summary["variants"][name] = {"overrides": grid[name], **_combine(runs)}
        _write_summary(out_dir, summary)
        log.info("ablate: %s done: %s", name, _cells(name, summary["variants"][name]))
    _write_summary(out_dir, summary)
    return summary


def _run_variant(data: str, run_dir: Path, cfg: Config, preps: dict[str, Path],
                 stages: dict[str, Stage]) -> dict[str, Any]:
    resolved = cfg.to_dict()
    prep_key = json.dumps({"data": data, "prep": resolved["prep"]}, sort_keys=True)
    marker, run = run_dir / VARIANT_FILE, RunLayout(str(run_dir))
    report = Path(run.report.json)
    finished = (marker.exists() and json.loads(marker.read_text()) == resolved
                and (Path(run.report.root) / MANIFEST).exists())
    if not finished:
        if run_dir.is_symlink() or run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        started = time.time()
        shared = preps.get(prep_key)
        if shared is not None:
            os.symlink(shared, run.prep.root, target_is_directory=True)
        else:
            stages["prep"](data, str(run_dir), cfg)
        stages["train"](str(run_dir), cfg)
        stages["recall"](str(run_dir), cfg)
        stages["evaluate"](str(run_dir), cfg)
        marker.write_text(json.dumps(resolved, indent=2, sort_keys=True) + "\n")
        log.info("ablate: %s in %.0fs", run_dir, time.time() - started)
    preps.setdefault(prep_key, Path(run.prep.root).resolve())
    metrics = json.loads(Path(run.model.metrics).read_text())
    return {"report": json.loads(report.read_text()), "metrics": metrics, "run": str(run_dir)}


def _combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A variant's line: the metrics' mean over repeats (with their standard deviation when
    there are several, else the bootstrap intervals), throughput, the example-age effect."""
    models = [r["report"]["model"] for r in runs]
    line: dict[str, Any] = {"runs": [r["run"] for r in runs]}
    for key in SUMMARY_METRICS + ("fresh_share", "mean_popularity"):
        values = [m[key] for m in models if key in m]
        if values:
            line[key] = float(np.mean(values))
            if len(values) > 1:
                line[key + "_sd"] = float(np.std(values, ddof=1))
    if len(runs) == 1:
        line.update({k: v for k, v in models[0].items() if k.endswith("_ci95")})
    line["examples_per_second"] = float(np.mean([r["metrics"]["examples_per_second"] for r in runs]))
    line["train_seconds"] = float(np.mean([sum(e["seconds"] for e in r["metrics"]["epochs"]) for r in runs]))
    effects = [r["report"]["example_age_effect"] for r in runs if "example_age_effect" in r["report"]]
    if effects:
        effect = dict(effects[0])
        effect["predicted"] = np.mean([e["predicted"] for e in effects], axis=0).tolist()
        line["example_age_effect"] = effect
        line["age_error"] = total_variation(effect["predicted"], effect["empirical"])
    baselines = runs[0]["report"]["baselines"]
    line["baselines"] = {k: {m: v[m] for m in ("hr@50", "ndcg@10") if m in v} for k, v in baselines.items()}
    return line


def total_variation(p: list[float], q: list[float]) -> float:
    """Half the L1 distance of two distributions over the same buckets: 0 = the same, 1 =
    disjoint (the share of mass that sits in the wrong age buckets)."""
    return 0.5 * float(np.abs(np.asarray(p) - np.asarray(q)).sum())


def _write_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("ablation.json", json.dumps(summary, indent=2) + "\n"), ("ablation.md", markdown(summary)),
                       ("ablation.html", page(summary))):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out_dir / name)


def _cells(name: str, line: dict[str, Any]) -> list[str]:
    if "same_as" in line:
        return [name, _overrides(line["overrides"]), f"= {line['same_as']}"] + [""] * 6

    def metric(key: str) -> str:
        if key not in line:
            return "–"
        if key + "_sd" in line:
            return f"{line[key]:.4f} ± {line[key + '_sd']:.4f}"
        ci = line.get(key + "_ci95")
        return f"{line[key]:.4f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{line[key]:.4f}"

    fresh = f"{line['fresh_share']:.3f}" if "fresh_share" in line else "–"
    age = f"{line['age_error']:.3f}" if "age_error" in line else "–"
    return [name, _overrides(line["overrides"]), metric("hr@50"), metric("ndcg@10"), metric("hr@10"),
            f"{line['coverage']:.3f}", fresh, age, f"{line['examples_per_second']:,.0f}"]


HEADER = ["variant", "overrides", "HR@50", "NDCG@10", "HR@10", "coverage", "fresh share", "age error",
          "train ex/s"]


def _overrides(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in overrides.items()) or "(base)"


def markdown(summary: dict[str, Any]) -> str:
    """The table: one row per variant (intervals: 95% bootstrap over users for one repeat,
    ± the standard deviation over repeats for several)."""
    rows = [HEADER, ["---"] * len(HEADER)]
    rows += [_cells(name, line) for name, line in summary["variants"].items()]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n"


def page(summary: dict[str, Any]) -> str:
    """ablation.html: the table, HR@50 per variant, and the example-age figure."""
    from report.page import STYLE, age_effect_figure, bar_chart

    e = html.escape
    ran = {n: v for n, v in summary["variants"].items() if "same_as" not in v}
    table = "".join(f"<th>{e(h)}</th>" for h in HEADER)
    table = f"<table><tr>{table}</tr>" + "".join(
        "<tr>" + "".join(f"<td>{e(c)}</td>" for c in _cells(n, v)) + "</tr>" for n, v in summary["variants"].items()
    ) + "</table>"
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>watchnext ablations</title>',
             f"<style>{STYLE}</style></head><body>", f"<h1>Ablations: {e(str(summary['data']))}</h1>",
             f'<p class="sub">{summary["repeats"]} repeat(s) per variant; age error: the total-variation '
             "distance between the predicted and the empirical shares of watches by item age.</p>", table]
    if ran:
        parts.append(bar_chart(list(ran), {"HR@50": [v["hr@50"] for v in ran.values()]}, "HR@50"))
    effects = {n: v["example_age_effect"] for n, v in ran.items() if "example_age_effect" in v}
    on = next((n for n, v in effects.items() if v["example_age"]), None)
    off = next((n for n, v in effects.items() if not v["example_age"]), None)
    if on:
        predicted = {f"{on} (example age on)": effects[on]["predicted"]}
        if off:
            predicted[f"{off} (example age off)"] = effects[off]["predicted"]
        parts += ["<h2>Example age and freshness</h2>", age_effect_figure(effects[on], predicted)]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
