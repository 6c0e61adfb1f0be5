"""The archive frame: one row per synced pair, its keys, hashes, dirty flags, versions and the
agreed canonical value of every mapped field (``v:<name>``), as the engine reads it."""

from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

from l2sync_dagster.engine.canonical import ARROW_TYPES, to_canonical
from l2sync_dagster.engine.mapping import FieldMapping

#: the archive frame's pair columns and their dtypes (the state store keeps the same names)
ARCHIVE_DTYPES: dict[str, str | type] = {
    "pair_id": object, "left_key": object, "right_key": object,
    "left_hash": "int64", "right_hash": "int64",
    "left_dirty": bool, "right_dirty": bool,
    "left_version": object, "right_version": object,
}
ARCHIVE_COLUMNS = list(ARCHIVE_DTYPES)


def value_column(name: str) -> str:
    """The archive frame column holding the agreed canonical value of a mapped field."""
    return f"v:{name}"


def archive_frame(mapping: FieldMapping, columns: dict[str, Sequence[Any]],
                  values: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """An archive frame from stored pairs: ``columns`` holds each of :data:`ARCHIVE_COLUMNS`
    (a missing hash reads as 0), ``values`` each pair's agreed values as stored (JSON)."""
    frame = pd.DataFrame({
        name: pd.Series([0 if v is None else v for v in columns[name]], dtype=dtype)
        if dtype == "int64" else pd.Series(columns[name], dtype=dtype)
        for name, dtype in ARCHIVE_DTYPES.items()})
    for p in mapping.pairs:
        raw = pd.Series([d.get(p.name) for d in values], dtype=object)
        frame[value_column(p.name)] = pd.arrays.ArrowExtensionArray(
            to_canonical(raw, p.type).values)
    return frame


def empty_archive(mapping: FieldMapping) -> pd.DataFrame:
    """An archive frame with no pairs."""
    return archive_frame(mapping, {name: [] for name in ARCHIVE_DTYPES}, [])


def archive_values(archive: pd.DataFrame, mapping: FieldMapping) -> dict[str, pa.Array]:
    """Every mapped field's agreed values as one Arrow array of its canonical type."""
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
