"""Classification of one side against the archive (pure; vectorised): canonical values, keys
aligned to the archive, and per pair: unchanged, changed, deleted or absent."""

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from l2sync_dagster.contract import MODIFIED, VERSION
from l2sync_dagster.engine.canonical import ARROW_TYPES, to_canonical
from l2sync_dagster.engine.hashing import row_hash
from l2sync_dagster.engine.mapping import FieldMapping, MappingError
from l2sync_dagster.engine.plan import (
    Side,
)

UNCHANGED, CHANGED, DELETED, ABSENT = 0, 1, 2, 3


# Arrow kernels release the GIL: per-column work runs on a few threads.
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="l2sync-engine")


@dataclass
class SideInput:
    """One side's read, as the provider returned it, plus what the engine needs to know."""

    frame: pd.DataFrame
    complete: bool = True
    deleted: Sequence[str] = ()
    present_keys: pd.Index | None = None
    key_field: str = ""
    key_generated: bool = False
    writable: bool = True


@dataclass
class Canon:
    """One side in canonical form: keys, canonical columns, metadata, rejections."""

    keys: pa.Array
    cols: dict[str, pa.Array]
    modified: list[Any] | None
    versions: list[Any] | None
    rejected: dict[str, str] = field(default_factory=dict)

    def key_list(self, positions: Sequence[int]) -> list[str]:
        """Keys at ``positions`` as Python strings."""
        if len(positions) == 0:
            return []
        return self.keys.take(pa.array(np.asarray(positions, dtype=np.int64))).to_pylist()

    def rows(self, positions: Sequence[int], names: Sequence[str]) -> list[dict[str, Any] | None]:
        """Rows at ``positions`` as dicts of canonical Python values (None for -1)."""
        pos = np.asarray(positions, dtype=np.int64)
        out: list[dict[str, Any] | None] = [None] * len(pos)
        ok = np.flatnonzero(pos >= 0)
        if len(ok) == 0:
            return out
        take = pa.array(pos[ok])
        columns = [self.cols[n].take(take).to_pylist() for n in names]
        for i, vals in zip(ok.tolist(), zip(*columns, strict=True), strict=True):
            out[i] = dict(zip(names, vals, strict=True))
        return out


def canonicalize(inp: SideInput, mapping: FieldMapping, side: Side) -> Canon:
    """Convert the mapped fields of one side; records with unconvertible values are rejected."""
    frame = inp.frame
    keys = key_array(frame.index)
    by_low = {str(c).lower(): c for c in frame.columns}
    cols: dict[str, pa.Array] = {}
    bad = np.zeros(len(frame), dtype=bool)
    reasons: dict[int, str] = {}
    sources = {}
    for p in mapping.pairs:
        name = p.field(side)
        col = by_low.get(name.lower())
        if col is None:
            if len(frame) == 0:
                cols[p.name] = pa.array([], type=ARROW_TYPES[p.type])
                continue
            raise MappingError(f"{side} side has no field {name!r} in what it read")
        sources[p.name] = (frame[col], p.type, name)
    converted = dict(zip(sources, _POOL.map(lambda a: to_canonical(a[0], a[1]),
                                            sources.values()), strict=True))
    for pname, conv in converted.items():
        name = sources[pname][2]
        cols[pname] = conv.values
        for i, reason in conv.errors.items():
            bad[i] = True
            reasons.setdefault(i, f"{name}: {reason}")
    modified = None
    if MODIFIED in frame.columns:
        modified = list(pd.to_datetime(frame[MODIFIED], utc=True, errors="coerce"))
    versions = list(frame[VERSION]) if VERSION in frame.columns else None
    rejected: dict[str, str] = {}
    if bad.any():
        rejected = {str(keys[int(i)].as_py()): reasons[i] for i in np.flatnonzero(bad)}
        keep = pa.array(~bad)
        cols = {n: a.filter(keep) for n, a in cols.items()}
        keys = keys.filter(keep)
        if modified is not None:
            modified = [m for m, b in zip(modified, bad, strict=True) if not b]
        if versions is not None:
            versions = [v for v, b in zip(versions, bad, strict=True) if not b]
    return Canon(keys, cols, modified, versions, rejected)


def key_array(values: Any) -> pa.Array:
    """Keys as one Arrow string array (nulls stay null)."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        arr = values
    else:
        series = pd.Series(values) if not isinstance(values, pd.Series) else values
        arr = None
        if isinstance(series.dtype, pd.ArrowDtype | pd.StringDtype):
            try:
                arr = pa.array(series.array)
            except (TypeError, pa.ArrowInvalid):
                arr = None
        if arr is None:
            obj = series.to_numpy(dtype=object, na_value=None)
            try:
                arr = pa.array(obj, from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                arr = pa.array([None if v is None else str(v) for v in obj], type=pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        if pa.types.is_null(arr.type):
            return pa.nulls(len(arr), pa.string())
        arr = pa.array([None if v is None else str(v) for v in arr.to_pylist()],
                       type=pa.string())
    return arr.cast(pa.string())


class DuplicateKeyError(ValueError):
    """A side returned the same native key for two records."""


def align_keys(archive_keys: pa.Array, side_keys: pa.Array) -> np.ndarray:
    """For every archive key, its position among the side's keys (-1 when missing).

    A hash join (Arrow's, multi-threaded) then a scatter back into archive order: faster than
    ``index_in`` or pandas ``get_indexer`` on a million string keys.
    """
    n = len(archive_keys)
    if n and archive_keys.equals(side_keys):
        return np.arange(n, dtype=np.int64)
    pos = np.full(n, -1, dtype=np.int64)
    if n == 0 or len(side_keys) == 0:
        return pos
    joined = pa.table({"k": archive_keys, "a": pa.array(np.arange(n))}).join(
        pa.table({"k": side_keys, "s": pa.array(np.arange(len(side_keys)))}), "k",
        join_type="inner")
    apos = joined["a"].to_numpy()
    hits = np.bincount(apos, minlength=n)
    if hits.max(initial=0) > 1:
        dup = int(np.argmax(hits))
        raise DuplicateKeyError(f"the key {archive_keys[int(dup)].as_py()!r} was read more "
                                "than once")
    pos[apos] = joined["s"].to_numpy()
    return pos


def _same(a: pa.Array, b: pa.Array) -> np.ndarray:
    """Element-wise equality where null equals null."""
    if len(a) == 0:
        return np.zeros(0, dtype=bool)
    if a.null_count == 0 and b.null_count == 0:
        return pc.equal(a, b).to_numpy(zero_copy_only=False)
    eq = pc.fill_null(pc.equal(a, b), False)
    both = pc.and_(pc.is_null(a), pc.is_null(b))
    return pc.or_(eq, both).to_numpy(zero_copy_only=False)


def classify(
    c: Canon, inp: SideInput, archive: pd.DataFrame, side: Side,
    values: dict[str, pa.Array], names: list[str],
) -> tuple[np.ndarray, np.ndarray]:
    """State per archive row and the row's position in the side's canonical frame (or -1)."""
    n = len(archive)
    state = np.zeros(n, dtype=np.int8)
    if n == 0:
        return state, np.zeros(0, dtype=np.int64)
    akeys = key_array(archive[f"{side}_key"])
    absent = akeys.is_null().to_numpy(zero_copy_only=False)
    state[absent] = ABSENT
    try:
        pos = align_keys(akeys, c.keys)
    except DuplicateKeyError as exc:
        raise DuplicateKeyError(f"{side} side: {exc}") from None
    missing = np.flatnonzero((pos < 0) & ~absent)
    if len(missing):
        mkeys = akeys.take(pa.array(missing))
        rejected = np.zeros(len(missing), dtype=bool)
        if c.rejected:
            rejected = pc.is_in(mkeys, value_set=pa.array(list(c.rejected), pa.string())
                                ).to_numpy(zero_copy_only=False)
        if inp.complete:
            gone = ~rejected
        else:
            gone = np.zeros(len(missing), dtype=bool)
            if inp.deleted:
                gone |= pc.is_in(mkeys, value_set=key_array(list(inp.deleted))
                                 ).to_numpy(zero_copy_only=False)
            if inp.present_keys is not None:
                gone |= ~pc.is_in(mkeys, value_set=key_array(inp.present_keys)
                                  ).to_numpy(zero_copy_only=False)
            gone &= ~rejected
        state[missing[gone]] = DELETED
    present = np.flatnonzero(pos >= 0)
    if len(present) == 0:
        return state, pos
    ppos = pa.array(pos[present])
    everyone = len(present) == n
    apos = pa.array(present)

    def compare(name: str) -> np.ndarray:
        base = values[name] if everyone else values[name].take(apos)
        return _same(c.cols[name].take(ppos), base)

    eq = np.ones(len(present), dtype=bool)
    for same in _POOL.map(compare, names):
        eq &= same
    dirty = archive[f"{side}_dirty"].to_numpy(dtype=bool)[present]
    changed = np.zeros(len(present), dtype=bool)
    changed[eq] = dirty[eq]
    differ = np.flatnonzero(~eq)
    if len(differ):
        sub = pa.array(pos[present[differ]])
        h = row_hash([c.cols[nm].take(sub) for nm in names], len(differ))
        old = archive[f"{side}_hash"].to_numpy()[present[differ]]
        changed[differ] = h != old
    state[present[changed]] = CHANGED
    return state, pos


def new_positions(c: Canon, pos: np.ndarray) -> np.ndarray:
    """Positions of a side's records that no archive pair refers to."""
    mask = np.ones(len(c.keys), dtype=bool)
    mask[pos[pos >= 0]] = False
    return np.flatnonzero(mask)
