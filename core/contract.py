"""The Parquet contract between stages, declared once.

Every stage reads and writes through these schemas: jobs/ writes the prep tables, ray_train/
reads them and writes the model tables, serving/ reads both and writes the recall tables, and
report/ reads them all. Where each table lives is core/layout.py's. A change here is a
change of the contract, and every side sees it.

Ids are strings everywhere in the canonical input (MovieLens integers and UUIDs alike), so
that one vocabulary code path serves every dataset. Inside the model an item is an int32
index: 0 is padding, 1 .. n are items ranked by training frequency.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# ---------------------------------------------------------------- canonical input (DATA_DIR)
# A DATA_DIR in canonical layout holds clicks/, users/, items/ and optionally searches/,
# each a folder (or a single file) of Parquet or CSV.

CLICKS = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        # event time, UTC
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        # optional: seconds watched, and/or the fraction of the item watched
        pa.field("watch_seconds", pa.float64()),
        pa.field("watch_fraction", pa.float64()),
    ]
)
CLICKS_REQUIRED = ("user_id", "item_id", "ts")
# a CSV click row that did not parse into the header's columns (too few or too many fields),
# as it was written; set by the reader, rejected as malformed_row
CORRUPT_RECORD = "_corrupt_record"

SEARCHES = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("query", pa.string(), nullable=False),
    ]
)

# users: user_id plus any number of categorical string columns (demographics)
USERS_KEY = "user_id"
# items: item_id, optional title and upload time, plus any number of categorical strings
ITEMS_KEY = "item_id"
ITEMS_TITLE = "title"
ITEMS_UPLOAD_TS = "upload_ts"

INPUT_TABLES = ("clicks", "users", "items", "searches")
# clicks/ and searches/ may be partitioned by day, date=YYYY-MM-DD/; a day's writer puts this
# file in the day's folder last, as Spark and Hadoop jobs do, and a folder without it is a day
# still being written (the default of prep.day_marker)
DAY_MARKER = "_SUCCESS"

# ---------------------------------------------------------------- prep/ (jobs -> ray_train, serving)
# vocab/items: one row per item in the vocabulary
ITEM_VOCAB = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("index", pa.int32(), nullable=False),  # 1 .. n, by training count desc
        pa.field("count", pa.int64(), nullable=False),  # training events of the item
        # of them, those in the last prep.recent_days of the training window
        pa.field("recent_count", pa.int64(), nullable=False),
        # the first training watch; null for an item of the previous vocabulary not seen now
        pa.field("first_ts", pa.timestamp("us", tz="UTC")),
    ]
)

# vocab/<feature>: one row per value of a categorical feature
CATEGORY_VOCAB = pa.schema(
    [
        pa.field("value", pa.string(), nullable=False),
        # 0 = missing, 1 .. B = hashed buckets of rare or unseen values (prep.oov_buckets),
        # B + 1 .. n = values
        pa.field("index", pa.int32(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
    ]
)
# vocab/item_sampling: the negative sampling proposal, probability ∝ count^alpha
ITEM_SAMPLING = pa.schema(
    [
        pa.field("index", pa.int32(), nullable=False),
        pa.field("probability", pa.float64(), nullable=False),
    ]
)
# vocab/item_features: the two-tower item tower's inputs, one row per vocabulary item
ITEM_FEATURES = pa.schema(
    [
        pa.field("index", pa.int32(), nullable=False),
        # one index per item categorical (manifest features.item_categoricals), 0 = missing
        pa.field("categories", pa.list_(pa.int32()), nullable=False),
        pa.field("age_days", pa.float32()),  # at the end of the training window; null = unknown
    ]
)
CATEGORY_MISSING = 0
CATEGORY_UNKNOWN = 1  # the first hashed bucket of rare or unseen values

# examples/: one row per training example (a label watch and what came before it)
SECONDS_PER_UNIT = {"seconds": 1.0, "minutes": 60.0, "hours": 3600.0, "days": 86400.0}  # of example_age_raw
EXAMPLES = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("label", pa.int32(), nullable=False),  # item index of the watch to predict
        # item indices watched before the label, oldest first, at most prep.history_len; a
        # reader right-pads them with 0 into one dense [batch, history_len] tensor
        # (padded_lists): a mean history of 20 costs 20 values, not history_len
        pa.field("history", pa.list_(pa.int32()), nullable=False),
        pa.field("history_length", pa.int32(), nullable=False),
        # anchor - event time, in prep.example_age_unit (the manifest's features.example_age_unit)
        pa.field("example_age_raw", pa.float64(), nullable=False),
        pa.field("example_age", pa.float32(), nullable=False),  # x = hours / training window
        pa.field("example_age_sq", pa.float32(), nullable=False),  # x^2
        pa.field("example_age_sqrt", pa.float32(), nullable=False),  # sqrt(x)
        # distinct search tokens (unigrams, bigrams) of the searches in the history window,
        # most recent first, at most prep.max_search_tokens (1 = an unknown token), unpadded
        pa.field("search_tokens", pa.list_(pa.int32()), nullable=False),
        # user categoricals, in the order manifest["features"]["user_categoricals"] lists
        pa.field("demographics", pa.list_(pa.int32()), nullable=False),
        # continuous user features in [0, 1], in manifest["features"]["user_continuous"] order
        pa.field("continuous", pa.list_(pa.float32()), nullable=False),
        # the example's weight in the loss (prep.example_weight; 1 when none)
        pa.field("weight", pa.float32(), nullable=False),
        # prep.negatives_per_example item indices drawn ∝ count^alpha (empty when 0)
        pa.field("negatives", pa.list_(pa.int32()), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        # the user's training watches after the label (a validation watch is not one): the
        # examples with watches_after a multiple of history_len tile the user's watches
        # with their windows (the sequence tower's every_position training)
        pa.field("watches_after", pa.int32(), nullable=False),
    ]
)

# user_features/: one row per user, what serving needs to compute the user vector
USER_FEATURES = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("history", pa.list_(pa.int32()), nullable=False),  # the last history_len, unpadded
        pa.field("history_length", pa.int32(), nullable=False),
        pa.field("search_tokens", pa.list_(pa.int32()), nullable=False),
        pa.field("demographics", pa.list_(pa.int32()), nullable=False),
        pa.field("continuous", pa.list_(pa.float32()), nullable=False),
        # every item index the user watched in training: excluded from their recall row
        pa.field("watched", pa.list_(pa.int32()), nullable=False),
    ]
)

# eval/: the held-out event of each evaluated user
EVAL_TARGETS = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("item_index", pa.int32()),  # null when the item never occurs in training
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

# valid/: the validation target of each user, the user's last training watch, and the user's
# features just before it. Every choice the system makes (epochs, tuning, the baselines'
# settings) reads these; the test targets in eval/ are read once, by the report.
VALID_TARGETS = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("item_index", pa.int32(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        # as in user_features/, but of the watches before the validation watch
        *(USER_FEATURES.field(name) for name in ("history", "history_length", "search_tokens", "demographics",
                                                 "continuous", "watched")),
    ]
)

# ---------------------------------------------------------------- model/ (ray_train -> serving)
ITEM_EMBEDDINGS = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("index", pa.int32(), nullable=False),
        pa.field("vector", pa.list_(pa.float32()), nullable=False),
        # output-layer bias: serving scores user . vector + bias
        pa.field("bias", pa.float32(), nullable=False),
    ]
)
# item_embeddings.parquet's rows per row group: a reader decodes one group at a time, so a
# large catalog's vectors are never decoded whole beside the arrays they are read into
ITEM_EMBEDDING_GROUP_ROWS = 65_536

# ---------------------------------------------------------------- recall/ (serving -> users)
RECALL = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_ids", pa.list_(pa.string()), nullable=False),  # best first
        # the model's scores; with recall.channels beyond model, the merge's fusion scores
        pa.field("scores", pa.list_(pa.float32()), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("run_date", pa.string(), nullable=False),  # YYYY-MM-DD
        # each item's source (serving/channels.py): model, item2item, popular or fresh
        pa.field("channels", pa.list_(pa.string()), nullable=False),
    ]
)

# recall/similar/run_date=YYYY-MM-DD/: the items most like each item (cosine of item vectors)
SIMILAR = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("similar_item_ids", pa.list_(pa.string()), nullable=False),  # most similar first
        pa.field("scores", pa.list_(pa.float32()), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("run_date", pa.string(), nullable=False),
    ]
)

# Stage folders inside RUN_DIR, each finished by its _manifest.json
STAGES = ("prep", "model", "recall", "report")
MANIFEST = "_manifest.json"


def fixed_lists(column: pa.ChunkedArray | pa.Array, width: int) -> np.ndarray:
    """A list column whose rows all hold `width` values (histories, demographics, vectors)
    as an [n, width] array, without a per-row Python loop."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    values = array.flatten().to_numpy(zero_copy_only=False)
    if len(values) != len(array) * width:
        raise ValueError(f"expected {width} values per row, found {len(values)} in {len(array)} rows")
    return values.reshape(len(array), width)


def padded_lists(column: pa.ChunkedArray | pa.Array, width: int) -> np.ndarray:
    """A list column of at most `width` values a row (histories, search tokens) as an [n, width]
    array, each row right-padded with 0; a null row is all padding. No per-row Python loop."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = pc.list_value_length(array).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = array.flatten().to_numpy(zero_copy_only=False)
    if len(lengths) and lengths.max() > width:
        raise ValueError(f"expected at most {width} values per row, found a row of {lengths.max()}")
    if len(values) == len(array) * width:  # every row full: no padding to add
        return values.reshape(len(array), width)
    padded = np.zeros((len(array), width), dtype=values.dtype)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    padded[np.repeat(np.arange(len(array)), lengths), np.arange(len(values)) - starts] = values
    return padded
