"""Records on one side that are in no pair: adopt what a crashed run created, pair first-sync
matches by ``match_on``, insert the rest (or remove them from a mirrored target)."""

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from l2sync_dagster.engine.canonical import ARROW_TYPES
from l2sync_dagster.engine.classify import Canon, DuplicateKeyError
from l2sync_dagster.engine.decide import Pair, Planner
from l2sync_dagster.engine.plan import (
    PendingInsert,
    Rejection,
    Side,
    new_pair_id,
    other,
)
from l2sync_dagster.engine.recover import journaled_base, source_gone

#: False: every new record goes through ``Planner.insert`` as a row dict (the general path;
#: tests compare the two)
COLUMNWISE = True


class _Rows:
    """A side's new records as row dicts, built only for the positions asked for (in bulk
    with ``load``); the same dict for a position every time."""

    def __init__(self, canon: Canon, positions: np.ndarray, names: list[str]) -> None:
        self.canon, self.positions, self.names = canon, positions, names
        self.built: dict[int, dict[str, Any] | None] = {}

    def load(self, js: Iterable[int]) -> None:
        todo = sorted({j for j in js if j not in self.built})
        if todo:
            rows = self.canon.rows(self.positions[np.asarray(todo, dtype=np.int64)], self.names)
            self.built.update(zip(todo, rows, strict=True))

    def __getitem__(self, j: int) -> dict[str, Any]:
        if j not in self.built:
            self.load((j,))
        row = self.built[j]
        assert row is not None
        return row

    def __len__(self) -> int:
        return len(self.positions)


def _columnwise(canon: Canon, types: dict[str, str], names: list[str]) -> bool:
    """True when the side's canonical columns have exactly the types finalize hashes."""
    return COLUMNWISE and all(canon.cols[n].type == ARROW_TYPES[types[n]] for n in names)


def plan_new(planner: Planner, new_pos: dict[Side, np.ndarray],
              adopted: Sequence[tuple[PendingInsert, str]]) -> None:
    """Records on one side that are in no pair: recover crashed inserts, match, insert."""
    canon = planner.canon
    names = planner.names
    rows = {s: _Rows(canon[s], new_pos[s], names) for s in new_pos}
    if not COLUMNWISE:
        for r in rows.values():
            r.load(range(len(r)))
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
        planner.both_present(Pair(pid or planner.fresh_ids(1)[0], keys["left"][lj],
                                  keys["right"][rj], lrow, rrow, base, lver, rver, lmod, rmod,
                                  archived=False),
                             lch, rch, kind)

    # 1. inserts journaled by a run that did not finish: pair what they created, with the
    # values they were written with as the base, so that an edit made since counts as an edit
    if adopted:
        index = {s: {k: j for j, k in enumerate(keys[s])} for s in keys}  # type: ignore[index]
        for entry, target_key in adopted:
            tside = entry.side
            rows[tside].load([index[tside][target_key]] if target_key in index[tside] else [])
            sj = index[other(tside)].get(entry.source_key)
            rows[other(tside)].load([] if sj is None else [sj])
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
            pos = new_pos[side]  # type: ignore[index]
            if len(used[side]) == len(pos):  # type: ignore[index]
                continue
            take = pa.array(np.asarray(pos, dtype=np.int64))
            mcols = [canon[side].cols[n].take(take).to_pylist()  # type: ignore[index]
                     for n in pol.match_on]
            for j, mk in enumerate(zip(*mcols, strict=True)):
                if j in used[side]:  # type: ignore[index]
                    continue
                if any(v is None for v in mk):
                    continue
                groups[side].setdefault(mk, []).append(j)  # type: ignore[index]
        # the rows of the pairs matched below, built in one go
        one = [(ljs[0], rjs[0]) for mk, ljs in groups["left"].items()
               for rjs in (groups["right"].get(mk) or [],) if len(ljs) == 1 and len(rjs) == 1]
        rows["left"].load(lj for lj, _ in one)
        rows["right"].load(rj for _, rj in one)
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
        js = [j for j in range(len(rows[side])) if j not in used[side]]  # type: ignore[index]
        if not js:
            continue
        if planner.policy.writes_to(to) and _columnwise(canon[side], planner.types, names):  # type: ignore[index]
            if not planner.can_write(to):
                continue  # insert writes nothing to a read-only side
            _insert_columnwise(planner, side, to, new_pos[side], js, keys[side])  # type: ignore[index,arg-type]
            continue
        if planner.policy.writes_to(to):
            rows[side].load(js)  # type: ignore[index]
        for j in js:
            key = keys[side][j]  # type: ignore[index]
            ver, _ = meta(side, j)  # type: ignore[arg-type]
            if planner.policy.writes_to(to):
                planner.insert(to, planner.fresh_ids(1)[0], rows[side][j], key, ver)  # type: ignore[index]
            elif pol.mirror and pol.source == to:
                planner.write(side, "delete", new_pair_id(), key, version=ver,  # type: ignore[arg-type]
                              reason="mirror: not in source")


def _insert_columnwise(planner: Planner, side: Side, to: Side, new_pos: np.ndarray,
                       js: list[int], keys: list[str]) -> None:
    """Step 3's inserts of ``side``'s new records ``js`` into ``to``, column by column."""
    c = planner.canon[side]
    pos = np.asarray(new_pos, dtype=np.int64)[np.asarray(js, dtype=np.int64)]
    if len(pos) == len(c.keys) and (len(pos) == 0 or (pos[0] == 0 and pos[-1] == len(pos) - 1)):
        cols = dict(c.cols)  # every record, in order: no copy
    else:
        take = pa.array(pos)
        cols = {n: c.cols[n].take(take) for n in planner.names}
    if c.versions is not None:
        vers = [None if v is None else str(v) for v in (c.versions[p] for p in pos.tolist())]
    else:
        vers = [None] * len(pos)
    planner.insert_many(to, cols, planner.fresh_ids(len(js)), [keys[j] for j in js], vers)
