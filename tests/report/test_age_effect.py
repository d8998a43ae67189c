"""The example-age effect: shares of watches by item age, empirical and predicted."""

from __future__ import annotations

import numpy as np
import pytest

from report.age_effect import age_bucket, age_buckets, empirical_shares, predicted_shares

DAY = 86400.0


def test_ages_fall_into_log2_day_buckets_with_one_for_items_not_uploaded_yet():
    ages = np.array([-0.5, 0.0, 0.99, 1.0, 3.0, 127.0, 200.0, np.nan])
    assert age_bucket(ages).tolist() == [0, 1, 1, 2, 3, 8, 9, -1]
    assert age_buckets() == ["not yet", "<1", "1-2", "2-4", "4-8", "8-16", "16-32", "32-64", "64-128", ">=128"]


def test_predicted_shares_are_the_softmax_mass_by_the_items_age_at_each_examples_time():
    upload = np.array([0.0, 10 * DAY, np.nan])  # the third item's upload time is unknown
    event_time = np.array([5 * DAY, 20 * DAY])
    logits = np.array([[0.0, 0.0, 0.0], [np.log(3.0), 0.0, 0.0]])  # softmax 1/3 each; 3/5, 1/5, 1/5
    shares = predicted_shares(logits, upload, event_time)
    expected = np.zeros(10)
    expected[0] = (1 / 3) / 2  # item 1 at day 5: not uploaded yet
    expected[4] = (1 / 3) / 2  # item 0 at day 5: 4-8 days old
    expected[5] = (1 / 5) / 2  # item 1 at day 20: 8-16 days old
    expected[6] = (3 / 5) / 2  # item 0 at day 20: 16-32 days old
    assert shares == pytest.approx(expected)


def test_predicted_shares_are_not_thrown_off_by_large_logits():
    shares = predicted_shares(np.array([[1000.0, 0.0]]), np.array([0.0, 0.0]), np.array([0.5 * DAY]))
    assert shares[1] == pytest.approx(1.0) and np.isfinite(shares).all()


def test_empirical_shares_count_the_labels_by_their_age_at_the_watch():
    upload = np.array([np.nan, 0.0, 30 * DAY, np.nan])  # index 0 is padding, item 3 unknown
    labels = np.array([1, 1, 2, 3])
    event_time = np.array([0.5 * DAY, 40 * DAY, 33 * DAY, 9 * DAY])
    shares = empirical_shares(labels, upload, event_time)
    expected = np.zeros(10)
    expected[[1, 7, 3]] = 1 / 3  # <1 day, 32-64 days, 2-4 days; the unknown one left out
    assert shares == pytest.approx(expected)
