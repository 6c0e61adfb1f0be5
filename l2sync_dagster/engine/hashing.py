"""Vectorised row hashes over canonical columns (stable across processes and versions)."""

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_NULL = np.uint64(0x9E3779B97F4A7C15)
_MULT = np.uint64(0x100000001B3)


def column_hash(arr: pa.Array) -> np.ndarray:
    """uint64 hash of every value of one canonical column; nulls hash to a fixed sentinel."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    nulls = arr.is_null().to_numpy(zero_copy_only=False)
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        series = pd.Series(pd.arrays.ArrowExtensionArray(arr))
        h = pd.util.hash_pandas_object(series, index=False).to_numpy(dtype=np.uint64)
    else:
        if pa.types.is_boolean(t):
            raw = pc.cast(pc.fill_null(arr, False), pa.uint8()).to_numpy().astype(np.uint64)
        elif pa.types.is_floating(t):
            raw = pc.fill_null(arr, 0.0).to_numpy().view(np.uint64)
        elif pa.types.is_date32(t):
            raw = pc.fill_null(arr.cast(pa.int32()).cast(pa.int64()), 0).to_numpy().view(np.uint64)
        elif pa.types.is_timestamp(t):
            raw = pc.fill_null(arr.cast(pa.int64()), 0).to_numpy().view(np.uint64)
        else:
            raw = pc.fill_null(arr.cast(pa.int64()), 0).to_numpy().view(np.uint64)
        h = pd.util.hash_array(np.ascontiguousarray(raw))
    if nulls.any():
        h = h.copy()
        h[nulls] = _NULL
    return h


def row_hash(columns: Sequence[pa.Array], length: int) -> np.ndarray:
    """Combine column hashes into one int64 hash per row (order of columns matters)."""
    acc = np.full(length, np.uint64(0xCBF29CE484222325), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in columns:
            acc = (acc * _MULT) ^ column_hash(col)
    return acc.view(np.int64)
