"""The publish gate of the nightly job: tonight's lists reach users only when the night looks
like the nights before it.

A night is described by a few numbers (NightStats): the model's validation HR@50 (prep/valid,
never the held-out day), the recall table's catalog coverage and share of users with a full
list, and prep's counts (events read, users, items, the share of rejected rows). The gate
compares them with the last published night's (NightlyConfig.gate_*) and names every rule a
night breaks: a broken log day (few events, many rejected rows), a collapsed model (validation
HR@50 far below yesterday's), a vocabulary mix-up (the users or items counts jump) or lists
that went short.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pyarrow.compute as pc

from ray_train.validation import VAL_K
from core import storage
from core.config import NightlyConfig
from core.layout import RunLayout

VAL_METRIC = f"val_hr@{VAL_K}"


@dataclass(frozen=True)
class NightStats:
    """What the gate reads of a night; kept in nightly/D.json under "gate"."""

    val_hr50: float | None  # the exported epoch's validation HR@50; None without a validation split
    coverage: float  # distinct recommended items / items indexed
    full_lists: float  # share of the recall table's users with top_k items
    days: int  # days in the night's window (it grows until nightly.window_days)
    events_in: int
    users: int
    items: int
    rejected_share: float  # rejected rows / events read

    @classmethod
    def of(cls, run: RunLayout, prep: dict[str, Any], model: dict[str, Any], recall: dict[str, Any],
           run_date: str, days: int) -> NightStats:
        """The stats of a finished run (its stage manifests) and its recall table of run_date."""
        metrics = model["metrics"]
        best = metrics.get("best_epoch", metrics["epochs"][-1]["epoch"])
        validated = next((e.get(VAL_METRIC) for e in metrics["epochs"] if e["epoch"] == best), None)
        lists = storage.parquet_dataset(run.recall.table_partition(run_date)).to_table(columns=["item_ids"])
        column = lists.column("item_ids")
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        counts = prep["counts"]
        return cls(
            val_hr50=None if validated is None else float(validated),
            coverage=int(pc.count_distinct(pc.list_flatten(column)).as_py()) / max(int(recall["index"]["items"]), 1),
            full_lists=float((lengths >= int(recall["config"]["top_k"])).mean()) if len(lengths) else 0.0,
            days=days, events_in=int(counts["events_in"]), users=int(counts["users"]), items=int(counts["items"]),
            rejected_share=sum(counts.get("rejected", {}).values()) / max(int(counts["events_in"]), 1),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> NightStats:
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__})


def refusals(tonight: NightStats, last: NightStats | None, cfg: NightlyConfig) -> list[str]:
    """Why tonight must not be published, against the last published night (empty: it may
    be). The first night, with none before it, is judged on its own lists alone."""
    reasons = []
    if tonight.full_lists < cfg.gate_min_full_lists:
        reasons.append(f"{tonight.full_lists:.1%} of the users have a full list, under "
                       f"nightly.gate_min_full_lists={cfg.gate_min_full_lists:g}")
    if last is None:
        return reasons
    drop = cfg.gate_max_drop
    for name, now, before in (("validation HR@50", tonight.val_hr50, last.val_hr50),
                              ("catalog coverage", tonight.coverage, last.coverage),
                              ("the share of full lists", tonight.full_lists, last.full_lists)):
        if now is not None and before is not None and now < before * (1 - drop):
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
