"""The learning-rate schedule is a function of the epoch, so a resumed run continues it."""

from __future__ import annotations

import pytest

from ray_train.loop import learning_rate
from core.config import ConfigError, TrainConfig, config_from_dict


def test_cosine_decays_from_the_learning_rate_to_one_percent():
    cfg = TrainConfig(learning_rate=0.01, epochs=5, lr_schedule="cosine")
    rates = [learning_rate(cfg, e) for e in range(5)]
    assert rates[0] == pytest.approx(0.01) and rates[-1] == pytest.approx(0.0001)
    assert rates[2] == pytest.approx((0.01 + 0.0001) / 2)
    assert rates == sorted(rates, reverse=True)


def test_constant_is_the_default():
    cfg = TrainConfig(learning_rate=0.02, epochs=4)
    assert {learning_rate(cfg, e) for e in range(4)} == {0.02}


def test_tied_embeddings_with_mismatched_widths_is_a_config_error():
    with pytest.raises(ConfigError, match="tie_embeddings"):
        config_from_dict({"train": {"model": "youtube_dnn", "tie_embeddings": True, "embedding_dim": 32,
                                    "hidden_layers": [64]}})
