"""Batch top-K search: exact FAISS and each approximate index against the GEMM bound.

    python -m bench.recall_bench --items 1000000 --users 10000 [--run RUN_DIR] \
        [--case flat --case ivf_flat:nprobe=16 ...] [--threads 2] [--out FILE.md]

The vectors are synthetic (`--items` item vectors around 4,096 centres, the way trained item
vectors cluster, plus a bias column; `--users` queries drawn the same way) or, with --run, a
trained model's: RUN_DIR/model/item_embeddings.parquet and the user tower over a sample of
RUN_DIR/prep/user_features. Every case searches the same queries for the top `--k`:

- torch's matmul computing every score in blocks (the fastest of a few block shapes), nothing
  kept: a ceiling no top-k search reaches;
- the GEMM bound: the same matmul with a top-k per 65,536-item block, merged (plain torch);
- flat (FAISS exact, serving.index), then each approximate case given as TYPE[:key=value,...]
  with IndexParams' fields (nprobe, ef_search, nlist, pq_m, hnsw_m, ef_construction) and shards.

Reported: build seconds, users/s, recall@k against the exact results, the index's size.
Build and search use `--threads` threads (FAISS's OpenMP and torch's).

    python -m bench.recall_bench --end-to-end RUN_DIR [--set recall.KEY=VALUE ...] [--out FILE.md]

runs the whole recall stage (`watchnext recall`: serving features through the user tower,
the sharded index built and searched, the recall table written) on a trained RUN_DIR in a
child process, with its wall time and the peak summed RSS of it and its descendants (Ray's
processes included).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import json
import platform
import subprocess
import sys
import time

import faiss
import numpy as np
import torch

from serving.index import IndexParams, ShardedIndex, item_matrix, user_queries

GEMM_BLOCK = 65_536
GEMM_SHAPES = [(256, 4096), (1024, 1024), (1024, 4096), (4096, 1024), (1024, 16384), (1024, 65536)]
DEFAULT_CASES = ["flat", "flat:shards=4", "ivf_flat:nprobe=8", "ivf_flat:nprobe=16", "ivf_flat:nprobe=32",
                 "ivf_flat:nprobe=64", "ivf_flat:nprobe=128",
                 "ivf_pq:nprobe=64,pq_m=13", "hnsw:hnsw_m=16,ef_construction=80,ef_search=256"]


def synthetic(items: int, users: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(items [n, dim + 1] with a bias column, queries [u, dim + 1] with the 1 for it)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4096, dim)).astype(np.float32)

    def around(n: int) -> np.ndarray:
        return centres[rng.integers(0, len(centres), n)] + 0.5 * rng.normal(size=(n, dim)).astype(np.float32)

    vectors = np.hstack([around(items), rng.normal(scale=0.5, size=(items, 1)).astype(np.float32)])
    return np.ascontiguousarray(vectors), user_queries(around(users))


def trained(run_dir: str, users: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa
    import pyarrow.dataset as pads

    from ray_train.data import Widths
    from ray_train.export import load_user_tower
    from serving.recall import user_vectors
    from core import storage

    vectors, _, _ = item_matrix(os.path.join(run_dir, "model", "item_embeddings.parquet"))
    table = pads.dataset(os.path.join(run_dir, "prep", "user_features"), format="parquet").to_table()
    rows = np.sort(np.random.default_rng(seed).choice(table.num_rows, min(users, table.num_rows), replace=False))
    widths = Widths.from_prep_features(storage.read_manifest(os.path.join(run_dir, "prep"))["features"])
    tower, _ = load_user_tower(os.path.join(run_dir, "model"))
    return vectors, user_queries(user_vectors(tower, table.take(pa.array(rows)), widths))


def gemm_only(vectors: np.ndarray, queries: np.ndarray, user_block: int, item_block: int) -> None:
    """Every score computed by a blocked matmul into a reused buffer, nothing kept."""
    items = torch.from_numpy(vectors)
    out = torch.empty(user_block, min(item_block, len(items)))
    for lo in range(0, len(queries), user_block):
        q = torch.from_numpy(queries[lo:lo + user_block])
        for start in range(0, len(items), item_block):
            block = items[start:start + item_block]
            torch.mm(q, block.T, out=out[:len(q), :len(block)])


def gemm_bound(vectors: np.ndarray, queries: np.ndarray) -> tuple[float, str]:
    """The GEMM bound in users/s: the fastest of several block shapes, each timed on the
    first 1,000 queries, then the best timed on all of them."""
    sample = queries[:1000]
    timings = {}
    for user_block, item_block in GEMM_SHAPES:
        started = time.perf_counter()
        gemm_only(vectors, sample, user_block, item_block)
        timings[(user_block, item_block)] = time.perf_counter() - started
    user_block, item_block = min(timings, key=timings.get)
    started = time.perf_counter()
    gemm_only(vectors, queries, user_block, item_block)
    return len(queries) / (time.perf_counter() - started), f"{user_block} users x {item_block} items"


def gemm_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, user_block: int = 1024) -> np.ndarray:
    """Blocked matmul and a top-k per block, merged: [u, k] rows best first."""
    items, found = torch.from_numpy(vectors), []
    for lo in range(0, len(queries), user_block):
        q = torch.from_numpy(queries[lo:lo + user_block])
        best_scores, best_rows = None, None
        for start in range(0, len(items), GEMM_BLOCK):
            scores, rows = (q @ items[start:start + GEMM_BLOCK].T).topk(k, dim=1)
            rows += start
            if best_scores is not None:
                scores, pick = torch.cat([best_scores, scores], 1).topk(k, dim=1)
                rows = torch.cat([best_rows, rows], 1).gather(1, pick)
            best_scores, best_rows = scores, rows
        found.append(best_rows.numpy())
    return np.vstack(found)


def parse_case(case: str) -> tuple[str, dict]:
    kind, _, rest = case.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        key, value = item.split("=")
        params[key] = int(value)
    return kind, params


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(f[f >= 0], e)) / len(e) for f, e in zip(found, exact)]))


def index_bytes(index: ShardedIndex) -> int:
    return sum(faiss.serialize_index(s).nbytes for s in index.shards)


def run(vectors: np.ndarray, queries: np.ndarray, cases: list[str], k: int, shards: int) -> list[dict]:
    rows = []
    rate, shape = gemm_bound(vectors, queries)
    rows.append({"case": f"torch matmul, scores only (blocks of {shape})", "build": 0.0,
                 "users_per_second": rate, "recall": 1.0, "bytes": vectors.nbytes})
    started = time.perf_counter()
    exact = gemm_top_k(vectors, queries, k)
    rows.append({"case": "GEMM bound: torch blocked matmul + top-k", "build": 0.0,
                 "users_per_second": len(queries) / (time.perf_counter() - started), "recall": 1.0,
                 "bytes": vectors.nbytes})
    print(rows, flush=True)
    for case in cases:
        kind, params = parse_case(case)
        case_shards = params.pop("shards", shards)
        started = time.perf_counter()
        index = ShardedIndex.build(vectors, IndexParams.resolve(kind, len(vectors), vectors.shape[1], 1e9, **params),
                                   case_shards)
        build = time.perf_counter() - started
        started = time.perf_counter()
        _, found = index.search(queries, k)
        seconds = time.perf_counter() - started
        rows.append({"case": f"{kind} {params or ''} ({case_shards} shard{'s' * (case_shards > 1)})", "build": build,
                     "users_per_second": len(queries) / seconds, "recall": recall_at_k(found, exact),
                     "bytes": index_bytes(index), "params": dataclasses.asdict(index.params)})
        print(rows[-1], flush=True)
    return rows


def markdown(rows: list[dict], title: str, k: int) -> str:
    """The table: each case against the GEMM bound (matmul + top-k), the scores-only matmul
    (a ceiling no top-k search reaches: it keeps nothing) and exact search."""
    exact = next((r["users_per_second"] for r in rows if r["case"].startswith("flat")), None)
    ceiling, bound = rows[0]["users_per_second"], rows[1]["users_per_second"]
    lines = [f"**{title}**", "",
             f"| case | build s | users/s | vs GEMM bound | vs scores only | vs exact | recall@{k} | index MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        rate = r["users_per_second"]
        lines.append(f"| {r['case']} | {r['build']:.1f} | {rate:,.0f} | {rate / bound:.2f}x | {rate / ceiling:.2f}x | "
                     f"{(rate / exact if exact else float('nan')):.1f}x | {r['recall']:.4f} | "
                     f"{r['bytes'] / 2**20:,.0f} |")
    return "\n".join(lines) + "\n"


def end_to_end(run_dir: str, overrides: list[str]) -> str:
    from bench.prep_bench import PeakRss

    command = [sys.executable, "-m", "watchnext", "recall", "--run", run_dir]
    for item in overrides:
        command += ["--set", item]
    started = time.perf_counter()
    with PeakRss() as peak:
        subprocess.run(command, check=True)
    wall = time.perf_counter() - started
    manifest = json.loads(open(os.path.join(run_dir, "recall", "_manifest.json")).read())
    index = manifest["index"]
    ann = "".join(f", {k} {v:.4f}" for k, v in index.items() if k.startswith("ann_recall@"))
    return (f"| {manifest['users']:,} | {index['items']:,} | {index['type']} x{index['shards']}{ann} | "
            f"{index['build_seconds']:.1f} | {manifest['seconds']:.1f} | {manifest['users_per_second']:,.0f} | "
            f"{manifest.get('similar', {}).get('seconds', 0):.1f} | {wall:.1f} | {peak.peak_gib:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--run", help="a trained RUN_DIR: its item vectors and user tower")
    parser.add_argument("--case", action="append", dest="cases")
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--end-to-end", metavar="RUN_DIR")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="recall.KEY=VALUE")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.end_to_end:
        table = ("| users | items | index | build s | search + write s | users/s | similar items s | wall s | "
                 "peak GiB |\n|---:|---:|---|---:|---:|---:|---:|---:|---:|\n"
                 + end_to_end(args.end_to_end, args.overrides))
        print(table)
        if args.out:
            with open(args.out, "a") as f:
                f.write(f"{table}\n\n")
        return
    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    if args.run:
        vectors, queries = trained(args.run, args.users, args.seed)
        title = f"trained vectors of {args.run}: {len(vectors):,} items x {vectors.shape[1]}, {len(queries):,} users"
    else:
        vectors, queries = synthetic(args.items, args.users, args.dim, args.seed)
        title = f"synthetic vectors: {len(vectors):,} items x {vectors.shape[1]}, {len(queries):,} users"
    rows = run(vectors, queries, args.cases or DEFAULT_CASES, args.k, args.shards)
    table = markdown(rows, title, args.k)
    print(table)
    if args.out:
        with open(args.out, "a") as f:
            f.write(f"{table}\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                    f"{args.threads} threads, {dt.date.today()}\n\n")


if __name__ == "__main__":
    main()
