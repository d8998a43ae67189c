"""A worker's batches: streamed from its Ray Data shard, or kept after the first epoch."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from ray_train.data import Widths, WorkerExamples

WIDTHS = Widths(history_len=3, max_search_tokens=2, num_categoricals=1, num_continuous=1)
ROWS = 40


def _examples() -> pa.Table:
    labels = list(range(1, ROWS + 1))
    return pa.table({
        "label": labels,
        "history": [[label, label + 1, 0] for label in labels],
        "search_tokens": [[0, 0]] * ROWS,
        "example_age": [0.5] * ROWS,
        "demographics": [[1]] * ROWS,
        "continuous": [[0.25]] * ROWS,
        "weight": [1.0] * ROWS,
    })


def _epochs(ray, keep: bool, epochs: int) -> list[list[list[int]]]:
    """labels[rank][epoch] in the order each rank's batches gave them: the two ranks consume
    their splits side by side, as Ray Train's workers do."""
    shards = ray.data.from_arrow(_examples()).repartition(4).streaming_split(2, equal=True)
    seen: list[list[list[int]]] = [[], []]

    def consume(rank: int) -> None:
        source = WorkerExamples(shards[rank], WIDTHS, batch_size=8, seed=3, rank=rank, keep=keep)
        for epoch in range(epochs):
            labels = []
            for batch in source.epoch(epoch):
                assert batch.history[:, 0].tolist() == batch.labels.tolist()  # rows stay whole
                labels += batch.labels.tolist()
            seen[rank].append(labels)

    threads = [threading.Thread(target=consume, args=(rank,)) for rank in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return seen


@pytest.mark.parametrize("keep", [True, False])
def test_every_example_once_per_epoch_and_equal_shares(ray_local, keep):
    seen = _epochs(ray_local, keep, epochs=3)
    for epoch in range(3):
        assert sorted(seen[0][epoch] + seen[1][epoch]) == list(range(1, ROWS + 1))
        assert len(seen[0][epoch]) == len(seen[1][epoch]) == ROWS // 2


def test_kept_examples_are_the_first_epochs_in_a_new_order_each_epoch(ray_local):
    seen = _epochs(ray_local, keep=True, epochs=3)
    for rank in (0, 1):
        first, second, third = seen[rank]
        assert sorted(second) == sorted(first) and sorted(third) == sorted(first)
        assert second != third  # a fresh order each epoch
