"""Per-epoch validation ranks each sampled user's held-out item against the whole corpus."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from ray_train.data import Widths
from ray_train.model import ModelSpec, YouTubeDNN
from ray_train.validation import ValidationSet
from watchnext.contract import USER_FEATURES

ITEMS = 100
WIDTHS = Widths(history_len=3, max_search_tokens=0, num_categoricals=0, num_continuous=0)

# user: (held-out item index or None, watched items)
USERS = {
    "a": (30, []),  # 29 better items: rank 29
    "b": (60, list(range(1, 21))),  # 59 better, 20 of them watched: rank 39
    "c": (70, [1]),  # rank 68
    "d": (5, [5, 9]),  # already watched: never recommended
    "e": (None, [3]),  # outside the vocabulary
}


@pytest.fixture
def prep_dir(tmp_path):
    features = pa.table(
        {
            "user_id": list(USERS),
            "history": [(w + [0, 0, 0])[:3] for _, w in USERS.values()],
            "history_length": [min(len(w), 3) for _, w in USERS.values()],
            "search_tokens": [[] for _ in USERS],
            "demographics": [[] for _ in USERS],
            "continuous": [[] for _ in USERS],
            "watched": [w for _, w in USERS.values()],
        },
        schema=USER_FEATURES,
    )
    (tmp_path / "user_features").mkdir()
    (tmp_path / "eval").mkdir()
    pq.write_table(features, tmp_path / "user_features" / "part-0.parquet")
    targets = pa.table({"user_id": list(USERS), "item_index": pa.array([t for t, _ in USERS.values()], pa.int32())})
    pq.write_table(targets, tmp_path / "eval" / "part-0.parquet")
    return str(tmp_path)


def ranked_by_bias() -> YouTubeDNN:
    """Item vectors 0 and bias -i: item 1 scores best, whatever the user vector."""
    net = YouTubeDNN(ModelSpec(num_items=ITEMS + 1, categorical_sizes=(), embedding_dim=4, hidden_layers=(4,)))
    with torch.no_grad():
        net.item_output.weight.zero_()
        net.item_bias.weight.copy_(-torch.arange(ITEMS + 1, dtype=torch.float32).unsqueeze(1))
    return net


@pytest.mark.parametrize("k, expected", [(50, 2 / 5), (30, 1 / 5), (40, 2 / 5), (69, 3 / 5)])
def test_hit_rate_counts_ranks_below_k_without_watched_items(prep_dir, k, expected):
    validation = ValidationSet.load(prep_dir, WIDTHS, users=10, seed=0)
    assert len(validation) == 5
    assert validation.hit_rate(ranked_by_bias(), torch.device("cpu"), k=k) == pytest.approx(expected)


def test_the_sample_is_seeded_and_bounded(prep_dir):
    first = ValidationSet.load(prep_dir, WIDTHS, users=3, seed=1)
    again = ValidationSet.load(prep_dir, WIDTHS, users=3, seed=1)
    assert len(first) == 3 and torch.equal(first.targets, again.targets)
    assert ValidationSet.load(prep_dir, WIDTHS, users=0, seed=1) is None
