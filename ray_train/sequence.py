"""A sequence user tower: causal self-attention over the watch history (SASRec, Kang &
McAuley 2018, trained with a softmax over the items as in Klenitskiy & Vasilev 2023).

    x_t = E[h_t] + P[t]                                    (h: oldest-first, right-padded)
    z = causal Transformer encoder(dropout(x))             (pre-norm layers, final LayerNorm)
    u = z[last watch] + W [search bag, demographics, age, continuous]

The user vector is the encoder's output at the last watch, which under the causal mask reads
every earlier watch in order, where the YouTube DNN's mean forgets the order; z[t] never reads
a watch after t. E is the softmax's item table (tied, as in SASRec). The side inputs enter
through one linear map that starts at zero: the tower starts as the plain sequence model and
learns what demographics, search tokens and example age add.

Training (train.sequence_training): every_position, the default, trains on windows that tile
each user's watches (prep's watches_after), every watch of a window predicting the next, so an
epoch runs the encoder once per watch; last_position trains every example's window at its
last position alone, as the pooled towers do, which costs a window's encoder per watch.
Either way short histories are packed several to a row of the encoder (pack_rows): on a log
of a few watches per user a batch costs its watches, not its longest history times its size.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import torch
from torch import nn

from ray_train.model import ModelSpec, categorical_dim, mean_bag
from core.config import TrainConfig


def tiles_watches(cfg: TrainConfig) -> bool:
    """Whether training reads the windows that tile each user's watches, every watch of each
    a target (the sequence tower's every_position training)."""
    return cfg.model == "sequence" and cfg.sequence_training == "every_position"


def tile_windows(examples: pa.Table, history_len: int) -> pa.Table:
    """The examples whose windows tile their user's watches: watches_after a multiple of
    history_len, so each window's history ends where the next window's label is."""
    return examples.filter(pa.array(examples.column("watches_after").to_numpy() % history_len == 0))


def windows_per_batch(batch_size: int, windows: int, examples: int) -> int:
    """Windows a batch takes so that it holds about batch_size watches to predict."""
    return max(1, round(batch_size * windows / max(examples, 1)))


@dataclass(frozen=True)
class Packing:
    """Right-padded histories [B, L] laid out several to an encoder row of W slots: watch t of row
    rows[k] (t = steps[k]) sits at slots[k] of the flattened [P, W] `items`, `positions`
    counts from each history's first watch, and `hidden` [P, W, W] is True where a slot may
    not read another: only the earlier slots of its own history are read (a padding slot
    reads itself)."""

    items: torch.Tensor
    positions: torch.Tensor
    hidden: torch.Tensor
    rows: torch.Tensor
    steps: torch.Tensor
    slots: torch.Tensor


def pack_rows(history: torch.Tensor, width: int) -> Packing | None:
    """The histories packed in order into encoder rows of `width` slots, each into the
    current row while it fits, else a new one (next-fit; a history without a watch takes one
    padding slot); None when that saves no row."""
    batch = len(history)
    lengths = (history > 0).sum(1).clamp(min=1)
    starts, row_of, used, rows_used = [], [], width, 0
    for n in lengths.tolist():
        if used + n > width:
            rows_used, used = rows_used + 1, 0
        starts.append(used)
        row_of.append(rows_used - 1)
        used += n
    if rows_used >= batch:
        return None
    device = history.device
    rows = torch.repeat_interleave(torch.arange(batch, device=device), lengths)
    first = torch.cumsum(lengths, 0) - lengths
    steps = torch.arange(len(rows), device=device) - first[rows]
    row_of, starts = torch.tensor(row_of, device=device), torch.tensor(starts, device=device)
    slots = row_of[rows] * width + starts[rows] + steps
    items = torch.zeros(rows_used * width, dtype=history.dtype, device=device)
    items[slots] = history[rows, steps]
    positions = torch.zeros(rows_used * width, dtype=torch.long, device=device)
    positions[slots] = steps
    segment = -1 - torch.arange(rows_used * width, device=device)  # padding: a segment of its own
    segment[slots] = rows
    segment = segment.view(rows_used, width)
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    hidden = ~((segment.unsqueeze(2) == segment.unsqueeze(1)) & causal)
    return Packing(items.view(rows_used, width), positions.view(rows_used, width), hidden, rows, steps, slots)


class SequenceTower(nn.Module):
    """Watch history -> causal Transformer -> the output at the last watch, plus a linear map
    of the side inputs. Same inputs and output width (embedding_dim) as model.UserTower."""

    def __init__(self, spec: ModelSpec, sparse: bool = False):
        super().__init__()
        d = spec.embedding_dim
        if d % spec.sequence_heads:
            raise ValueError(f"embedding_dim ({d}) must be a multiple of sequence_heads ({spec.sequence_heads})")
        self.history = nn.Embedding(spec.num_items, d, padding_idx=0, sparse=sparse)
        self.positions = nn.Embedding(spec.sequence_length, d)
        layer = nn.TransformerEncoderLayer(d, spec.sequence_heads, dim_feedforward=d, dropout=spec.dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, spec.sequence_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.input_dropout = nn.Dropout(spec.dropout)
        self.search = nn.Embedding(spec.num_tokens, d, padding_idx=0) if spec.num_tokens > 0 else None
        self.demographics = nn.ModuleList(nn.Embedding(n, categorical_dim(n, d)) for n in spec.categorical_sizes)
        self.example_age = spec.example_age
        width = d * (self.search is not None) + sum(e.embedding_dim for e in self.demographics)
        width += 3 * spec.example_age + 3 * spec.num_continuous
        self.side = nn.Linear(width, d, bias=False) if width else None
        if self.side is not None:
            nn.init.zeros_(self.side.weight)
        nn.init.normal_(self.positions.weight, std=0.02)

    def encode(self, history: torch.Tensor) -> torch.Tensor:
        """[B, L, d]: the encoder's output at every position of oldest-first, right-padded
        histories; position t reads only the watches up to t. Short histories are packed
        several to a row of the encoder (pack_rows), each with its own positions and a mask
        that keeps it to itself, so a batch of users with few watches costs their watches,
        not the longest history times the batch."""
        width = history.shape[1]
        if width > self.positions.num_embeddings:
            raise ValueError(f"a history of {width} watches is longer than the tower's "
                             f"{self.positions.num_embeddings} positions (prep.history_len)")
        packing = pack_rows(history, self.positions.num_embeddings)
        if packing is None:
            at = torch.arange(width, device=history.device)
            x = self.input_dropout(self.history(history) + self.positions(at).unsqueeze(0))
            causal = torch.triu(torch.full((width, width), float("-inf"), device=history.device), diagonal=1)
            # no key padding mask: padding follows every real watch, so the causal mask hides it
            return self.norm(self.encoder(x, mask=causal, is_causal=True))
        x = self.input_dropout(self.history(packing.items) + self.positions(packing.positions))
        mask = packing.hidden.repeat_interleave(self.encoder.layers[0].self_attn.num_heads, dim=0)
        packed = self.norm(self.encoder(x, mask=mask)).flatten(0, 1)
        out = packed.new_zeros(*history.shape, packed.shape[-1])
        out[packing.rows, packing.steps] = packed[packing.slots]
        return out

    def forward(self, history: torch.Tensor, search_tokens: torch.Tensor, demographics: torch.Tensor,
                continuous: torch.Tensor, example_age: torch.Tensor, every_position: bool = False) -> torch.Tensor:
        """[B, d]: the user vector after each history's last watch; with every_position,
        [B, W, d]: the vector after every watch, W the longest history of the batch (the
        search bag, which may hold searches after an early watch, joins the last one only)."""
        length = (history > 0).sum(1)
        out = self.encode(history[:, :max(int(length.max()), 1)] if len(history) else history)
        at_last = (length - 1).clamp(min=0)
        side = self._side(search_tokens, demographics, continuous, example_age)
        if every_position:
            if side is not None:
                out = out + side[1].unsqueeze(1)
                last = torch.zeros(out.shape[:2], device=out.device, dtype=out.dtype)
                last[torch.arange(len(out), device=out.device), at_last] = 1
                out = out + last.unsqueeze(-1) * side[0].unsqueeze(1)
            return out
        user = out[torch.arange(len(out), device=out.device), at_last]
        user = user * (length > 0).unsqueeze(-1).to(user.dtype)  # no watch yet: the side inputs alone
        return user if side is None else user + side[0] + side[1]

    def _side(self, search_tokens: torch.Tensor, demographics: torch.Tensor, continuous: torch.Tensor,
              example_age: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(the search bag's share, the other side inputs' share) of the user vector; None
        without side inputs. One linear map of their concatenation, split in two."""
        if self.side is None:
            return None
        d = self.side.out_features
        bag = mean_bag(self.search, search_tokens) if self.search is not None else None
        parts = [emb(demographics[:, i]) for i, emb in enumerate(self.demographics)]
        if self.example_age:
            age = example_age.unsqueeze(-1)
            parts += [age, age * age, age.clamp(min=0).sqrt()]
        parts += [continuous, continuous * continuous, continuous.clamp(min=0).sqrt()]
        rest = torch.cat(parts, dim=-1)
        if bag is None:
            return torch.zeros(len(rest), d, device=rest.device, dtype=rest.dtype), self.side(rest)
        weight = self.side.weight
        return bag @ weight[:, :d].T, rest @ weight[:, d:].T


def next_watch_targets(user: torch.Tensor, history: torch.Tensor, labels: torch.Tensor,
                       weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(user vectors [N, d], targets [N], weights [N]) of every watch of a batch of windows:
    the vector after watch t predicts watch t + 1, the one after the last watch the label
    (with the example's weight; the others weigh 1). `user` is [B, W, d] from
    SequenceTower(every_position=True)."""
    width = user.shape[1]
    history = history[:, :width]
    length = (history > 0).sum(1)
    targets = torch.cat([history[:, 1:], torch.zeros_like(history[:, :1])], dim=1)
    rows = torch.arange(len(history), device=history.device)
    at_last = (length - 1).clamp(min=0)
    targets[rows, at_last] = labels
    weight = torch.ones(targets.shape, device=user.device, dtype=torch.float32)
    if weights is not None:
        weight[rows, at_last] = weights.float()
    real = torch.arange(width, device=history.device).unsqueeze(0) < length.unsqueeze(1)
    return user[real], targets[real], weight[real]
