"""The archive frame: one row per synced pair, its keys, hashes, dirty flags, versions and the
agreed canonical value of every mapped field (``v:<name>``), as the engine reads it."""

from typing import Any

import pandas as pd
import pyarrow as pa

from l2sync_dagster.engine.canonical import ARROW_TYPES
from l2sync_dagster.engine.mapping import FieldMapping

ARCHIVE_COLUMNS = [
    "pair_id", "left_key", "right_key", "left_hash", "right_hash",
    "left_dirty", "right_dirty", "left_version", "right_version",
]


def value_column(name: str) -> str:
    """The archive frame column holding the agreed canonical value of a mapped field."""
    return f"v:{name}"


def empty_archive(mapping: FieldMapping) -> pd.DataFrame:
    """An archive frame with no pairs."""
    cols: dict[str, Any] = {
        "pair_id": pd.Series([], dtype=object),
        "left_key": pd.Series([], dtype=object),
        "right_key": pd.Series([], dtype=object),
        "left_hash": pd.Series([], dtype="int64"),
        "right_hash": pd.Series([], dtype="int64"),
        "left_dirty": pd.Series([], dtype=bool),
        "right_dirty": pd.Series([], dtype=bool),
        "left_version": pd.Series([], dtype=object),
        "right_version": pd.Series([], dtype=object),
    }
    for p in mapping.pairs:
        cols[value_column(p.name)] = pd.Series(
            pd.arrays.ArrowExtensionArray(pa.array([], type=ARROW_TYPES[p.type]))
        )
    return pd.DataFrame(cols)


def archive_values(archive: pd.DataFrame, mapping: FieldMapping) -> dict[str, pa.Array]:
    out: dict[str, pa.Array] = {}
    for p in mapping.pairs:
        col = value_column(p.name)
        typ = ARROW_TYPES[p.type]
        if col in archive.columns:
            arr = pa.array(archive[col].array, from_pandas=True)
            if isinstance(arr, pa.ChunkedArray):
                arr = arr.combine_chunks()
            out[p.name] = arr.cast(typ) if arr.type != typ else arr
        else:
            out[p.name] = pa.nulls(len(archive), type=typ)
    return out
