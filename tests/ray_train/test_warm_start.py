"""Warm start: learnt rows follow their keys into the new vocabulary; new keys start fresh."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ray_train.checkpoint import CHECKPOINT_MODEL, CHECKPOINT_STATE
from ray_train.model import ModelSpec
from ray_train.models import build_model
from ray_train.warm_start import remap_rows, warm_start_state


def test_rows_follow_their_keys_and_reserved_rows_their_position():
    old = torch.arange(4.0).unsqueeze(1).repeat(1, 2)  # row i holds i
    new = torch.full((5, 2), -1.0)
    carried = remap_rows(old, new, {"a": 1, "b": 2, "c": 3}, {"c": 1, "a": 2, "d": 3, "e": 4})
    assert carried == 2
    assert new[:, 0].tolist() == [0.0, 3.0, 1.0, -1.0, -1.0]  # padding, c, a, then d and e fresh


def _prep(root, items: list[str], genders: list[str]) -> str:
    for name, key, values, first in (("items", "item_id", items, 1), ("gender", "value", genders, 9)):
        (root / "vocab" / name).mkdir(parents=True)
        pq.write_table(pa.table({key: values, "index": pa.array(range(first, first + len(values)), pa.int32()),
                                 "count": pa.array([1] * len(values), pa.int64())}),
                       root / "vocab" / name / "part-0.parquet")
    features = {"user_categoricals": ["gender"], "item_categoricals": []}
    (root / "_manifest.json").write_text(json.dumps({"features": features}))
    return str(root)


def test_a_previous_models_rows_move_to_their_items_new_indices(tmp_path):
    old_spec = ModelSpec(num_items=4, categorical_sizes=(11,), embedding_dim=4, hidden_layers=(8, 4))
    _prep(tmp_path / "old" / "prep", ["x", "y", "z"], ["F", "M"])
    checkpoint = tmp_path / "old" / "checkpoint"
    checkpoint.mkdir()
    torch.manual_seed(1)
    old_model = build_model(old_spec)
    torch.save(old_model.state_dict(), checkpoint / CHECKPOINT_MODEL)
    (checkpoint / CHECKPOINT_STATE).write_text(json.dumps({"spec": old_spec.to_dict()}))
    # the new run ranked the items anew and saw a new item w and a new gender X
    new_prep = _prep(tmp_path / "new" / "prep", ["z", "w", "x", "y"], ["X", "M", "F"])
    new_spec = ModelSpec(num_items=5, categorical_sizes=(12,), embedding_dim=4, hidden_layers=(8, 4))
    state = warm_start_state(str(tmp_path / "old"), str(checkpoint), new_prep, new_spec, seed=3)
    old = old_model.state_dict()
    for table in ("user_tower.history.weight", "item_output.weight", "item_bias.weight"):
        assert torch.equal(state[table][1], old[table][3])  # z: 3 -> 1
        assert torch.equal(state[table][3], old[table][1])  # x: 1 -> 3
        assert torch.equal(state[table][4], old[table][2])  # y: 2 -> 4
        if table != "item_bias.weight":  # biases start at 0 either way
            assert not torch.equal(state[table][2], old[table][2])  # w is new: fresh
    genders = "user_tower.demographics.0.weight"
    assert torch.equal(state[genders][:9], old[genders][:9])  # missing and the OOV buckets
    assert torch.equal(state[genders][11], old[genders][9])  # F: 9 -> 11
    assert torch.equal(state[genders][10], old[genders][10])  # M stays at 10
    assert torch.equal(state["user_tower.mlp.0.weight"], old["user_tower.mlp.0.weight"])  # same shape: carried
    build_model(new_spec).load_state_dict(state)  # a complete state for the new model
