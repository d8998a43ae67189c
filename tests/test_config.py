"""Configuration: unknown keys and bad values are errors that name the field."""

from __future__ import annotations

import pytest

from core.config import ConfigError, TrainConfig, load_config


def test_defaults_without_a_file():
    cfg = load_config()
    assert cfg.prep.history_len == 50 and cfg.train.workers == 2 and cfg.recall.top_k == 100


def test_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\n  hidden_layers: [128, 32]\nprep:\n  history_len: 20\n")
    cfg = load_config(path, ["train.epochs=5", "recall.exclude_watched=false"])
    assert cfg.train.epochs == 5 and cfg.train.hidden_layers == (128, 32)
    assert cfg.prep.history_len == 20 and cfg.recall.exclude_watched is False


def test_unknown_key_names_the_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"train\.epoch: unknown key"):
        load_config(path)


def test_bad_value_names_the_field():
    with pytest.raises(ConfigError, match=r"train\.learning_rate"):
        load_config(None, ["train.learning_rate=-1"])
    with pytest.raises(ConfigError, match=r"train\.sampler"):
        load_config(None, ["train.sampler=uniformish"])


def test_malformed_override():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["epochs=3"])


def test_config_is_frozen():
    cfg = load_config()
    with pytest.raises(Exception):
        cfg.train.epochs = 2


def test_the_shipped_default_config_is_the_defaults():
    from pathlib import Path

    from core.config import Config

    shipped = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
    assert load_config(shipped) == Config()
    # and it lists every setting, so that it documents them all
    import yaml

    assert yaml.safe_load(shipped.read_text()) == Config().to_dict()


def test_paths_outside_the_allowed_roots_are_refused(tmp_path):
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    (data / "log").mkdir(parents=True)
    elsewhere.mkdir()
    (data / "escape").symlink_to(elsewhere)
    cfg = load_config(None, [f"paths.allowed_roots=['{data}', 's3://bucket/runs']"])
    cfg.check_paths(**{"--data": str(data / "log"), "--out": "s3://bucket/runs/2026-12-02"})
    for name, path in (("--data", str(data / "log" / ".." / ".." / "elsewhere")), ("--data", str(data / "escape")),
                       ("--out", "s3://bucket/other"), ("--out", "s3://bucket/runs/../secrets"),
                       ("--out", "gs://bucket/runs/x"), ("--out", str(data) + "-sibling")):
        with pytest.raises(ConfigError, match=f"{name} .* is outside the allowed roots"):
            cfg.check_paths(**{name: path})
    warm = load_config(None, [f"paths.allowed_roots=['{data}']", f"train.warm_start={elsewhere}"])
    with pytest.raises(ConfigError, match="train.warm_start"):
        warm.check_paths()
    load_config(None, [f"train.warm_start={elsewhere}"]).check_paths(**{"--out": "/anywhere"})  # no roots: any path


def test_loss_auto_is_the_exact_softmax_on_small_corpora_and_sampled_beyond():
    cfg = TrainConfig(full_softmax_items=1000)
    assert cfg.for_corpus(1000).loss == "full" and cfg.for_corpus(1001).loss == "sampled"
    assert TrainConfig(hard_negatives=2).for_corpus(10).loss == "sampled"  # hard negatives join a sampled softmax
    assert TrainConfig(loss="in_batch").for_corpus(10).loss == "in_batch"  # a choice is kept


def test_embeddings_are_tied_by_default_where_the_tower_allows_it():
    assert TrainConfig().tied and TrainConfig(model="youtube_dnn").tied
    assert not TrainConfig(model="youtube_dnn", hidden_layers=(256, 32)).tied  # widths differ: two tables
    assert not TrainConfig(model="two_tower").tied  # the two-tower shares its id table by design
    assert not TrainConfig(tie_embeddings=False).tied


def test_the_sequence_tower_reads_and_scores_one_item_table():
    assert TrainConfig(model="sequence", hidden_layers=(256, 32)).tied  # its width is embedding_dim
    with pytest.raises(ValueError, match="sequence_heads"):
        TrainConfig(model="sequence", embedding_dim=64, sequence_heads=3)


def test_the_report_may_leave_out_the_scored_baselines():
    assert load_config().report.baselines == ("item_knn", "als")
    assert load_config(None, ["report.baselines=[item_knn]"]).report.baselines == ("item_knn",)
    with pytest.raises(ConfigError, match=r"report\.baselines"):
        load_config(None, ["report.baselines=[sasrec]"])


def test_a_link_inside_a_path_is_followed_to_where_it_leads_before_anything_is_read(tmp_path):
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    (data / "clicks").mkdir(parents=True)
    elsewhere.mkdir()
    (elsewhere / "part-0.csv").write_text("user_id,item_id,ts\n")
    cfg = load_config(None, [f"paths.allowed_roots=['{data}']"])
    (data / "clicks" / "part-0.csv").symlink_to(elsewhere / "part-0.csv")
    with pytest.raises(ConfigError, match=r"--data: .*part-0.csv links to .*elsewhere.*outside the allowed roots"):
        cfg.check_paths(**{"--data": str(data)})
    (data / "clicks" / "part-0.csv").unlink()
    (data / "users").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ConfigError, match=r"users links to"):
        cfg.check_paths(**{"--data": str(data)})
    (data / "users").unlink()
    (data / "items").symlink_to(data / "clicks", target_is_directory=True)  # inside the roots: fine
    cfg.check_paths(**{"--data": str(data)})


def test_recall_channels_always_hold_the_model_first():
    assert load_config().recall.channels == ("model", "item2item", "popular")
    assert load_config(None, ["recall.channels=[popular, model]"]).recall.channels == ("model", "popular")
    with pytest.raises(ConfigError, match=r"recall\.channels.*needs model"):
        load_config(None, ["recall.channels=[item2item]"])
