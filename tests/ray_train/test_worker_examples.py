"""A worker's batches: streamed from its Ray Data shard, or kept after the first epoch."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from core.contract import padded_lists
from ray_train.data import Widths, WorkerExamples, to_batch

WIDTHS = Widths(history_len=3, max_search_tokens=2, num_categoricals=1, num_continuous=1)
ROWS = 40


def _examples() -> pa.Table:
    labels = list(range(1, ROWS + 1))
    return pa.table({
        "label": labels,
        "history": [[label, label + 1] for label in labels],  # unpadded, as prep writes them
        "search_tokens": [[]] * ROWS,
        "example_age": [0.5] * ROWS,
        "demographics": [[1]] * ROWS,
        "continuous": [[0.25]] * ROWS,
        "weight": [1.0] * ROWS,
    })


def test_a_batch_pads_each_history_and_token_bag_to_its_width():
    table = _examples().slice(0, 3)
    table = table.set_column(table.column_names.index("search_tokens"), "search_tokens",
                             pa.array([[7], [], [8, 9]], pa.list_(pa.int32())))
    batch = to_batch(table, WIDTHS)
    assert batch.history.tolist() == [[1, 2, 0], [2, 3, 0], [3, 4, 0]]
    assert batch.search_tokens.tolist() == [[7, 0], [0, 0], [8, 9]]
    assert batch.demographics.tolist() == [[1], [1], [1]] and batch.labels.tolist() == [1, 2, 3]


def test_padded_lists_pad_short_and_null_rows_and_refuse_long_ones():
    ints = pa.list_(pa.int32())
    lists = pa.chunked_array([pa.array([[1, 2], None], ints), pa.array([[3, 4, 5], []], ints)])
    assert padded_lists(lists, 3).tolist() == [[1, 2, 0], [0, 0, 0], [3, 4, 5], [0, 0, 0]]
    assert padded_lists(lists.slice(2, 1), 3).tolist() == [[3, 4, 5]]
    with pytest.raises(ValueError, match="at most 2 values per row, found a row of 3"):
        padded_lists(lists, 2)


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
