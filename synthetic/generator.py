"""A synthetic click log shaped like a video platform's, deterministic and at any scale.

`generate(out, users=..., items=..., events=...)` writes a DATA_DIR in the canonical layout
(clicks/, users/, items/, searches/, schemas from core.contract) that the pipeline reads
like any real log. `build_world(...)` returns the latent truth the log is sampled from (user
interests, item popularity and upload times), for tests and for experiments that ask whether
a model recovers it. Every number of the model is a module constant below.

The model
---------
Topics. T = 20 + 10 * log10(items / 1000) topics, clipped to [20, 50] (and at most `items`),
each with a size weight w_t ~ Gamma(2) and its own list of 23 pronounceable pseudo-words
(syllable combinations, unique across topics). Titles and queries are made of these words,
so a query or a title says which topic it belongs to.

Items. Each item has a topic (1 + Multinomial(items - T, w) items per topic), a base
popularity pop_i = rank_i^-1.1 over a random permutation of ranks (Zipf), a length in
seconds (lognormal, median 6 min), a language (the topic's language 70% of the time) and an
upload time: 20% uniformly in the 30 days before the window (the back catalog; every topic
has at least one such item), the rest uniformly inside the window. An item's click
propensity at time t is

    pop_i * decay(t - upload_i),   decay(a) = 0 for a < 0,
    decay(a) = (1 - EVERGREEN) * 2^(-a / HALF_LIFE) + EVERGREEN  for a >= 0,

with a half-life of 3 days and an evergreen floor of 3%: an item gets most of its clicks in
its first week or two, and the popular old items keep a steady trickle.

Users. Each user has an age bucket, gender, country and device (5% / 3% of age and gender
are missing, as in real profiles), a number of events ~ lognormal(0, 1.4) rescaled so that
every user has at least one and the total is exactly `events`, a join time (70% are there
from the start of the window, 30% join uniformly during it) and 1-3 interest topics (40% /
40% / 20%), drawn without replacement from w_t times a multiplier per (age bucket, topic)
and per (gender, topic), so demographics predict interests a little. The interests weigh
1, (.65, .35) or (.5, .3, .2).

Events. A user's events form sessions of on average 4 events (a new session starts with
probability 1/4); a session starts uniformly between the user's join time and the end of
the window, and each next event comes after the previous watch plus an Exp(20 s) browsing
gap. For each event, with probability 15% the user explores (the item is drawn from the
whole catalog), otherwise one of their topics is drawn by its weight and the item is drawn
from that topic; either way with probability proportional to pop_i * decay(ts - upload_i)
among the items uploaded at or before ts. Because decay is a mixture of an exponential and
a constant, both parts are separable in time (2^(-(t - u)/h) = 2^(u/h) * 2^(-t/h)): with
each topic's items sorted by upload time, two cumulative sums per topic serve every instant
exactly, and an event draws its item with two np.searchsorted calls (no time grid). A
repeated (user, item) click is redrawn up to 16 times, like sampling without replacement,
so repeats are rare but possible: ~2% at 20 clicks per user and 1 item per 2.5 users, more
where a user's clicks outnumber the items of their topics.
watch_seconds ~ lognormal(median 90 s, sigma 1.7), halved on explore clicks and capped at
the item's length (about 3% are under 3 s); watch_fraction = watch_seconds / length, in
(0, 1].

Searches. Each event is preceded, with probability 1/5 and 1-120 s earlier, by a query of
1-4 distinct words from the topic the user was browsing (their first topic when exploring);
the first word is Zipf-distributed over the topic's list, so head queries repeat.

Determinism. Everything is drawn from numpy Generators seeded by SeedSequence(seed) with a
fixed spawn key per purpose and per chunk, so the same arguments give byte-identical files.
Chunks hold whole users (each user's events are in one clicks file, sorted by ts); a
different `chunk_events` changes the chunking and therefore the draws.

Daily partitions. With `partition_by_date`, clicks/ and searches/ are written as
date=YYYY-MM-DD/ folders (the UTC day of ts), the layout a nightly job reads a rolling window
of; the rows are the same as without it, split by day.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from core.contract import CLICKS, DAY_MARKER, INPUT_TABLES, SEARCHES

log = logging.getLogger(__name__)

UTC_US = pa.timestamp("us", tz="UTC")
USERS = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("age_bucket", pa.string()),
        pa.field("gender", pa.string()),
        pa.field("country", pa.string()),
        pa.field("device", pa.string()),
    ]
)
ITEMS = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("upload_ts", UTC_US),
        pa.field("category", pa.string()),  # the item's topic name
        pa.field("language", pa.string()),
    ]
)

US_PER_S = 1_000_000
US_PER_DAY = 86_400 * US_PER_S

# ---------------------------------------------------------------- the model's constants
TOPICS_MIN, TOPICS_MAX = 20, 50
WORDS_PER_TOPIC = 23  # prime, so that a stride through the list gives distinct words
ZIPF_EXPONENT = 1.1  # base popularity rank^-a
HALF_LIFE_DAYS = 3.0  # freshness: propensity halves every 3 days after upload ...
EVERGREEN = 0.03  # ... down to this floor (old popular items keep a trickle)
PREWINDOW_DAYS = 30  # the back catalog was uploaded in the 30 days before the window
PREWINDOW_SHARE = 0.2
ITEM_LENGTH_MEDIAN_S, ITEM_LENGTH_SIGMA = 360.0, 0.8
TOPIC_LANGUAGE_SHARE = 0.7
TITLE_WORDS_P = (0.0, 0.0, 0.25, 0.35, 0.25, 0.15)  # P(title has k words), k = 0..5

ACTIVITY_SIGMA = 1.4  # events per user ~ lognormal(0, sigma), then rescaled
NEW_USER_SHARE = 0.3
TOPICS_PER_USER_P = (0.4, 0.4, 0.2)  # P(1, 2, 3 interest topics)
INTEREST_CUM = np.array([[1.0, 1.0, 1.0], [0.65, 1.0, 1.0], [0.5, 0.8, 1.0]])  # by count
AGE_TOPIC_SIGMA, GENDER_TOPIC_SIGMA = 0.6, 0.4  # log-multipliers of topic choice
EXPLORE = 0.15  # share of clicks drawn from the whole catalog, not the user's topics

SESSION_MEAN_EVENTS = 4
BROWSE_GAP_S = 20.0
WATCH_MEDIAN_S, WATCH_SIGMA = 90.0, 1.7
WATCH_EXPLORE_FACTOR = 0.5  # explore clicks are watched less
REDRAW_ROUNDS = 16  # redraws of a repeated (user, item) click: ~2% repeats remain

QUERY_RATE = 0.2
QUERY_WORDS_P = (0.3, 0.35, 0.25, 0.1)  # P(query has 1, 2, 3, 4 words)
QUERY_LEAD_S = (1.0, 120.0)

AGE_BUCKETS = ("13-17", "18-24", "25-34", "35-44", "45-54", "55+")
AGE_P = (0.08, 0.22, 0.27, 0.19, 0.13, 0.11)
AGE_MISSING = 0.05
GENDERS = ("female", "male", "other")
GENDER_P = (0.49, 0.48, 0.03)
GENDER_MISSING = 0.03
COUNTRIES = ("US", "IN", "BR", "ID", "MX", "GB", "DE", "FR", "JP", "PH", "TR", "KR", "ES", "CA")
DEVICES = ("android", "ios", "web", "tv")
DEVICE_P = (0.45, 0.3, 0.15, 0.1)
LANGUAGES = ("en", "es", "pt", "hi", "id", "fr", "de", "ja", "ko", "tr")

ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
          "br", "dr", "kl", "st", "tr", "sh", "ch")  # fmt: skip
VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")
CODAS = ("", "", "", "n", "r", "s", "l")

# spawn keys of the independent random streams
_WORDS, _ITEMS, _USERS, _CHUNKS = range(4)


@dataclass(frozen=True, eq=False)
class World:
    """The latent truth a synthetic log is sampled from. Arrays are indexed by item / user."""

    start_us: int  # window [start_us, end_us), microseconds since the epoch, UTC
    end_us: int
    topic_names: list[str]
    topic_words: pa.Array  # flat: topic t's words are [t * WORDS_PER_TOPIC, (t+1) * ...)
    item_topic: np.ndarray  # int16
    item_popularity: np.ndarray  # float64, base propensity, sums to 1
    item_upload_us: np.ndarray  # int64
    item_length_s: np.ndarray  # float64
    item_language: np.ndarray  # int8 index into LANGUAGES
    item_title: pa.Array
    user_events: np.ndarray  # int64, >= 1, sums to events
    user_join_us: np.ndarray  # int64
    user_topics: np.ndarray  # int16 [users, 3], -1 past the user's topic count
    user_topic_count: np.ndarray  # int8, 1..3
    user_age: np.ndarray  # int8 index into AGE_BUCKETS, -1 missing
    user_gender: np.ndarray  # int8 index into GENDERS, -1 missing
    user_country: np.ndarray  # int8
    user_device: np.ndarray  # int8

    @property
    def n_topics(self) -> int:
        return len(self.topic_names)


def n_topics_for(items: int) -> int:
    """20 topics for 1k items, 30 for 10k, 40 for 100k, 50 from 1M; never more than items."""
    t = round(20 + 10 * math.log10(max(items, 1) / 1000))
    return int(min(max(t, TOPICS_MIN), TOPICS_MAX, items))


def build_world(
    *, users: int, items: int, events: int, seed: int = 0, start: str = "2026-01-01", days: int = 60
) -> World:
    """Topics, items and users with their latent interests: everything but the events."""
    _check_sizes(users=users, items=items, events=events, days=days, seed=seed)
    start_us = _parse_start(start)
    end_us = start_us + days * US_PER_DAY
    if (PREWINDOW_DAYS + days) / HALF_LIFE_DAYS > 900:
        raise ValueError(f"days={days} is too long for a {HALF_LIFE_DAYS}-day half-life")
    n_topics = n_topics_for(items)

    rng = _rng(seed, _WORDS)
    words = _pseudo_words(rng, n_topics * (WORDS_PER_TOPIC + 1))
    topic_names = [w.capitalize() for w in words[:n_topics]]
    topic_words = pa.array(words[n_topics:], pa.string())
    topic_weight = rng.gamma(2.0, 1.0, n_topics)
    topic_weight /= topic_weight.sum()

    rng = _rng(seed, _ITEMS)
    per_topic = 1 + rng.multinomial(items - n_topics, topic_weight)
    item_topic = rng.permutation(np.repeat(np.arange(n_topics, dtype=np.int16), per_topic))
    rank = rng.permutation(items)
    popularity = (rank + 1.0) ** -ZIPF_EXPONENT
    popularity /= popularity.sum()
    back_catalog = rng.random(items) < PREWINDOW_SHARE
    back_catalog[np.unique(item_topic, return_index=True)[1]] = True  # every topic has one
    u = rng.random(items)
    upload_us = np.where(
        back_catalog,
        start_us - (u * PREWINDOW_DAYS * US_PER_DAY).astype(np.int64) - 1,
        start_us + (u * days * US_PER_DAY).astype(np.int64),
    )
    length_s = np.clip(rng.lognormal(math.log(ITEM_LENGTH_MEDIAN_S), ITEM_LENGTH_SIGMA, items),
                       15.0, 4 * 3600.0)  # fmt: skip
    topic_language = rng.choice(len(LANGUAGES), n_topics, p=_zipf_p(len(LANGUAGES), 1.2))
    language = np.where(
        rng.random(items) < TOPIC_LANGUAGE_SHARE,
        topic_language[item_topic],
        rng.choice(len(LANGUAGES), items, p=_zipf_p(len(LANGUAGES), 1.2)),
    ).astype(np.int8)
    n_title_words = rng.choice(len(TITLE_WORDS_P), items, p=TITLE_WORDS_P)
    title = pc.utf8_capitalize(_phrases(rng, topic_words, item_topic, n_title_words))

    rng = _rng(seed, _USERS)
    age = rng.choice(len(AGE_BUCKETS), users, p=AGE_P).astype(np.int8)
    gender = rng.choice(len(GENDERS), users, p=GENDER_P).astype(np.int8)
    country = rng.choice(len(COUNTRIES), users, p=_zipf_p(len(COUNTRIES), 0.8)).astype(np.int8)
    device = rng.choice(len(DEVICES), users, p=DEVICE_P).astype(np.int8)
    # demographics skew interests: P(topic | age, gender) ∝ w_t * m[age, t] * m[gender, t]
    age_mult = rng.lognormal(0.0, AGE_TOPIC_SIGMA, (len(AGE_BUCKETS), n_topics))
    gender_mult = rng.lognormal(0.0, GENDER_TOPIC_SIGMA, (len(GENDERS), n_topics))
    group_p = (topic_weight * age_mult[:, None, :] * gender_mult[None, :, :]).reshape(-1, n_topics)
    group = age.astype(np.int64) * len(GENDERS) + gender
    topic_count = np.minimum(rng.choice(3, users, p=TOPICS_PER_USER_P) + 1, n_topics)
    user_topics, topic_count = _distinct_topics(rng, group_p, group, topic_count)
    activity = rng.lognormal(0.0, ACTIVITY_SIGMA, users)
    user_events = 1 + _allocate(activity, events - users)
    joins_late = rng.random(users) < NEW_USER_SHARE
    join_span = max(days - 1, 0) * US_PER_DAY
    join_us = start_us + np.where(joins_late, (rng.random(users) * join_span).astype(np.int64), 0)
    # missing demographics are drawn last and do not change who the user is
    age[rng.random(users) < AGE_MISSING] = -1
    gender[rng.random(users) < GENDER_MISSING] = -1

    return World(
        start_us=start_us,
        end_us=end_us,
        topic_names=topic_names,
        topic_words=topic_words,
        item_topic=item_topic,
        item_popularity=popularity,
        item_upload_us=upload_us.astype(np.int64),
        item_length_s=length_s,
        item_language=language,
        item_title=title,
        user_events=user_events,
        user_join_us=join_us.astype(np.int64),
        user_topics=user_topics,
        user_topic_count=topic_count.astype(np.int8),
        user_age=age,
        user_gender=gender,
        user_country=country,
        user_device=device,
    )


def generate(
    out: str,
    *,
    users: int,
    items: int,
    events: int,
    seed: int = 0,
    start: str = "2026-01-01",
    days: int = 60,
    chunk_events: int = 2_000_000,
    partition_by_date: bool = False,
    progress: bool = False,
) -> dict:
    """Write clicks/, users/, items/ and searches/ under the local directory `out`.

    The tables are written into out/.tmp-XXXX and moved into place at the end (clicks/
    last), so an interrupted run leaves no table behind. Returns a summary: row counts per
    table, seed, window and the range of click times.
    """
    if "://" in str(out):
        raise ValueError(f"out={out!r}: synthetic.generate writes to a local directory only")
    if chunk_events < 1:
        raise ValueError(f"chunk_events={chunk_events} must be >= 1")
    existing = [t for t in INPUT_TABLES if os.path.exists(os.path.join(out, t))]
    if existing:
        raise ValueError(
            f"{out} already holds {', '.join(t + '/' for t in existing)}: "
            "remove them or choose another directory"
        )
    world = build_world(users=users, items=items, events=events, seed=seed, start=start, days=days)
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=out)
    try:
        summary = _write(world, tmp, seed=seed, chunk_events=chunk_events, partition_by_date=partition_by_date,
                         progress=progress)
        if partition_by_date:  # each day is complete now: its marker, as a day's writer puts it last
            for table in ("clicks", "searches"):
                for day in os.listdir(os.path.join(tmp, table)):
                    open(os.path.join(tmp, table, day, DAY_MARKER), "w").close()
        for table in ("users", "items", "searches", "clicks"):
            os.rename(os.path.join(tmp, table), os.path.join(out, table))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("synthetic log in %s: %s", out, summary)
    return summary


# ---------------------------------------------------------------- writing


def _write(world: World, root: str, *, seed: int, chunk_events: int, partition_by_date: bool,
           progress: bool) -> dict:
    for table in INPUT_TABLES:
        os.makedirs(os.path.join(root, table))
    n_users, n_items = len(world.user_events), len(world.item_topic)
    user_ids, item_ids = _ids("u", n_users), _ids("i", n_items)
    pq.write_table(_users_table(world, user_ids), os.path.join(root, "users", "part-00000.parquet"))
    pq.write_table(_items_table(world, item_ids), os.path.join(root, "items", "part-00000.parquet"))

    catalog = _Catalog(world)
    first_event = np.concatenate([[0], np.cumsum(world.user_events)])
    total = int(first_event[-1])
    # chunks hold whole users: chunk k starts at the first user whose events start at or
    # after k * chunk_events
    starts = np.searchsorted(first_event[:-1], np.arange(0, total, chunk_events))
    bounds = np.unique(np.append(starts, n_users))
    chunks = range(len(bounds) - 1)
    if progress:
        chunks = tqdm(chunks, desc="synthetic chunks", unit="chunk")
    n_searches, first_ts, last_ts = 0, None, None
    for k in chunks:
        rng = _rng(seed, _CHUNKS, k)
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        clicks, searches = _chunk(world, catalog, lo, hi, rng, user_ids, item_ids)
        name = f"part-{k:05d}.parquet"
        for table, rows in (("clicks", clicks), ("searches", searches)):
            if partition_by_date:
                _write_by_date(rows, os.path.join(root, table), name)
            else:
                pq.write_table(rows, os.path.join(root, table, name))
        n_searches += searches.num_rows
        earliest, latest = (v.as_py() for v in pc.min_max(clicks["ts"].cast(pa.int64())).values())
        first_ts = earliest if first_ts is None else min(first_ts, earliest)
        last_ts = latest if last_ts is None else max(last_ts, latest)
        if not progress:
            log.debug("chunk %d: %d clicks", k, clicks.num_rows)
    return {
        "seed": seed,
        "users": n_users,
        "items": n_items,
        "clicks": total,
        "searches": n_searches,
        "topics": world.n_topics,
        "files": len(bounds) - 1,
        "window_start": _iso(world.start_us),
        "window_end": _iso(world.end_us),
        "first_click": _iso(first_ts),
        "last_click": _iso(last_ts),
    }


def _write_by_date(rows: pa.Table, table_dir: str, name: str) -> None:
    """rows into table_dir/date=YYYY-MM-DD/name, one file per UTC day of ts."""
    days = pc.strftime(rows["ts"], format="%Y-%m-%d")
    for day in pc.unique(days).to_pylist():
        os.makedirs(os.path.join(table_dir, f"date={day}"), exist_ok=True)
        pq.write_table(rows.filter(pc.equal(days, day)), os.path.join(table_dir, f"date={day}", name))


def _users_table(world: World, user_ids: pa.Array) -> pa.Table:
    return pa.Table.from_arrays(
        [
            user_ids,
            _labels(AGE_BUCKETS, world.user_age),
            _labels(GENDERS, world.user_gender),
            _labels(COUNTRIES, world.user_country),
            _labels(DEVICES, world.user_device),
        ],
        schema=USERS,
    )


def _items_table(world: World, item_ids: pa.Array) -> pa.Table:
    return pa.Table.from_arrays(
        [
            item_ids,
            world.item_title,
            pa.array(world.item_upload_us, UTC_US),
            _labels(world.topic_names, world.item_topic),
            _labels(LANGUAGES, world.item_language),
        ],
        schema=ITEMS,
    )


# ---------------------------------------------------------------- events


class _Catalog:
    """Per topic (and one segment for the whole catalog), items sorted by upload time with
    two cumulative propensities, fresh F = cumsum(pop * 2^((u - t0)/h)) and evergreen
    E = cumsum(pop): at time t the items uploaded by t are a prefix, and the propensity
    mass of the prefix is (1-EVERGREEN) * F * 2^(-(t - t0)/h) + EVERGREEN * E."""

    def __init__(self, world: World):
        self.t0 = int(world.item_upload_us.min())
        self.half_life_us = HALF_LIFE_DAYS * US_PER_DAY
        grow = np.exp2((world.item_upload_us - self.t0) / self.half_life_us)
        order = np.lexsort((world.item_upload_us, world.item_topic))
        ends = np.cumsum(np.bincount(world.item_topic, minlength=world.n_topics))
        segments = np.split(order, ends[:-1]) + [np.argsort(world.item_upload_us, kind="stable")]
        self.segments = [
            (
                idx,
                world.item_upload_us[idx],
                np.cumsum(world.item_popularity[idx] * grow[idx]),
                np.cumsum(world.item_popularity[idx]),
            )
            for idx in segments
        ]

    @property
    def everything(self) -> int:
        """The segment index of the whole catalog (explore clicks)."""
        return len(self.segments) - 1

    def draw(self, segment: np.ndarray, ts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One item per event, ∝ pop * decay(ts - upload) among the segment's items uploaded
        at or before ts."""
        picked = np.empty(len(ts), np.int64)
        order = np.argsort(segment, kind="stable")
        bounds = np.searchsorted(segment[order], np.arange(len(self.segments) + 1))
        for s, (idx, upload, fresh_cum, evergreen_cum) in enumerate(self.segments):
            events = order[bounds[s] : bounds[s + 1]]
            if len(events) == 0:
                continue
            t = ts[events]
            # every segment holds a back-catalog item, so last >= 0 inside the window
            last = np.searchsorted(upload, t, side="right") - 1
            decayed = np.exp2(-(t - self.t0) / self.half_life_us)
            fresh_mass = (1 - EVERGREEN) * fresh_cum[last] * decayed
            evergreen_mass = EVERGREEN * evergreen_cum[last]
            fresh = rng.random(len(t)) * (fresh_mass + evergreen_mass) < fresh_mass
            u = rng.random(len(t))
            pos = np.empty(len(t), np.int64)
            for part, cum in ((fresh, fresh_cum), (~fresh, evergreen_cum)):
                pos[part] = np.searchsorted(cum, u[part] * cum[last[part]], side="right")
            picked[events] = idx[np.minimum(pos, last)]
        return picked


def _chunk(
    world: World,
    catalog: _Catalog,
    lo: int,
    hi: int,
    rng: np.random.Generator,
    user_ids: pa.Array,
    item_ids: pa.Array,
) -> tuple[pa.Table, pa.Table]:
    """The clicks and searches of users [lo, hi)."""
    counts = world.user_events[lo:hi]
    n = int(counts.sum())
    user = np.repeat(np.arange(lo, hi, dtype=np.int64), counts)

    # sessions: a user's first event opens one, then each event opens one with p = 1/mean
    first_of_user = np.zeros(n, bool)
    first_of_user[np.cumsum(counts) - counts] = True
    opens = first_of_user | (rng.random(n) < 1.0 / SESSION_MEAN_EVENTS)
    session = np.cumsum(opens) - 1
    session_first = np.flatnonzero(opens)
    session_last = np.append(session_first[1:], n) - 1
    watch_s = rng.lognormal(math.log(WATCH_MEDIAN_S), WATCH_SIGMA, n)
    # the next event comes after this watch and a browsing gap
    gap_us = np.zeros(n, np.int64)
    gap_us[1:] = ((watch_s[:-1] + rng.exponential(BROWSE_GAP_S, n - 1)) * US_PER_S).astype(np.int64)
    gap_us[opens] = 0
    elapsed = np.cumsum(gap_us)
    offset = elapsed - elapsed[session_first][session]
    duration = offset[session_last]
    join = world.user_join_us[user[session_first]]
    latest = np.maximum(join, world.end_us - 1 - duration)
    session_start = join + (rng.random(len(session_first)) * (latest - join)).astype(np.int64)
    ts = np.minimum(session_start[session] + offset, world.end_us - 1)

    # each user's events in time order; ties keep session order
    order = np.lexsort((ts, user))
    user, ts, watch_s = user[order], ts[order], watch_s[order]

    # intent: explore the whole catalog, or one of the user's topics by its weight
    explore = rng.random(n) < EXPLORE
    cum = INTEREST_CUM[world.user_topic_count[user] - 1]
    r = rng.random(n)
    slot = (r > cum[:, 0]).astype(np.int64) + (r > cum[:, 1])
    topic = world.user_topics[user, slot].astype(np.int64)
    segment = np.where(explore, catalog.everything, topic)
    item = catalog.draw(segment, ts, rng)
    n_items = len(world.item_topic)
    for _ in range(REDRAW_ROUNDS):
        # a stable sort keeps time order among equal keys: the earliest click stays
        key = user * n_items + item
        by_key = np.argsort(key, kind="stable")
        repeats = by_key[1:][key[by_key[1:]] == key[by_key[:-1]]]
        if len(repeats) == 0:
            break
        item[repeats] = catalog.draw(segment[repeats], ts[repeats], rng)

    length = world.item_length_s[item]
    watched = np.minimum(np.where(explore, watch_s * WATCH_EXPLORE_FACTOR, watch_s), length)
    watched = np.maximum(np.round(watched, 3), 0.001)
    fraction = np.minimum(watched / length, 1.0)
    clicks = pa.Table.from_arrays(
        [
            user_ids.take(user),
            item_ids.take(item),
            pa.array(ts, UTC_US),
            pa.array(watched, pa.float64()),
            pa.array(fraction, pa.float64()),
        ],
        schema=CLICKS,
    )

    # searches: before some events, a query in the topic the user was browsing
    asked = np.flatnonzero(rng.random(n) < QUERY_RATE)
    query_topic = np.where(explore[asked], world.user_topics[user[asked], 0], topic[asked])
    n_words = rng.choice(len(QUERY_WORDS_P), len(asked), p=QUERY_WORDS_P) + 1
    query = _phrases(rng, world.topic_words, query_topic, n_words, zipf_first=True)
    lead_us = (rng.uniform(*QUERY_LEAD_S, len(asked)) * US_PER_S).astype(np.int64)
    query_ts = np.maximum(ts[asked] - lead_us, world.start_us)
    searches = pa.Table.from_arrays(
        [user_ids.take(user[asked]), pa.array(query_ts, UTC_US), query], schema=SEARCHES
    )
    return clicks, searches


# ---------------------------------------------------------------- small vectorized helpers


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _check_sizes(*, users: int, items: int, events: int, days: int, seed: int) -> None:
    for name, value in (("users", users), ("items", items), ("events", events), ("days", days)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    if events < users:
        raise ValueError(f"events={events} < users={users}: every user has at least one event")


def _parse_start(start: str) -> int:
    try:
        when = datetime.fromisoformat(str(start))
    except ValueError as e:
        raise ValueError(f"start={start!r} is not an ISO date such as 2026-01-01") from e
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int((when - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1))


def _iso(us: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=int(us))).isoformat()


def _zipf_p(n: int, a: float) -> np.ndarray:
    p = np.arange(1, n + 1, dtype=np.float64) ** -a
    return p / p.sum()


def _ids(prefix: str, n: int) -> pa.Array:
    """"u0000123": the prefix and the zero-padded index, at least 7 digits."""
    digits = pc.cast(pa.array(np.arange(n)), pa.string())
    digits = pc.utf8_lpad(digits, max(7, len(str(n - 1))), padding="0")
    return pc.utf8_replace_slice(digits, start=0, stop=0, replacement=prefix)


def _labels(values, index: np.ndarray) -> pa.Array:
    """Category names by index, null where the index is -1."""
    index = np.asarray(index, np.int64)
    return pa.array(list(values), pa.string()).take(pa.array(index, mask=index < 0))


def _pseudo_words(rng: np.random.Generator, n: int) -> list[str]:
    """n distinct pronounceable words of 2-3 syllables (onset, vowel, optional coda)."""
    m = 4 * n + 64
    parts = []
    n_syllables = rng.integers(2, 4, m)
    for s in range(3):
        syllable = pc.binary_join_element_wise(
            pa.array(ONSETS).take(rng.integers(0, len(ONSETS), m)),
            pa.array(VOWELS).take(rng.integers(0, len(VOWELS), m)),
            pa.array(CODAS).take(rng.integers(0, len(CODAS), m)),
            "",
        )
        parts.append(pc.if_else(pa.array(s < n_syllables), syllable, pa.scalar(None, pa.string())))
    words = pc.binary_join_element_wise(*parts, "", null_handling="skip")
    words = words.to_numpy(zero_copy_only=False)
    _, first = np.unique(words, return_index=True)
    distinct = words[np.sort(first)]
    if len(distinct) < n:
        raise RuntimeError(f"only {len(distinct)} distinct pseudo-words for {n} needed")
    return [str(w) for w in distinct[:n]]


def _phrases(
    rng: np.random.Generator,
    topic_words: pa.Array,
    topic: np.ndarray,
    n_words: np.ndarray,
    *,
    zipf_first: bool = False,
) -> pa.Array:
    """One phrase of n_words[i] distinct words of topic[i]'s list per row: a first word
    (uniform, or Zipf over the list) and then a random stride through the (prime-sized) list."""
    n, w = len(topic), WORDS_PER_TOPIC
    if zipf_first:
        first = np.searchsorted(np.cumsum(_zipf_p(w, 1.0)), rng.random(n), side="right")
        first = np.minimum(first, w - 1)
    else:
        first = rng.integers(0, w, n)
    stride = rng.integers(1, w, n)
    slots = []
    for j in range(int(n_words.max(initial=1))):
        flat = np.asarray(topic, np.int64) * w + (first + j * stride) % w
        slots.append(topic_words.take(pa.array(flat, mask=j >= n_words)))
    return pc.binary_join_element_wise(*slots, " ", null_handling="skip")


def _allocate(weight: np.ndarray, total: int) -> np.ndarray:
    """Non-negative integers proportional to weight that sum exactly to total (largest
    remainders get the rounding)."""
    share = weight / weight.sum() * total
    base = np.floor(share).astype(np.int64)
    short = total - int(base.sum())
    if short > 0:
        base[np.argsort(base - share, kind="stable")[:short]] += 1
    elif short < 0:  # float rounding pushed the floors over: take back from the largest
        base[np.argsort(-base, kind="stable")[:-short]] -= 1
    return base


def _distinct_topics(
    rng: np.random.Generator, group_p: np.ndarray, group: np.ndarray, count: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """[users, 3] topics drawn without replacement from each user's group distribution,
    -1 past the user's count, and the count (collisions are redrawn for a few rounds; a
    user still colliding after them keeps fewer topics)."""
    count = count.copy()
    n_groups, n_topics = group_p.shape
    cum = np.cumsum(group_p / group_p.sum(axis=1, keepdims=True), axis=1)
    cum[:, -1] = 1.0
    flat = (cum + np.arange(n_groups)[:, None]).ravel()  # rows stacked on [g, g+1)

    def draw(rows: np.ndarray) -> np.ndarray:
        g = group[rows]
        pos = np.searchsorted(flat, g + rng.random(len(rows)), side="right") - g * n_topics
        return np.minimum(pos, n_topics - 1)

    topics = np.full((len(group), 3), -1, np.int16)
    everyone = np.arange(len(group))
    topics[:, 0] = draw(everyone)
    for slot in (1, 2):
        need = everyone[count > slot]
        topics[need, slot] = draw(need)
        for _ in range(20):
            clash = need[(topics[need, :slot] == topics[need, slot : slot + 1]).any(axis=1)]
            if len(clash) == 0:
                break
            topics[clash, slot] = draw(clash)
        clash = need[(topics[need, :slot] == topics[need, slot : slot + 1]).any(axis=1)]
        topics[clash, slot] = -1
        count[clash] = slot
    return topics, count
