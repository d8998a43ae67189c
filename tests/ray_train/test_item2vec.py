"""item2vec: word2vec's skip-gram loss over (label, recent watch) pairs; co-watched items end
up close."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ray_train.item2vec import NEGATIVES_PER_PAIR, SkipGram


def test_the_loss_is_skip_gram_with_negative_sampling_per_pair():
    model = SkipGram(6, 3, sparse=False)
    torch.nn.init.normal_(model.context.weight)
    labels, history, negatives = torch.tensor([1, 2]), torch.tensor([[3, 4, 5], [5, 0, 0]]), torch.tensor([4, 5])
    loss = model(labels, history, negatives, window=2)
    c, x = model.center.weight, model.context.weight

    def pair(center: int, context: int) -> torch.Tensor:
        negative = sum(F.softplus(c[center] @ x[n]) for n in (4, 5)) / 2
        return F.softplus(-(c[center] @ x[context])) + NEGATIVES_PER_PAIR * negative

    # label 1 pairs with its last 2 watches (4, 5); label 2 with its only watch (5)
    expected = (pair(1, 4) + pair(1, 5) + pair(2, 5)) / 3
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_items_watched_together_get_close_vectors():
    torch.manual_seed(0)
    model = SkipGram(11, 8, sparse=True)
    optimizer = torch.optim.SparseAdam(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        cluster = torch.randint(0, 2, (64, 1), generator=g) * 5  # items 1-5 or 6-10, never mixed
        history = cluster + torch.randint(1, 6, (64, 4), generator=g)
        labels = (cluster + torch.randint(1, 6, (64, 1), generator=g)).squeeze(1)
        loss = model(labels, history, torch.randint(1, 11, (8,), generator=g), window=4)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    v = F.normalize(model.center.weight.detach(), dim=1)
    same = (v[1:6] @ v[1:6].T).mean()
    other = (v[1:6] @ v[6:11].T).mean()
    assert same > other + 0.5, (same, other)
