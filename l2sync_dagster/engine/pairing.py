"""Records on one side that are in no pair: adopt what a crashed run created, pair first-sync
matches by ``match_on``, insert the rest (or remove them from a mirrored target)."""

from collections.abc import Sequence
from typing import Any

import numpy as np

from l2sync_dagster.engine.classify import DuplicateKeyError
from l2sync_dagster.engine.decide import Pair, Planner
from l2sync_dagster.engine.plan import (
    PendingInsert,
    Rejection,
    Side,
    new_pair_id,
    other,
)
from l2sync_dagster.engine.recover import journaled_base, source_gone


def plan_new(planner: Planner, new_pos: dict[Side, np.ndarray],
              adopted: Sequence[tuple[PendingInsert, str]]) -> None:
    """Records on one side that are in no pair: recover crashed inserts, match, insert."""
    canon = planner.canon
    names = planner.names
    rows = {s: canon[s].rows(new_pos[s], names) for s in new_pos}
    keys = {s: canon[s].key_list(new_pos[s]) for s in new_pos}
    for s, ks in keys.items():
        if len(set(ks)) != len(ks):
            seen: set[str] = set()
            dup = next(k for k in ks if k in seen or seen.add(k))  # type: ignore[func-returns-value]
            raise DuplicateKeyError(f"{s} side: the key {dup!r} was read more than once")
    used: dict[Side, set[int]] = {"left": set(), "right": set()}

    def meta(side: Side, j: int) -> tuple[Any, Any]:
        c = canon[side]
        p = int(new_pos[side][j])
        ver = c.versions[p] if c.versions is not None else None
        mod = c.modified[p] if c.modified is not None else None
        return (None if ver is None else str(ver)), mod

    def pair_up(lj: int, rj: int, base: dict | None, kind: str, pid: str | None = None) -> None:
        used["left"].add(lj)
        used["right"].add(rj)
        lver, lmod = meta("left", lj)
        rver, rmod = meta("right", rj)
        lrow, rrow = rows["left"][lj], rows["right"][rj]
        lch = base is None or any(lrow[n] != base[n] for n in names)
        rch = base is None or any(rrow[n] != base[n] for n in names)
        planner.both_present(Pair(pid or new_pair_id(), keys["left"][lj], keys["right"][rj],
                                  lrow, rrow, base, lver, rver, lmod, rmod, archived=False),
                             lch, rch, kind)

    # 1. inserts journaled by a run that did not finish: pair what they created, with the
    # values they were written with as the base, so that an edit made since counts as an edit
    if adopted:
        index = {s: {k: j for j, k in enumerate(keys[s])} for s in keys}  # type: ignore[index]
        for entry, target_key in adopted:
            tside: Side = entry.side
            src = other(tside)
            sj, tj = index[src].get(entry.source_key), index[tside].get(target_key)
            if tj is None or tj in used[tside] or (sj is not None and sj in used[src]):
                continue
            trow = rows[tside][tj]
            base = journaled_base(entry, planner) or dict(trow)  # type: ignore[arg-type]
            if sj is not None:
                lj, rj = (sj, tj) if src == "left" else (tj, sj)
                pair_up(lj, rj, base, "recovered insert", entry.pair_id)
                continue
            used[tside].add(tj)
            tver, _ = meta(tside, tj)
            lkey, rkey = ((entry.source_key, target_key) if src == "left"
                          else (target_key, entry.source_key))
            if source_gone(planner.inputs[src], entry.source_key):
                # the source was deleted after the crash: the created record follows it
                # (deleted when deletes propagate, else kept unpaired) and is never copied back
                planner.deleted_one(entry.pair_id, lkey, rkey, src, trow, tver)  # type: ignore[arg-type]
                continue
            # the source still exists but this read did not return it: it is as written
            srow = dict(base)
            lrow, rrow = (srow, trow) if src == "left" else (trow, srow)
            lver, rver = (None, tver) if src == "left" else (tver, None)
            planner.both_present(Pair(entry.pair_id, lkey, rkey, lrow, rrow, base, lver, rver,
                                      archived=False),
                                 src != "left" and trow != base, src == "left" and trow != base,
                                 "recovered insert")

    # 2. first-sync pairing by match_on
    pol = planner.policy
    if pol.match_on:
        groups: dict[Side, dict[tuple, list[int]]] = {"left": {}, "right": {}}
        for side in ("left", "right"):
            for j, r in enumerate(rows[side]):  # type: ignore[index]
                if j in used[side]:
                    continue
                mk = tuple(r[n] for n in pol.match_on)
                if any(v is None for v in mk):
                    continue
                groups[side].setdefault(mk, []).append(j)
        for mk, ljs in groups["left"].items():
            rjs = groups["right"].get(mk)
            if not rjs:
                continue
            if len(ljs) > 1 or len(rjs) > 1:
                label = ", ".join(f"{n}={v!r}" for n, v in zip(pol.match_on, mk, strict=True))
                for side, js in (("left", ljs), ("right", rjs)):
                    for j in js:
                        used[side].add(j)
                        planner.plan.rejections.append(Rejection(
                            side, keys[side][j],  # type: ignore[index]
                            f"ambiguous match_on ({label}): {len(ljs)} left and {len(rjs)} "
                            "right records; make them unique or pair them by hand"))
                continue
            pair_up(ljs[0], rjs[0], None, "first-sync match")

    # 3. the rest: insert on the other side, or remove from a mirrored target
    for side in ("left", "right"):
        to = other(side)  # type: ignore[arg-type]
        for j, r in enumerate(rows[side]):  # type: ignore[index]
            if j in used[side]:
                continue
            key = keys[side][j]  # type: ignore[index]
            ver, _ = meta(side, j)  # type: ignore[arg-type]
            if planner.policy.writes_to(to):
                planner.insert(to, new_pair_id(), r, key, ver)
            elif pol.mirror and pol.source == to:
                planner.write(side, "delete", new_pair_id(), key, version=ver,  # type: ignore[arg-type]
                              reason="mirror: not in source")
