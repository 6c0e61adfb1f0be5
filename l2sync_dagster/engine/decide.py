"""The truth table and the conflict policies: what happens to one pair, given how each side
changed against the archive (the Unison-style decisions; no I/O)."""

import uuid
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import pandas as pd
import pyarrow as pa

from l2sync_dagster.engine.canonical import TO_PYTHON, python_values, to_python
from l2sync_dagster.engine.classify import Canon, SideInput
from l2sync_dagster.engine.mapping import FieldMapping
from l2sync_dagster.engine.plan import (
    ArchiveRow,
    Conflict,
    PendingInsert,
    PlannedWrite,
    Rejection,
    Side,
    SyncPlan,
    new_pair_ids,
    other,
)
from l2sync_dagster.engine.policy import SyncPolicy


@dataclass
class Pair:
    """One pair as a run sees it: its id and keys, each side's current canonical row (None:
    the record is not there), the values both sides last agreed on (``base``; None for a
    first-sync match), each side's version and modified time. ``archived`` False: a pairing
    this run makes (a first-sync match, a recovered insert) that the archive holds nothing of."""

    pid: str
    lkey: str | None
    rkey: str | None
    lrow: dict | None = None
    rrow: dict | None = None
    base: dict | None = None
    lver: str | None = None
    rver: str | None = None
    lmod: Any = None
    rmod: Any = None
    archived: bool = True

    def key(self, side: Side) -> str | None:
        """The record's key on ``side``."""
        return self.lkey if side == "left" else self.rkey

    def row(self, side: Side) -> dict:
        """The record's row on ``side`` (which must be there)."""
        row = self.lrow if side == "left" else self.rrow
        assert row is not None
        return row

    def ver(self, side: Side) -> str | None:
        """The record's version on ``side``."""
        return self.lver if side == "left" else self.rver


@dataclass
class InsertBatch:
    """Inserts into ``to`` planned column-wise (``Planner.insert_many``): the source rows as
    canonical Arrow columns (``lists``: the same as Python lists, for the columns already
    converted), and per row the archive row and journal entry that ``finalize`` fills."""

    to: Side
    cols: dict[str, pa.Array]
    effects: list[ArchiveRow]
    pending: list[PendingInsert]
    lists: dict[str, list[Any]] = field(default_factory=dict)


class Planner:
    """Decides every pair; collects writes, archive effects, conflicts."""

    def __init__(
        self, name: str, mapping: FieldMapping, policy: SyncPolicy,
        inputs: dict[Side, SideInput], canon: dict[Side, Canon],
    ) -> None:
        self.mapping = mapping
        self.names = mapping.names
        self.policy = policy
        self.inputs = inputs
        self.canon = canon
        self.plan = SyncPlan(connection=name)
        self.rows_after: dict[str, tuple[dict | None, dict | None]] = {}
        self.pending: list[PendingInsert] = []
        #: inserts planned column-wise; their pairs are in ``plan.effects`` but not in
        #: ``rows_after`` (finalize fills them from the batch's columns)
        self.batches: list[InsertBatch] = []
        self.types = mapping.types()
        self.flow: dict[str, frozenset[str]] = {
            to: frozenset(p.name for p in mapping.pairs
                          if p.flows_to(to) and policy.writes_to(to))  # type: ignore[arg-type]
            for to in ("left", "right")
        }
        self.flow_list = {to: [n for n in self.names if n in self.flow[to]]
                          for to in ("left", "right")}
        self.field_of: dict[str, dict[str, str]] = {
            s: {p.name: p.field(s) for p in mapping.pairs} for s in ("left", "right")  # type: ignore[arg-type]
        }
        #: per target side: (name, native field, converter or None) of each flowing field, so
        #: that an insert converts its values without a lookup per field
        self._native_plan = {
            to: [(n, self.field_of[to][n], TO_PYTHON.get(self.types[n]))
                 for n in self.flow_list[to]]
            for to in ("left", "right")}
        key_pairs = {}
        for side in ("left", "right"):
            kf = inputs[side].key_field.lower()
            key_pairs[side] = next(
                (p for p in mapping.pairs if p.field(side).lower() == kf), None
            ) if kf else None
        self.key_pair = key_pairs

    # --- helpers -------------------------------------------------------------------------
    def fresh_ids(self, count: int) -> list[str]:
        """``count`` new pair ids, noted in the plan as never archived."""
        ids = new_pair_ids(count)
        self.plan.fresh.update(ids)
        return ids

    def flows(self, name: str, to: Side) -> bool:
        return name in self.flow[to]

    def can_write(self, side: Side) -> bool:
        return self.policy.writes_to(side) and self.inputs[side].writable

    def diff(self, src: dict, dst: dict, to: Side) -> dict[str, Any]:
        return {n: src[n] for n in self.flow_list[to] if src[n] != dst[n]}

    def native(self, values: dict[str, Any], side: Side) -> dict[str, Any]:
        fields, types = self.field_of[side], self.types
        return {fields[n]: to_python(v, types[n]) for n, v in values.items()}

    def write(self, side: Side, op: str, pid: str, key: str | None,
              values: dict | None = None, version: str | None = None, reason: str = "") -> None:
        if not self.inputs[side].writable:
            self.plan.rejections.append(
                Rejection(side, key or pid, f"cannot {op}: the {side} side is read-only")
            )
            return
        self.plan.writes.append(PlannedWrite(
            side, op, pid, key, self.native(values or {}, side), version, reason  # type: ignore[arg-type]
        ))

    def effect(self, pid: str, lkey: str | None, rkey: str | None,
               lrow: dict | None, rrow: dict | None,
               lver: str | None = None, rver: str | None = None) -> None:
        self.plan.effects[pid] = ArchiveRow(pid, lkey, rkey, None, None, {}, False, False,
                                            lver, rver)
        self.rows_after[pid] = (lrow, rrow)

    def drop(self, pid: str) -> None:
        self.plan.effects[pid] = None

    def conflict(self, pair: Pair, kind: str, fields, resolution: str) -> None:
        self.plan.conflicts.append(Conflict(pair.pid, kind, pair.lkey, pair.rkey, list(fields),
                                            pair.base, pair.lrow, pair.rrow, resolution))

    def _new_key(self, to: Side, value: Any, native: dict[str, Any]) -> str | None:
        """The key of a record inserted into ``to``: the value of its key field, else, where
        the sync makes the keys, a new GUID (written into ``native``); None where the system
        makes them."""
        if value is not None:
            return str(value)
        inp = self.inputs[to]
        if inp.key_generated or not inp.key_field:
            return None
        # A GUID with dashes: Dataverse and OData key literals require that form.
        key = native[inp.key_field] = str(uuid.uuid4())
        return key

    def insert(self, to: Side, pid: str, src_row: dict, src_key: str, src_ver) -> None:
        """Insert ``src_row`` into side ``to``; the pair is recorded once the insert succeeds."""
        if not self.can_write(to):
            return
        values = dict.fromkeys(self.names)
        native: dict[str, Any] = {}
        for n, fld, conv in self._native_plan[to]:
            v = values[n] = src_row[n]
            native[fld] = v if conv is None or v is None else conv(v)
        inp = self.inputs[to]
        kp = self.key_pair[to]
        key = self._new_key(to, None if kp is None else values.get(kp.name), native)
        if inp.writable:
            self.plan.writes.append(PlannedWrite(to, "insert", pid, key, native, None,
                                                 f"new on {other(to)}"))
        else:
            self.plan.rejections.append(Rejection(other(to), src_key,
                                                  f"cannot insert: the {to} side is read-only"))
            return
        if to == "right":
            self.effect(pid, src_key, key, src_row, values, src_ver, None)
        else:
            self.effect(pid, key, src_key, values, src_row, None, src_ver)
        self.pending.append(PendingInsert(pid, to, src_key, key, 0))

    def insert_many(self, to: Side, cols: dict[str, pa.Array], pids: list[str],
                    src_keys: list[str], src_vers: list[str | None]) -> None:
        """``insert`` for many source rows at once, column by column: the same writes,
        archive rows and journal entries, in the same order, as ``insert`` row by row.
        ``cols`` holds the source rows' canonical columns (of ``ARROW_TYPES``' types)."""
        if not self.can_write(to) or not pids:
            return
        k = len(pids)
        lists = {n: python_values(cols[n]) for n in self.flow_list[to]}
        fields: list[str] = []
        native_cols: list[list[Any]] = []
        for n, fld, conv in self._native_plan[to]:
            vals = lists[n]
            t = cols[n].type
            if self.types[n] == "datetime" and pa.types.is_timestamp(t) and t.tz is not None:
                conv = None  # Arrow gives aware datetimes: the conversion keeps every value
            if conv is not None:
                vals = [v if v is None else conv(v) for v in vals]
            fields.append(fld)
            native_cols.append(vals)
        natives: list[dict[str, Any]] = (
            [dict(zip(fields, row, strict=True)) for row in zip(*native_cols, strict=True)]
            if fields else [{} for _ in range(k)])
        kp = self.key_pair[to]
        kvals = lists.get(kp.name) if kp is not None else None
        keys = [self._new_key(to, v, nat)
                for v, nat in zip(repeat(None, k) if kvals is None else kvals, natives,
                                  strict=True)]
        reason = f"new on {other(to)}"
        self.plan.writes.extend([
            PlannedWrite(to, "insert", pid, key, nat, None, reason)
            for pid, key, nat in zip(pids, keys, natives, strict=True)])
        if to == "right":
            rows = [ArchiveRow(pid, sk, key, None, None, {}, False, False, sv, None)
                    for pid, sk, key, sv in zip(pids, src_keys, keys, src_vers, strict=True)]
        else:
            rows = [ArchiveRow(pid, key, sk, None, None, {}, False, False, None, sv)
                    for pid, sk, key, sv in zip(pids, src_keys, keys, src_vers, strict=True)]
        self.plan.effects.update(zip(pids, rows, strict=True))
        pending = [PendingInsert(pid, to, sk, key, 0)
                   for pid, sk, key in zip(pids, src_keys, keys, strict=True)]
        self.pending.extend(pending)
        self.batches.append(InsertBatch(to, cols, rows, pending, lists))

    # --- decisions -----------------------------------------------------------------------
    def both_present(self, pair: Pair, lch: bool, rch: bool, kind: str) -> None:
        """A pair whose records exist on both sides; ``pair.base`` None: a first-sync match."""
        lrow, rrow, base = pair.lrow, pair.rrow, pair.base
        assert lrow is not None and rrow is not None
        if lrow == rrow:
            self.effect(pair.pid, pair.lkey, pair.rkey, lrow, rrow, pair.lver, pair.rver)
            return
        pol = self.policy
        if pol.one_way:
            src: Side = pol.source  # type: ignore[assignment]
            tgt = other(src)
            srow, trow = pair.row(src), pair.row(tgt)
            s_changed, t_changed = (lch, rch) if src == "left" else (rch, lch)
            if not s_changed:
                if pol.mirror:
                    self._update_pair(pair, {tgt: self.diff(srow, trow, tgt)},
                                      f"mirror: restore {tgt} from {src}")
                elif not pair.archived:
                    # the target's edit is kept, but the pairing must be archived: else the
                    # next run finds the source record in no pair and inserts it again
                    self.effect(pair.pid, pair.lkey, pair.rkey, lrow, rrow, pair.lver,
                                pair.rver)
                return
            d = self.diff(srow, trow, tgt)
            if t_changed or base is None:
                lost = [n for n in d if base is None or trow[n] != base.get(n)]
                if lost:
                    self.conflict(pair, kind, lost, f"{src} wins (one-way connection)")
            self._update_pair(pair, {tgt: d}, f"changed on {src}")
            return
        # bidirectional
        if lch and not rch and base is not None:
            self._update_pair(pair, {"right": self.diff(lrow, rrow, "right")},
                              "changed on left")
            return
        if rch and not lch and base is not None:
            self._update_pair(pair, {"left": self.diff(rrow, lrow, "left")},
                              "changed on right")
            return
        self._conflict_both(pair, kind)

    def _latest(self, lmod, rmod) -> Side | None:
        if lmod is None or rmod is None or pd.isna(lmod) or pd.isna(rmod) or lmod == rmod:
            return None
        return "left" if lmod > rmod else "right"

    def _conflict_both(self, pair: Pair, kind: str) -> None:
        lrow, rrow, base = pair.lrow, pair.rrow, pair.base
        assert lrow is not None and rrow is not None
        names = self.names
        differing = [n for n in names if lrow[n] != rrow[n]]
        pol = self.policy.conflict
        if pol == "fail":
            self.conflict(pair, kind, differing, "run aborted")
            self.plan.blocked = self.plan.blocked or (
                "conflicts.policy is fail and there are conflicts; nothing was written"
            )
            return
        if pol == "skip":
            self.conflict(pair, kind, differing, "skipped: nothing written")
            return
        if pol in ("left_wins", "right_wins", "latest_wins"):
            winner: Side | None = (
                "left" if pol == "left_wins" else "right" if pol == "right_wins"
                else self._latest(pair.lmod, pair.rmod)
            )
            if winner is None:
                self.conflict(pair, kind, differing,
                              "skipped: latest_wins needs _modified on both sides and they "
                              "must differ")
                return
            self.conflict(pair, kind, differing, f"{winner} wins ({pol})")
            self._apply_winner(pair, winner)
            return
        # merge: field by field against the archive
        to_left: dict[str, Any] = {}
        to_right: dict[str, Any] = {}
        clashes: list[str] = []
        for n in differing:
            lc = base is None or lrow[n] != base.get(n)
            rc = base is None or rrow[n] != base.get(n)
            if lc and rc:
                clashes.append(n)
            elif lc and self.flows(n, "right"):
                to_right[n] = lrow[n]
            elif rc and self.flows(n, "left"):
                to_left[n] = rrow[n]
        fb = self.policy.fallback
        resolution = "merged"
        if clashes:
            if fb == "fail":
                self.conflict(pair, kind, differing, "run aborted")
                self.plan.blocked = self.plan.blocked or (
                    "conflicts.fallback is fail and fields changed on both sides"
                )
                return
            winner = ("left" if fb == "left_wins" else "right" if fb == "right_wins"
                      else self._latest(pair.lmod, pair.rmod) if fb == "latest_wins" else None)
            if winner is None:
                why = "" if fb == "skip" else " (latest_wins could not decide)"
                self.conflict(pair, kind, differing,
                              f"skipped: fields {', '.join(clashes)} changed on both sides{why}")
                return
            for n in clashes:
                if winner == "left" and self.flows(n, "right"):
                    to_right[n] = lrow[n]
                elif winner == "right" and self.flows(n, "left"):
                    to_left[n] = rrow[n]
            resolution = f"merged; {winner} wins {', '.join(clashes)} ({fb})"
        self.conflict(pair, kind, differing, resolution)
        self._update_pair(pair, {"left": to_left, "right": to_right}, "merge")

    def _apply_winner(self, pair: Pair, winner: Side) -> None:
        loser = other(winner)
        wrow, lsrow = pair.row(winner), pair.row(loser)
        to_loser = self.diff(wrow, lsrow, loser)
        to_winner = {n: lsrow[n] for n in self.names
                     if wrow[n] != lsrow[n] and not self.flows(n, loser)
                     and self.flows(n, winner)}
        self._update_pair(pair, {loser: to_loser, winner: to_winner}, f"{winner} wins")

    def _update_pair(self, pair: Pair, diffs: dict[Side, dict], reason: str) -> None:
        lafter, rafter = dict(pair.lrow or {}), dict(pair.rrow or {})
        for side, d in diffs.items():
            if not d:
                continue
            if not self.inputs[side].writable:
                self.plan.rejections.append(Rejection(
                    side, pair.key(side) or pair.pid,
                    f"cannot update: the {side} side is read-only"))
                return
        for side, d in diffs.items():
            if not d:
                continue
            self.write(side, "update", pair.pid, pair.key(side), d, pair.ver(side), reason)
            (lafter if side == "left" else rafter).update(d)
        self.effect(pair.pid, pair.lkey, pair.rkey, lafter, rafter, pair.lver, pair.rver)

    def edit_delete(self, pid, lkey, rkey, edited: Side, row: dict, base: dict, ver) -> None:
        """One side changed the record, the other deleted it."""
        pol = self.policy
        deleted = other(edited)
        ekey = lkey if edited == "left" else rkey
        lrow, rrow = (row, None) if edited == "left" else (None, row)

        def record(resolution: str) -> None:
            self.conflict(Pair(pid, lkey, rkey, lrow, rrow, base), "edit/delete", self.names,
                          resolution)

        def recreate(why: str) -> None:
            record(f"{edited} wins: re-created on {deleted} ({why})")
            self.insert(deleted, pid, row, ekey, ver)

        def delete_edited(why: str, reason: str) -> None:
            record(f"{deleted} wins: deleted on {edited} ({why})")
            self.write(edited, "delete", pid, ekey, version=ver, reason=reason)
            self.drop(pid)

        if pol.one_way:
            if edited == pol.source:
                recreate("one-way")
            elif pol.propagate_deletes:
                delete_edited("one-way", "deleted on source")
            else:
                self._absent(pid, lkey, rkey, deleted, row, base, ver)
            return
        choice = pol.conflict if pol.conflict != "merge" else pol.fallback
        if choice == "fail":
            record("run aborted")
            self.plan.blocked = self.plan.blocked or (
                "conflicts.policy is fail and there are conflicts; nothing was written")
            return
        if choice == "skip":
            record("skipped: nothing written")
            return
        winner = edited if choice == "latest_wins" else (
            "left" if choice == "left_wins" else "right")
        if winner == edited:
            recreate(choice)
        elif pol.propagate_deletes:
            delete_edited(choice, f"deleted on {deleted}")
        else:
            record(f"{deleted} wins but deletes do not propagate: kept on {edited}")
            self._absent(pid, lkey, rkey, deleted, row, base, ver)

    def _absent(self, pid, lkey, rkey, gone: Side, row: dict, base, ver) -> None:
        """Record that ``gone`` lost the record and the delete is not propagated."""
        if gone == "left":
            self.effect(pid, None, rkey, None, row, None, ver)
        else:
            self.effect(pid, lkey, None, row, None, ver, None)

    def deleted_one(self, pid, lkey, rkey, gone: Side, row: dict, ver) -> None:
        """``gone`` deleted the record, the other side left it unchanged."""
        pol = self.policy
        keeper = other(gone)
        kkey = lkey if keeper == "left" else rkey
        if pol.one_way and gone == other(pol.source):  # type: ignore[arg-type]
            if pol.mirror:
                self.insert(gone, pid, row, kkey, ver)
            else:
                self._absent(pid, lkey, rkey, gone, row, None, ver)
            return
        if pol.propagate_deletes and self.can_write(keeper):
            self.write(keeper, "delete", pid, kkey, version=ver, reason=f"deleted on {gone}")
            self.drop(pid)
        else:
            self._absent(pid, lkey, rkey, gone, row, None, ver)
