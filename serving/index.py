"""The FAISS index over item vectors, scoring user . vector + bias by inner product.

The output layer's bias becomes one more dimension: item [v, b] against user [u, 1], so the
index's inner product is exactly the model's logit. Index ids are row positions in
item_embeddings.parquet, whose `index` and `item_id` columns map them back.
"""

from __future__ import annotations

import faiss
import numpy as np
import pyarrow.parquet as pq

from watchnext import storage
from watchnext.contract import fixed_lists

INDEX_FILE = "items.faiss"


def item_matrix(item_embeddings_path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vectors with the bias appended [n, d + 1] float32, item indices, item ids)."""
    fs, path = storage.filesystem(item_embeddings_path)
    table = pq.read_table(path, filesystem=fs)
    dim = len(table.column("vector")[0])
    vectors = fixed_lists(table.column("vector"), dim).astype(np.float32)
    bias = table.column("bias").to_numpy().astype(np.float32)[:, None]
    return (
        np.ascontiguousarray(np.hstack([vectors, bias])),
        table.column("index").to_numpy().astype(np.int64),
        table.column("item_id").to_numpy(zero_copy_only=False),
    )


def item_keys(item_embeddings_path: str) -> tuple[np.ndarray, np.ndarray]:
    """(item indices, item ids) of the index rows, without reading the vectors."""
    fs, path = storage.filesystem(item_embeddings_path)
    table = pq.read_table(path, filesystem=fs, columns=["index", "item_id"])
    return table.column("index").to_numpy().astype(np.int64), table.column("item_id").to_numpy(zero_copy_only=False)


def user_queries(user_vectors: np.ndarray) -> np.ndarray:
    """[u, 1]: the 1 multiplies the item's bias dimension."""
    ones = np.ones((len(user_vectors), 1), dtype=np.float32)
    return np.ascontiguousarray(np.hstack([user_vectors.astype(np.float32), ones]))


def build_flat_index(vectors: np.ndarray) -> faiss.Index:
    """Exact inner-product search over every item."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index


def save_index(index: faiss.Index, path: str) -> None:
    storage.write_bytes(path, faiss.serialize_index(index).tobytes())


def load_index(path: str) -> faiss.Index:
    if not storage.exists(path):
        raise FileNotFoundError(f"FAISS index {path} is missing; rerun `watchnext recall`")
    return faiss.deserialize_index(np.frombuffer(storage.read_bytes(path), dtype=np.uint8))
