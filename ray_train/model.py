"""YouTubeDNN (Covington et al. 2016): a user tower scored against item output embeddings.

    u = tower([mean(E_in[history]), mean(E_in[last R watches]), mean(E_tok[search tokens]),
               demographic embeddings, age, age^2, sqrt(age), continuous c, c^2, sqrt(c)])
    P(watch = j | user) = softmax_j(u . W_out[j] + b_out[j])

The user vector u is what serving computes once per user (example age 0); W_out and b_out
are the item vectors it searches.

The paper pools the whole watch history with one mean, which forgets order. The last R
watches (`recent_items`; 0 = the paper's tower), pooled with learnt weights per position
from the end, read the same embedding table and tell the tower what the user watched just
now: on ml-100k's leave-last-out protocol, where the next watch follows the last few
closely, it is measured in BENCHMARKS.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the model: saved beside every checkpoint and export."""

    num_items: int  # item vocabulary size, padding index 0 included
    categorical_sizes: tuple[int, ...]  # per demographic feature, 0 = missing, 1 = unknown
    embedding_dim: int
    hidden_layers: tuple[int, ...]
    num_tokens: int = 0  # search-token vocabulary size (0 = no search history)
    num_continuous: int = 0  # continuous user features in [0, 1]
    tie_embeddings: bool = False  # the history bag reads the output item vectors
    recent_items: int = 0  # a second bag over the last R watches (0 = none)
    model: str = "youtube_dnn"  # youtube_dnn | sequence (ray_train.sequence) | two_tower | dssm
    item_categorical_sizes: tuple[int, ...] = ()  # the item tower's categoricals
    temperature: float = 0.05  # two_tower / dssm: logits are cosines / temperature
    example_age: bool = True  # the tower reads example age (False: the ablation without it)
    sequence_length: int = 50  # sequence: positions (the prep's history_len)
    sequence_layers: int = 2  # sequence: Transformer layers
    sequence_heads: int = 1  # sequence: attention heads per layer
    dropout: float = 0.2  # sequence: on the inputs, attention and feed-forward

    @property
    def user_dim(self) -> int:
        return self.embedding_dim if self.model == "sequence" else self.hidden_layers[-1]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        return cls(
            num_items=int(d["num_items"]),
            categorical_sizes=tuple(int(n) for n in d["categorical_sizes"]),
            embedding_dim=int(d["embedding_dim"]),
            hidden_layers=tuple(int(n) for n in d["hidden_layers"]),
            num_tokens=int(d.get("num_tokens", 0)),
            num_continuous=int(d.get("num_continuous", 0)),
            tie_embeddings=bool(d.get("tie_embeddings", False)),
            recent_items=int(d.get("recent_items", 0)),
            model=str(d.get("model", "youtube_dnn")),
            item_categorical_sizes=tuple(int(n) for n in d.get("item_categorical_sizes", ())),
            temperature=float(d.get("temperature", 0.05)),
            example_age=bool(d.get("example_age", True)),
            sequence_length=int(d.get("sequence_length", 50)),
            sequence_layers=int(d.get("sequence_layers", 2)),
            sequence_heads=int(d.get("sequence_heads", 1)),
            dropout=float(d.get("dropout", 0.2)),
        )


def categorical_dim(cardinality: int, embedding_dim: int) -> int:
    """Small vocabularies (gender) need few dimensions; none needs more than the items get."""
    return max(2, min(embedding_dim, 16, cardinality))


def mean_bag(embedding: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """Mean of the embeddings of the non-padding ids of each row (zeros for an empty row).

    One fused gather-and-reduce: the [rows, width, dim] tensor of looked-up vectors is never
    built (the profile of a training step had it as the largest cost after the logits)."""
    if embedding.sparse:
        return F.embedding_bag(ids, embedding.weight, mode="mean", padding_idx=0, sparse=True)
    return _MeanBag.apply(ids, embedding.weight)


class _MeanBag(torch.autograd.Function):
    """The mean bag of a table with a dense gradient, whose backward is one sparse-dense
    product: d table = A^T d bags, A holding 1 / (row's length) at (row, id) of every
    non-padding id. The library's dense backward sorts the ids first, which took most of
    the bags' time in a profile of a CPU step on ml-100k."""

    @staticmethod
    def forward(ctx, ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.rows = weight.shape[0]
        return F.embedding_bag(ids, weight, mode="mean", padding_idx=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        (ids,) = ctx.saved_tensors
        real = ids > 0
        lengths = real.sum(1)
        bags = torch.arange(ids.shape[0], device=ids.device).repeat_interleave(lengths)
        share = (1.0 / lengths.clamp(min=1).float())[bags]
        spread = torch.sparse_coo_tensor(torch.stack([ids[real], bags]), share,
                                         (ctx.rows, ids.shape[0]), check_invariants=False)
        return None, torch.sparse.mm(spread, grad.float())  # fp32 tables, bf16 bags under autocast


def relu_tower(width: int, widths: tuple[int, ...]) -> nn.Sequential:
    """Linear layers of the given widths with ReLU between them; the last layer is linear, so
    the output vector may point anywhere."""
    layers: list[nn.Module] = []
    for i, out in enumerate(widths):
        layers.append(nn.Linear(width, out))
        if i < len(widths) - 1:
            layers.append(nn.ReLU())
        width = out
    return nn.Sequential(*layers)


def last_watches(history: torch.Tensor, count: int) -> torch.Tensor:
    """The last `count` watches of each oldest-first, right-padded history; earlier ones
    become padding."""
    length = (history > 0).sum(1, keepdim=True)
    position = torch.arange(history.shape[1], device=history.device).unsqueeze(0)
    return history.masked_fill(position < length - count, 0)


class RecentWatches(nn.Module):
    """The last `count` watches pooled with a learnt weight per position from the end (a
    softmax over the positions a history has): the tower can weigh the very last watch above
    the ones before it. The weights start equal: the mean of the last `count`."""

    def __init__(self, count: int):
        super().__init__()
        self.count = count
        self.position_logits = nn.Parameter(torch.zeros(count))

    def forward(self, table: nn.Embedding, history: torch.Tensor) -> torch.Tensor:
        length = (history > 0).sum(1, keepdim=True)
        back = torch.arange(self.count, device=history.device).unsqueeze(0)  # 0 = the last watch
        ids = history.gather(1, (length - 1 - back).clamp(min=0)).masked_fill(back >= length, 0)
        weights = self.position_logits.softmax(0) * (ids > 0)
        weights = weights / weights.sum(1, keepdim=True).clamp(min=1e-12)
        return (table(ids) * weights.unsqueeze(-1)).sum(1)


class UserTower(nn.Module):
    """Watch-history bag + search-token bag + demographics + example age -> ReLU layers ->
    linear user vector.

    `sparse`: the item-sized tables get sparse gradients (training on CPU: a step touches a
    few thousand of a million rows). Only those: a batch always touches some item rows, while
    a batch without a single search token would give its rank an empty sparse gradient, which
    gloo's sparse all-reduce does not survive (pytorch/pytorch#87497)."""

    def __init__(self, spec: ModelSpec, sparse: bool = False):
        super().__init__()
        self.history = nn.Embedding(spec.num_items, spec.embedding_dim, padding_idx=0, sparse=sparse)
        self.search = (
            nn.Embedding(spec.num_tokens, spec.embedding_dim, padding_idx=0) if spec.num_tokens > 0 else None
        )
        self.demographics = nn.ModuleList(
            nn.Embedding(n, categorical_dim(n, spec.embedding_dim)) for n in spec.categorical_sizes
        )
        self.recent = RecentWatches(spec.recent_items) if spec.recent_items > 0 else None
        self.example_age = spec.example_age
        width = spec.embedding_dim * (1 + (self.search is not None) + (spec.recent_items > 0))
        width += sum(e.embedding_dim for e in self.demographics) + 3 * spec.example_age + 3 * spec.num_continuous
        self.mlp = relu_tower(width, spec.hidden_layers)

    def forward(self, history: torch.Tensor, search_tokens: torch.Tensor, demographics: torch.Tensor,
                continuous: torch.Tensor, example_age: torch.Tensor) -> torch.Tensor:
        parts = [mean_bag(self.history, history)]
        if self.example_age:
            age = example_age.unsqueeze(-1)
            parts += [age, age * age, age.clamp(min=0).sqrt()]
        if self.recent is not None:
            parts.append(self.recent(self.history, history))
        parts += [continuous, continuous * continuous, continuous.clamp(min=0).sqrt()]
        if self.search is not None:
            parts.append(mean_bag(self.search, search_tokens))
        parts += [emb(demographics[:, i]) for i, emb in enumerate(self.demographics)]
        return self.mlp(torch.cat(parts, dim=-1))


def sparse_tables(module: nn.Module) -> list[nn.Parameter]:
    """The tables with sparse gradients (each once: a shared table is two modules' weight)."""
    tables = {id(m.weight): m.weight for m in module.modules() if isinstance(m, nn.Embedding) and m.sparse}
    return list(tables.values())


class YouTubeDNN(nn.Module):
    """A user tower and the softmax layer over the item corpus: the paper's tower (UserTower),
    or any module with its inputs, an `history` item table and a user_dim-wide output
    (sequence.SequenceTower)."""

    def __init__(self, spec: ModelSpec, sparse: bool = False, user_tower: nn.Module | None = None):
        super().__init__()
        self.spec = spec
        self.user_tower = user_tower if user_tower is not None else UserTower(spec, sparse)
        if spec.tie_embeddings:
            if spec.embedding_dim != spec.user_dim:
                raise ValueError(
                    f"tied item embeddings need embedding_dim ({spec.embedding_dim}) equal to the "
                    f"user vector's width ({spec.user_dim})"
                )
            # one table: the watch history is embedded with the vectors the softmax scores
            self.item_output = self.user_tower.history
        else:
            self.item_output = nn.Embedding(spec.num_items, spec.user_dim, sparse=sparse)
        self.item_bias = nn.Embedding(spec.num_items, 1, sparse=sparse)
        nn.init.normal_(self.item_output.weight, std=spec.user_dim ** -0.5)
        nn.init.zeros_(self.item_bias.weight)

    def item_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(vectors, bias) of every item index, padding row 0 included."""
        return self.item_output.weight, self.item_bias.weight.squeeze(-1)

    def sparse_parameters(self) -> list[nn.Parameter]:
        return sparse_tables(self)

    def forward(self, history: torch.Tensor, search_tokens: torch.Tensor, demographics: torch.Tensor,
                continuous: torch.Tensor, example_age: torch.Tensor, **options) -> torch.Tensor:
        """The user tower's output (`options`: the sequence tower's every_position)."""
        return self.user_tower(history, search_tokens, demographics, continuous, example_age, **options)
