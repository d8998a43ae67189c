"""Per-epoch validation ranks each sampled user's validation item against the whole corpus,
and early stopping keeps the best epoch."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from ray_train.data import Widths
from ray_train.model import ModelSpec, YouTubeDNN
from ray_train.loop import _should_stop, best_epoch
from ray_train.validation import ValidationSet
from core.contract import VALID_TARGETS

ITEMS = 100
WIDTHS = Widths(history_len=3, max_search_tokens=0, num_categoricals=0, num_continuous=0)

# user: (validation item index, items watched before it)
USERS = {
    "a": (30, []),  # 29 better items: rank 29
    "b": (60, list(range(1, 21))),  # 59 better, 20 of them watched: rank 39
    "c": (70, [1]),  # rank 68
    "d": (5, [5, 9]),  # already watched: never recommended
    "e": (99, [3]),  # rank 97
}


@pytest.fixture
def prep_dir(tmp_path):
    valid = pa.table(
        {
            "user_id": list(USERS),
            "item_id": [f"item-{t}" for t, _ in USERS.values()],
            "item_index": [t for t, _ in USERS.values()],
            "ts": [0] * len(USERS),
            "history": [(w + [0, 0, 0])[:3] for _, w in USERS.values()],
            "history_length": [min(len(w), 3) for _, w in USERS.values()],
            "search_tokens": [[] for _ in USERS],
            "demographics": [[] for _ in USERS],
            "continuous": [[] for _ in USERS],
            "watched": [w for _, w in USERS.values()],
        },
        schema=VALID_TARGETS,
    )
    (tmp_path / "valid").mkdir()
    pq.write_table(valid, tmp_path / "valid" / "part-0.parquet")
    # the test targets must never be read: a folder of targets every model would hit
    (tmp_path / "eval").mkdir()
    pq.write_table(pa.table({"user_id": list(USERS), "item_index": pa.array([1] * len(USERS), pa.int32())}),
                   tmp_path / "eval" / "part-0.parquet")
    return str(tmp_path)


def ranked_by_bias() -> YouTubeDNN:
    """Item vectors 0 and bias -i: item 1 scores best, whatever the user vector."""
    net = YouTubeDNN(ModelSpec(num_items=ITEMS + 1, categorical_sizes=(), embedding_dim=4, hidden_layers=(4,)))
    with torch.no_grad():
        net.item_output.weight.zero_()
        net.item_bias.weight.copy_(-torch.arange(ITEMS + 1, dtype=torch.float32).unsqueeze(1))
    return net


@pytest.mark.parametrize("k, expected", [(50, 2 / 5), (30, 1 / 5), (40, 2 / 5), (69, 3 / 5), (98, 4 / 5)])
def test_hit_rate_counts_ranks_below_k_without_watched_items(prep_dir, k, expected):
    validation = ValidationSet.load(prep_dir, WIDTHS, users=10, seed=0)
    assert len(validation) == 5
    assert validation.hit_rate(ranked_by_bias(), torch.device("cpu"), k=k) == pytest.approx(expected)


def test_the_sample_is_seeded_and_bounded(prep_dir):
    first = ValidationSet.load(prep_dir, WIDTHS, users=3, seed=1)
    again = ValidationSet.load(prep_dir, WIDTHS, users=3, seed=1)
    assert len(first) == 3 and torch.equal(first.targets, again.targets)
    assert ValidationSet.load(prep_dir, WIDTHS, users=0, seed=1) is None


def test_without_validation_targets_there_is_no_validation(tmp_path):
    assert ValidationSet.load(str(tmp_path), WIDTHS, users=10, seed=0) is None


def epochs(*values):
    return [{"epoch": e + 1, "val_hr@50": v} for e, v in enumerate(values)]


def test_the_best_epoch_is_the_first_with_the_highest_validation_hit_rate():
    assert best_epoch(epochs(0.1, 0.3, 0.2, 0.3)) == 2
    assert best_epoch(epochs(None, None)) == 2  # nothing validated: the last


@pytest.mark.parametrize("values, patience, stop", [
    ((0.1, 0.3, 0.2, 0.25), 2, True),  # two epochs since the best
    ((0.1, 0.3, 0.2), 2, False),
    ((0.1, 0.3, 0.2, 0.3), 2, True),  # equal is no improvement
    ((0.3, 0.2, 0.1, 0.0), 0, False),  # patience 0: every epoch to the cap
    ((None, None, None), 1, False),  # no validation, no early stop
])
def test_training_stops_after_patience_epochs_without_improvement(values, patience, stop):
    assert _should_stop(epochs(*values), patience) == stop
