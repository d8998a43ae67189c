"""The model and the user tower that `spec.model` names.

Every model scores items the same way: `item_output(ids)` gives their vectors, `item_bias(ids)`
their [n, 1] biases, `item_table()` both for every item; the user vector is the forward's
output, and `user_tower` is what serving exports and runs.
- youtube_dnn: the paper's tower against output item vectors with bias (model.py)
- sequence: causal self-attention over the watch history, scored the same way (sequence.py)
- two_tower, dssm: a user tower and an item tower, scored by cosine (two_tower.py)
"""

from __future__ import annotations

from torch import nn

from ray_train.model import ModelSpec, UserTower, YouTubeDNN
from ray_train.sequence import SequenceTower
from ray_train.two_tower import TwoTower


def has_item_tower(spec: ModelSpec) -> bool:
    """Whether the model's item vectors come from an item tower over prep's item features
    (two_tower.load_item_features, set on the model before training or scoring)."""
    return spec.model in ("two_tower", "dssm")


def build_user_tower(spec: ModelSpec, sparse: bool = False) -> nn.Module:
    """The user tower alone (what serving loads from user_tower.pt)."""
    return SequenceTower(spec, sparse) if spec.model == "sequence" else UserTower(spec, sparse)


def build_model(spec: ModelSpec, sparse: bool = False) -> nn.Module:
    if spec.model in ("youtube_dnn", "sequence"):
        return YouTubeDNN(spec, sparse, build_user_tower(spec, sparse))
    return TwoTower(spec, sparse)
