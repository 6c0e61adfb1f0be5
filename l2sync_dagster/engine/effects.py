"""What a plan records: the archive rows of every decided pair (hashes, agreed values, dirty
flags, column-wise), the classification counts and the mass-delete brake."""

from typing import Any

import pyarrow as pa

from l2sync_dagster.engine.canonical import ARROW_TYPES, to_json_value
from l2sync_dagster.engine.classify import CHANGED, DELETED, Canon
from l2sync_dagster.engine.decide import Planner
from l2sync_dagster.engine.hashing import row_hash
from l2sync_dagster.engine.plan import (
    Side,
    SyncPlan,
)
from l2sync_dagster.engine.policy import SyncPolicy

_JSON_NATIVE = frozenset({"string", "integer", "float", "boolean", "json"})


def finalize(planner: Planner) -> None:
    """Fill hashes, agreed values and dirty flags of every archive effect (column-wise)."""
    names = planner.names
    types = planner.types
    pids = [p for p, e in planner.plan.effects.items() if e is not None]
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
        if types[n] not in _JSON_NATIVE:
            col = [to_json_value(v, types[n]) for v in col]
        agreed[n] = col
    pending_by_pid = {p.pair_id: p for p in planner.pending}
    lh, rh = hashes["left"].tolist(), hashes["right"].tolist()
    for i, pid in enumerate(pids):
        eff = planner.plan.effects[pid]
        assert eff is not None
        eff.values = {n: agreed[n][i] for n in names}
        eff.left_hash = lh[i] if lrows[i] is not None else None
        eff.right_hash = rh[i] if rrows[i] is not None else None
        eff.left_dirty, eff.right_dirty = ldirty[i], rdirty[i]
        pend = pending_by_pid.get(pid)
        if pend is not None:
            pend.expected_hash = (eff.left_hash if pend.side == "left" else eff.right_hash) or 0
            pend.values = eff.values


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
