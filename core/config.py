"""Typed, frozen configuration for every stage, loaded from YAML and `--set key=value`.

One YAML file may hold a section per stage (`spark:`, `ray:`, `prep:`, `train:`, `recall:`),
`nightly:`, `tune:` and `paths:`;
every section and every key is optional, and every unknown key or bad value is an error that
names the field. Defaults live here, each with the reason it was chosen.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core import storage
from core.contract import DAY_MARKER


class ConfigError(ValueError):
    """A configuration file or override that cannot be used; the message names the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkConfig(_Section):
    # local[*] is the embedded default; on a cluster spark-submit's --master wins
    master: str = "local[*]"
    # the whole prep process (driver JVM + Python) stays under 4 GiB at 30M events (BENCHMARKS.md)
    driver_memory: str = "3g"
    # few partitions suit one machine; raise it with the data on a cluster
    shuffle_partitions: int = Field(8, ge=1)


class RayConfig(_Section):
    # None: start a local Ray instance; "auto" or ray://host:port joins a running cluster
    address: str | None = None
    # logical CPUs of a local instance: None = this machine's cores, at least workers + 1 so
    # Ray Data's read tasks never wait behind the training workers
    num_cpus: int | None = Field(None, ge=1)
    # bytes for the local object store; None = Ray's default (30% of memory, allocated as
    # used). The trainer keeps examples that fit in half of it across epochs
    object_store_memory: int | None = Field(None, ge=75 << 20)


class PrepConfig(_Section):
    # --- input quality
    # the run's anchor: events after it are in the future and rejected; None = job start
    anchor: dt.datetime | None = None
    # more rejected rows than this share of the input fails the job: the input is broken
    max_rejected_fraction: float = Field(0.1, ge=0, le=1)
    # clicks on items missing from the items table (when there is one) are rejected
    reject_unknown_items: bool = True
    # the unit of numeric times (epoch numbers, or numeric text): auto tells seconds,
    # milliseconds and microseconds apart from a sample of the column (a log in ms is read
    # as ms, saying so); a unit given that the values contradict stops the job naming theirs
    ts_unit: Literal["auto", "s", "ms", "us"] = "auto"
    # events before this are implausible (a zero or negative epoch, a default date) and
    # rejected as implausible_timestamp, as events after the anchor are future_timestamp;
    # 1990 keeps MovieLens-100K's 1997-98 ratings; None = no lower bound
    earliest_ts: dt.datetime | None = dt.datetime(1990, 1, 1, tzinfo=dt.timezone.utc)
    # a watch shorter than this is not a positive (where the log has watch_seconds)
    min_watch_seconds: float | None = Field(3.0, ge=0)
    # the same for the watched fraction of the item (where the log has watch_fraction)
    min_watch_fraction: float | None = Field(None, ge=0, le=1)
    # each example's weight in the loss: none (1), watch_seconds, or log1p(watch_seconds)
    # (long watches count more, the paper's weighting toward watch time); a watch without
    # a duration weighs 1. Needs a watch_seconds column unless none.
    example_weight: Literal["none", "watch_seconds", "log_watch_seconds"] = "none"

    # --- split
    # leave_last_out: each user's last watch is evaluated; time: train on watches up to
    # split_time, evaluate each user's first watch in the eval_days that follow
    split: Literal["leave_last_out", "time"] = "leave_last_out"
    split_time: dt.datetime | None = None
    eval_days: float = Field(1.0, gt=0)
    # time only: hold out the eval window's watches of this share of the users (by a hash of
    # the id and the seed) and train on the other users' watches there too (the nightly
    # job's evaluation on its own day); None = every user's
    eval_users_share: float | None = Field(None, gt=0, le=1)
    # hold each user's last training watch out of the examples as a validation target
    # (prep/valid): early stopping, tuning and the baselines' settings are chosen on it, never
    # on the test targets. With leave_last_out it is the second-to-last watch, the protocol of
    # the sequential-recommendation literature; a user needs three watches to give one. With
    # time it is the last watch up to split_time (not the last day: the nightly model keeps
    # its freshest day). false: train on every watch, with no validation and no early stopping
    validation: bool = True

    # --- sample construction
    # rollback window: the label's features come from at most this many earlier watches
    history_len: int = Field(50, ge=1, le=1000)
    # a label needs at least this many earlier watches to become an example
    min_history: int = Field(1, ge=0)
    # hot-item down-sampling of labels, kept with p = (sqrt(f/t) + 1) t / f (word2vec's
    # sub-sampling; f = the item's share of clicks; 1e-3 is word2vec's); None = off. Off by
    # default: with it and the cap below, validation HR@50 was lower on both real data sets
    # (BENCHMARKS.md, "Defaults"): the held-out next watch follows popularity too
    subsample_threshold: float | None = Field(None, gt=0)
    # at most this many examples per user, drawn at random with the seed, so heavy users do
    # not dominate the loss (the paper's fixed number per user, 30); 0 = no cap, the default:
    # on MovieLens-100K the cap threw away two thirds of the watches and 0.09 of
    # validation HR@50
    max_examples_per_user: int = Field(0, ge=0)
    # search history: tokens of the user's queries ("queries"), of the titles of the items
    # they watched ("titles": where a dataset has no search log), or none; "auto" picks the
    # first that the dataset has
    search_source: Literal["auto", "queries", "titles", "none"] = "auto"
    # example_age_raw's unit; example_age itself is that age over the training window, so the
    # model sees the same x = 0 .. 1 whatever the unit
    example_age_unit: Literal["seconds", "minutes", "hours", "days"] = "hours"
    # the bag holds at most this many distinct tokens, the most recent first
    max_search_tokens: int = Field(32, ge=0, le=1000)
    # a token seen fewer times shares the "unknown" index
    min_token_count: int = Field(2, ge=1)
    # a categorical value seen fewer times maps to a shared "unknown" index
    min_category_count: int = Field(2, ge=1)
    # rare or never-seen categorical values and search tokens hash into this many "unknown"
    # indices (1 .. B), each with its own embedding, rather than all sharing one
    oov_buckets: int = Field(8, ge=1, le=1 << 20)
    # user columns used as categorical demographics; None = every other column
    user_categoricals: tuple[str, ...] | None = None
    # numeric user columns, min-max normalized to [0, 1] (the model sees x, x², √x)
    user_continuous: tuple[str, ...] = ()
    # item columns used as categoricals by the two-tower item tower (vocab/item_features);
    # None = every string column of the items table but id and title
    item_categoricals: tuple[str, ...] | None = None
    # a previous run's prep directory: its item and categorical indices are kept and new
    # values appended, so that a warm-started model keeps its rows; None = fresh indices
    previous_vocab: str | None = None
    # a log partitioned by day (clicks/date=YYYY-MM-DD/, and searches/ likewise): read only
    # the days from partition_from to partition_to, each of which must be there; None = all
    partition_from: dt.date | None = None
    partition_to: dt.date | None = None
    # the file whose presence in a day's date=YYYY-MM-DD/ folder says the day landed whole
    # (Spark and Hadoop write _SUCCESS when a job's output is complete); a folder without it
    # is a day still being written and is not read. None = every day folder has landed
    day_marker: str | None = DAY_MARKER
    # "recent" for the evaluation: the recently-popular baseline counts the watches of the
    # last recent_days of the training window, and fresh items were uploaded within them
    recent_days: float = Field(7.0, gt=0)
    # negatives are sampled in proportion to count^alpha (written beside the vocabulary)
    negative_alpha: float = Field(0.75, ge=0)
    # k negatives pre-drawn from that table into each example (negsample=k), for trainers
    # that read them; watchnext's own trainer samples shared negatives per batch instead
    negatives_per_example: int = Field(0, ge=0, le=100)

    # --- output
    # examples are written as this many shuffled Parquet files, the unit Ray Data streams
    example_files: int = Field(8, ge=1)
    seed: int = 42

    @field_validator("anchor", "split_time", "earliest_ts", mode="after")
    @classmethod
    def _utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        # a time without a zone is UTC, like every timestamp of the pipeline
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value

    @model_validator(mode="after")
    def _split_needs_a_time(self) -> "PrepConfig":
        if self.split == "time" and self.split_time is None:
            raise ValueError("split=time needs split_time (e.g. 2026-11-22T00:00:00Z)")
        if (self.partition_from is None) != (self.partition_to is None):
            raise ValueError("partition_from and partition_to go together")
        if self.eval_users_share is not None and self.split != "time":
            raise ValueError("eval_users_share holds out a share of the users in a time split's eval window; "
                             "it needs split=time")
        if self.partition_from is not None and self.partition_from > self.partition_to:
            raise ValueError(f"partition_from {self.partition_from} is after partition_to {self.partition_to}")
        return self


class TrainConfig(_Section):
    # Ray Train workers (DDP ranks); gloo on CPU, nccl on GPU
    workers: int = Field(2, ge=1)
    use_gpu: bool = False
    # mixed precision: forward and loss under bf16 autocast where the device computes bf16
    # natively (a GPU; a CPU with AVX512-BF16 or AMX); other CPUs' steps stay fp32
    amp: bool = True
    cpus_per_worker: float = Field(1.0, gt=0)
    # the most epochs; training stops earlier once val_hr@50 on the validation split has not
    # improved for early_stopping_patience epochs, and the best epoch's weights are exported.
    # A cap and a patience rather than a count, so one default fits a small log and a large
    # one (each data set stopped at its own epoch in BENCHMARKS.md, "Defaults")
    epochs: int = Field(40, ge=1)
    # 0 = train every epoch up to the cap and export the last
    early_stopping_patience: int = Field(3, ge=0)
    # per worker; a large batch shares each set of sampled negatives across more examples
    batch_size: int = Field(512, ge=1)
    learning_rate: float = Field(0.003, gt=0)
    # constant, or cosine: decays per epoch from learning_rate to 1% of it at the last epoch
    lr_schedule: Literal["constant", "cosine"] = "constant"
    # L2 on the dense layers, the item tables too below the sparse-table threshold (sparse
    # tables take none: lazy Adam has no decay). 1e-4 raised validation HR@50 on both real
    # data sets and for both towers: the sequence tower's from 0.467 to 0.560 on
    # MovieLens-100K and from 0.127 to 0.135 on Amazon (BENCHMARKS.md, "Defaults")
    weight_decay: float = Field(1e-4, ge=0)
    # embedding tables with sparse gradients, stepped by SparseAdam (only the rows a batch
    # touched; Adam on the dense layers). On CPU a dense Adam step over a 400k-row table
    # costs ~0.6 s whatever the batch, while on a 2k-row table sparse bookkeeping costs more
    # than it saves (BENCHMARKS.md): auto = on for item vocabularies of at least 20k rows.
    # Never on GPU (NCCL has no sparse all-reduce; a dense step is cheap there) nor for
    # loss = full (it reads every row).
    sparse_embeddings: Literal["auto", "on", "off"] = "auto"
    # youtube_dnn: the paper's user tower against output item embeddings with bias;
    # two_tower: Yi et al.'s item tower over item id (shared with the history table), item
    # categoricals and item age, cosine / temperature; dssm: the same towers with their own
    # tables (ray_train/two_tower.py); sequence: causal self-attention over the watch
    # history (SASRec), its output at the last watch scored like youtube_dnn's
    # (ray_train/sequence.py; hidden_layers unused, the user vector is embedding_dim wide).
    # sequence is the default: on validation it matched youtube_dnn on MovieLens-100K (HR@50
    # 0.560 vs 0.563) and led it on the sparse Amazon log (0.135 vs 0.125), where the order
    # of a user's few watches says the most (BENCHMARKS.md, "Defaults")
    model: Literal["youtube_dnn", "sequence", "two_tower", "dssm"] = "sequence"
    # sequence: Transformer layers, attention heads, and dropout on its inputs and layers
    sequence_layers: int = Field(2, ge=1)
    sequence_heads: int = Field(1, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    # sequence: every_position trains windows that tile each user's watches, every watch
    # predicting the next (an epoch runs the encoder once per watch; a batch holds about
    # batch_size watches); last_position trains each example's window at its label alone
    sequence_training: Literal["every_position", "last_position"] = "every_position"
    # two_tower / dssm: logits are cosine similarities divided by this
    temperature: float = Field(0.05, gt=0)
    # width of the item and demographic input embeddings
    embedding_dim: int = Field(64, ge=1)
    # ReLU tower widths; the last layer's width is the user/item vector size; (64,) is a
    # tower of no hidden layer (one linear map), (1024, 512, 256) the paper's best
    hidden_layers: tuple[int, ...] = (256, 64)
    # the watch-history embeddings are the softmax's item vectors (one table, fewer
    # parameters: an item watched and an item to predict share what is learnt of them); needs
    # embedding_dim equal to the last hidden layer. None: tied for youtube_dnn where the
    # widths allow it, the default since it raised validation HR@50 from 0.066 to 0.099 on
    # the sparse Amazon log (BENCHMARKS.md, "Defaults")
    tie_embeddings: bool | None = None
    # a second bag over the last R watches beside the mean of the whole history (0 = the
    # paper's tower): what the user watched just now, which mean pooling forgets; 5 added
    # 0.03-0.05 of validation HR@50 on both real data sets (BENCHMARKS.md, "Defaults")
    recent_items: int = Field(5, ge=0)
    # example age (x, x^2, sqrt x) as a tower input, 0 at serving: the model learns how
    # popularity moves in time and serves "now" (false only to measure what it is worth)
    example_age: bool = True
    # negatives shared by the whole batch in sampled softmax (capped at the corpus size)
    num_negatives: int = Field(2048, ge=1)
    # uniform: every item alike;
    # log_uniform: Zipfian over frequency-ranked ids (the candidate sampler of word2vec /
    # TensorFlow); unigram: proportional to count^0.75 from the prep vocabulary
    sampler: Literal["uniform", "log_uniform", "unigram"] = "log_uniform"
    # sampled: shared negatives from `sampler`; in_batch: the batch's other labels, corrected
    # by streaming frequency estimates (Yi et al. 2019); mixed: both; full: exact softmax;
    # pointwise: sigmoid cross-entropy of the label and the shared negatives (DSSM);
    # auto: full up to full_softmax_items items, sampled beyond. The exact softmax scored
    # higher on validation on both real data sets (BENCHMARKS.md, "Defaults"), and a step over
    # that many items still costs a few milliseconds; sampled softmax is what scales
    loss: Literal["auto", "sampled", "in_batch", "mixed", "full", "pointwise"] = "auto"
    full_softmax_items: int = Field(50_000, ge=0)
    # subtract log Q (sampled) and the streaming log p (in_batch) from the negatives' logits;
    # false only to measure what the correction is worth
    logq_correction: bool = True
    # hard negatives per example (sampled, in_batch, mixed; 0 = none): items the current
    # model ranks within hard_negative_ranks for the user, among a uniform pool of
    # hard_negative_pool items (ray_train/hard_negatives.py)
    hard_negatives: int = Field(0, ge=0)
    hard_negative_ranks: tuple[int, int] = (100, 500)
    hard_negative_pool: int = Field(8192, ge=1)
    # streaming frequency estimation (in_batch, mixed): hash buckets per function, hash
    # functions (the largest gap estimate wins), and the moving average's learning rate
    frequency_buckets: int = Field(1 << 20, ge=1)
    frequency_hashes: int = Field(2, ge=1, le=16)
    frequency_alpha: float = Field(0.05, gt=0, le=1)
    # validation users (prep/valid) ranked against the full corpus after every epoch
    # (val_hr@50 in metrics.json), on rank 0; 0 = no validation, hence no early stopping.
    # 2,000 users put HR@50's standard error near 0.006 at HR 0.1, and cost seconds an epoch
    # even at a million items
    val_users: int = Field(2000, ge=0)
    # keep the examples in Ray's object store across epochs instead of reading and decoding
    # the Parquet files again every epoch: auto = when they take at most half of the object
    # store (a re-read costs ~2 s per epoch on small data and a third of the CPU on large
    # data, BENCHMARKS.md); larger data always streams
    cache_examples: Literal["auto", "always", "never"] = "auto"
    # cached examples whose share per worker takes at most this many MiB as tensors are kept
    # by the workers themselves after the first epoch, each drawing a fresh order every
    # epoch, with no Ray Data round per epoch (~0.15 s an epoch and CPU time the step wants
    # on small data, BENCHMARKS.md); 0 = every epoch from Ray Data
    worker_cache_mib: int = Field(512, ge=0)
    # item2vec pretraining of the watch-history embeddings for this many epochs before
    # training (0 = none): skip-gram over each label and its last item2vec_window watches
    item2vec_epochs: int = Field(0, ge=0)
    item2vec_window: int = Field(5, ge=1)
    # a previous RUN_DIR to start from: its latest checkpoint, every vocabulary-indexed row
    # moved to its key's index in this run (new keys start fresh; ray_train/warm_start.py)
    warm_start: str | None = None
    seed: int = 7

    @model_validator(mode="after")
    def _tower_not_empty(self) -> "TrainConfig":
        if not self.hidden_layers or min(self.hidden_layers) < 1:
            raise ValueError("hidden_layers needs at least one positive width")
        if self.tie_embeddings and self.model == "youtube_dnn" and self.hidden_layers[-1] != self.embedding_dim:
            raise ValueError(
                f"tie_embeddings needs embedding_dim ({self.embedding_dim}) equal to the last of "
                f"hidden_layers ({self.hidden_layers[-1]})"
            )
        lo, hi = self.hard_negative_ranks
        if not 0 <= lo < hi:
            raise ValueError(f"hard_negative_ranks needs 0 <= first < second, got {self.hard_negative_ranks}")
        if self.hard_negatives and self.loss in ("full", "pointwise"):  # auto picks sampled with them
            raise ValueError(f"hard_negatives join a sampled or in-batch softmax, not loss = {self.loss}")
        if self.item2vec_epochs and self.warm_start:
            raise ValueError("item2vec_epochs and warm_start both initialize the history table: choose one")
        if self.tie_embeddings and self.model not in ("youtube_dnn", "sequence"):
            raise ValueError("tie_embeddings is a youtube_dnn and sequence option; two_tower shares its id "
                             "table by design")
        if self.model == "sequence" and self.embedding_dim % self.sequence_heads:
            raise ValueError(f"embedding_dim ({self.embedding_dim}) must be a multiple of sequence_heads "
                             f"({self.sequence_heads})")
        return self

    @property
    def tied(self) -> bool:
        """tie_embeddings with None resolved (see its comment)."""
        if self.tie_embeddings is not None:
            return self.tie_embeddings
        if self.model == "sequence":  # SASRec's one table, read and scored
            return True
        return self.model == "youtube_dnn" and self.hidden_layers[-1] == self.embedding_dim

    def for_corpus(self, num_items: int) -> "TrainConfig":
        """This section with loss=auto resolved for a corpus of num_items rows."""
        if self.loss != "auto":
            return self
        full = num_items <= self.full_softmax_items and not self.hard_negatives
        return self.model_copy(update={"loss": "full" if full else "sampled"})


class RecallConfig(_Section):
    # items per user in the recall table
    top_k: int = Field(100, ge=1)
    # users per Ray Data batch sent to one scoring actor
    batch_size: int = Field(4096, ge=1)
    # scoring actors; each loads the user tower and the index once. 0 = as many as the
    # cluster's CPUs hold beside one for Ray Data's reads and writes (a local instance started
    # for recall counts one CPU more than the cores: the reads and writes are light beside
    # the actors) and its nodes' memory holds
    actors: int = Field(0, ge=0)
    # FAISS threads per actor, so that actors do not oversubscribe the cores
    faiss_threads: int = Field(1, ge=1)
    # exclude items the user already watched (DESIGN: unless asked otherwise)
    exclude_watched: bool = True
    # items never recommended nor listed as similar: a Parquet or text file of item ids (one
    # per line, or an item_id column); None = none
    exclude_items: str | None = None
    # the FAISS index (serving.index): auto | flat | hnsw | ivf_flat | ivf_pq, in `shards` parts
    index_type: Literal["auto", "flat", "hnsw", "ivf_flat", "ivf_pq"] = "auto"
    shards: int = Field(1, ge=1)
    # auto: flat up to 200k items, then ivf_flat while the vectors fit this, then ivf_pq
    index_memory_gb: float = Field(8.0, gt=0)
    # ivf_*: k-means cells per shard (0 = 4 sqrt(items)), cells scanned per query, rows k-means
    # trains on; ivf_pq: bytes per vector
    nlist: int = Field(0, ge=0)
    nprobe: int = Field(32, ge=1)
    index_train_sample: int = Field(100_000, ge=1)
    pq_m: int = Field(16, ge=1)
    # hnsw: neighbours per node, candidates while building and while searching
    hnsw_m: int = Field(32, ge=2)
    ef_construction: int = Field(200, ge=1)
    ef_search: int = Field(128, ge=1)
    # an approximate index's recall@top_k against exact search, measured on this many users
    # when it is built; its search width (nprobe, ef_search) is the least that reaches
    # ann_target, found from the one above by doubling or halving, then bisecting (0 = the
    # configured width, measured): at 0.98 an approximate list misses 2 of the exact top 100
    # on average
    ann_check_users: int = Field(1000, ge=0)
    ann_target: float = Field(0.98, ge=0, le=1)
    # the similar-item (i2i) table: this many items per item by cosine of the item vectors (0 = none)
    similar_items: int = Field(20, ge=0)
    # the candidate sources merged into each list (serving/channels.py): model (the FAISS
    # search), item2item (co-watch neighbours of the user's last channel_recent watches,
    # channel_neighbours kept per item), popular and fresh (the most watched overall and in
    # prep.recent_days); each one's weight in the merge is chosen by NDCG@50 on channel_users
    # users of the validation split (the model alone is one of the choices, so a channel that
    # does not help there gets weight 0). fresh is left to logs whose recent popularity means
    # something (real times, not an order)
    channels: tuple[Literal["model", "item2item", "popular", "fresh"], ...] = ("model", "item2item", "popular")
    channel_recent: int = Field(5, ge=1)
    channel_neighbours: int = Field(100, ge=1)
    channel_users: int = Field(5000, ge=1)
    # run date of the table partition, YYYY-MM-DD; None = today (UTC)
    run_date: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$")

    @field_validator("run_date", mode="before")
    @classmethod
    def _date_as_text(cls, value: Any) -> Any:
        # YAML reads an unquoted 2026-11-23 as a date
        return value.isoformat() if isinstance(value, dt.date) else value

    @field_validator("channels", mode="after")
    @classmethod
    def _model_first(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "model" not in value or len(set(value)) != len(value):
            raise ValueError("channels needs model, each channel once (e.g. [model, item2item, popular, fresh])")
        return ("model", *(c for c in value if c != "model"))


class ReportConfig(_Section):
    # the scored baselines the report puts beside the model, besides most-popular and
    # recently-popular (one pass each): item_knn, the co-watch similarity over every training
    # user, and als, Spark MLlib's implicit ALS, a fit per point of its 8-point grid and a
    # refit (about 50 s on MovieLens-100K and 3 minutes on the 35k-user Amazon log, 2 cores).
    # Every report has both by default; a run that needs neither may leave them out
    baselines: tuple[Literal["item_knn", "als"], ...] = ("item_knn", "als")


class NightlyConfig(_Section):
    # days of logs each night trains on, ending with the night's date (the rolling window):
    # two weeks hold most items' lives (a few days' half-life) and recent tastes
    window_days: int = Field(14, ge=1, le=366)
    # the previous night is the latest finished night at most this many days back: its
    # vocabulary is kept and its model warm-starts tonight's; none = a cold start
    lookback_days: int = Field(7, ge=1)
    # each night is judged on its own day D before it is published: this share of the users
    # known through D-1 (by a hash of the id) gives its day-D watches to the evaluation (the
    # first one is the target) and the other users' day-D watches train tonight's model. A
    # tenth of a day's users is thousands of targets on a real log, and nine tenths of the
    # freshest day still trains
    eval_share: float = Field(0.1, gt=0, le=1)
    # --- the publish gate (watchnext/gate.py): tonight against the last published night
    # validation HR@50 (the training's, and the exported model's lists' in recall), and the
    # lists' HR@50 on the day's held-out users, may each fall at most this share, or by less
    # than 3 standard errors: a model retrained on one more day moves a few percent, one
    # trained on a broken day (a tenth of the window, the freshest), a collapsed one or one
    # damaged after training far more
    gate_max_val_drop: float = Field(0.1, ge=0, le=1)
    # catalog coverage and the share of full lists may fall at most this share
    gate_max_drop: float = Field(0.2, ge=0, le=1)
    # events a day, users and items within this share of the last published night's (users and
    # items may grow with the window besides): a broken or half-delivered day, or a mix-up of
    # ids, moves them by far more than a day's growth
    gate_count_band: float = Field(0.5, gt=0)
    # the share of rejected rows may rise at most this much (prep.max_rejected_fraction stops
    # prep itself above its own bound)
    gate_max_rejected_rise: float = Field(0.02, ge=0, le=1)
    # every night: at least this share of the users get a full top-K list
    gate_min_full_lists: float = Field(0.5, ge=0, le=1)


class TuneConfig(_Section):
    # wall-clock minutes for the whole of `watchnext tune`, its preps first, then trials until
    # the time is spent: on MovieLens-100K and 2 cores the default space's 4 preps take about 3
    # of the 30 (a prep ~40 s, BENCHMARKS.md), the rest goes to trials, ASHA cutting the weak
    # ones short after a few epochs
    budget_minutes: float = Field(30.0, gt=0)
    # trials drawn at most (the first is the base configuration itself, so the choice is never
    # worse than it on validation); high enough that the budget, not the count, ends the
    # search on a small log (ASHA stops most trials after tune.grace_epochs, ~20 s each there)
    max_trials: int = Field(100, ge=1)
    # trials training at once; None = as many as the cluster holds, each trial needing
    # train.workers x cpus_per_worker CPUs (GPUs with use_gpu) plus one CPU for its data reads
    trials_at_once: int | None = Field(None, ge=1)
    # epochs every trial trains before ASHA may stop it: the first epoch of a small learning
    # rate or a cosine schedule says little about where a trial ends
    grace_epochs: int = Field(2, ge=1)
    # the search space, {section.key: {choice: [values]} | {uniform: [low, high]} |
    # {loguniform: [low, high]}}; None = watchnext.tune.SEARCH_SPACE (its reasons are there)
    space: dict[str, dict[str, list[Any]]] | None = None
    # the random draw of the trials' settings
    seed: int = 0


class PathsConfig(_Section):
    # when set, every path a command reads or writes (--data, --out, --run, prep.previous_vocab,
    # train.warm_start, recall.exclude_items) must lie under one of these local folders or
    # URI prefixes (s3://bucket/prefix); symbolic links and ".." are resolved first. Empty =
    # anywhere.
    allowed_roots: tuple[str, ...] = ()


class Config(_Section):
    spark: SparkConfig = SparkConfig()
    ray: RayConfig = RayConfig()
    prep: PrepConfig = PrepConfig()
    train: TrainConfig = TrainConfig()
    recall: RecallConfig = RecallConfig()
    report: ReportConfig = ReportConfig()
    nightly: NightlyConfig = NightlyConfig()
    tune: TuneConfig = TuneConfig()
    paths: PathsConfig = PathsConfig()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def check_paths(self, **paths: str | None) -> None:
        """Raise ConfigError unless each given path, and each path in the configuration, lies
        under paths.allowed_roots (when set); keywords name the paths in the message."""
        roots = self.paths.allowed_roots
        if not roots:
            return
        named = {**paths, "prep.previous_vocab": self.prep.previous_vocab, "train.warm_start": self.train.warm_start,
                 "recall.exclude_items": self.recall.exclude_items}
        allowed = ", ".join(roots)
        for name, path in named.items():
            if path is None:
                continue
            if not any(storage.is_under(path, root) for root in roots):
                raise ConfigError(f"{name} {path} is outside the allowed roots (paths.allowed_roots: {allowed})")
            # what the command will find inside: a link is followed where it points
            for link, target in storage.links_within(path):
                if not any(storage.is_under(target, root) for root in roots):
                    raise ConfigError(f"{name}: {link} links to {target}, outside the allowed roots "
                                      f"(paths.allowed_roots: {allowed}); copy what it holds inside them")


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Read an optional YAML file, apply `section.key=value` overrides, and validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read config file {path}: {err}") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must be a mapping of sections")
    for item in overrides:
        _apply_override(raw, item)
    return config_from_dict(raw, source=str(path) if path else "--set")


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {_explain(e)}" for e in err.errors()
        )
        raise ConfigError(f"invalid configuration ({source}): {problems}") from None


def _explain(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    return error["msg"]


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, value = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) != 2 or not all(parts):
        raise ConfigError(f"--set expects section.key=value, got {item!r}")
    section, name = parts
    target = raw.setdefault(section, {})
    if not isinstance(target, dict):
        raise ConfigError(f"--set {item!r}: {section} is not a section")
    # YAML parses the value, so 3, 0.5, true, null and [256, 64] mean what they look like
    target[name] = yaml.safe_load(value) if value.strip() else ""
