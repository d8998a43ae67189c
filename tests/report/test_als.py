"""ALS: Spark's implicit-feedback factors, and the ranks of the targets by x_u . y_i."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from report.als import AlsParams, als_ranks, fit_factors, ratings_frame
from report.baselines import MISS

NUM_ITEMS = 12  # index 0 is padding; item 11 is never watched
# two tastes (items 1-5, items 6-10) and a user who watched nothing
LOG = [[1, 2, 3], [1, 2, 4, 5], [2, 3, 5], [1, 3, 4], [6, 7, 8], [6, 8, 9, 10], [7, 9, 10], [6, 7, 10], [1, 6], []]
PARAMS = AlsParams(rank=3, reg_param=0.05, alpha=4.0)


@pytest.fixture(scope="module")
def factors(spark):
    with ratings_frame(spark, pa.array(LOG, pa.list_(pa.int32()))) as ratings:
        return fit_factors(ratings, len(LOG), NUM_ITEMS, PARAMS)


def test_the_last_user_factors_solve_the_implicit_least_squares_of_the_item_factors(factors):
    users, items = factors
    # x_u = (Y^T Y + alpha Y_u^T Y_u + lambda n_u I)^-1 (1 + alpha) Y_u^T 1: Spark updates users last
    y = items.astype(np.float64)
    for user, watched in enumerate(LOG):
        if not watched:
            assert not users[user].any()  # nothing to fit: the zero vector
            continue
        a = y.T @ y + PARAMS.alpha * y[watched].T @ y[watched] + PARAMS.reg_param * len(watched) * np.eye(PARAMS.rank)
        expected = np.linalg.solve(a, (1 + PARAMS.alpha) * y[watched].sum(0))
        assert np.allclose(users[user], expected, atol=1e-4), user
    assert not items[[0, 11]].any()  # padding and the never-watched item
    assert items[1:11].any(1).all()


def test_ranks_equal_a_brute_force_ranking_of_the_factors(factors):
    users, items = factors
    targets = np.array([4, 5, 1, 2, 10, 7, 6, 9, 3, 11])
    ranks = als_ranks(users, items, targets, pa.array(LOG, pa.list_(pa.int32())), batch_size=3)
    expected = []
    for user, (target, watched) in enumerate(zip(targets, LOG)):
        scores = items @ users[user]
        candidates = [i for i in range(1, NUM_ITEMS) if i not in watched]
        above = [i for i in candidates if scores[i] > scores[target] or (scores[i] == scores[target] and i < target)]
        expected.append(len(above) if target in candidates else MISS)
    assert ranks.tolist() == expected
    assert ranks[-1] == 10  # the user with no watches: every item scores 0, 11 comes last by index
    # the same taste ranks first: user 0's unwatched 4 and 5 lead over the other taste's items
    assert ranks[0] <= 1


def test_watched_and_unknown_targets_are_never_recommended(factors):
    users, items = factors
    ranks = als_ranks(users[:2], items, np.array([2, 0]), pa.array(LOG[:2], pa.list_(pa.int32())))
    assert ranks.tolist() == [MISS, MISS]
