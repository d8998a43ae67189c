"""Item features for the two-tower model's item tower (Yi et al. 2019): per item index, its
categorical values and its age at the end of the training window.

The categoricals are the items table's columns other than the id, title and upload time (or
prep.item_categoricals), each with its own vocabulary (vocab/item_<column>, index 0 missing,
hashed OOV buckets, stable across runs like every vocabulary). An item in the vocabulary but
not in the catalog has every value missing and no age. The age is in days, null where the
upload time is unknown; the trainer squashes it with log1p and the manifest's scale.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.vocab import categorical_vocabulary, encode_categoricals, missing_demographics
from core.contract import ITEMS_KEY, ITEMS_TITLE, ITEMS_UPLOAD_TS

SECONDS_PER_DAY = 86400.0


def item_categorical_columns(catalog: DataFrame | None, configured: tuple[str, ...] | None) -> list[str]:
    """The item categoricals: as configured, or every string column but id and title."""
    if catalog is None:
        return []
    fields = {f.name: f.dataType.simpleString() for f in catalog.schema.fields}
    if configured is not None:
        unknown = [c for c in configured if c not in fields]
        if unknown:
            raise ValueError(f"prep.item_categoricals names {', '.join(unknown)}, not columns of the items "
                             f"table ({', '.join(fields)})")
        return list(configured)
    return [c for c, kind in fields.items() if c not in (ITEMS_KEY, ITEMS_TITLE, ITEMS_UPLOAD_TS) and kind == "string"]


def item_vocabularies(catalog: DataFrame, items: DataFrame, columns: list[str], min_count: int, previous,
                      buckets: int) -> dict[str, DataFrame]:
    """One vocabulary per item categorical, fitted on the catalog rows of the vocabulary's
    items (a value's count is its number of items)."""
    known = catalog.join(items.select(ITEMS_KEY), ITEMS_KEY, "left_semi")
    return {c: categorical_vocabulary(known, c, min_count, previous(f"item_{c}"), buckets) for c in columns}


def item_feature_table(items: DataFrame, catalog: DataFrame | None, vocabularies: dict[str, DataFrame],
                       age_anchor: float, buckets: int) -> DataFrame:
    """index, categories (one index per item categorical), age_days (null = unknown)."""
    indexed = items.select(ITEMS_KEY, "index")
    if catalog is None:
        return indexed.select("index", missing_demographics(0).alias("categories"),
                              F.lit(None).cast("float").alias("age_days"))
    has_upload = ITEMS_UPLOAD_TS in catalog.columns
    keep = [ITEMS_UPLOAD_TS] if has_upload else []
    encoded = encode_categoricals(catalog.dropDuplicates([ITEMS_KEY]), ITEMS_KEY, vocabularies, keep, buckets)
    upload = F.col(ITEMS_UPLOAD_TS)
    age = (
        # greatest() skips nulls: an unknown upload time stays null, a future one is age 0
        F.when(upload.isNotNull(), F.greatest(F.lit(age_anchor) - F.unix_micros(upload) / 1e6, F.lit(0.0)))
        / SECONDS_PER_DAY
        if has_upload
        else F.lit(None)
    )
    joined = indexed.join(F.broadcast(encoded), ITEMS_KEY, "left")
    return joined.select(
        "index",
        F.coalesce(F.col("demographics"), missing_demographics(len(vocabularies))).alias("categories"),
        age.cast("float").alias("age_days"),
    )
