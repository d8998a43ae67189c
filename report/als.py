"""ALS, the matrix-factorization baseline: implicit-feedback alternating least squares (Hu,
Koren and Volinsky, ICDM 2008) on the binary user-item matrix of the training watches, by
Spark MLlib. A user's candidates are ranked by x_u . y_i over the items they have not watched.

    min  sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (n_u |x_u|^2 + n_i |y_i|^2)
         p_ui = [u watched i],  c_ui = 1 + alpha p_ui,  n = watches of the user or item

(Spark scales the regularization by n, ALS-WR.) The rank, lambda (regParam) and alpha come
from GRID, chosen on the validation split by report/evaluate.py; a user or item with no
watch has the zero vector, the solution of its empty least-squares problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import torch

from report.baselines import rank_unwatched, users_per_block
from serving.cowatch import watch_pairs
from core.contract import fixed_lists

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


@dataclass(frozen=True)
class AlsParams:
    """One point of the grid: Spark ALS's rank, regParam and alpha."""

    rank: int  # factors per user and item
    reg_param: float  # lambda
    alpha: float  # confidence of a watch over a non-watch

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


# Every point is a full fit: 2 x 2 x 2 keeps the report at about 50 s on MovieLens-100K and
# 3 minutes on the 35k-user Amazon log on 2 cores (8 fits and a refit, measured). Each
# knob matters somewhere: ml-100k wants regParam 0.1 and alpha 1 (0.42 validation HR@50 vs
# 0.28 at regParam 1), the sparser Amazon log regParam 1 (0.12 vs 0.09) and rank 64 over 32.
# Listed cheapest first, so that a tie goes to the smaller model.
GRID = tuple(AlsParams(rank, reg_param, alpha) for rank in (32, 64) for reg_param in (0.1, 1.0)
             for alpha in (1.0, 10.0))
# without a validation split: the grid point with the smallest loss from the best on both
# logs' validation splits (0.016 of HR@50 on ml-100k, 0.010 on Amazon)
DEFAULT = AlsParams(rank=64, reg_param=0.1, alpha=10.0)
# alternations: five lose 15% of the validation HR@50 on Amazon (0.104 vs 0.123)
MAX_ITER = 10
SEED = 0  # Spark's factor initialization
# ALS's unit of parallelism. Fixed, and two: the initial factors depend on the blocks, and the
# driver sums the blocks' Y^T Y in the order they finish, which with two cannot change the sum;
# so the factors are the same run after run, machine after machine
BLOCKS = 2


@contextmanager
def ratings_frame(spark: SparkSession, watched: pa.ListArray) -> Iterator[DataFrame]:
    """The binary matrix as (user, item, rating=1) rows, the user being the row of watched;
    cached while in use, for the several fits of a grid."""
    items, users = watch_pairs(watched)
    table = pa.table({"user": users.astype(np.int32), "item": items.astype(np.int32),
                      "rating": np.ones(len(items), dtype=np.float32)})
    ratings = spark.createDataFrame(table).cache()
    try:
        yield ratings
    finally:
        ratings.unpersist()


def fit_factors(ratings: DataFrame, users: int, num_items: int, params: AlsParams) -> tuple[np.ndarray, np.ndarray]:
    """User factors [users, rank] and item factors [num_items, rank] (float32) of one fit."""
    from pyspark.ml.recommendation import ALS

    als = ALS(rank=params.rank, regParam=params.reg_param, alpha=params.alpha, maxIter=MAX_ITER,
              implicitPrefs=True, seed=SEED, userCol="user", itemCol="item", ratingCol="rating",
              numUserBlocks=BLOCKS, numItemBlocks=BLOCKS)
    model = als.fit(ratings)
    return (_dense(model.userFactors, users, params.rank), _dense(model.itemFactors, num_items, params.rank))


def als_ranks(user_factors: np.ndarray, item_factors: np.ndarray, target_index: np.ndarray, watched: pa.ListArray,
              batch_size: int | None = None) -> np.ndarray:
    """0-based rank of each target by x_u . y_i among the items user u has not watched
    (rank_unwatched's protocol); user_factors and watched have one row per target, and
    batch_size users are scored at once (default: BLOCK_SCORES // items)."""
    batch_size = batch_size or users_per_block(len(item_factors))
    items = torch.from_numpy(item_factors)
    ranks = np.empty(len(target_index), dtype=np.int64)
    for start in range(0, len(target_index), batch_size):
        rows = slice(start, start + batch_size)
        scores = torch.from_numpy(user_factors[rows]) @ items.T
        ranks[rows] = rank_unwatched(scores, target_index[rows], watched.slice(start, batch_size))
    return ranks


def _dense(factors: DataFrame, rows: int, rank: int) -> np.ndarray:
    """A model's (id, features) factors as a [rows, rank] array; absent ids are zero."""
    table = factors.toArrow()
    out = np.zeros((rows, rank), dtype=np.float32)
    out[table.column("id").to_numpy()] = fixed_lists(table.column("features"), rank)
    return out
