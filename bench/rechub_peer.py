"""torch-rechub's YoutubeDNN trained on watchnext's examples: the peer the training benchmark
measures against (bench/train_bench.py). Runs in its own environment (.venv-rechub, made by
train_bench --setup-peer), never imported by watchnext.

The peer is set up as torch-rechub's own MovieLens example sets it up: user features
(demographics and the mean-pooled watch history, sharing the item id table), the label and N
negatives per row drawn in advance from count^0.75, list-wise softmax (MatchTrainer mode 2),
temperature 0.02, Adam. It gets the same embedding width and tower as watchnext. Prints one
JSON line: rows, seconds of the timed epochs, rows per second.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader
from torch_rechub.basic.features import SequenceFeature, SparseFeature
from torch_rechub.models.matching import YoutubeDNN
from torch_rechub.trainers import MatchTrainer
from torch_rechub.utils.data import TorchDataset


def fixed(column, width: int) -> np.ndarray:
    """[rows, width] int64, each list right-padded with 0 (prep stores histories unpadded)."""
    array = column.combine_chunks()
    offsets = array.offsets.to_numpy()
    lengths = np.diff(offsets)
    out = np.zeros((len(array), width), dtype=np.int64)
    columns = np.arange(offsets[0], offsets[-1]) - np.repeat(offsets[:-1], lengths)
    out[np.repeat(np.arange(len(array)), lengths), columns] = array.values.to_numpy()[offsets[0]:offsets[-1]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prep", required=True, help="RUN_DIR/prep of a watchnext run")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--negatives", type=int, default=3)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--hidden", default="256,64")
    parser.add_argument("--max-rows", type=int, default=0, help="time the first N examples only (0 = all)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with open(f"{args.prep}/_manifest.json") as f:
        features = json.load(f)["features"]
    history_len, sizes = int(features["history_len"]), features["categorical_sizes"]
    num_items = int(features["item_vocab_size"])

    table = pq.read_table(f"{args.prep}/examples", columns=["label", "history", "demographics"])
    if args.max_rows:
        table = table.slice(0, args.max_rows)
    rows = table.num_rows
    sampling = pq.read_table(f"{args.prep}/vocab/item_sampling", columns=["index", "probability"])
    probability = np.zeros(num_items)
    probability[sampling.column("index").to_numpy()] = sampling.column("probability").to_numpy()
    rng = np.random.default_rng(0)
    x = {
        "movie_id": table.column("label").to_numpy().astype(np.int64),
        "hist_movie_id": fixed(table.column("history"), history_len),
        "neg_items": rng.choice(num_items, size=(rows, args.negatives), p=probability / probability.sum()),
    }
    demographics = fixed(table.column("demographics"), len(sizes))
    user_features = [SequenceFeature("hist_movie_id", vocab_size=num_items, embed_dim=args.embedding_dim,
                                     pooling="mean", shared_with="movie_id")]
    for i, size in enumerate(sizes):
        x[f"demographic_{i}"] = demographics[:, i]
        # torch-rechub concatenates its user features: every one has the same width
        user_features.append(SparseFeature(f"demographic_{i}", vocab_size=size, embed_dim=args.embedding_dim))
    item_features = [SparseFeature("movie_id", vocab_size=num_items, embed_dim=args.embedding_dim)]
    negatives = [SequenceFeature("neg_items", vocab_size=num_items, embed_dim=args.embedding_dim,
                                 pooling="concat", shared_with="movie_id")]
    dims = [int(d) for d in args.hidden.split(",")]
    model = YoutubeDNN(user_features, item_features, negatives, user_params={"dims": dims}, temperature=0.02)
    trainer = MatchTrainer(model, mode=2, optimizer_params={"lr": 1e-3, "weight_decay": 1e-6}, n_epoch=args.epochs,
                           device="cpu", model_path="/tmp")
    loader = DataLoader(TorchDataset(x, np.zeros(rows, dtype=np.int64)), batch_size=args.batch_size, shuffle=True,
                        num_workers=0)
    seconds = []
    for _ in range(args.epochs):
        started = time.perf_counter()
        trainer.train_one_epoch(loader)
        seconds.append(time.perf_counter() - started)
    print(json.dumps({"rows": rows * args.epochs, "seconds": sum(seconds), "rows_per_second":
                      rows * args.epochs / sum(seconds), "threads": torch.get_num_threads(),
                      "batch_size": args.batch_size, "negatives": args.negatives}))


if __name__ == "__main__":
    main()
