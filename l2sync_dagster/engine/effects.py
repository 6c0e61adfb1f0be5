"""What a plan records: the archive rows of every decided pair (hashes, agreed values, dirty
flags, column-wise), the classification counts and the mass-delete brake."""

from typing import Any

import numpy as np
import pyarrow as pa

from l2sync_dagster.engine.canonical import ARROW_TYPES, json_values, python_values, to_json_value
from l2sync_dagster.engine.classify import CHANGED, DELETED, Canon
from l2sync_dagster.engine.decide import InsertBatch, Planner
from l2sync_dagster.engine.hashing import row_hash
from l2sync_dagster.engine.plan import (
    Side,
    SyncPlan,
)
from l2sync_dagster.engine.policy import SyncPolicy

_JSON_NATIVE = frozenset({"string", "integer", "float", "boolean", "json"})


def finalize(planner: Planner) -> None:
    """Fill hashes, agreed values and dirty flags of every archive effect (column-wise)."""
    _finalize_rows(planner)
    for batch in planner.batches:
        _finalize_batch(planner, batch)


def _finalize_rows(planner: Planner) -> None:
    """The effects recorded with their rows after (``Planner.effect``)."""
    names = planner.names
    types = planner.types
    effects = planner.plan.effects
    pids = [p for p in planner.rows_after if effects[p] is not None]
    if not pids:
        return
    lrows = [planner.rows_after[p][0] for p in pids]
    rrows = [planner.rows_after[p][1] for p in pids]
    lcols = {n: [None if r is None else r[n] for r in lrows] for n in names}
    rcols = {n: [None if r is None else r[n] for r in rrows] for n in names}
    hashes = {
        side: row_hash([pa.array(cols[n], type=ARROW_TYPES[types[n]]) for n in names], len(pids))
        for side, cols in (("left", lcols), ("right", rcols))
    }
    k = len(pids)
    ldirty = [False] * k
    rdirty = [False] * k
    agreed: dict[str, list[Any]] = {}
    for n in names:
        lc, rc = lcols[n], rcols[n]
        left_is_source = planner.flows(n, "right")
        col = []
        for i in range(k):
            lv, rv = lc[i], rc[i]
            if lv == rv:
                v = lv
            elif lrows[i] is None:
                v = rv
            elif rrows[i] is None or left_is_source:
                v = lv
            else:
                v = rv
            if lv != v and lrows[i] is not None:
                ldirty[i] = True
            if rv != v and rrows[i] is not None:
                rdirty[i] = True
            col.append(v)
        agreed[n] = _json_column(col, types[n])
    pending_by_pid = {p.pair_id: p for p in planner.pending}
    lh, rh = hashes["left"].tolist(), hashes["right"].tolist()
    for i, pid in enumerate(pids):
        eff = effects[pid]
        assert eff is not None
        eff.values = {n: agreed[n][i] for n in names}
        eff.left_hash = lh[i] if lrows[i] is not None else None
        eff.right_hash = rh[i] if rrows[i] is not None else None
        eff.left_dirty, eff.right_dirty = ldirty[i], rdirty[i]
        pend = pending_by_pid.get(pid)
        if pend is not None:
            pend.expected_hash = (eff.left_hash if pend.side == "left" else eff.right_hash) or 0
            pend.values = eff.values


def _finalize_batch(planner: Planner, batch: InsertBatch) -> None:
    """The effects of inserts planned column-wise: the source row, and the target row that
    holds the source's value of every field that flows to the target and null elsewhere.

    What ``_finalize_rows`` gives for such a pair, column by column: a field that flows to the
    target is agreed as the source's value, dirty nowhere. One that does not is null on the
    target; where the source has a value, the agreed value is the target's null and the source
    is dirty, except on an insert into left of a field that flows to neither side (the right
    value is agreed, left is dirty)."""
    names, types = planner.names, planner.types
    to = batch.to
    k = len(batch.effects)
    if not k:
        return
    flowing = planner.flow[to]
    src_hash = row_hash([batch.cols[n] for n in names], k)
    if all(n in flowing for n in names):
        tgt_hash = src_hash
    else:
        tgt_hash = row_hash([batch.cols[n] if n in flowing else pa.nulls(k, ARROW_TYPES[types[n]])
                             for n in names], k)
    lh, rh = (src_hash, tgt_hash) if to == "right" else (tgt_hash, src_hash)
    ldirty = np.zeros(k, dtype=bool)
    rdirty = np.zeros(k, dtype=bool)

    def source_values(n: str) -> list[Any]:
        t = types[n]
        if t in ("date", "datetime"):
            return json_values(batch.cols[n], t)
        col = batch.lists[n] if n in batch.lists else python_values(batch.cols[n])
        return _json_column(col, t)

    agreed: list[list[Any]] = []
    nulls = [None] * k
    for n in names:
        if n in flowing:
            agreed.append(source_values(n))
            continue
        valid = batch.cols[n].is_valid().to_numpy(zero_copy_only=False)
        if to == "left" and not planner.flows(n, "right"):
            agreed.append(source_values(n))
            ldirty |= valid
        else:
            agreed.append(nulls)
            if to == "right":
                ldirty |= valid
            else:
                rdirty |= valid
    lhl, rhl = lh.tolist(), rh.tolist()
    ld, rd = ldirty.tolist(), rdirty.tolist()
    values = [dict(zip(names, row, strict=True)) for row in zip(*agreed, strict=True)]
    for eff, vals, a, b, x, y in zip(batch.effects, values, lhl, rhl, ld, rd, strict=True):
        eff.values = vals
        eff.left_hash, eff.right_hash = a, b
        eff.left_dirty, eff.right_dirty = x, y
    th = rhl if to == "right" else lhl
    for pend, vals, h in zip(batch.pending, values, th, strict=True):
        pend.expected_hash = h or 0
        pend.values = vals


def _json_column(col: list[Any], type_name: str) -> list[Any]:
    """Canonical values of one field as JSON-compatible data."""
    if type_name in _JSON_NATIVE:
        return col
    return [to_json_value(v, type_name) for v in col]


def classified_counts(plan: SyncPlan, canon, inputs, lstate, rstate, new_pos) -> None:
    for side, state in (("left", lstate), ("right", rstate)):
        c = canon[side]
        plan.classified[side] = {
            "read": len(c.keys) + len(c.rejected),
            "new": int(len(new_pos[side])),
            "changed": int((state == CHANGED).sum()),
            "deleted": int((state == DELETED).sum()),
            "complete": bool(inputs[side].complete),
        }


def brake(plan: SyncPlan, policy: SyncPolicy, canon: dict[Side, Canon]) -> None:
    """The mass-delete brake: too many deletes block the whole run before any write."""
    deletes = sum(1 for w in plan.writes if w.op == "delete")
    if not deletes or policy.allow_mass_delete:
        return
    # the share of a side's records a run deletes there: of the pairs, or of what the side
    # holds when that is more (mirror removes target records that were never paired)
    worst = (0.0, 0, 1)
    for side in ("left", "right"):
        d = sum(1 for w in plan.writes if w.op == "delete" and w.side == side)
        n = max(plan.pairs_before, len(canon[side].keys), d, 1)  # type: ignore[index]
        if d / n > worst[0]:
            worst = (d / n, d, n)
    fraction, deletes, base = worst
    if fraction > policy.max_delete_fraction:
        plan.blocked = plan.blocked or (
            f"this run would delete {deletes} of {base} records ({fraction:.0%}), more than "
            f"deletes.max_fraction={policy.max_delete_fraction} allows; nothing was written. "
            "If the deletes are intended, raise deletes.max_fraction in the connection file "
            "or run once with --allow-mass-delete"
        )
