"""report/report.html: the evaluation as one self-contained page (inline SVG charts, no
scripts, no external files), for reviewers who open it offline.

Sections: the metrics against the baselines with bootstrap intervals, and the baselines'
settings (chosen on the validation split); HR@K curves; training loss and validation HR@50
per epoch; the recommended items' popularity beside the catalog's, with the share of fresh
items; the example-age effect (report/age_effect.py); the run's data counts and
configuration.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

SERIES_COLOURS = ("#1f6feb", "#d1242f", "#1a7f37", "#8250df", "#bf8700")
# the metrics table's columns (report.html and the command line's summary)
TABLE_METRICS = ("hr@10", "hr@50", "hr@100", "hr@200", "ndcg@10", "ndcg@50", "mrr")
WIDTH, HEIGHT, MARGIN = 460, 260, 48

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #1f2328; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em; }
.sub { color: #59636e; } table { border-collapse: collapse; margin: 0.6em 0; }
th, td { padding: 4px 10px; text-align: right; border-bottom: 1px solid #d1d9e0; }
th:first-child, td:first-child { text-align: left; } .ci { color: #59636e; font-size: 0.85em; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; } figure { margin: 0; }
figcaption { color: #59636e; font-size: 0.9em; max-width: 460px; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 12px; }
"""


def render(report: dict[str, Any], metrics: dict[str, Any] | None, prep: dict[str, Any],
           recall: dict[str, Any]) -> str:
    """The page for report.json, the model's metrics.json (None: not trained here), and the
    prep and recall manifests."""
    e = html.escape
    model = report["model"]
    rows = [("model", model)] + list(report["baselines"].items())
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>watchnext report</title>',
        f"<style>{STYLE}</style></head><body>",
        f"<h1>watchnext report: {e(str(report['dataset']))}</h1>",
        f'<p class="sub">{report["users"]:,} users, each with their last watch held out; model '
        f'{e(str(report["model_version"]))}; top {report["top_k"]} per user from a '
        f'{e(str(report["index"].get("type", "?")))} index over {report["index"].get("items", 0):,} items'
        f"{_ann(report['index'])}.</p>",
        "<h2>Metrics against the baselines</h2>",
        _metrics_table([(row_name(name, m, report["users"]), m) for name, m in rows]),
        '<p class="sub">Brackets: 95% percentile-bootstrap intervals over users (1,000 resamples). '
        "Every list excludes the user's watched items.</p>",
        _baseline_settings(report),
        _channels(recall.get("channels")),
        '<h2>Hit rate at K</h2><div class="charts">',
        figure(line_chart({name: [(k, m[f"hr@{k}"]) for k in (10, 50, 100, 200) if f"hr@{k}" in m]
                            for name, m in rows}, "K", "HR@K", log_x=True),
                "Share of users whose held-out watch is in their top K."),
        "</div>",
    ]
    if metrics and metrics.get("epochs"):
        epochs = metrics["epochs"]
        parts += [
            "<h2>Training</h2>",
            f'<p class="sub">{len(epochs)} epochs on {e(str(metrics.get("device", "?")))} x'
            f'{metrics.get("workers", "?")} ({e(str(metrics.get("precision", "fp32")))}), '
            f'{metrics.get("examples_per_second", 0):,.0f} examples/s.</p>',
            '<div class="charts">',
            figure(line_chart({"loss": [(r["epoch"], r["loss"]) for r in epochs]}, "epoch", "training loss"),
                    "Mean training loss per epoch."),
            figure(line_chart({"val HR@50": [(r["epoch"], r["val_hr@50"]) for r in epochs
                                              if r.get("val_hr@50") is not None]}, "epoch", "HR@50"),
                    "Validation HR@50 after each epoch (held-out users, the whole corpus ranked)."),
            "</div>",
        ]
    distribution = model.get("popularity_distribution")
    if distribution:
        fresh = ""
        if "fresh_share" in model:
            fresh = (f" Fresh items (uploaded in the last {report.get('recent_days', '?')} days of the training "
                     f"window) fill {model['fresh_share']:.1%} of the slots; they are "
                     f"{model['catalog_fresh_share']:.1%} of the catalog.")
        parts += [
            "<h2>Popularity of the recommended items</h2>",
            f'<p class="sub">Catalog coverage {model["coverage"]:.1%}; a recommended item was watched '
            f'{model["mean_popularity"]:,.1f} times in training on average, a catalog item '
            f'{model["catalog_mean_popularity"]:,.1f} times.{e(fresh)}</p>',
            figure(bar_chart(distribution["buckets"], {"recommended slots": distribution["recommended"],
                                                        "catalog items": distribution["catalog"]}, "share"),
                    "Share of recommendation slots and of catalog items by the item's number of training "
                    "watches (log2 buckets)."),
        ]
    effect = report.get("example_age_effect")
    if effect:
        name = f"model (example age {'on' if effect['example_age'] else 'off'})"
        parts += ["<h2>Example age and freshness</h2>",
                  age_effect_figure(effect, {name: effect["predicted"]})]
    counts = prep.get("counts", {})
    parts += [
        "<h2>Run</h2>",
        _key_values({"events in": counts.get("events_in"), "examples": counts.get("examples"),
                     "users": counts.get("users"), "items": counts.get("items"),
                     "evaluated users": report["users"], "recall users/s": recall.get("users_per_second")}),
        "<details><summary>configuration</summary>",
        f"<pre>{e(json.dumps({'prep': prep.get('config'), 'recall': recall.get('config')}, indent=2))}</pre>",
        "</details></body></html>",
    ]
    return "\n".join(parts) + "\n"


def age_effect_figure(effect: dict[str, Any], predicted: dict[str, list[float]]) -> str:
    """The paper's figure 4 as bars: the share of training watches by the item's age at the
    watch beside each model's predicted share (report.json's example_age_effect)."""
    caption = ("Share of watches by the item's age (days since its first watch in the log) at the time of the "
               "example: the training examples' "
               f"labels ({effect['empirical_examples']:,} examples) and the softmax mass the model gives each "
               f"age ({effect['predicted_examples']:,} examples, the tower at the example's own age). Without "
               "example age a model predicts the window's average popularity at every instant, mass on items "
               "not in the log yet included.")
    return figure(bar_chart(effect["buckets"], {"training watches": effect["empirical"], **predicted}, "share"),
                   caption)


def _ann(index: dict[str, Any]) -> str:
    return "".join(f", {html.escape(k)} {v:.3f} against exact search" for k, v in index.items()
                   if k.startswith("ann_recall@"))


def _baseline_settings(report: dict[str, Any]) -> str:
    """A line naming the tuned baselines' settings and where they were chosen ("" for a
    report from before they were)."""
    how = report.get("baseline_settings")
    knn, als = report["baselines"].get("item_knn", {}), report["baselines"].get("als", {})
    neighbourhood = f" with up to {knn['neighbours']} neighbours each" if "neighbours" in knn else ""
    chosen = ([f"item_knn scores the last {knn['recent']} watches{neighbourhood}"] if "recent" in knn else []) + (
        [f"als has rank {als['rank']}, regParam {als['reg_param']:g}, alpha {als['alpha']:g} "
         f"({als['max_iter']} iterations)"] if "rank" in als else [])
    if how is None or not chosen:
        return ""
    if how["chosen_on"] == "validation":
        users = (f"a seeded sample of {how['validation_users']:,} of {how['validation_sample_of']:,} users"
                 if "validation_sample_of" in how else f"{how['validation_users']:,} users")
        where = (f"chosen by {how['metric'].upper()} on the validation split (the last training watch of "
                 f"{users}), never on these test targets")
    else:
        where = "fixed defaults: this run's prep has no validation split (prep.validation=false, or an older prep)"
    return f'<p class="sub">The baselines\' settings, {html.escape(where)}: {"; ".join(chosen)}.</p>'


def _channels(channels: dict[str, Any] | None) -> str:
    """The recall channels: each alone and the merge on the validation users the weights were
    chosen on, the weights, and each channel's share of the table's slots ("" when the
    lists are the model's alone)."""
    if not channels or not channels.get("validation_users") or "merged" not in channels:
        return ""  # the model's lists alone, or a recall stage from before both metrics were kept
    chosen = channels["chosen"]
    metrics = list(channels["merged"])  # HR@50 and NDCG@50, the second chose the weights
    cells = lambda measured: "".join(f"<td>{measured[m]:.4f}</td>" for m in metrics)  # noqa: E731
    rows = "".join(f"<tr><td>{html.escape(name)} alone</td>{cells(measured)}<td></td><td></td></tr>"
                   for name, measured in channels["alone"].items())
    slots = channels.get("slots", {})
    rows += "".join(
        f"<tr><td>{html.escape(name)}</td>{'<td></td>' * len(metrics)}<td>{weight:g}</td>"
        f"<td>{slots.get(name, 0):.1%}</td></tr>"
        for name, weight in chosen["weights"].items())
    header = "".join(f"<th>validation {html.escape(m.upper())}</th>" for m in metrics)
    return (f"<h2>Recall channels</h2><table><tr><th>channel</th>{header}"
            f"<th>weight</th><th>share of slots</th></tr>{rows}<tr><td>merged</td>{cells(channels['merged'])}"
            f"<td></td><td></td></tr></table>"
            f'<p class="sub">Each list merges the channels by weighted reciprocal-rank fusion (rank offset '
            f'{chosen["offset"]}), the weights chosen by {html.escape(channels["metric"].upper())} on '
            f'{channels["validation_users"]:,} users of the validation split, never on these test targets; the '
            "metrics above are the merged lists'.</p>")


def row_name(name: str, metrics: dict[str, Any], users: int) -> str:
    """A row's name in the metrics tables, with "(sample of N users)" when it was scored on
    fewer users than the report's (item-kNN and ALS on a large log)."""
    scored = metrics.get("users", users)
    return f"{name} (sample of {scored:,} users)" if scored < users else name


def _metrics_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    columns = [m for m in TABLE_METRICS if m in rows[0][1]]
    out = ["<table><tr><th></th>" + "".join(f"<th>{html.escape(m)}</th>" for m in columns) + "</tr>"]
    for name, metrics in rows:
        cells = []
        for m in columns:
            if m not in metrics:
                cells.append("<td>–</td>")
                continue
            ci = metrics.get(f"{m}_ci95")
            interval = f'<br><span class="ci">[{ci[0]:.4f}, {ci[1]:.4f}]</span>' if ci else ""
            cells.append(f"<td>{metrics[m]:.4f}{interval}</td>")
        out.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}</tr>")
    return "".join(out) + "</table>"


def _key_values(values: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_number(v)}</td></tr>" for k, v in values.items()
                   if v is not None)
    return f"<table>{rows}</table>"


def _number(value: Any) -> str:
    return f"{value:,.0f}" if isinstance(value, (int, float)) else html.escape(str(value))


def figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [low, high]."""
    if high <= low:
        high = low + 1.0
    step = 10 ** math.floor(math.log10((high - low) / count))
    for multiple in (1, 2, 5, 10):
        if (high - low) / (step * multiple) <= count:
            step *= multiple
            break
    first = math.floor(low / step) * step
    return [round(first + i * step, 10) for i in range(int(math.ceil((high - first) / step)) + 1)]


def _frame(x_label: str, y_label: str, y_ticks: list[float], y_of) -> list[str]:
    """The SVG's opening, axes, y grid and labels."""
    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="system-ui, sans-serif" font-size="11">',
           f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - 10}" y2="{HEIGHT - MARGIN}" stroke="#59636e"/>',
           f'<line x1="{MARGIN}" y1="10" x2="{MARGIN}" y2="{HEIGHT - MARGIN}" stroke="#59636e"/>']
    for tick in y_ticks:
        y = y_of(tick)
        out.append(f'<line x1="{MARGIN}" y1="{y:.1f}" x2="{WIDTH - 10}" y2="{y:.1f}" stroke="#eaeef2"/>')
        out.append(f'<text x="{MARGIN - 4}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
    if x_label:
        out.append(f'<text x="{(WIDTH + MARGIN) / 2:.0f}" y="{HEIGHT - 8}" text-anchor="middle">{e(x_label)}</text>')
    out.append(f'<text x="12" y="{(HEIGHT - MARGIN) / 2:.0f}" text-anchor="middle" '
               f'transform="rotate(-90 12 {(HEIGHT - MARGIN) / 2:.0f})">{e(y_label)}</text>')
    return out


def _legend(names: list[str]) -> list[str]:
    out = []
    for i, name in enumerate(names):
        x = MARGIN + 10 + (i % 3) * 130
        y = 18 + (i // 3) * 14
        out.append(f'<rect x="{x}" y="{y - 8}" width="10" height="10" fill="{SERIES_COLOURS[i % len(SERIES_COLOURS)]}"/>')
        out.append(f'<text x="{x + 14}" y="{y + 1}">{html.escape(name)}</text>')
    return out


def line_chart(series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str, log_x: bool = False) -> str:
    """An SVG line chart, one polyline with dots per series, y from 0 (or the data's low end
    when it is far from 0, as a loss is)."""
    points = [p for values in series.values() for p in values]
    if not points:
        return ""
    fx = (lambda v: math.log10(v)) if log_x else float
    xs = [fx(x) for x, _ in points]
    ys = [y for _, y in points]
    low = 0.0 if min(ys) >= 0 and min(ys) < 0.5 * max(ys) else min(ys)
    y_ticks = _ticks(low, max(ys) * 1.08 if max(ys) > 0 else 1.0)
    x_lo, x_hi = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y_lo, y_hi = y_ticks[0], y_ticks[-1]

    def x_of(v: float) -> float:
        return MARGIN + 10 + (fx(v) - x_lo) / (x_hi - x_lo) * (WIDTH - MARGIN - 30)

    def y_of(v: float) -> float:
        return HEIGHT - MARGIN - (v - y_lo) / (y_hi - y_lo) * (HEIGHT - MARGIN - 40)

    out = _frame(x_label, y_label, y_ticks, y_of)
    for x in sorted({x for x, _ in points}):
        out.append(f'<text x="{x_of(x):.1f}" y="{HEIGHT - MARGIN + 14}" text-anchor="middle">{x:g}</text>')
    for i, (name, values) in enumerate(series.items()):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        coords = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y in values)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}">'
                   f"<title>{html.escape(name)}</title></polyline>")
        out += [f'<circle cx="{x_of(x):.1f}" cy="{y_of(y):.1f}" r="3" fill="{colour}"><title>{html.escape(name)} '
                f"{x:g}: {y:.4f}</title></circle>" for x, y in values]
    return "".join(out + _legend(list(series)) + ["</svg>"])


def bar_chart(labels: list[str], series: dict[str, list[float]], y_label: str) -> str:
    """An SVG grouped bar chart: one group per label (slanted under the axis, so the chart
    has no x title: its caption says what the groups are), one bar per series."""
    top = max((v for values in series.values() for v in values), default=0.0)
    y_ticks = _ticks(0.0, top * 1.1 if top > 0 else 1.0)
    group = (WIDTH - MARGIN - 20) / max(len(labels), 1)
    bar = group * 0.8 / max(len(series), 1)

    def y_of(v: float) -> float:
        return HEIGHT - MARGIN - v / y_ticks[-1] * (HEIGHT - MARGIN - 40)

    out = _frame("", y_label, y_ticks, y_of)
    for g, label in enumerate(labels):
        x0 = MARGIN + 5 + g * group
        out.append(f'<text x="{x0 + group / 2:.1f}" y="{HEIGHT - MARGIN + 12}" text-anchor="end" font-size="9" '
                   f'transform="rotate(-35 {x0 + group / 2:.1f} {HEIGHT - MARGIN + 12})">{html.escape(label)}</text>')
        for i, (name, values) in enumerate(series.items()):
            y = y_of(values[g])
            out.append(f'<rect x="{x0 + i * bar:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                       f'height="{HEIGHT - MARGIN - y:.1f}" fill="{SERIES_COLOURS[i % len(SERIES_COLOURS)]}">'
                       f"<title>{html.escape(name)} {html.escape(label)}: {values[g]:.3f}</title></rect>")
    return "".join(out + _legend(list(series)) + ["</svg>"])
