"""One worker's training step alone (ray_train.step.train_step, the function training runs):
the trainer's model, objective and optimizer on batches of a prep's examples already in
memory, outside Ray, so the step's own cost can be timed and profiled apart from the data
pipeline and the other processes.

    python -m bench.train_step --run RUN_DIR [--batch-size 2048] [--negatives 1024] \
        [--threads 1] [--steps N] [--set train.KEY=VALUE ...] [--profile]

The batches are drawn in a seeded random order, as training draws them (N of them with
--steps); the sequence tower's every_position training reads the windows that tile the users'
watches, as the trainer does, and counts every watch they predict as an example. Prints the
best of 5 passes over them (ms per step, examples/s, and whether the
step ran in bf16 or fp32: ray_train.precision) and, with --profile, the operators that
took the most time over 10 steps (torch.profiler). Two of these side by side on a 2-core
machine show what two training workers do to each other.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow.dataset as pads
import torch

from ray_train.allocator import keep_freed_memory
from ray_train.data import EXAMPLE_COLUMNS, Widths, to_batch
from ray_train.loop import batch_loss
from ray_train.models import build_model, has_item_tower
from ray_train.objective import Objective
from ray_train.optim import Optimizer, uses_sparse_embeddings
from ray_train.precision import step_autocast, step_precision
from ray_train.sequence import tile_windows, tiles_watches, windows_per_batch
from ray_train.step import train_step
from ray_train.trainer import model_spec
from ray_train.two_tower import load_item_features
from core import storage
from core.config import load_config

PASSES = 5


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", required=True, help="RUN_DIR with a finished prep/")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--negatives", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=0, help="time N batches (0 = all the examples)")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="SECTION.KEY=VALUE")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as a training worker does
    overrides = [f"train.batch_size={args.batch_size}", f"train.num_negatives={args.negatives}", *args.overrides]
    prep_dir = storage.join(storage.absolute(args.run), "prep")
    features = storage.read_manifest(prep_dir)["features"]
    cfg = load_config(None, overrides).train.for_corpus(int(features["item_vocab_size"]))
    spec, widths = model_spec(features, cfg), Widths.from_prep_features(features)
    every_position = tiles_watches(cfg)
    table = pads.dataset(storage.join(prep_dir, "examples"), format="parquet").to_table(
        columns=EXAMPLE_COLUMNS + ["watches_after"])
    batch_size = cfg.batch_size
    if every_position:  # the windows that tile the users' watches, as the trainer reads them
        tiles = tile_windows(table, widths.history_len)
        batch_size = windows_per_batch(cfg.batch_size, tiles.num_rows, table.num_rows)
        table = tiles
    # in a random order, as training draws them: prep writes a user's examples together
    order = np.random.default_rng(0).permutation(table.num_rows)
    table = table.take(order[: args.steps * batch_size] if args.steps else order)
    batches = [to_batch(table.slice(start, batch_size), widths)
               for start in range(0, table.num_rows - batch_size + 1, batch_size)]
    model = build_model(spec, sparse=uses_sparse_embeddings(cfg, spec.num_items))
    if has_item_tower(spec):  # the item tower's inputs
        model.item_output.set_features(*load_item_features(prep_dir, spec))
    optimizer = Optimizer(model, cfg)
    objective = Objective(cfg, spec, storage.join(prep_dir, "vocab", "item_sampling"), 0)

    autocast = step_autocast(cfg)

    def step(batch) -> int:  # the step training runs; one process, so no sparse tables to sync
        _, predicted = train_step(lambda: batch_loss(model, model, objective, batch, every_position), optimizer, [],
                                  autocast)
        return predicted

    for batch in batches[:3]:  # warm-up: allocations, the optimizer's state
        step(batch)
    best = float("inf")
    for _ in range(PASSES):
        started = time.perf_counter()
        predicted = sum(step(batch) for batch in batches)
        best = min(best, (time.perf_counter() - started) / len(batches))
    per_step = predicted / len(batches)  # examples, or watches of the tiling windows
    print(f"batch {batch_size}{' windows' if every_position else ''}, {cfg.num_negatives} negatives, "
          f"{args.threads} thread(s), {step_precision(cfg)}, {len(batches)} steps: "
          f"{1000 * best:.1f} ms/step, {per_step / best:,.0f} examples/s (best of {PASSES} passes)")
    if args.profile:
        from torch.profiler import profile

        with profile() as profiler:
            for batch in batches[:10]:
                step(batch)
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
