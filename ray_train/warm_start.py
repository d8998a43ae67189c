"""Warm start: a new run's model begins from a previous run's weights (train.warm_start).

Vocabularies change between runs: new items, tokens and categorical values appear, and
without prep.previous_vocab even a known item may have moved to another index. Every
vocabulary-indexed table is therefore remapped by key: a row the previous run learnt for item
(token, value) k moves to k's index in this run; keys new to this run keep their fresh
initialization; the reserved rows below the first key (padding, the hashed OOV buckets) are
carried by position. Every other tensor is carried over when its shape is unchanged (the
towers, unless their widths changed). Nothing is unpickled: checkpoints load with
weights_only=True.
"""

from __future__ import annotations

import io
import json
import logging
import re

import pyarrow.parquet as pq
import torch

from ray_train.checkpoint import CHECKPOINT_MODEL, CHECKPOINT_STATE
from ray_train.model import ModelSpec
from ray_train.models import build_model
from core import storage
from core.layout import PrepLayout, RunLayout

log = logging.getLogger(__name__)

ITEM_TABLES = re.compile(r"(history|item_output|item_bias|item_output\.ids)\.weight$")
CATEGORY_TABLE = re.compile(r"^(user_tower\.demographics|item_output\.categories)\.(\d+)\.weight$")
TOKEN_TABLE = "user_tower.search.weight"


def vocabulary(prep_dir: str, name: str) -> dict[str, int]:
    """key -> index of prep_dir/vocab/<name> (items are keyed by item_id, the rest by value)."""
    key = "item_id" if name == "items" else "value"
    table = pq.read_table(PrepLayout(prep_dir).vocab(name), columns=[key, "index"])
    return dict(zip(table.column(key).to_pylist(), table.column("index").to_pylist()))


def remap_rows(old: torch.Tensor, new: torch.Tensor, old_keys: dict[str, int], new_keys: dict[str, int]) -> int:
    """Copy into `new` (in place) the rows of `old` for the keys both vocabularies know, and
    the reserved rows below either vocabulary's first key by position; returns the number
    of keyed rows carried."""
    reserved = min(min(old_keys.values(), default=old.shape[0]), min(new_keys.values(), default=new.shape[0]))
    new[:reserved] = old[:reserved]
    shared = [k for k in new_keys if k in old_keys]
    if shared:
        to = torch.tensor([new_keys[k] for k in shared])
        new[to] = old[torch.tensor([old_keys[k] for k in shared])]
    return len(shared)


def warm_start_state(previous_run: str, checkpoint_dir: str, prep_dir: str, spec: ModelSpec,
                     seed: int) -> dict[str, torch.Tensor]:
    """This run's initial weights: fresh ones (seeded as the workers seed theirs) with the
    previous run's learnt rows and layers carried over."""
    with open(f"{checkpoint_dir}/{CHECKPOINT_STATE}") as f:
        previous_spec = ModelSpec.from_dict(json.load(f)["spec"])
    old = torch.load(f"{checkpoint_dir}/{CHECKPOINT_MODEL}", weights_only=True)
    previous_prep = RunLayout(previous_run).prep.root
    features = {d: storage.read_manifest(d)["features"] for d in (previous_prep, prep_dir)}
    torch.manual_seed(seed)
    state = build_model(spec).state_dict()
    carried, skipped = [], []
    for name, tensor in state.items():
        vocab = _vocabulary_of(name, features[prep_dir])
        if name not in old or (vocab is None and old[name].shape != tensor.shape):
            skipped.append(name)
        elif vocab is None:
            tensor.copy_(old[name])
            carried.append(name)
        elif old[name].shape[1:] != tensor.shape[1:] or vocab != _vocabulary_of(name, features[previous_prep]):
            skipped.append(name)
        else:
            rows = remap_rows(old[name], tensor, vocabulary(previous_prep, vocab), vocabulary(prep_dir, vocab))
            carried.append(f"{name} ({rows} rows)")
    if previous_spec.model != spec.model:
        log.warning("warm start from a %s model into a %s model", previous_spec.model, spec.model)
    log.info("warm start from %s: carried %s; fresh %s", previous_run, ", ".join(carried) or "nothing",
             ", ".join(skipped) or "nothing")
    return state


def _vocabulary_of(name: str, features: dict) -> str | None:
    """The vocabulary (a prep/vocab/ name) whose indices a tensor's rows follow, or None."""
    if name.endswith(("item_categories", "item_age")):
        return None  # the item tower's feature buffers: this run's prep sets them
    if ITEM_TABLES.search(name):
        return "items"
    if name == TOKEN_TABLE:
        return "search_tokens"
    match = CATEGORY_TABLE.match(name)
    if match is None:
        return None
    position = int(match.group(2))
    if match.group(1) == "user_tower.demographics":
        return features["user_categoricals"][position]
    return f"item_{features['item_categoricals'][position]}"


def state_bytes(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()
