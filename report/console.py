"""The report as a person reads it at the end of a run: the model beside the baselines, the
intervals, and what the lists are made of."""

from __future__ import annotations

from typing import Any

from report.evaluate import CI_METRICS
from report.page import TABLE_METRICS, row_name


def summary(report: dict[str, Any]) -> str:
    """report.json as a table for the console: a row for the model and each baseline."""
    model = report["model"]
    keys = [k for k in TABLE_METRICS if k in model]
    rows = [("model", model)] + [(row_name(name, m, report["users"]), m) for name, m in report["baselines"].items()]
    width = max(18, max(len(name) for name, _ in rows) + 1)
    lines = ["", f"{report['dataset']}: {report['users']} users, held-out last event each",
             f"{'':<{width}}" + "".join(f"{k:>11}" for k in keys)]
    for name, metrics in rows:
        lines.append(f"{name:<{width}}" + "".join(f"{metrics[k]:>11.4f}" if k in metrics else f"{'-':>11}"
                                                  for k in keys))
    intervals = [f"{m} [{model[m + '_ci95'][0]:.4f}, {model[m + '_ci95'][1]:.4f}]"
                 for m in CI_METRICS if m + "_ci95" in model]
    if intervals:
        lines.append("model, 95% bootstrap intervals: " + ", ".join(intervals))
    index = report.get("index", {})
    ann = "".join(f", {k} {v:.4f} against exact" for k, v in index.items() if k.startswith("ann_recall@"))
    fresh = (f", fresh items {model['fresh_share']:.3f} of the slots (catalog {model['catalog_fresh_share']:.3f})"
             if "fresh_share" in model else "")
    lines.append(f"model: catalog coverage {model['coverage']:.3f}, mean popularity of recommended items "
                 f"{model['mean_popularity']:.1f} (catalog {model['catalog_mean_popularity']:.1f}){fresh}; "
                 f"index {index.get('type', '?')} x{index.get('shards', 1)}{ann}")
    return "\n".join(lines) + "\n"
