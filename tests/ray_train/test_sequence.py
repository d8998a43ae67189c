"""The sequence tower: causal (a later watch never changes an earlier output), padding-blind,
its every-position training targets are the next watches, and its export reproduces it."""

from __future__ import annotations

import torch

from ray_train.model import ModelSpec
from ray_train.models import build_model, build_user_tower
from ray_train.sequence import next_watch_targets, pack_rows

SPEC = ModelSpec(num_items=30, categorical_sizes=(4,), embedding_dim=8, hidden_layers=(8,), num_tokens=9,
                 num_continuous=1, tie_embeddings=True, model="sequence", sequence_length=6, sequence_heads=2)


def _inputs(history: list[list[int]], tokens: list[list[int]] | None = None):
    n = len(history)
    return (torch.tensor(history), torch.tensor(tokens or [[0, 0]] * n), torch.tensor([[2]] * n),
            torch.full((n, 1), 0.5), torch.full((n,), 0.25))


def _trained_side(model: torch.nn.Module) -> torch.nn.Module:
    """Side inputs that count: the linear map starts at zero."""
    torch.nn.init.normal_(model.user_tower.side.weight)
    return model


def test_an_output_never_depends_on_a_later_watch():
    torch.manual_seed(0)
    model = build_model(SPEC).eval()
    history, tokens, demo, cont, age = _inputs([[3, 4, 5, 6, 0, 0], [3, 4, 5, 9, 0, 0]])
    out = model(history, tokens, demo, cont, age, every_position=True)
    assert out.shape == (2, 4, 8)
    assert torch.allclose(out[0, :3], out[1, :3], atol=1e-6)  # positions before the changed watch
    assert not torch.allclose(out[0, 3], out[1, 3])


def test_the_user_vector_is_the_output_after_the_last_watch_whatever_the_padding():
    torch.manual_seed(0)
    model = _trained_side(build_model(SPEC)).eval()
    short = model(*_inputs([[3, 4, 5, 0]], [[7, 0]]))
    padded = model(*_inputs([[3, 4, 5, 0, 0, 0]], [[7, 0]]))
    every = model(*_inputs([[3, 4, 5, 0, 0, 0]], [[7, 0]]), every_position=True)
    assert short.shape == (1, 8)
    assert torch.allclose(short, padded, atol=1e-6)
    assert torch.allclose(short[0], every[0, 2], atol=1e-6)  # the search bag joins the last watch


def test_short_histories_share_an_encoder_row_and_give_what_each_gives_alone():
    torch.manual_seed(0)
    tower = build_model(SPEC).user_tower.eval()
    histories = [[3, 4, 0, 0, 0, 0], [5, 0, 0, 0, 0, 0], [6, 7, 8, 9, 0, 0], [0, 0, 0, 0, 0, 0], [2, 1, 3, 0, 0, 0]]
    packing = pack_rows(torch.tensor(histories), 6)
    # next-fit into rows of 6 slots: [3 4 | 5 | pad], [6 7 8 9 | pad], [2 1 3]
    assert packing.items.tolist() == [[3, 4, 5, 0, 0, 0], [6, 7, 8, 9, 0, 0], [2, 1, 3, 0, 0, 0]]
    assert packing.positions.tolist() == [[0, 1, 0, 0, 0, 0], [0, 1, 2, 3, 0, 0], [0, 1, 2, 0, 0, 0]]
    # slot 2 (the 5) reads itself only; slot 1 (the 4) reads the 3 and itself
    assert (~packing.hidden[0]).nonzero().tolist()[:4] == [[0, 0], [1, 0], [1, 1], [2, 2]]
    packed = tower.encode(torch.tensor(histories))
    for row, history in enumerate(histories):
        length = max(sum(1 for i in history if i), 1)
        alone = tower.encode(torch.tensor([history[:length]]))  # one row: nothing to pack
        assert torch.allclose(packed[row, :length], alone[0], atol=1e-5), row
    assert pack_rows(torch.tensor([[1, 2, 3, 4, 0, 0], [5, 6, 7, 0, 0, 0]]), 6) is None  # no row saved


def test_every_watch_of_a_window_predicts_the_next_and_the_last_the_label():
    user = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    history = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0]])
    vectors, targets, weights = next_watch_targets(user, history, torch.tensor([9, 4]), torch.tensor([2.0, 3.0]))
    assert targets.tolist() == [6, 7, 9, 4]
    assert weights.tolist() == [1.0, 1.0, 2.0, 3.0]
    assert torch.equal(vectors, torch.stack([user[0, 0], user[0, 1], user[0, 2], user[1, 0]]))


def test_the_exported_tower_reproduces_the_training_user_vector():
    torch.manual_seed(0)
    model = _trained_side(build_model(SPEC)).eval()
    tower = build_user_tower(ModelSpec.from_dict(SPEC.to_dict()))
    tower.load_state_dict(model.user_tower.state_dict())
    tower.eval()
    inputs = _inputs([[3, 4, 5, 6, 0, 0], [11, 0, 0, 0, 0, 0]], [[7, 2], [0, 0]])
    assert torch.equal(model(*inputs), tower(*inputs))
    assert model.item_output.weight is model.user_tower.history.weight  # tied, as SASRec


def test_a_history_longer_than_the_positions_is_refused():
    import pytest

    model = build_model(SPEC).eval()
    with pytest.raises(ValueError, match="history_len"):
        model(*_inputs([[1, 2, 3, 4, 5, 6, 7]]))
