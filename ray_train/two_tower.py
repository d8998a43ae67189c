"""The two-tower model of Yi et al. 2019 (and DSSM, Huang et al. 2013, as used for recall).

    u = normalize(user_tower(features)) / temperature
    v_j = normalize(item_tower([E_id[j], item categorical embeddings, log1p(item age)]))
    logit(j | user) = u . v_j

The user tower is YouTubeDNN's (model.UserTower). The item tower reads the prep job's item
features (vocab/item_features), so an item's vector is shared with items like it: a rarely
watched item is placed by its categories and age, not by its few watches alone.
- two_tower (Yi et al.): the item id embeddings are the user tower's watch-history table,
  one row per item shared between the towers; trained with any softmax objective (in-batch
  with logQ correction is the paper's).
- dssm: each tower has its own tables (the classic twin networks), usually trained pointwise
  (train.loss = pointwise: sigmoid cross-entropy of the label and the sampled negatives).
Scores are cosines over a temperature, with no item bias; serving ranks by the inner product
of the exported user vector (its norm does not change a user's ranking) and the item vectors.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch import nn

from ray_train.model import ModelSpec, UserTower, categorical_dim, relu_tower, sparse_tables
from core import storage
from core.contract import fixed_lists
from core.layout import PrepLayout

ITEM_CHUNK = 65536  # items through the item tower at once when every item is scored


def load_item_features(prep_dir: str, spec: ModelSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """(categories [num_items, F] int64, age [num_items, 2] float32: log1p(days) / scale and
    a known flag) from prep's vocab/item_features; row 0 (padding) and unknown values are 0."""
    features = storage.read_manifest(prep_dir)["features"]
    table = pq.read_table(PrepLayout(prep_dir).item_features)
    index = table.column("index").to_numpy().astype(np.int64)
    count = len(spec.item_categorical_sizes)
    categories = np.zeros((spec.num_items, count), dtype=np.int64)
    categories[index] = fixed_lists(table.column("categories"), count)
    days = table.column("age_days").to_numpy(zero_copy_only=False)
    known = ~np.isnan(days.astype(np.float64))
    age = np.zeros((spec.num_items, 2), dtype=np.float32)
    age[index[known], 0] = np.log1p(days[known]) / float(features.get("item_age_scale", 1.0) or 1.0)
    age[index[known], 1] = 1.0
    return torch.from_numpy(categories), torch.from_numpy(age)


class ItemTower(nn.Module):
    """[item id embedding, item categorical embeddings, age, age known] -> ReLU layers ->
    an L2-normalized item vector. The item features are buffers: saved with the weights."""

    def __init__(self, spec: ModelSpec, ids: nn.Embedding):
        super().__init__()
        self.ids = ids
        self.categories = nn.ModuleList(  # small tables: dense (see UserTower)
            nn.Embedding(n, categorical_dim(n, spec.embedding_dim)) for n in spec.item_categorical_sizes
        )
        self.register_buffer("item_categories", torch.zeros(spec.num_items, len(spec.item_categorical_sizes),
                                                            dtype=torch.long))
        self.register_buffer("item_age", torch.zeros(spec.num_items, 2))
        width = ids.embedding_dim + sum(e.embedding_dim for e in self.categories) + 2
        self.mlp = relu_tower(width, spec.hidden_layers)

    def set_features(self, categories: torch.Tensor, age: torch.Tensor) -> None:
        self.item_categories.copy_(categories)
        self.item_age.copy_(age)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        cats = self.item_categories[ids]
        parts = [self.ids(ids), *(emb(cats[:, i]) for i, emb in enumerate(self.categories)), self.item_age[ids]]
        return F.normalize(self.mlp(torch.cat(parts, dim=-1)), dim=-1)


class TwoTower(nn.Module):
    """User tower and item tower scored by cosine / temperature (see the module docstring)."""

    def __init__(self, spec: ModelSpec, sparse: bool = False):
        super().__init__()
        if spec.tie_embeddings:
            raise ValueError("tie_embeddings is a youtube_dnn option; two_tower shares its id table by design")
        self.spec = spec
        self.user_tower = UserTower(spec, sparse)
        if spec.model == "two_tower":  # Yi et al.: one id table for both towers
            ids = self.user_tower.history
        else:  # dssm: the item tower's own id table
            ids = nn.Embedding(spec.num_items, spec.embedding_dim, padding_idx=0, sparse=sparse)
        self.item_output = ItemTower(spec, ids)
        self.item_bias = NoBias()
        self.scale = 1.0 / spec.temperature

    def forward(self, history: torch.Tensor, search_tokens: torch.Tensor, demographics: torch.Tensor,
                continuous: torch.Tensor, example_age: torch.Tensor) -> torch.Tensor:
        user = self.user_tower(history, search_tokens, demographics, continuous, example_age)
        return F.normalize(user, dim=-1) * self.scale

    def item_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(vectors, bias) of every item index, padding row 0 included, in chunks."""
        ids = torch.arange(self.spec.num_items, device=self.item_output.item_age.device)
        vectors = torch.cat([self.item_output(ids[i:i + ITEM_CHUNK]) for i in range(0, len(ids), ITEM_CHUNK)])
        return vectors, torch.zeros(len(ids), device=ids.device)

    def sparse_parameters(self) -> list[nn.Parameter]:
        return sparse_tables(self)


class NoBias(nn.Module):
    """The two towers score by cosine alone: a zero [n, 1] bias for any ids."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*ids.shape, 1, device=ids.device)

