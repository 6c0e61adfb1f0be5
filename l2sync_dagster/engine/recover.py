"""Crash recovery: finding the records that journaled inserts created before a run was
killed (by key, stamp-resolved key or hash), and what the journal says they were written with."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from l2sync_dagster.engine.canonical import to_canonical
from l2sync_dagster.engine.classify import Canon, SideInput, key_array
from l2sync_dagster.engine.decide import Planner
from l2sync_dagster.engine.hashing import row_hash
from l2sync_dagster.engine.plan import (
    PendingInsert,
    Side,
)


def recover(
    archive: pd.DataFrame, canon: dict[Side, Canon], pending: Sequence[PendingInsert],
    names: list[str],
) -> tuple[pd.DataFrame, list[tuple[PendingInsert, str]]]:
    """Find the records that journaled inserts created before a crash.

    A record is found by the key the journal holds (chosen by the sync, or recorded from the
    system's answer, or found by its stamp), else by the hash it was written with. An insert
    that re-created the record of an existing pair re-points that pair at the new record (the
    archive frame is patched); one that created a new pair is returned as (entry, target key)
    for ``plan_new`` to pair.
    """
    if not pending:
        return archive, []
    archive = archive.copy()
    adopted: list[tuple[PendingInsert, str]] = []
    row_of = {pid: i for i, pid in enumerate(archive["pair_id"].astype(str))}
    for side in ("left", "right"):
        c = canon[side]  # type: ignore[index]
        todo = [p for p in pending if p.side == side]
        if not todo or len(c.keys) == 0:
            continue
        known = key_array(archive[f"{side}_key"]).drop_null()
        fresh = np.flatnonzero(~pc.is_in(c.keys, value_set=known).to_numpy(zero_copy_only=False))
        fresh_keys = c.key_list(fresh)
        by_key = {k: k for k in fresh_keys}
        take = pa.array(fresh.astype(np.int64))
        hashes = row_hash([c.cols[n].take(take) for n in names], len(fresh)) if len(fresh) \
            else np.zeros(0, dtype=np.int64)
        by_hash: dict[int, list[str]] = {}
        for k, h in zip(fresh_keys, hashes.tolist(), strict=True):
            by_hash.setdefault(h, []).append(k)
        used: set[str] = set()
        for p in todo:
            found = by_key.get(p.target_key) if p.target_key is not None else None
            if found is None:
                found = next((k for k in by_hash.get(p.expected_hash, []) if k not in used),
                             None)
            if found is None or found in used:
                continue
            used.add(found)
            if p.pair_id in row_of:
                archive.loc[archive.index[row_of[p.pair_id]], f"{side}_key"] = found
            else:
                adopted.append((p, found))
    return archive, adopted


def source_gone(inp: SideInput, key: str) -> bool:
    """True when a side's read shows that the record ``key`` no longer exists (the caller
    knows the key is not among the records the read returned)."""
    return inp.complete or key in set(inp.deleted)


def journaled_base(entry: PendingInsert, planner: Planner) -> dict[str, Any] | None:
    """The canonical values a journaled insert was written with (None for journals written
    before they held values)."""
    if entry.values is None:
        return None
    types = planner.types
    out: dict[str, Any] = {}
    for n in planner.names:
        conv = to_canonical(pd.Series([entry.values.get(n)], dtype=object), types[n])
        out[n] = conv.values[0].as_py() if len(conv.values) else None
    return out
