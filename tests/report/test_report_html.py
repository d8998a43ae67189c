"""The HTML report: self-contained, every section drawn from report.json and the run's files."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from report.page import bar_chart, line_chart, render


class Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data):
        self.text.append(data)


def metrics(hr50, ndcg10, ci=True):
    m = {"hr@10": hr50 / 2, "hr@50": hr50, "hr@100": hr50 * 1.3, "ndcg@10": ndcg10, "ndcg@50": ndcg10 * 1.4,
         "mrr": ndcg10 * 0.8}
    if ci:
        m.update({"hr@50_ci95": [hr50 - 0.02, hr50 + 0.02], "ndcg@10_ci95": [ndcg10 - 0.01, ndcg10 + 0.01]})
    return m


REPORT = {
    "dataset": "<ml & co>", "users": 943, "model_version": "v1", "top_k": 100, "recent_days": 7.0,
    "index": {"type": "flat", "shards": 1, "items": 1681},
    "model": {**metrics(0.45, 0.09), "coverage": 0.31, "mean_popularity": 120.5, "catalog_mean_popularity": 48.2,
              "popularity_distribution": {"buckets": ["0", "1", "2-3"], "recommended": [0.0, 0.25, 0.75],
                                          "catalog": [0.1, 0.5, 0.4]},
              "fresh_share": 0.12, "catalog_fresh_share": 0.05},
    "baselines": {"most_popular": metrics(0.19, 0.03), "item_knn": metrics(0.40, 0.087)},
    "example_age_effect": {"buckets": ["not yet", "<1", "1-2", ">=2"], "empirical": [0.0, 0.5, 0.3, 0.2],
                           "predicted": [0.05, 0.45, 0.3, 0.2], "empirical_examples": 26244,
                           "predicted_examples": 2000, "example_age": True},
}
TRAINING = {"device": "cpu", "workers": 2, "precision": "bf16", "examples_per_second": 23000.0,
            "epochs": [{"epoch": 1, "loss": 7.1, "val_hr@50": 0.2}, {"epoch": 2, "loss": 6.5, "val_hr@50": 0.3}]}
PREP = {"counts": {"events_in": 100000, "examples": 26244, "users": 943, "items": 1681}, "config": {"seed": 42}}
RECALL = {"users_per_second": 5000.0, "config": {"top_k": 100}}


def test_the_page_is_self_contained_and_has_every_section():
    page = render(REPORT, TRAINING, PREP, RECALL)
    parsed = Elements()
    parsed.feed(page)
    assert "script" not in parsed.tags and "img" not in parsed.tags and "link" not in parsed.tags
    assert not [v for k, v in parsed.attrs if k in ("src", "href")]
    assert parsed.tags.count("svg") == 5  # HR@K, loss, validation HR@50, popularity, example age
    text = " ".join(parsed.text)
    for expected in ("<ml & co>", "most_popular", "item_knn", "0.4500", "[0.4300, 0.4700]", "[0.0800, 0.1000]",
                     "12.0% of the slots", "5.0% of the catalog", "26,244", "2 epochs on cpu x2 (bf16)",
                     "model (example age on)", "training watches", "(26,244 examples)"):
        assert expected in text, expected
    assert "&lt;ml &amp; co&gt;" in page  # escaped in the markup


def test_without_training_metrics_upload_times_or_first_watches_those_parts_are_left_out():
    model = {k: v for k, v in REPORT["model"].items() if not k.endswith("fresh_share")}
    report = {k: v for k, v in REPORT.items() if k != "example_age_effect"}
    page = render({**report, "model": model}, None, PREP, RECALL)
    assert page.count("<svg") == 2 and "Training" not in page and "Fresh items" not in page
    assert "Example age" not in page


def test_the_baselines_settings_are_named_with_where_they_were_chosen():
    baselines = {"item_knn": {**metrics(0.40, 0.087), "recent": 5, "neighbours": 100},
                 "als": {**metrics(0.42, 0.09), "rank": 64, "reg_param": 0.1, "alpha": 10.0, "max_iter": 10}}
    tuned = {**REPORT, "baselines": baselines,
             "baseline_settings": {"chosen_on": "validation", "validation_users": 940, "metric": "hr@50"}}
    page = render(tuned, None, PREP, RECALL)
    assert "HR@50 on the validation split (the last training watch of 940 users)" in page
    assert ("item_knn scores the last 5 watches with up to 100 neighbours each; "
            "als has rank 64, regParam 0.1, alpha 10 (10 iterations)") in page
    defaults = {**tuned, "baseline_settings": {"chosen_on": "defaults", "validation_users": 0, "metric": "hr@50"}}
    assert "fixed defaults: this run&#x27;s prep has no validation split" in render(defaults, None, PREP, RECALL)
    assert "settings" not in render(REPORT, None, PREP, RECALL)  # a report from before there were any


def test_a_line_chart_places_each_point_on_its_value():
    svg = line_chart({"a": [(10, 0.0), (100, 0.5)]}, "K", "HR", log_x=True)
    (x0, y0), (x1, y1) = [(float(x), float(y)) for x, y in re.findall(r'<circle cx="([^"]+)" cy="([^"]+)"', svg)]
    assert x0 < x1 and y1 < y0  # K grows to the right, 0.5 is drawn above 0


def test_bars_are_as_tall_as_their_shares():
    svg = bar_chart(["x", "y"], {"s": [0.2, 0.4]}, "share")
    heights = [float(h) for h in re.findall(r'height="([^"]+)" fill="[^"]+"><title>s ', svg)]
    assert len(heights) == 2 and abs(heights[1] - 2 * heights[0]) < 0.2


def test_the_recall_channels_show_each_alone_the_merge_and_their_slots():
    channels = {"validation_users": 900, "metric": "ndcg@50",
                "chosen": {"weights": {"model": 1.0, "item2item": 0.5, "popular": 0.0}, "offset": 10},
                "merged": {"hr@50": 0.56, "ndcg@50": 0.23},
                "alone": {"model": {"hr@50": 0.50, "ndcg@50": 0.20}, "item2item": {"hr@50": 0.41, "ndcg@50": 0.15},
                          "popular": {"hr@50": 0.19, "ndcg@50": 0.05}},
                "slots": {"model": 0.7, "item2item": 0.3}}
    page = render(REPORT, None, PREP, {**RECALL, "channels": channels})
    for expected in ("Recall channels", "<th>validation HR@50</th><th>validation NDCG@50</th>",
                     "item2item alone</td><td>0.4100</td><td>0.1500", "merged</td><td>0.5600</td><td>0.2300",
                     "<td>item2item</td><td></td><td></td><td>0.5</td><td>30.0%</td>", "rank offset 10",
                     "chosen by NDCG@50 on 900 users"):
        assert expected in page, expected
    assert "Recall channels" not in render(REPORT, None, PREP, RECALL)
    # a recall stage from before both metrics were kept: no channels section, and no error
    older = {**channels, "metric": "hr@50", "alone": {"model": 0.50}, "validation": [{"hr@50": 0.56}]}
    del older["merged"]
    assert "Recall channels" not in render(REPORT, None, PREP, {**RECALL, "channels": older})
