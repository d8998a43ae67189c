"""The ablation grid: variants read from a file, resolved over the base, tabulated."""

from __future__ import annotations

import pytest

from watchnext.ablate import BASE, markdown, read_grid, resolve, total_variation
from core.config import Config, ConfigError


def test_grid_variants_resolve_over_the_base_and_keep_their_order(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("variants:\n  age_off: {train.example_age: false}\n  deep: {train.hidden_layers: [512, 256, 64]}\n"
                    "  no_cap: {prep.max_examples_per_user: 0}\n")
    variants = read_grid(str(grid))
    assert list(variants) == [BASE, "age_off", "deep", "no_cap"]
    base = Config()
    deep = resolve(base, variants["deep"], "deep")
    assert deep.train.hidden_layers == (512, 256, 64) and deep.prep == base.prep
    assert resolve(base, variants["no_cap"], "no_cap").prep.max_examples_per_user == 0
    assert resolve(base, {"train.hidden_layers": [256, 64]}, "depth_1") == base  # listed as the base, not rerun


@pytest.mark.parametrize("text, message", [
    ("variants: {a: {train.epochs: 0}}", "variant 'a'"),
    ("variants: {a: {trian.epochs: 2}}", "unknown section 'trian'"),
    ("variants: {a: {train.epoch: 2}}", "train.epoch: unknown key"),
    ("variants: {a: {epochs: 2}}", "section.key"),
    ("variants: {'a b': {}}", "plain word"),
    ("[1, 2]", "expected a mapping"),
])
def test_a_bad_grid_is_an_error_naming_the_variant_or_key(tmp_path, text, message):
    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    with pytest.raises(ConfigError, match=message):
        variants = read_grid(str(grid))
        for name, overrides in variants.items():
            resolve(Config(), overrides, name)


def test_total_variation_is_the_mass_in_the_wrong_buckets():
    assert total_variation([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0.0
    assert total_variation([1.0, 0.0], [0.0, 1.0]) == 1.0
    assert total_variation([0.2, 0.8], [0.5, 0.5]) == pytest.approx(0.3)


def test_the_table_has_a_row_per_variant_with_intervals_or_spreads():
    summary = {"variants": {
        "base": {"overrides": {}, "hr@50": 0.4, "hr@50_ci95": [0.38, 0.42], "ndcg@10": 0.1, "hr@10": 0.2,
                 "coverage": 0.9, "examples_per_second": 40000.0, "age_error": 0.05},
        "deep": {"overrides": {"train.hidden_layers": [512, 64]}, "hr@50": 0.41, "hr@50_sd": 0.01, "ndcg@10": 0.1,
                 "ndcg@10_sd": 0.002, "hr@10": 0.2, "coverage": 0.8, "examples_per_second": 30000.0},
        "depth_1": {"overrides": {"train.hidden_layers": [256, 64]}, "same_as": "base"},
    }}
    lines = markdown(summary).splitlines()
    assert lines[0].startswith("| variant | overrides | HR@50 | NDCG@10 |")
    assert lines[2].startswith("| base | (base) | 0.4000 [0.380, 0.420] | 0.1000 | 0.2000 | 0.900 | – | 0.050 | 40,000 |")
    assert "| deep | train.hidden_layers=[512, 64] | 0.4100 ± 0.0100 | 0.1000 ± 0.0020 |" in lines[3]
    assert lines[4].startswith("| depth_1 | train.hidden_layers=[256, 64] | = base |")
