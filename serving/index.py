"""Sharded FAISS indexes over item vectors, scoring user . vector + bias by inner product.

The output layer's bias becomes one more dimension: item [v, b] against user [u, 1], so the
index's inner product is exactly the model's logit. Index ids are row positions in
item_embeddings.parquet, whose `index` and `item_id` columns map them back.

The rows are split into `shards` contiguous ranges, each with its own index of one type:

- flat: exact search, every item scored (a blocked GEMM and a heap per query);
- hnsw: a navigable small-world graph (Malkov & Yashunin 2018), `ef_search` candidates;
- ivf_flat: `nlist` k-means cells trained on a sample, the `nprobe` best cells scanned;
- ivf_pq: the same cells with each vector product-quantized to `pq_m` bytes (the memory-bound
  choice; the dimension is zero-padded to a multiple of `pq_m`, which leaves every distance
  as it was);
- auto: flat up to AUTO_FLAT_MAX_ITEMS, then ivf_flat while the vectors fit
  `index_memory_gb`, ivf_pq beyond it.

The approximate types search inner products as nearest neighbours in L2 (Bachrach et al.
2014): an item x becomes [x, sqrt(M^2 - |x|^2)] with M the largest item norm, a query q
becomes [q, 0], and |q' - x'|^2 = |q|^2 + M^2 - 2 q.x ranks items exactly as q.x does, while
k-means cells and graph neighbours in L2 partition the items far better than inner-product
ones (on a trained model's vectors IVF-Flat's recall@100 at nprobe 32 went from 0.980 to
0.997, BENCHMARKS.md). Scores come back as inner products.

An approximate index's search width (nprobe, ef_search) is chosen when it is built
(`tune_search`): from the configured value up, doubling, the least width whose recall@k
against an exact scan of a sample of real user queries reaches the target; the manifest
keeps what was tried.

A search asks every shard for its own top k and merges them: each shard's top k holds every
item of the global top k that lives in that shard, so the merge is exact whenever the shards'
searches are. The shards are written with a manifest (type, parameters, item count, model
version, and a SHA-256 per shard) after them; loading checks every checksum.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import asdict, dataclass

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core import storage
from core.contract import ITEM_EMBEDDING_GROUP_ROWS, fixed_lists

INDEX_TYPES = ("flat", "hnsw", "ivf_flat", "ivf_pq")
INDEX_MANIFEST = "index.json"
AUTO_FLAT_MAX_ITEMS = 200_000  # below this a flat scan is fast enough and exact
HNSW_MAX_EF_SEARCH = 4096  # beyond this a graph search costs about what a flat scan of 1M items does
MIN_POINTS_PER_CELL = 39  # FAISS's k-means wants at least 39 training points per centroid


def item_matrix(item_embeddings_path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vectors with the bias appended [n, d + 1] float32, item indices, item ids), read a
    row group at a time into the arrays returned: decoding the file whole, then copying,
    took several times the vectors' own memory."""
    fs, path = storage.filesystem(item_embeddings_path)
    parquet = pq.ParquetFile(path, filesystem=fs)
    rows = parquet.metadata.num_rows
    vectors, index, ids, start = None, np.empty(rows, dtype=np.int64), [], 0
    for batch in parquet.iter_batches(batch_size=ITEM_EMBEDDING_GROUP_ROWS):
        if vectors is None:
            dim = len(batch.column("vector")[0])
            vectors = np.empty((rows, dim + 1), dtype=np.float32)
        end = start + batch.num_rows
        vectors[start:end, :dim] = fixed_lists(batch.column("vector"), dim)
        vectors[start:end, dim] = batch.column("bias").to_numpy()
        index[start:end] = batch.column("index").to_numpy()
        ids.append(batch.column("item_id"))
        start = end
    if vectors is None:
        raise ValueError(f"{item_embeddings_path} holds no item vectors")
    return vectors, index, pa.chunked_array(ids).to_numpy()


def item_keys(item_embeddings_path: str) -> tuple[np.ndarray, np.ndarray]:
    """(item indices, item ids) of the index rows, without reading the vectors."""
    fs, path = storage.filesystem(item_embeddings_path)
    table = pq.read_table(path, filesystem=fs, columns=["index", "item_id"])
    return table.column("index").to_numpy().astype(np.int64), table.column("item_id").to_numpy(zero_copy_only=False)


def user_queries(user_vectors: np.ndarray) -> np.ndarray:
    """[u, 1]: the 1 multiplies the item's bias dimension."""
    ones = np.ones((len(user_vectors), 1), dtype=np.float32)
    return np.ascontiguousarray(np.hstack([user_vectors.astype(np.float32), ones]))


def normalized(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero): inner product becomes cosine."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


@dataclass(frozen=True)
class IndexParams:
    """An index type and the parameters it is built and searched with."""

    kind: str  # one of INDEX_TYPES
    nlist: int = 0  # ivf_*: k-means cells per shard
    nprobe: int = 1  # ivf_*: cells scanned per query
    pq_m: int = 16  # ivf_pq: bytes per vector
    hnsw_m: int = 32  # hnsw: graph neighbours per node
    ef_construction: int = 200  # hnsw: candidates while building
    ef_search: int = 128  # hnsw: candidates while searching
    train_sample: int = 100_000  # ivf_*: k-means runs on this many rows at most

    @classmethod
    def resolve(cls, kind: str, num_items: int, dim: int, memory_gb: float, **params) -> "IndexParams":
        """`kind` with "auto" decided and nlist (0 = 4 sqrt(n), FAISS's rule of thumb) set."""
        if kind == "auto":
            if num_items <= AUTO_FLAT_MAX_ITEMS:
                kind = "flat"
            else:
                kind = "ivf_flat" if num_items * dim * 4 <= memory_gb * 2**30 else "ivf_pq"
        if kind not in INDEX_TYPES:
            raise ValueError(f"unknown index type {kind!r}; choose one of {', '.join(INDEX_TYPES)} or auto")
        resolved = cls(kind=kind, **params)
        if kind.startswith("ivf") and resolved.nlist == 0:
            resolved = cls(**{**asdict(resolved), "nlist": max(1, int(4 * math.sqrt(num_items)))})
        return resolved


def build_index(vectors: np.ndarray, params: IndexParams, seed: int = 0, max_norm2: float | None = None) -> faiss.Index:
    """One shard's index over `vectors`, trained on a seeded sample: inner product for flat,
    L2 over the augmented vectors (max_norm2 = M^2, by default this shard's) for the rest."""
    if params.kind == "flat":
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return index
    vectors = _pad(augment(vectors, _max_norm2(vectors) if max_norm2 is None else max_norm2), params)
    n, dim = vectors.shape
    if params.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params.hnsw_m)
        index.hnsw.efConstruction = params.ef_construction
    else:
        nlist = max(1, min(params.nlist, n // MIN_POINTS_PER_CELL))  # a small shard gets fewer cells
        quantizer = faiss.IndexFlatL2(dim)
        if params.kind == "ivf_flat":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist)
        else:
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, params.pq_m, 8)
        index.own_fields = True  # the quantizer lives as long as the index (after Python's ref goes)
        quantizer.this.disown()
        sample = max(params.train_sample, nlist * MIN_POINTS_PER_CELL)
        rows = np.random.default_rng(seed).choice(n, sample, replace=False) if n > sample else np.arange(n)
        index.cp.seed = seed
        index.train(vectors[np.sort(rows)])
    index.add(vectors)
    return index


def augment(vectors: np.ndarray, max_norm2: float) -> np.ndarray:
    """Items [x, sqrt(M^2 - |x|^2)]: their L2 distance to a query [q, 0] ranks them by q.x."""
    slack = np.sqrt(np.maximum(max_norm2 - (vectors.astype(np.float64) ** 2).sum(1), 0.0))
    return np.ascontiguousarray(np.hstack([vectors, slack[:, None]]), dtype=np.float32)


def _max_norm2(vectors: np.ndarray) -> float:
    return float((vectors.astype(np.float64) ** 2).sum(1).max(initial=0.0))


def _padded_dim(dim: int, params: IndexParams) -> int:
    return dim if params.kind != "ivf_pq" else -(-dim // params.pq_m) * params.pq_m


def _pad(vectors: np.ndarray, params: IndexParams) -> np.ndarray:
    """Zero columns up to the index's dimension (ivf_pq's sub-vectors need it to divide)."""
    missing = _padded_dim(vectors.shape[1], params) - vectors.shape[1]
    if missing == 0:
        return np.ascontiguousarray(vectors, dtype=np.float32)
    return np.ascontiguousarray(np.hstack([vectors, np.zeros((len(vectors), missing), np.float32)]))


class ShardedIndex:
    """Shards searched one after the other and merged into one exact top k (over the shards'
    answers). `search` and `ntotal` are FAISS's, so a sharded index stands in for one."""

    def __init__(self, shards: list[faiss.Index], offsets: list[int], params: IndexParams, max_norm2: float = 0.0):
        self.shards, self.offsets, self.params = shards, offsets, params
        self.max_norm2 = max_norm2  # M^2 of the L2 augmentation, one for all shards (0 for flat)
        self.ntotal = sum(s.ntotal for s in shards)
        for shard in shards:
            _set_search_params(shard, params)

    @classmethod
    def build(cls, vectors: np.ndarray, params: IndexParams, shards: int = 1, seed: int = 0) -> "ShardedIndex":
        max_norm2 = 0.0 if params.kind == "flat" else _max_norm2(vectors)
        bounds = np.linspace(0, len(vectors), min(shards, max(1, len(vectors))) + 1).astype(int)
        built = [build_index(vectors[lo:hi], params, seed + i, max_norm2)
                 for i, (lo, hi) in enumerate(zip(bounds, bounds[1:]))]
        return cls(built, bounds[:-1].tolist(), params, max_norm2)

    def set_search_width(self, width: int) -> None:
        """nprobe (ivf_*) or ef_search (hnsw) for every later search, and in the saved manifest."""
        self.params = dataclasses.replace(self.params, **{search_width_name(self.params.kind): width})
        for shard in self.shards:
            _set_search_params(shard, self.params)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(inner products [B, k], rows [B, k]) best first; rows are global, -1 (score -inf)
        where fewer were found."""
        queries = np.asarray(queries, np.float32)
        searched = queries
        if self.params.kind != "flat":  # [q, 0] against the augmented items
            searched = _pad(np.hstack([queries, np.zeros((len(queries), 1), np.float32)]), self.params)
        scores, rows = [], []
        for shard, offset in zip(self.shards, self.offsets):
            s, r = shard.search(searched, min(k, shard.ntotal))
            if self.params.kind != "flat":  # |q|^2 + M^2 - 2 q.x back to q.x
                s = 0.5 * ((queries.astype(np.float64) ** 2).sum(1, keepdims=True) + self.max_norm2 - s)
            scores.append(np.where(r >= 0, s, -np.inf).astype(np.float32))
            rows.append(np.where(r >= 0, r + offset, -1))
        if len(self.shards) == 1:
            return _widen(scores[0], rows[0], k)
        scores, rows = np.hstack(scores), np.hstack(rows)
        take = min(k, scores.shape[1])
        best = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        order = np.take_along_axis(best, np.argsort(-np.take_along_axis(scores, best, 1), axis=1, kind="stable"), 1)
        return _widen(np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1), k)

    def save(self, directory: str, model_version: str, search_tuning: dict | None = None) -> dict:
        """Shards first, then the manifest naming each with its checksum (and what chose the
        search width, when tune_search did)."""
        shards = []
        for i, (shard, offset) in enumerate(zip(self.shards, self.offsets)):
            data = faiss.serialize_index(shard).tobytes()
            name = f"shard-{i:05d}.faiss"
            storage.write_bytes(storage.join(directory, name), data)
            shards.append({"file": name, "offset": offset, "items": int(shard.ntotal),
                           "sha256": hashlib.sha256(data).hexdigest()})
        manifest = {"type": self.params.kind, "params": asdict(self.params), "items": int(self.ntotal),
                    "dim": int(self.shards[0].d), "max_norm2": self.max_norm2, "model_version": model_version,
                    "shards": shards}
        if search_tuning is not None:
            manifest["search_tuning"] = search_tuning
        storage.write_text(storage.join(directory, INDEX_MANIFEST), json.dumps(manifest, indent=2) + "\n")
        return manifest

    @classmethod
    def load(cls, directory: str, **search_params) -> "ShardedIndex":
        """Every shard the manifest names, each checked against its checksum; `search_params`
        (nprobe, ef_search) replace the ones it was built with."""
        manifest_path = storage.join(directory, INDEX_MANIFEST)
        if not storage.exists(manifest_path):
            raise FileNotFoundError(f"no FAISS index in {directory} ({INDEX_MANIFEST} is missing); "
                                    f"rerun `watchnext recall`")
        manifest = json.loads(storage.read_text(manifest_path))
        params = IndexParams(**{**manifest["params"], **search_params})
        shards = []
        for entry in manifest["shards"]:
            path = storage.join(directory, entry["file"])
            if not storage.exists(path):
                raise FileNotFoundError(f"FAISS index shard {path} is missing; rerun `watchnext recall`")
            data = storage.read_bytes(path)
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise ValueError(f"FAISS index shard {path} is corrupted (its SHA-256 differs from "
                                 f"{INDEX_MANIFEST}'s); rerun `watchnext recall`")
            shards.append(faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8)))
        return cls(shards, [entry["offset"] for entry in manifest["shards"]], params, manifest["max_norm2"])


def search_width_name(kind: str) -> str:
    """The parameter that trades an approximate index's speed for its recall."""
    return "ef_search" if kind == "hnsw" else "nprobe"


def recall_at_k(found: np.ndarray, exact: np.ndarray, k: int) -> float:
    """The mean share of each query's exact top k that the search found."""
    return float(np.mean([len(np.intersect1d(a[a >= 0], e)) / k for a, e in zip(found, exact)]))


def tune_search(index: ShardedIndex, vectors: np.ndarray, queries: np.ndarray, k: int, target: float) -> dict:
    """Set the least search width (nprobe for ivf_*, ef_search for hnsw) whose recall@k
    against an exact scan of `queries` reaches `target`. From the configured width it doubles
    while the recall falls short (at an IVF index's every cell, an HNSW's ef_search of
    HNSW_MAX_EF_SEARCH, it stops rising) or halves while it reaches, then bisects between the
    widest width that fell short and the narrowest that reached, to within a sixteenth of the
    latter: a wider search finds more (an IVF probe of more cells scans a superset), and every
    cell a search can skip is time saved on every user.
    Returns what was measured: {"parameter", "target", "tried": [{parameter: width, "recall"}],
    "chosen", "ann_recall@k", "reached", "queries"}."""
    name = search_width_name(index.params.kind)
    if index.params.kind.startswith("ivf"):
        ceiling = max(shard.nlist for shard in index.shards)
    else:
        ceiling = max(min(index.ntotal, HNSW_MAX_EF_SEARCH), k)
    _, exact = ShardedIndex.build(vectors, IndexParams("flat")).search(queries, k)  # vectors: the index's rows
    tried, recall = [], {}
    short, reaching = 0, None  # the widest width that fell short, the narrowest that reached
    width = min(getattr(index.params, name), ceiling)
    while True:
        index.set_search_width(width)
        recall[width] = recall_at_k(index.search(queries, k)[1], exact, k)
        tried.append({name: width, "recall": recall[width]})
        if recall[width] >= target:
            reaching = width
        else:
            short = width
        if reaching is None:
            if width >= ceiling:
                break
            width = min(width * 2, ceiling)
        elif reaching - short <= max(1, reaching // 16):
            break
        else:
            width = reaching // 2 if short == 0 else (short + reaching) // 2
    chosen = ceiling if reaching is None else reaching
    index.set_search_width(chosen)
    return {"parameter": name, "target": target, "tried": tried, "chosen": chosen,
            f"ann_recall@{k}": recall[chosen], "reached": reaching is not None, "queries": len(queries)}


def _set_search_params(index: faiss.Index, params: IndexParams) -> None:
    if params.kind == "hnsw":
        index.hnsw.efSearch = params.ef_search
    elif params.kind.startswith("ivf"):
        index.nprobe = params.nprobe


def _widen(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad to k columns with FAISS's "not found" (-1, -inf) when the shards hold fewer."""
    missing = k - rows.shape[1]
    if missing <= 0:
        return scores, rows
    pad = ((0, 0), (0, missing))
    return np.pad(scores, pad, constant_values=-np.inf), np.pad(rows, pad, constant_values=-1)
