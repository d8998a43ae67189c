"""The publish gate of the nightly job: tonight's lists reach users only when the night looks
like the nights before it.

A night is described by a few numbers (NightStats): the model's validation HR@50 as the
training measured it (prep/valid), the exported model's own lists on validation users as
recall measured them (where it merges channels), the HR@50 of the published lists on the
night's held-out users of day D (runs/D/compare), each with how many users it was measured on;
the recall table's catalog coverage and share of users with a full list; and prep's counts
(events read, users, items, the share of rejected rows). The gate compares them with the last
published night's (NightlyConfig.gate_*) and names every rule a night breaks: a broken log day
(few events, many rejected rows), a collapsed model (validation HR@50 far below yesterday's), a
model damaged after its validation (its served lists far below yesterday's, although the
training's validation is not), a vocabulary mix-up (the users or items counts jump) or lists
that went short.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow.compute as pc

from ray_train.validation import VAL_K
from core import storage
from core.config import NightlyConfig
from core.layout import RunLayout

VAL_METRIC = f"val_hr@{VAL_K}"
# a validation drop is a night's own only beyond this many standard errors (one in about 700
# steady nights would pass 3 by chance alone, were it not also more than the drop allowed)
GATE_Z = 3.0


@dataclass(frozen=True)
class NightStats:
    """What the gate reads of a night; kept in nightly/D.json under "gate"."""

    val_hr50: float | None  # the exported epoch's validation HR@50; None without a validation split
    val_users: int | None  # the validation users it was measured on
    coverage: float  # distinct recommended items / items indexed
    full_lists: float  # share of the recall table's users with top_k items
    days: int  # days in the night's window (it grows until nightly.window_days)
    events_in: int
    users: int
    items: int
    rejected_share: float  # rejected rows / events read
    # the recall table's HR@50 on the night's held-out users of its own day, and how many there
    # were; None without the evaluate step's comparison (or with lists shorter than 50)
    held_out_hr50: float | None = None
    held_out_users: int | None = None
    # the exported model's lists alone (its FAISS search) on recall's sample of validation users,
    # which choose how the channels merge; None when recall merges no channels
    served_val_hr50: float | None = None
    served_val_users: int | None = None

    @classmethod
    def of(cls, run: RunLayout, prep: dict[str, Any], model: dict[str, Any], recall: dict[str, Any],
           run_date: str, days: int, compare: dict[str, Any] | None = None) -> NightStats:
        """The stats of a finished run (its stage manifests, compare the evaluate step's
        comparison on the held-out users) and its recall table of run_date."""
        metrics = model["metrics"]
        best = metrics.get("best_epoch", metrics["epochs"][-1]["epoch"])
        validated = next((e.get(VAL_METRIC) for e in metrics["epochs"] if e["epoch"] == best), None)
        lists = storage.parquet_dataset(run.recall.table_partition(run_date)).to_table(columns=["item_ids"])
        column = lists.column("item_ids")
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        counts = prep["counts"]
        # validation runs on up to train.val_users of prep's validation users
        sampled = model.get("config", {}).get("val_users")
        val_users = None if validated is None or sampled is None else min(int(counts.get("valid_users", 0)),
                                                                          int(sampled))
        held_out = (compare or {}).get("tonight", {}).get(VAL_METRIC.removeprefix("val_"))
        channels = recall.get("channels", {})
        model_alone = channels.get("alone", {}).get("model")
        # each channel's HR@50 and NDCG@50; a recall stage from before kept the one metric it chose by
        served = (model_alone.get("hr@50") if isinstance(model_alone, dict)
                  else model_alone if channels.get("metric") == "hr@50" else None)
        return cls(
            val_hr50=None if validated is None else float(validated),
            val_users=val_users,
            coverage=int(pc.count_distinct(pc.list_flatten(column)).as_py()) / max(int(recall["index"]["items"]), 1),
            full_lists=float((lengths >= int(recall["config"]["top_k"])).mean()) if len(lengths) else 0.0,
            days=days, events_in=int(counts["events_in"]), users=int(counts["users"]), items=int(counts["items"]),
            rejected_share=sum(counts.get("rejected", {}).values()) / max(int(counts["events_in"]), 1),
            held_out_hr50=None if held_out is None else float(held_out),
            held_out_users=None if held_out is None else int(compare["users"]),
            served_val_hr50=None if served is None else float(served),
            served_val_users=None if served is None else int(channels["validation_users"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> NightStats:
        return cls(**{name: raw.get(name) for name in cls.__dataclass_fields__})


def refusals(tonight: NightStats, last: NightStats | None, cfg: NightlyConfig) -> list[str]:
    """Why tonight must not be published, against the last published night (empty: it may
    be). The first night, with none before it, is judged on its own lists alone."""
    reasons = []
    if tonight.full_lists < cfg.gate_min_full_lists:
        reasons.append(f"{tonight.full_lists:.1%} of the users have a full list, under "
                       f"nightly.gate_min_full_lists={cfg.gate_min_full_lists:g}")
    if last is None:
        return reasons
    max_drop = cfg.gate_max_val_drop
    for name, now, users, before, before_users in (
            ("validation HR@50", tonight.val_hr50, tonight.val_users, last.val_hr50, last.val_users),
            ("the exported model's validation HR@50 in recall", tonight.served_val_hr50, tonight.served_val_users,
             last.served_val_hr50, last.served_val_users),
            ("HR@50 on the day's held-out users", tonight.held_out_hr50, tonight.held_out_users, last.held_out_hr50,
             last.held_out_users)):
        if _significant_drop(now, users, before, before_users, max_drop):
            reasons.append(f"{name} {now:.4f} is more than {max_drop:.0%} below the last published night's "
                           f"{before:.4f}, by {_z(now, users, before, before_users):.1f} standard errors "
                           f"(nightly.gate_max_val_drop)")
    drop = cfg.gate_max_drop
    for name, now, before in (("catalog coverage", tonight.coverage, last.coverage),
                              ("the share of full lists", tonight.full_lists, last.full_lists)):
        if now < before * (1 - drop):
            reasons.append(f"{name} {now:.4f} is more than {drop:.0%} below the last published night's "
                           f"{before:.4f} (nightly.gate_max_drop)")
    band = cfg.gate_count_band
    # events per day of the window; users and items may grow with the window up to its full length
    per_day, last_per_day = tonight.events_in / tonight.days, last.events_in / last.days
    if not last_per_day * (1 - band) <= per_day <= last_per_day * (1 + band):
        reasons.append(f"{per_day:.0f} events a day is outside {band:.0%} of the last published night's "
                       f"{last_per_day:.0f} (nightly.gate_count_band)")
    growth = max(1.0, tonight.days / last.days)
    for name in ("users", "items"):
        now, before = getattr(tonight, name), getattr(last, name)
        if not before * (1 - band) <= now <= before * (1 + band) * growth:
            reasons.append(f"{now} {name} is outside {band:.0%} of the last published night's {before} "
                           f"(nightly.gate_count_band)")
    if tonight.rejected_share > last.rejected_share + cfg.gate_max_rejected_rise:
        reasons.append(f"{tonight.rejected_share:.2%} of the rows were rejected, against {last.rejected_share:.2%} "
                       f"the last published night (nightly.gate_max_rejected_rise={cfg.gate_max_rejected_rise:g})")
    return reasons


def _significant_drop(now: float | None, users: int | None, before: float | None, before_users: int | None,
                      max_drop: float) -> bool:
    """HR@50 fell by more than max_drop of the last published night's, and by more than GATE_Z
    standard errors of the difference: a few hundred users move by several percent from night
    to night on their own, a million by a fraction of one. A night without the measure (or
    one from before it was kept) is not judged on it."""
    if now is None or before is None or now >= before * (1 - max_drop):
        return False
    return users is None or before_users is None or _z(now, users, before, before_users) > GATE_Z


def _z(now: float, users: int | None, before: float, before_users: int | None) -> float:
    """The drop from before to now in standard errors of the difference of two shares."""
    if users is None or before_users is None:
        return float("inf")
    error = math.sqrt(now * (1 - now) / max(users, 1) + before * (1 - before) / max(before_users, 1))
    return (before - now) / error if error > 0 else float("inf")
