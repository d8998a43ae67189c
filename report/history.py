"""ROOT/history.json and ROOT/history.html: the nightly job across nights, one self-contained
page (inline SVG, no scripts) an operator opens to see whether quality drifts, how many new
items get slots, what the publish gate decided and how long each step takes.

Read from what the nights wrote: ROOT/nightly/D.json (the gate's figures and decision, the
evaluation on the night's held-out users, the new items) and the manifests of
ROOT/runs/D/{prep,model,recall,report,compare} (each step's seconds and its process's peak
resident memory).
"""

from __future__ import annotations

import html
import json
from typing import Any

from core import storage
from core.contract import MANIFEST
from report.page import STYLE, bar_chart, figure, line_chart

# the nightly steps' stage folders in runs/D, in the order they run
STEP_FOLDERS = {"prep": "prep", "train": "model", "recall": "recall", "evaluate": "report", "compare": "compare"}
HISTORY_JSON, HISTORY_HTML = "history.json", "history.html"


def collect(root: str) -> dict[str, Any]:
    """Every night of ROOT that wrote its nightly/D.json, oldest first."""
    root = storage.absolute(root)
    summaries = storage.join(root, "nightly")
    names = sorted(n for n in storage.list_names(summaries) if n.endswith(".json")) if storage.exists(summaries) else []
    nights = [_night(root, json.loads(storage.read_text(storage.join(summaries, name)))) for name in names]
    return {"root": root, "nights": nights}


def _night(root: str, summary: dict[str, Any]) -> dict[str, Any]:
    gate = summary.get("gate") or {}
    evaluation = summary.get("evaluation") or {}
    tonight, previous = evaluation.get("tonight", {}), evaluation.get("previous", {})
    steps = {}
    for step, folder in STEP_FOLDERS.items():
        path = storage.join(root, "runs", summary["date"], folder, MANIFEST)
        if storage.exists(path):
            manifest = json.loads(storage.read_text(path))
            steps[step] = {"seconds": manifest.get("seconds"), "peak_rss_mb": manifest.get("peak_rss_mb")}
    return {
        "date": summary["date"],
        "published": summary.get("published", True),
        "forced": bool(gate.get("forced")),
        "refused": gate.get("refused", []),
        "stats": gate.get("stats", {}),
        "evaluation": {
            "users": evaluation.get("users"),
            "hr@50": tonight.get("hr@50"), "hr@50_ci95": tonight.get("hr@50_ci95"),
            "ndcg@10": tonight.get("ndcg@10"), "ndcg@10_ci95": tonight.get("ndcg@10_ci95"),
            "previous_lists_hr@50": previous.get("hr@50"),
        },
        "new_items": summary.get("new_items", {}),
        "counts": summary.get("counts", {}),
        "steps": steps,
    }


def write_history(root: str) -> tuple[str, str]:
    """Write ROOT/history.json and ROOT/history.html; returns their paths."""
    history = collect(root)
    json_path, html_path = (storage.join(history["root"], name) for name in (HISTORY_JSON, HISTORY_HTML))
    storage.write_text(json_path, json.dumps(history, indent=2) + "\n")
    storage.write_text(html_path, render_history(history))
    return json_path, html_path


def render_history(history: dict[str, Any]) -> str:
    e = html.escape
    nights = history["nights"]
    index = {n["date"]: i + 1 for i, n in enumerate(nights)}  # the charts' x: the night's place

    def series(value) -> list[tuple[float, float]]:
        return [(index[n["date"]], v) for n in nights if (v := value(n)) is not None]

    published = sum(n["published"] for n in nights)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>watchnext nightly history</title>',
        f"<style>{STYLE}</style></head><body>",
        f"<h1>watchnext nightly history: {e(history['root'])}</h1>",
        f'<p class="sub">{len(nights)} nights, {published} published, {len(nights) - published} refused at the '
        f"gate. Night n on the charts is the table's row n.</p>",
        "<h2>Nights</h2>",
        _nights_table(nights),
    ]
    if nights:
        parts += [
            '<h2>Quality</h2><div class="charts">',
            figure(line_chart({"tonight's lists": series(lambda n: n["evaluation"]["hr@50"]),
                                "previous lists": series(
                                    lambda n: n["evaluation"]["previous_lists_hr@50"]),
                                "validation": series(lambda n: n["stats"].get("val_hr50")),
                                "exported model": series(lambda n: n["stats"].get("served_val_hr50"))},
                               "night", "HR@50"),
                    "HR@50 on each night's held-out users of its own day: tonight's lists, and the lists the "
                    "night before published, on the same users; and the validation HR@50s the gate reads: the "
                    "training's, and the exported model's own lists in recall."),
            figure(line_chart({"coverage": series(lambda n: n["stats"].get("coverage")),
                                "full lists": series(lambda n: n["stats"].get("full_lists")),
                                "new items' slots": series(lambda n: n["new_items"].get("share_of_slots"))},
                               "night", "share"),
                    "Catalog coverage, the share of users with a full list, and the share of list slots that "
                    "went to items first seen that night."),
            "</div>",
            '<h2>Steps</h2><div class="charts">',
            figure(bar_chart([n["date"][5:] for n in nights],
                              {step: [(n["steps"].get(step) or {}).get("seconds") or 0.0 for n in nights]
                               for step in STEP_FOLDERS}, "seconds"),
                    "Seconds of each step, night by night."),
            "</div>",
        ]
    parts += ["</body></html>"]
    return "\n".join(parts) + "\n"


def _nights_table(nights: list[dict[str, Any]]) -> str:
    e = html.escape
    rows = ["<table><tr><th>night</th><th>published</th><th>HR@50 (95% interval)</th><th>previous lists</th>"
            "<th>users</th><th>events</th><th>items</th><th>new items (recalled)</th><th>seconds</th>"
            "<th>peak memory</th><th>the gate</th></tr>"]
    for i, n in enumerate(nights, 1):
        ev, new = n["evaluation"], n["new_items"]
        hr = "" if ev["hr@50"] is None else f"{ev['hr@50']:.4f}"
        if ev.get("hr@50_ci95"):
            low, high = ev["hr@50_ci95"]
            hr += f' <span class="ci">[{low:.4f}, {high:.4f}]</span>'
        previous = "" if ev["previous_lists_hr@50"] is None else f"{ev['previous_lists_hr@50']:.4f}"
        seconds = sum((s.get("seconds") or 0.0) for s in n["steps"].values())
        peaks = [s["peak_rss_mb"] for s in n["steps"].values() if s.get("peak_rss_mb")]
        decision = "yes (forced)" if n["forced"] else ("yes" if n["published"] else "refused")
        rows.append(
            f"<tr><td>{i}. {e(n['date'])}</td><td>{decision}</td><td>{hr}</td><td>{previous}</td>"
            f"<td>{ev['users'] or ''}</td><td>{n['counts'].get('events_in', '')}</td>"
            f"<td>{n['counts'].get('items', '')}</td><td>{new.get('items', '')} ({new.get('recalled', '')})</td>"
            f"<td>{seconds:,.0f}</td><td>{f'{max(peaks):,.0f} MiB' if peaks else ''}</td>"
            f"<td>{e('; '.join(n['refused']))}</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)
