"""Small builders for engine tests: frames from dicts, and applying a plan's archive effects."""

from typing import Any

import pandas as pd

from l2sync_dagster.engine.archive import empty_archive, value_column
from l2sync_dagster.engine.canonical import to_canonical
from l2sync_dagster.engine.classify import SideInput
from l2sync_dagster.engine.mapping import FieldMapping, FieldPair
from l2sync_dagster.engine.plan import SyncPlan


def mapping(*names: str, types: dict[str, str] | None = None) -> FieldMapping:
    """A both-ways mapping of same-named fields."""
    types = types or {}
    return FieldMapping(tuple(FieldPair(n, n, n, types.get(n, "string")) for n in names))


def side(records: dict[str, dict[str, Any]], key: str = "id", **kw: Any) -> SideInput:
    """A SideInput from {key: {field: value}}."""
    frame = pd.DataFrame.from_dict(records, orient="index")
    frame.index = pd.Index([str(k) for k in records], name="_key")
    return SideInput(frame=frame, key_field=key, **kw)


def archive_after(m: FieldMapping, plan: SyncPlan, archive: pd.DataFrame | None = None,
                  new_keys: dict[str, str] | None = None) -> pd.DataFrame:
    """The archive frame once every effect of ``plan`` is committed."""
    archive = empty_archive(m) if archive is None else archive
    rows = {r["pair_id"]: r for r in archive_rows(m, archive)}
    for pid, eff in plan.effects.items():
        if eff is None:
            rows.pop(pid, None)
            continue
        rows[pid] = {
            "pair_id": pid, "left_key": eff.left_key, "right_key": eff.right_key,
            "left_hash": eff.left_hash or 0, "right_hash": eff.right_hash or 0,
            "left_dirty": eff.left_dirty, "right_dirty": eff.right_dirty,
            "left_version": eff.left_version, "right_version": eff.right_version,
            **{value_column(n): eff.values.get(n) for n in m.names},
        }
    if not rows:
        return empty_archive(m)
    frame = pd.DataFrame(list(rows.values()))
    for p in m.pairs:
        conv = to_canonical(frame[value_column(p.name)].astype(object), p.type)
        frame[value_column(p.name)] = pd.arrays.ArrowExtensionArray(conv.values)
    frame["left_hash"] = frame["left_hash"].astype("int64")
    frame["right_hash"] = frame["right_hash"].astype("int64")
    return frame


def archive_rows(m: FieldMapping, archive: pd.DataFrame) -> list[dict[str, Any]]:
    """Archive frame rows as dicts with Python values."""
    out = []
    for rec in archive.to_dict("records"):
        out.append(rec)
    return out
