"""The user tower: history bag ignores padding; shapes follow the spec."""

from __future__ import annotations

import torch

from ray_train.model import ModelSpec, YouTubeDNN

SPEC = ModelSpec(num_items=20, categorical_sizes=(4, 6), embedding_dim=8, hidden_layers=(16, 5), num_tokens=9,
                 num_continuous=1)
NO_TOKENS = torch.zeros((1, 3), dtype=torch.long)
C = torch.tensor([[0.5]])


def test_padding_does_not_change_the_user_vector():
    model = YouTubeDNN(SPEC).eval()
    demo = torch.tensor([[2, 3]])
    age = torch.tensor([0.25])
    short = model(torch.tensor([[3, 4, 0, 0]]), torch.tensor([[5, 0]]), demo, C, age)
    long = model(torch.tensor([[3, 4, 0, 0, 0, 0, 0]]), torch.tensor([[5, 0, 0, 0]]), demo, C, age)
    assert torch.allclose(short, long)
    assert short.shape == (1, 5)


def test_history_is_mean_pooled():
    model = YouTubeDNN(SPEC).eval()
    tower = model.user_tower
    bag = tower.history(torch.tensor([3, 4])).mean(0)
    repeated = model(torch.tensor([[3, 4, 3, 4]]), NO_TOKENS, torch.tensor([[0, 0]]), C, torch.tensor([0.0]))
    once = model(torch.tensor([[3, 4, 0, 0]]), NO_TOKENS, torch.tensor([[0, 0]]), C, torch.tensor([0.0]))
    assert torch.allclose(repeated, once, atol=1e-6)
    assert bag.shape == (8,)


def test_search_tokens_change_the_user_vector():
    model = YouTubeDNN(SPEC).eval()
    history, demo, age = torch.tensor([[3, 4]]), torch.tensor([[1, 1]]), torch.tensor([0.0])
    without = model(history, torch.tensor([[0, 0]]), demo, C, age)
    searched = model(history, torch.tensor([[7, 2]]), demo, C, age)
    assert not torch.allclose(without, searched)


def test_tied_embeddings_share_one_table_between_history_and_softmax():
    spec = ModelSpec(num_items=20, categorical_sizes=(), embedding_dim=6, hidden_layers=(12, 6), tie_embeddings=True)
    tied, untied = YouTubeDNN(spec), YouTubeDNN(ModelSpec(**{**spec.to_dict(), "tie_embeddings": False}))
    assert tied.item_output.weight is tied.user_tower.history.weight
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(untied) - count(tied) == 20 * 6
    assert ModelSpec.from_dict(spec.to_dict()) == spec


def test_tied_embeddings_need_matching_widths():
    import pytest

    with pytest.raises(ValueError, match="embedding_dim"):
        YouTubeDNN(ModelSpec(num_items=20, categorical_sizes=(), embedding_dim=6, hidden_layers=(8,), tie_embeddings=True))


def test_mean_bag_is_the_mean_of_the_non_padding_rows():
    from ray_train.model import mean_bag

    table = torch.nn.Embedding(10, 3, padding_idx=0)
    bags = mean_bag(table, torch.tensor([[2, 5, 0, 0], [0, 0, 0, 0], [7, 7, 1, 0]]))
    assert torch.allclose(bags[0], (table.weight[2] + table.weight[5]) / 2)
    assert torch.equal(bags[1], torch.zeros(3))  # an empty history is a zero vector
    assert torch.allclose(bags[2], (2 * table.weight[7] + table.weight[1]) / 3)


def test_mean_bag_gradient_spreads_each_bag_over_its_ids_and_never_to_padding():
    from ray_train.model import mean_bag

    table = torch.nn.Embedding(10, 3, padding_idx=0)
    ids = torch.tensor([[2, 5, 0, 0], [0, 0, 0, 0], [7, 7, 1, 0]])
    upstream = torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [3.0, 0.0, -3.0]])
    (mean_bag(table, ids) * upstream).sum().backward()
    expected = torch.zeros(10, 3)
    expected[2] = expected[5] = upstream[0] / 2
    expected[7] = 2 * upstream[2] / 3
    expected[1] = upstream[2] / 3
    assert torch.allclose(table.weight.grad, expected)


def test_last_watches_keeps_exactly_the_last_r_of_each_history():
    from ray_train.model import last_watches

    history = torch.tensor([[4, 5, 6, 7, 0, 0], [9, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 0]])
    assert last_watches(history, 2).tolist() == [
        [0, 0, 6, 7, 0, 0], [9, 0, 0, 0, 0, 0], [0, 0, 0, 0, 5, 6], [0, 0, 0, 0, 0, 0],
    ]


def test_recent_items_bag_sees_the_order_that_the_mean_forgets():
    spec = ModelSpec(**{**SPEC.to_dict(), "recent_items": 1})
    model, paper = YouTubeDNN(spec).eval(), YouTubeDNN(SPEC).eval()
    demo, age = torch.tensor([[1, 1]]), torch.tensor([0.0])
    one_order = torch.tensor([[3, 4, 0]])
    other_order = torch.tensor([[4, 3, 0]])
    assert torch.allclose(paper(one_order, NO_TOKENS, demo, C, age), paper(other_order, NO_TOKENS, demo, C, age))
    assert not torch.allclose(model(one_order, NO_TOKENS, demo, C, age), model(other_order, NO_TOKENS, demo, C, age))
    assert ModelSpec.from_dict(spec.to_dict()) == spec


def test_a_tower_without_example_age_ignores_it_and_has_no_weights_for_it():
    spec = ModelSpec(**{**SPEC.to_dict(), "example_age": False})
    model, paper = YouTubeDNN(spec).eval(), YouTubeDNN(SPEC).eval()
    history, demo = torch.tensor([[3, 4, 0]]), torch.tensor([[1, 1]])
    young, old = torch.tensor([0.0]), torch.tensor([5.0])
    assert torch.equal(model(history, NO_TOKENS, demo, C, young), model(history, NO_TOKENS, demo, C, old))
    assert not torch.allclose(paper(history, NO_TOKENS, demo, C, young), paper(history, NO_TOKENS, demo, C, old))
    first = model.user_tower.mlp[0]
    assert first.in_features == paper.user_tower.mlp[0].in_features - 3  # age, age^2, sqrt(age)
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert ModelSpec.from_dict({k: v for k, v in SPEC.to_dict().items() if k != "example_age"}).example_age


def test_recent_watches_start_as_the_mean_of_the_last_r_and_learn_position_weights():
    from ray_train.model import RecentWatches

    table = torch.nn.Embedding(10, 3, padding_idx=0)
    recent = RecentWatches(2)
    pooled = recent(table, torch.tensor([[4, 5, 6, 0], [9, 0, 0, 0], [0, 0, 0, 0]]))
    assert torch.allclose(pooled[0], (table.weight[5] + table.weight[6]) / 2)  # the last two
    assert torch.allclose(pooled[1], table.weight[9])  # one watch: all its weight
    assert torch.equal(pooled[2], torch.zeros(3))
    with torch.no_grad():
        recent.position_logits.copy_(torch.tensor([2.0, 0.0]))  # the last watch counts more
    weighted = recent(table, torch.tensor([[4, 5, 6, 0]]))[0]
    w = torch.tensor([2.0, 0.0]).softmax(0)
    assert torch.allclose(weighted, w[0] * table.weight[6] + w[1] * table.weight[5], atol=1e-6)
