"""Three-way reconciliation of two record frames against the archive (pure; no I/O).

Each side is classified against the archive (new, changed, unchanged, deleted; ``absent`` for a
pair whose record on that side was deleted earlier without the delete being propagated) and
every pair is decided by the truth table of DESIGN.md. Classification is vectorised: a side's
row is compared with the archived agreed values column by column, and only the few rows that
differ are hashed and compared with the side's archived hash.

The steps live in their own modules: ``archive`` (the archive frame), ``classify``, ``recover``,
``decide`` (truth table and policies), ``pairing`` (records in no pair), ``effects`` (archive
rows, counts, brake).
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from l2sync_dagster.engine.archive import archive_values
from l2sync_dagster.engine.classify import (
    ABSENT,
    CHANGED,
    DELETED,
    UNCHANGED,
    Canon,
    SideInput,
    canonicalize,
    classify,
    key_array,
    new_positions,
)
from l2sync_dagster.engine.decide import Pair, Planner
from l2sync_dagster.engine.effects import brake, classified_counts, finalize
from l2sync_dagster.engine.mapping import FieldMapping
from l2sync_dagster.engine.pairing import plan_new
from l2sync_dagster.engine.plan import (
    PendingInsert,
    Rejection,
    Side,
    SyncPlan,
)
from l2sync_dagster.engine.policy import POLICIES, SyncPolicy
from l2sync_dagster.engine.recover import recover


def reconcile(
    name: str,
    left: SideInput,
    right: SideInput,
    archive: pd.DataFrame,
    mapping: FieldMapping,
    policy: SyncPolicy,
    pending: Sequence[PendingInsert] = (),
    pairs_before: int | None = None,
) -> tuple[SyncPlan, list[PendingInsert]]:
    """Plan one run. Returns the plan and the inserts to journal before they are applied.

    ``archive`` may hold only the pairs the reads touch (every read incremental): pairs it
    leaves out are unchanged on both sides. ``pairs_before`` is then the number of pairs in
    the whole archive (the mass-delete brake's measure); by default ``archive``'s."""
    if policy.conflict not in POLICIES:
        raise ValueError(f"unknown conflict policy {policy.conflict!r}")
    inputs: dict[Side, SideInput] = {"left": left, "right": right}
    canon: dict[Side, Canon] = {s: canonicalize(inputs[s], mapping, s) for s in inputs}
    planner = Planner(name, mapping, policy, inputs, canon)
    plan = planner.plan
    names = mapping.names
    for side in ("left", "right"):
        for key, reason in canon[side].rejected.items():
            plan.rejections.append(Rejection(side, key, reason))  # type: ignore[arg-type]
    if pairs_before is None:
        pairs_before = int((archive["left_key"].notna() | archive["right_key"].notna()).sum()
                           ) if len(archive) else 0
    plan.pairs_before = pairs_before
    archive, adopted = recover(archive, canon, pending, names)
    values = archive_values(archive, mapping)
    lstate, lpos = classify(canon["left"], left, archive, "left", values, names)
    rstate, rpos = classify(canon["right"], right, archive, "right", values, names)

    act = np.flatnonzero((lstate != UNCHANGED) | (rstate != UNCHANGED))
    act = act[~((lstate[act] == ABSENT) & (rstate[act] == UNCHANGED))]
    act = act[~((lstate[act] == UNCHANGED) & (rstate[act] == ABSENT))]
    base_rows = _rows_from(values, act, names)
    lrows = canon["left"].rows(lpos[act], names)
    rrows = canon["right"].rows(rpos[act], names)
    take = pa.array(act.astype(np.int64))
    pid_col, lkey_col, rkey_col, lver_col, rver_col = (
        key_array(archive[c]).take(take).to_pylist() if len(act) else []
        for c in ("pair_id", "left_key", "right_key", "left_version", "right_version"))

    def meta(side: Side, pos: int) -> tuple[Any, Any]:
        c = canon[side]
        if pos < 0:
            return None, None
        ver = c.versions[pos] if c.versions is not None else None
        mod = c.modified[pos] if c.modified is not None else None
        return (None if ver is None or (isinstance(ver, float) and ver != ver) else str(ver)), mod

    for j, i in enumerate(act):
        ls, rs = int(lstate[i]), int(rstate[i])
        pid = pid_col[j]
        lkey, rkey = lkey_col[j], rkey_col[j]
        base = base_rows[j]
        lrow = lrows[j] if lrows[j] is not None else (dict(base) if ls == UNCHANGED else None)
        rrow = rrows[j] if rrows[j] is not None else (dict(base) if rs == UNCHANGED else None)
        lver, lmod = meta("left", int(lpos[i]))
        rver, rmod = meta("right", int(rpos[i]))
        lver = lver or (lver_col[j] if lrows[j] is None else None)
        rver = rver or (rver_col[j] if rrows[j] is None else None)
        if ls in (DELETED, ABSENT) and rs in (DELETED, ABSENT):
            planner.drop(pid)
        elif ls in (CHANGED, UNCHANGED) and rs in (CHANGED, UNCHANGED):
            planner.both_present(Pair(pid, lkey, rkey, lrow, rrow, base, lver, rver, lmod, rmod),
                                 ls == CHANGED, rs == CHANGED, "update/update")
        elif ls == CHANGED and rs == DELETED:
            planner.edit_delete(pid, lkey, rkey, "left", lrow, base, lver)
        elif rs == CHANGED and ls == DELETED:
            planner.edit_delete(pid, lkey, rkey, "right", rrow, base, rver)
        elif ls == DELETED:
            planner.deleted_one(pid, lkey, rkey, "left", rrow, rver)
        elif rs == DELETED:
            planner.deleted_one(pid, lkey, rkey, "right", lrow, lver)
        elif ls == ABSENT and rs == CHANGED:
            if planner.can_write("left"):
                planner.insert("left", pid, rrow, rkey, rver)
        elif rs == ABSENT and ls == CHANGED:
            if planner.can_write("right"):
                planner.insert("right", pid, lrow, lkey, lver)

    new_pos: dict[Side, np.ndarray] = {"left": new_positions(canon["left"], lpos),
                                       "right": new_positions(canon["right"], rpos)}
    plan_new(planner, new_pos, adopted)
    classified_counts(plan, canon, inputs, lstate, rstate, new_pos)
    brake(plan, policy, canon)
    finalize(planner)
    return plan, planner.pending


def _rows_from(values: dict[str, pa.Array], idx: np.ndarray, names: list[str]) -> list[dict]:
    if len(idx) == 0:
        return []
    take = pa.array(idx)
    cols = [values[n].take(take).to_pylist() for n in names]
    return [dict(zip(names, vals, strict=True)) for vals in zip(*cols, strict=True)]
