"""Three-way reconciliation of two record frames against the archive (pure; no I/O).

Each side is classified against the archive (new, changed, unchanged, deleted; ``absent`` for a
pair whose record on that side was deleted earlier without the delete being propagated) and
every pair is decided by the truth table of DESIGN.md. Classification is vectorised: a side's
row is compared with the archived agreed values column by column, and only the few rows that
differ are hashed and compared with the side's archived hash.
"""

import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from l2sync_dagster.contract import MODIFIED, VERSION
from l2sync_dagster.engine.canonical import ARROW_TYPES, to_canonical, to_json_value, to_python
from l2sync_dagster.engine.hashing import row_hash
from l2sync_dagster.engine.mapping import FieldMapping, MappingError
from l2sync_dagster.engine.plan import (
    ArchiveRow,
    Conflict,
    PendingInsert,
    PlannedWrite,
    Rejection,
    Side,
    SyncPlan,
    other,
)

UNCHANGED, CHANGED, DELETED, ABSENT = 0, 1, 2, 3
# Arrow kernels release the GIL: per-column work runs on a few threads.
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="l2sync-engine")
POLICIES = ("left_wins", "right_wins", "latest_wins", "merge", "skip", "fail")

ARCHIVE_COLUMNS = [
    "pair_id", "left_key", "right_key", "left_hash", "right_hash",
    "left_dirty", "right_dirty", "left_version", "right_version",
]


def value_column(name: str) -> str:
    """The archive frame column holding the agreed canonical value of a mapped field."""
    return f"v:{name}"


def empty_archive(mapping: FieldMapping) -> pd.DataFrame:
    """An archive frame with no pairs."""
    cols: dict[str, Any] = {
        "pair_id": pd.Series([], dtype=object),
        "left_key": pd.Series([], dtype=object),
        "right_key": pd.Series([], dtype=object),
        "left_hash": pd.Series([], dtype="int64"),
        "right_hash": pd.Series([], dtype="int64"),
        "left_dirty": pd.Series([], dtype=bool),
        "right_dirty": pd.Series([], dtype=bool),
        "left_version": pd.Series([], dtype=object),
        "right_version": pd.Series([], dtype=object),
    }
    for p in mapping.pairs:
        cols[value_column(p.name)] = pd.Series(
            pd.arrays.ArrowExtensionArray(pa.array([], type=ARROW_TYPES[p.type]))
        )
    return pd.DataFrame(cols)


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


@dataclass(frozen=True)
class SyncPolicy:
    """The connection's rules for direction, conflicts and deletes."""

    direction: str = "bidirectional"
    mirror: bool = False
    conflict: str = "skip"
    fallback: str = "skip"
    propagate_deletes: bool = False
    max_delete_fraction: float = 0.2
    match_on: tuple[str, ...] = ()
    allow_mass_delete: bool = False

    def writes_to(self, side: Side) -> bool:
        """True when the connection direction lets data flow into ``side``."""
        if side == "right":
            return self.direction in ("bidirectional", "left_to_right")
        return self.direction in ("bidirectional", "right_to_left")

    @property
    def one_way(self) -> bool:
        """True for left_to_right and right_to_left."""
        return self.direction != "bidirectional"

    @property
    def source(self) -> Side | None:
        """The source side of a one-way connection."""
        if self.direction == "left_to_right":
            return "left"
        if self.direction == "right_to_left":
            return "right"
        return None


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
    keys = _key_array(frame.index)
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


def _key_array(values: Any) -> pa.Array:
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


def _archive_values(archive: pd.DataFrame, mapping: FieldMapping) -> dict[str, pa.Array]:
    out: dict[str, pa.Array] = {}
    for p in mapping.pairs:
        col = value_column(p.name)
        typ = ARROW_TYPES[p.type]
        if col in archive.columns:
            arr = pa.array(archive[col].array, from_pandas=True)
            if isinstance(arr, pa.ChunkedArray):
                arr = arr.combine_chunks()
            out[p.name] = arr.cast(typ) if arr.type != typ else arr
        else:
            out[p.name] = pa.nulls(len(archive), type=typ)
    return out


def _classify(
    c: Canon, inp: SideInput, archive: pd.DataFrame, side: Side,
    values: dict[str, pa.Array], names: list[str],
) -> tuple[np.ndarray, np.ndarray]:
    """State per archive row and the row's position in the side's canonical frame (or -1)."""
    n = len(archive)
    state = np.zeros(n, dtype=np.int8)
    if n == 0:
        return state, np.zeros(0, dtype=np.int64)
    akeys = _key_array(archive[f"{side}_key"])
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
                gone |= pc.is_in(mkeys, value_set=_key_array(list(inp.deleted))
                                 ).to_numpy(zero_copy_only=False)
            if inp.present_keys is not None:
                gone |= ~pc.is_in(mkeys, value_set=_key_array(inp.present_keys)
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


class _Planner:
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
        key_pairs = {}
        for side in ("left", "right"):
            kf = inputs[side].key_field.lower()
            key_pairs[side] = next(
                (p for p in mapping.pairs if p.field(side).lower() == kf), None
            ) if kf else None
        self.key_pair = key_pairs

    # --- helpers -------------------------------------------------------------------------
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

    def conflict(self, pid: str, kind: str, lkey, rkey, fields, base, lrow, rrow,
                 resolution: str) -> None:
        self.plan.conflicts.append(Conflict(pid, kind, lkey, rkey, list(fields), base, lrow,
                                            rrow, resolution))

    def insert(self, to: Side, pid: str, src_row: dict, src_key: str, src_ver) -> None:
        """Insert ``src_row`` into side ``to``; the pair is recorded once the insert succeeds."""
        if not self.can_write(to):
            return
        values = {n: (src_row[n] if self.flows(n, to) else None) for n in self.names}
        inp = self.inputs[to]
        key: str | None = None
        kp = self.key_pair[to]
        native = self.native({n: v for n, v in values.items() if self.flows(n, to)}, to)
        if kp is not None and values.get(kp.name) is not None:
            key = str(values[kp.name])
        elif not inp.key_generated:
            # A GUID with dashes: Dataverse and OData key literals require that form.
            key = str(uuid.uuid4()) if inp.key_field else None
            if inp.key_field:
                native[inp.key_field] = key
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

    # --- decisions -----------------------------------------------------------------------
    def both_present(self, pid: str, lkey, rkey, lrow: dict, rrow: dict, base: dict | None,
                     lch: bool, rch: bool, lver, rver, lmod, rmod, kind: str) -> None:
        """A pair whose records exist on both sides; ``base`` None means a first-sync match."""
        if lrow == rrow:
            self.effect(pid, lkey, rkey, lrow, rrow, lver, rver)
            return
        pol = self.policy
        if pol.one_way:
            src: Side = pol.source  # type: ignore[assignment]
            tgt = other(src)
            srow, trow = (lrow, rrow) if src == "left" else (rrow, lrow)
            s_changed, t_changed = (lch, rch) if src == "left" else (rch, lch)
            if not s_changed:
                if pol.mirror:
                    d = self.diff(srow, trow, tgt)
                    self._update_pair(pid, lkey, rkey, lrow, rrow, {tgt: d}, lver, rver,
                                      f"mirror: restore {tgt} from {src}")
                return
            d = self.diff(srow, trow, tgt)
            if t_changed or base is None:
                lost = [n for n in d if base is None or trow[n] != base.get(n)]
                if lost:
                    self.conflict(pid, kind, lkey, rkey, lost, base, lrow, rrow,
                                  f"{src} wins (one-way connection)")
            self._update_pair(pid, lkey, rkey, lrow, rrow, {tgt: d}, lver, rver,
                              f"changed on {src}")
            return
        # bidirectional
        if lch and not rch and base is not None:
            self._update_pair(pid, lkey, rkey, lrow, rrow, {"right": self.diff(lrow, rrow,
                              "right")}, lver, rver, "changed on left")
            return
        if rch and not lch and base is not None:
            self._update_pair(pid, lkey, rkey, lrow, rrow, {"left": self.diff(rrow, lrow,
                              "left")}, lver, rver, "changed on right")
            return
        self._conflict_both(pid, lkey, rkey, lrow, rrow, base, lver, rver, lmod, rmod, kind)

    def _latest(self, lmod, rmod) -> Side | None:
        if lmod is None or rmod is None or pd.isna(lmod) or pd.isna(rmod) or lmod == rmod:
            return None
        return "left" if lmod > rmod else "right"

    def _conflict_both(self, pid, lkey, rkey, lrow, rrow, base, lver, rver, lmod, rmod,
                       kind) -> None:
        names = self.names
        differing = [n for n in names if lrow[n] != rrow[n]]
        pol = self.policy.conflict
        if pol == "fail":
            self.conflict(pid, kind, lkey, rkey, differing, base, lrow, rrow, "run aborted")
            self.plan.blocked = self.plan.blocked or (
                "conflicts.policy is fail and there are conflicts; nothing was written"
            )
            return
        if pol == "skip":
            self.conflict(pid, kind, lkey, rkey, differing, base, lrow, rrow,
                          "skipped: nothing written")
            return
        if pol in ("left_wins", "right_wins", "latest_wins"):
            winner: Side | None = (
                "left" if pol == "left_wins" else "right" if pol == "right_wins"
                else self._latest(lmod, rmod)
            )
            if winner is None:
                self.conflict(pid, kind, lkey, rkey, differing, base, lrow, rrow,
                              "skipped: latest_wins needs _modified on both sides and they "
                              "must differ")
                return
            self.conflict(pid, kind, lkey, rkey, differing, base, lrow, rrow,
                          f"{winner} wins ({pol})")
            self._apply_winner(pid, lkey, rkey, lrow, rrow, winner, lver, rver)
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
                self.conflict(pid, kind, lkey, rkey, differing, base, lrow, rrow,
                              "run aborted")
                self.plan.blocked = self.plan.blocked or (
                    "conflicts.fallback is fail and fields changed on both sides"
                )
                return
            winner = ("left" if fb == "left_wins" else "right" if fb == "right_wins"
                      else self._latest(lmod, rmod) if fb == "latest_wins" else None)
            if winner is None:
                why = "" if fb == "skip" else " (latest_wins could not decide)"
                self.conflict(pid, kind, lkey, rkey, differing, base, lrow, rrow,
                              f"skipped: fields {', '.join(clashes)} changed on both sides{why}")
                return
            for n in clashes:
                if winner == "left" and self.flows(n, "right"):
                    to_right[n] = lrow[n]
                elif winner == "right" and self.flows(n, "left"):
                    to_left[n] = rrow[n]
            resolution = f"merged; {winner} wins {', '.join(clashes)} ({fb})"
        self.conflict(pid, kind, lkey, rkey, differing, base, lrow, rrow, resolution)
        self._update_pair(pid, lkey, rkey, lrow, rrow, {"left": to_left, "right": to_right},
                          lver, rver, "merge")

    def _apply_winner(self, pid, lkey, rkey, lrow, rrow, winner: Side, lver, rver) -> None:
        loser = other(winner)
        wrow, lsrow = (lrow, rrow) if winner == "left" else (rrow, lrow)
        to_loser = self.diff(wrow, lsrow, loser)
        to_winner = {n: lsrow[n] for n in self.names
                     if wrow[n] != lsrow[n] and not self.flows(n, loser)
                     and self.flows(n, winner)}
        self._update_pair(pid, lkey, rkey, lrow, rrow, {loser: to_loser, winner: to_winner},
                          lver, rver, f"{winner} wins")

    def _update_pair(self, pid, lkey, rkey, lrow, rrow, diffs: dict[Side, dict], lver, rver,
                     reason: str) -> None:
        lafter, rafter = dict(lrow), dict(rrow)
        for side, d in diffs.items():
            if not d:
                continue
            if not self.inputs[side].writable:
                self.plan.rejections.append(Rejection(
                    side, (lkey if side == "left" else rkey) or pid,
                    f"cannot update: the {side} side is read-only"))
                return
        for side, d in diffs.items():
            if not d:
                continue
            key, ver = (lkey, lver) if side == "left" else (rkey, rver)
            self.write(side, "update", pid, key, d, ver, reason)
            (lafter if side == "left" else rafter).update(d)
        self.effect(pid, lkey, rkey, lafter, rafter, lver, rver)

    def edit_delete(self, pid, lkey, rkey, edited: Side, row: dict, base: dict, ver) -> None:
        """One side changed the record, the other deleted it."""
        pol = self.policy
        deleted = other(edited)
        ekey = lkey if edited == "left" else rkey
        lrow, rrow = (row, None) if edited == "left" else (None, row)

        def record(resolution: str) -> None:
            self.conflict(pid, "edit/delete", lkey, rkey, self.names, base, lrow, rrow,
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


_JSON_NATIVE = frozenset({"string", "integer", "float", "boolean", "json"})


def _finalize(planner: _Planner) -> None:
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


def reconcile(
    name: str,
    left: SideInput,
    right: SideInput,
    archive: pd.DataFrame,
    mapping: FieldMapping,
    policy: SyncPolicy,
    pending: Sequence[PendingInsert] = (),
) -> tuple[SyncPlan, list[PendingInsert]]:
    """Plan one run. Returns the plan and the inserts to journal before they are applied."""
    if policy.conflict not in POLICIES:
        raise ValueError(f"unknown conflict policy {policy.conflict!r}")
    inputs: dict[Side, SideInput] = {"left": left, "right": right}
    canon: dict[Side, Canon] = {s: canonicalize(inputs[s], mapping, s) for s in inputs}
    planner = _Planner(name, mapping, policy, inputs, canon)
    plan = planner.plan
    names = mapping.names
    for side in ("left", "right"):
        for key, reason in canon[side].rejected.items():
            plan.rejections.append(Rejection(side, key, reason))  # type: ignore[arg-type]
    plan.pairs_before = int((archive["left_key"].notna() | archive["right_key"].notna()).sum()
                            ) if len(archive) else 0
    archive, adopted = _recover(archive, canon, pending, names)
    values = _archive_values(archive, mapping)
    lstate, lpos = _classify(canon["left"], left, archive, "left", values, names)
    rstate, rpos = _classify(canon["right"], right, archive, "right", values, names)

    act = np.flatnonzero((lstate != UNCHANGED) | (rstate != UNCHANGED))
    act = act[~((lstate[act] == ABSENT) & (rstate[act] == UNCHANGED))]
    act = act[~((lstate[act] == UNCHANGED) & (rstate[act] == ABSENT))]
    base_rows = _rows_from(values, act, names)
    lrows = canon["left"].rows(lpos[act], names)
    rrows = canon["right"].rows(rpos[act], names)
    take = pa.array(act.astype(np.int64))
    pid_col, lkey_col, rkey_col, lver_col, rver_col = (
        _key_array(archive[c]).take(take).to_pylist() if len(act) else []
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
            planner.both_present(pid, lkey, rkey, lrow, rrow, base, ls == CHANGED,
                                 rs == CHANGED, lver, rver, lmod, rmod, "update/update")
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

    new_pos: dict[Side, np.ndarray] = {"left": _new_positions(canon["left"], lpos),
                                       "right": _new_positions(canon["right"], rpos)}
    _plan_new(planner, new_pos, adopted)
    _classified_counts(plan, canon, inputs, lstate, rstate, new_pos)
    _brake(plan, policy, canon)
    _finalize(planner)
    return plan, planner.pending


def _rows_from(values: dict[str, pa.Array], idx: np.ndarray, names: list[str]) -> list[dict]:
    if len(idx) == 0:
        return []
    take = pa.array(idx)
    cols = [values[n].take(take).to_pylist() for n in names]
    return [dict(zip(names, vals, strict=True)) for vals in zip(*cols, strict=True)]


def _new_positions(c: Canon, pos: np.ndarray) -> np.ndarray:
    """Positions of a side's records that no archive pair refers to."""
    mask = np.ones(len(c.keys), dtype=bool)
    mask[pos[pos >= 0]] = False
    return np.flatnonzero(mask)


def _recover(
    archive: pd.DataFrame, canon: dict[Side, Canon], pending: Sequence[PendingInsert],
    names: list[str],
) -> tuple[pd.DataFrame, list[tuple[PendingInsert, str]]]:
    """Find the records that journaled inserts created before a crash.

    A record is found by the key the journal holds (chosen by the sync, or recorded from the
    system's answer, or found by its stamp), else by the hash it was written with. An insert
    that re-created the record of an existing pair re-points that pair at the new record (the
    archive frame is patched); one that created a new pair is returned as (entry, target key)
    for ``_plan_new`` to pair.
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
        known = _key_array(archive[f"{side}_key"]).drop_null()
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


def _plan_new(planner: _Planner, new_pos: dict[Side, np.ndarray],
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
        planner.both_present(pid or uuid.uuid4().hex, keys["left"][lj], keys["right"][rj],
                             lrow, rrow, base, lch, rch, lver, rver, lmod, rmod, kind)

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
            base = _journaled_base(entry, planner) or dict(trow)  # type: ignore[arg-type]
            if sj is not None:
                lj, rj = (sj, tj) if src == "left" else (tj, sj)
                pair_up(lj, rj, base, "recovered insert", entry.pair_id)
                continue
            used[tside].add(tj)
            tver, _ = meta(tside, tj)
            lkey, rkey = ((entry.source_key, target_key) if src == "left"
                          else (target_key, entry.source_key))
            if _gone(planner.inputs[src], entry.source_key):
                # the source was deleted after the crash: the created record follows it
                # (deleted when deletes propagate, else kept unpaired) and is never copied back
                planner.deleted_one(entry.pair_id, lkey, rkey, src, trow, tver)  # type: ignore[arg-type]
                continue
            # the source still exists but this read did not return it: it is as written
            srow = dict(base)
            lrow, rrow = (srow, trow) if src == "left" else (trow, srow)
            planner.both_present(entry.pair_id, lkey, rkey, lrow, rrow, base,
                                 src != "left" and trow != base, src == "left" and trow != base,
                                 *((None, tver) if src == "left" else (tver, None)),
                                 None, None, "recovered insert")

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
                planner.insert(to, uuid.uuid4().hex, r, key, ver)
            elif pol.mirror and pol.source == to:
                planner.write(side, "delete", uuid.uuid4().hex, key, version=ver,  # type: ignore[arg-type]
                              reason="mirror: not in source")


def _gone(inp: SideInput, key: str) -> bool:
    """True when a side's read shows that the record ``key`` no longer exists (the caller
    knows the key is not among the records the read returned)."""
    return inp.complete or key in set(inp.deleted)


def _journaled_base(entry: PendingInsert, planner: _Planner) -> dict[str, Any] | None:
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


def _classified_counts(plan: SyncPlan, canon, inputs, lstate, rstate, new_pos) -> None:
    for side, state in (("left", lstate), ("right", rstate)):
        c = canon[side]
        plan.classified[side] = {
            "read": len(c.keys) + len(c.rejected),
            "new": int(len(new_pos[side])),
            "changed": int((state == CHANGED).sum()),
            "deleted": int((state == DELETED).sum()),
            "complete": bool(inputs[side].complete),
        }


def _brake(plan: SyncPlan, policy: SyncPolicy, canon: dict[Side, Canon]) -> None:
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
