"""Export a trained checkpoint for serving: the user tower as a state_dict plus its spec, and
the item vectors as Parquet. Nothing is pickled: serving loads with weights_only=True."""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ray_train.checkpoint import CHECKPOINT_BEST, CHECKPOINT_MODEL, CHECKPOINT_STATE
from ray_train.model import ModelSpec
from ray_train.models import build_model, build_user_tower
from core import storage
from core.contract import ITEM_EMBEDDING_GROUP_ROWS, ITEM_EMBEDDINGS
from core.layout import ModelLayout, PrepLayout



def export_model(checkpoint_dir: str, prep_dir: str, model_dir: str) -> dict[str, Any]:
    """Write user_tower.pt, model_spec.json and item_embeddings.parquet into model_dir."""
    out = ModelLayout(model_dir)
    with open(os.path.join(checkpoint_dir, CHECKPOINT_STATE)) as f:
        state = json.load(f)
    spec = ModelSpec.from_dict(state["spec"])
    model = build_model(spec)
    # the best validated epoch's weights (early stopping), which may predate the latest
    best = state.get("best_epoch", state["epoch"]) != state["epoch"]
    weights = os.path.join(checkpoint_dir, CHECKPOINT_BEST if best else CHECKPOINT_MODEL)
    model.load_state_dict(torch.load(weights, weights_only=True))
    model_version = _version(weights)

    storage.write_bytes(out.user_tower, _state_dict_bytes(model.user_tower))
    storage.write_text(
        out.spec,
        json.dumps({"spec": spec.to_dict(), "model_version": model_version, "train": state["train"]}, indent=2),
    )

    vocab = pq.read_table(PrepLayout(prep_dir).item_vocab, columns=["item_id", "index"])
    index = vocab.column("index").to_numpy()
    with torch.no_grad():
        all_vectors, all_bias = model.item_table()
        vectors = all_vectors[torch.from_numpy(index.astype(np.int64))].numpy()
        bias = all_bias[torch.from_numpy(index.astype(np.int64))].numpy()
    dim = vectors.shape[1]
    table = pa.table(
        {
            "item_id": vocab.column("item_id"),
            "index": pa.array(index, pa.int32()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim).cast(
                pa.list_(pa.float32())
            ),
            "bias": pa.array(bias, pa.float32()),
        },
        schema=ITEM_EMBEDDINGS,
    )
    fs, local = storage.filesystem(out.item_embeddings)
    pq.write_table(table, local, filesystem=fs, row_group_size=ITEM_EMBEDDING_GROUP_ROWS)
    return {"model_version": model_version, "epochs": state["epochs"],
            "best_epoch": state.get("best_epoch", state["epoch"])}


def load_user_tower(model_dir: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The exported user tower in eval mode, and model_spec.json's content."""
    model = ModelLayout(model_dir)
    meta = json.loads(storage.read_text(model.spec))
    tower = build_user_tower(ModelSpec.from_dict(meta["spec"]))
    raw = io.BytesIO(storage.read_bytes(model.user_tower))
    state = torch.load(raw, weights_only=True, map_location="cpu")
    tower.load_state_dict(state)
    tower.eval()
    return tower, meta


def _state_dict_bytes(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getvalue()


def _version(path: str) -> str:
    """A model version named by its weights' content: the same weights, the same version."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]
