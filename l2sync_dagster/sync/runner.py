"""One sync run of a connection: extract both sides, plan, apply in batches, check.

Crash safety: conflicts are recorded before any write; inserts are journaled before they are
sent; after every batch the archive rows of the pairs whose writes all succeeded are committed
together with their journal entries. Cursors advance only when every record a side reported was
fully handled, so nothing read is ever forgotten.

Time-partitioned connections (``partitions:``): a run given a ``window`` reads both sides only
inside it (pushed down to the providers) and fully within it: windowed runs neither use nor
move the change-feed cursors. The archive is loaded for the window (pairs whose agreed window
value lies in it, plus pairs whose keys the reads returned), and an archived record of the
window that a read did not return is looked up (``lookup``): found = it moved to another window
(an update, judged with its new values), not found = deleted. A provider without ``lookup``
gets no deletes judged for such records (a note in the run's metadata says so).
"""

import inspect
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from l2sync_dagster.contract import Window, as_window
from l2sync_dagster.engine.classify import SideInput, canonicalize
from l2sync_dagster.engine.hashing import row_hash
from l2sync_dagster.engine.mapping import FieldMapping, MappingError, resolve_for_spec
from l2sync_dagster.engine.plan import PendingInsert, Side, SyncPlan
from l2sync_dagster.engine.policy import SyncPolicy
from l2sync_dagster.engine.reconcile import reconcile
from l2sync_dagster.engine.windows import missing_keys, window_label
from l2sync_dagster.providers.base import (
    Change,
    EntityDescription,
    Outcome,
    Provider,
    ProviderError,
    Query,
    ReadResult,
    can_find_stamps,
    can_lookup,
    provider_stats,
    web_link_of,
)
from l2sync_dagster.spec.errors import LocatedError, error_subject
from l2sync_dagster.spec.model import ConnectionSpec
from l2sync_dagster.state.store import StateStore, default_state_url
from l2sync_dagster.sync.scope import judge_read

Progress = Callable[[str, int, int], None]
SIDES: tuple[Side, Side] = ("left", "right")
log = logging.getLogger("l2sync")


class SyncAborted(RuntimeError):
    """The run stopped before writing anything (mass-delete brake, conflict policy fail)."""


@dataclass
class SideRead:
    """One side's read and what it took."""

    result: ReadResult
    description: EntityDescription
    cursor_used: str | None
    seconds: float

    def side_input(self) -> SideInput:
        """The read in the form the engine takes."""
        r, d = self.result, self.description
        return SideInput(frame=r.frame, complete=r.complete, deleted=r.deleted,
                         present_keys=r.present_keys, key_field=d.key,
                         key_generated=d.key_generated, writable=d.writable)


@dataclass
class Prepared:
    """A planned run: reads, mapping, plan, and the inserts to journal."""

    run_id: str
    mapping: FieldMapping
    reads: dict[Side, SideRead]
    plan: SyncPlan
    new_pending: list[PendingInsert]
    old_pending: list[PendingInsert]
    #: what a data engineer should know about this plan (e.g. deletes not judged)
    notes: list[str] = field(default_factory=list)
    #: records a windowed read missed that still exist in another window, per side
    moved: dict[Side, int] = field(default_factory=dict)


@dataclass
class ApplyReport:
    """What the load step did, per side."""

    written: dict[Side, dict[str, int]] = field(
        default_factory=lambda: {s: {"inserted": 0, "updated": 0, "deleted": 0, "failed": 0}
                                 for s in SIDES})
    errors: list[dict[str, str]] = field(default_factory=list)
    succeeded_pairs: set[str] = field(default_factory=set)
    seconds: float = 0.0
    #: keys of the records this run created, per side
    created: dict[Side, list[str]] = field(default_factory=lambda: {s: [] for s in SIDES})

    @property
    def failed(self) -> int:
        """Number of writes the systems refused."""
        return sum(v["failed"] for v in self.written.values())


@dataclass
class CheckResult:
    """The in_sync check: every successful write re-read and compared with the plan."""

    passed: bool
    checked: int
    mismatches: list[dict[str, str]]


@dataclass
class RunReport:
    """The outcome of a whole run (what ``l2sync run --json`` prints)."""

    connection: str
    run_id: str
    status: str
    prepared: Prepared | None = None
    applied: ApplyReport | None = None
    message: str | None = None
    window: str | None = None
    #: requests made and seconds waited on throttling, per side
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    #: the in_sync check, when the run made it
    check: "CheckResult | None" = None

    def details(self, limit: int = 200) -> dict[str, Any]:
        """``counts()`` plus what a data engineer needs to act: every failed write and rejected
        record with its key and reason (at most ``limit`` of each), requests and throttling
        waits, and how each side was read (change feed or full read, and its scope)."""
        out = self.counts()
        plan = self.prepared.plan if self.prepared else None
        failures = self.applied.errors if self.applied else []
        out["failures"] = failures[:limit]
        out["rejections"] = [{"side": r.side, "key": r.key, "reason": r.reason}
                             for r in (plan.rejections if plan else [])][:limit]
        if self.stats:
            out["requests"] = self.stats
        if self.prepared:
            out["reads"] = {
                side: {"feed": "incremental" if r.cursor_used is not None else "full",
                       "scope": r.description.scope,
                       **({"restriction": r.description.restriction}
                          if r.description.restriction else {}),
                       "records": len(r.result.frame), "seconds": round(r.seconds, 3)}
                for side, r in self.prepared.reads.items()}
        if self.check is not None:
            out["check"] = {"passed": self.check.passed, "checked": self.check.checked,
                            "mismatches": self.check.mismatches[:limit]}
        return out

    def counts(self) -> dict[str, Any]:
        """Counts per side, conflicts, rejections: JSON-compatible."""
        out: dict[str, Any] = {"connection": self.connection, "run_id": self.run_id,
                               "status": self.status}
        plan = self.prepared.plan if self.prepared else None
        planned = plan.counts() if plan else {}
        for side in SIDES:
            c = dict(planned.get(side, {}))
            if self.applied:
                c.update(self.applied.written[side])
            out[side] = c
        out["conflicts"] = len(plan.conflicts) if plan else 0
        out["rejected"] = len(plan.rejections) if plan else 0
        out["failed"] = self.applied.failed if self.applied else 0
        if self.window:
            out["window"] = self.window
        if self.prepared and self.prepared.notes:
            out["notes"] = list(self.prepared.notes)
        if self.message:
            out["message"] = self.message
        return out


class Sync:
    """Runs one connection. Used by the CLI and by the Dagster assets alike."""

    def __init__(self, spec: ConnectionSpec, store: StateStore | None = None, *,
                 progress: Progress | None = None, window: tuple[Any, Any] | None = None,
                 windows: list[tuple[Any, Any]] | None = None) -> None:
        """``window`` = (start, end): sync only that time window of a partitioned connection;
        ``windows`` = the partitions it covers (recorded as seen; default: ``[window]``)."""
        self.spec = spec
        self._store = store
        self.progress = progress or (lambda stage, done, total: None)
        self._providers: dict[Side, Provider] = {}
        self._descriptions: dict[Side, EntityDescription] = {}
        self._mapping: FieldMapping | None = None
        if window is not None and spec.partitions is None:
            raise ValueError(f"{spec.display_path}: a window needs `partitions:` in the file")
        self.window: Window | None = as_window(*window) if window is not None else None
        self.windows: list[Window] = [as_window(*w) for w in windows] if windows else (
            [self.window] if self.window is not None else [])

    @property
    def store(self) -> StateStore:
        """The state store (the project's default, opened on first use)."""
        if self._store is None:
            self._store = StateStore(default_state_url(Path(self.spec.project_dir)))
        return self._store

    @store.setter
    def store(self, value: StateStore) -> None:
        self._store = value

    # --- providers and mapping -------------------------------------------------------------
    def entity(self, side: Side) -> Any:
        """The connection file's entity of a side."""
        return self.spec.left if side == "left" else self.spec.right

    def query(self, side: Side) -> Query:
        """The provider query of a side."""
        e = self.entity(side)
        return Query(text=e.query, key=e.key, modified=e.modified)

    def read_query(self, side: Side) -> Query:
        """The query reads use: the side's query plus its window field when partitioned."""
        q = self.query(side)
        if self.spec.partitions is None:
            return q
        return Query(text=q.text, key=q.key, modified=q.modified,
                     window_field=self.window_fields()[side])

    def window_fields(self) -> dict[Side, str]:
        """The field each side's windows slice on (``partitions.field`` and its partner)."""
        part = self.spec.partitions
        if part is None:
            raise ValueError(f"{self.spec.display_path} has no `partitions:`")
        pair = self.mapping().by_name(part.field)
        if pair is None:
            raise MappingError(
                f"partitions.field: {part.field!r} is not a mapped field; windows are judged on "
                "the value both sides agree on, so map it (mapped fields: "
                + ", ".join(self.mapping().names) + ")")
        return {"left": pair.left, "right": part.right_field or pair.right}

    def window_name(self) -> str | None:
        """The mapped (canonical) name of the window field; None when not partitioned."""
        part = self.spec.partitions
        if part is None:
            return None
        pair = self.mapping().by_name(part.field)
        return pair.name if pair is not None else None

    def stats(self) -> dict[Side, dict[str, float]]:
        """Requests made and throttling waits per side, for providers that count them."""
        out: dict[Side, dict[str, float]] = {}
        for side, p in self._providers.items():
            st = provider_stats(p)
            if st is not None:
                out[side] = st
        return out

    def web_links(self) -> dict[Side, Callable[[str], str | None]]:
        """Per side with a web UI: a function from a record's key to its link."""
        out: dict[Side, Callable[[str], str | None]] = {}
        for side, p in self._providers.items():
            if callable(getattr(p, "web_link", None)):
                out[side] = lambda key, p=p: web_link_of(p, key)
        return out

    def provider(self, side: Side) -> Provider:
        """The open provider of a side (opened on first use). An unknown provider or a bad
        connection string is a :class:`LocatedError` naming the file, line and side."""
        if side not in self._providers:
            from l2sync_dagster.providers.registry import open_provider, provider_class

            e = self.entity(side)
            try:
                provider_class(e.provider)
            except Exception as exc:
                raise LocatedError(self.spec, f"{side}.provider", str(exc), side=side) \
                    from None
            try:
                self._providers[side] = open_provider(e.provider, e.connection_string,
                                                      Path(self.spec.project_dir))
            except Exception as exc:
                if getattr(exc, "transient", False):
                    raise  # a retry may help: keep the error as it is
                raise LocatedError(self.spec, f"{side}.connection_string", str(exc),
                                   side=side) from None
        return self._providers[side]

    def close(self) -> None:
        """Close providers (the store stays open for the caller)."""
        for p in self._providers.values():
            p.close()
        self._providers.clear()

    def describe(self, side: Side) -> EntityDescription:
        """The entity description of a side (cached); a query the system refuses is a
        :class:`LocatedError` naming the line of ``query:`` (or of the connection string)."""
        if side not in self._descriptions:
            provider = self.provider(side)
            try:
                self._descriptions[side] = provider.describe(self.query(side))
            except Exception as exc:
                if isinstance(exc, LocatedError) or getattr(exc, "transient", False):
                    raise
                path = error_subject(side, str(exc), self.entity(side).query)
                raise LocatedError(self.spec, path, str(exc), side=side) from None
        return self._descriptions[side]

    def verify(self) -> dict[Side, str]:
        """Prove both sides are reachable and the mapping resolves."""
        out = {side: self.provider(side).verify(self.query(side)) for side in SIDES}
        self.mapping()
        return out

    def mapping(self) -> FieldMapping:
        """The mapping resolved against both sides' descriptions."""
        if self._mapping is None:
            # errors name the file, line, side and field; match_on is checked there too
            self._check_scopes()
            mapping = resolve_for_spec(self.spec, self.describe("left"), self.describe("right"))
            for side in SIDES:
                if self.spec.direction in ("bidirectional", f"{_other(side)}_to_{side}") \
                        and not self.describe(side).writable:
                    raise MappingError(
                        f"the {side} side is read-only (a SELECT query) but the connection "
                        f"direction {self.spec.direction} writes to it")
            self._mapping = mapping
        return self._mapping

    def _check_scopes(self) -> None:
        """Refuse what a limited read (TOP n) cannot do safely: be written to (the sync could
        not see most of what it writes there, nor match new records against what it does not
        select) or be the source of a mirror (every target record outside the n would be
        removed)."""
        for side in SIDES:
            d = self.describe(side)
            if d.scope != "limited":
                continue
            what = d.restriction or "a row limit"
            written = self.spec.direction in ("bidirectional", f"{_other(side)}_to_{side}")
            if written:
                raise MappingError(
                    f"{side}.query: {what} limits what the sync reads of the {side} side, but "
                    f"the connection ({self.spec.direction}) writes to it: records it creates "
                    "or matches there beyond the limit would be invisible to it (duplicates, "
                    f"lost edits). Remove {what} from the {side} query, or make the connection "
                    f"one way from the {side} side ({side}_to_{_other(side)})")
            if self.spec.mirror and self.spec.direction == f"{side}_to_{_other(side)}":
                raise MappingError(
                    f"{side}.query: {what} limits the source of a mirror: mirror: true removes "
                    f"every {_other(side)} record the source read does not return. Remove "
                    f"{what}, or set mirror: false")

    def policy(self, allow_mass_delete: bool = False) -> SyncPolicy:
        """The engine policy from the connection file."""
        s = self.spec
        mapping = self.mapping()
        return SyncPolicy(
            direction=s.direction, mirror=s.mirror, conflict=s.conflicts.policy,
            fallback=s.conflicts.fallback, propagate_deletes=s.deletes.propagate,
            max_delete_fraction=s.deletes.max_fraction,
            match_on=tuple(mapping.by_name(n).name for n in s.match_on),  # type: ignore[union-attr]
            allow_mass_delete=allow_mass_delete,
        )

    # --- steps -------------------------------------------------------------------------------
    def read(self, side: Side, full: bool = False) -> SideRead:
        """Extract one side (incrementally from the saved cursor unless ``full``)."""
        mapping = self.mapping()
        cursor = None
        if self.window is not None:
            # windowed runs read everything inside the window; cursors are for whole entities
            self.progress(f"read {side}", 0, 1)
            t0 = time.perf_counter()
            result = self.provider(side).read(self.read_query(side), cursor=None,
                                              window=self.window)
            self.progress(f"read {side}", 1, 1)
            return SideRead(result, self.describe(side), None, time.perf_counter() - t0)
        if not full and self.store.archive_size(self.spec.name):
            cursor = self.store.cursors(
                self.spec.name, mapping.cursor_signature(self.spec.direction)).get(side)
        self.progress(f"read {side}", 0, 1)
        t0 = time.perf_counter()
        result = self.provider(side).read(self.read_query(side), cursor=cursor)
        self.progress(f"read {side}", 1, 1)
        return SideRead(result, self.describe(side), cursor, time.perf_counter() - t0)

    def prepare(self, *, full: bool = False, allow_mass_delete: bool = False,
                reads: dict[Side, SideRead] | None = None) -> Prepared:
        """Read both sides (unless given) and plan. Writes nothing."""
        mapping = self.mapping()
        reads = reads or {side: self.read(side, full) for side in SIDES}
        old_pending = self.store.pending_inserts(self.spec.name)
        notes: list[str] = []
        moved: dict[Side, int] = {}
        if self.window is None:
            archive = self.store.load_archive(self.spec.name, mapping)
            old_pending = self._find_stamped(old_pending)
            reads = {s: self._judge_scope(s, reads[s], archive, old_pending, notes)
                     for s in SIDES}
        else:
            archive = self.store.load_archive(
                self.spec.name, mapping, window=self.window,
                keys={s: list(reads[s].result.frame.index) for s in SIDES},
                pair_ids=[p.pair_id for p in old_pending])
            reads = {s: self._judge_window(s, reads[s], archive, notes, moved) for s in SIDES}
        self.progress("plan", 0, 1)
        plan, new_pending = reconcile(
            self.spec.name, reads["left"].side_input(), reads["right"].side_input(), archive,
            mapping, self.policy(allow_mass_delete), old_pending)
        self.progress("plan", 1, 1)
        return Prepared(uuid.uuid4().hex, mapping, reads, plan, new_pending, old_pending,
                        notes, moved)

    def _judge_scope(self, side: Side, read: SideRead, archive: pd.DataFrame,
                     pending: list[PendingInsert], notes: list[str]) -> SideRead:
        """Look up what a restricted read, a change feed or a crashed run left unknown (see
        ``sync.scope``), so that nothing is judged deleted, or inserted twice, by mistake."""
        archived = [str(k) for k in archive[f"{side}_key"].dropna()] if len(archive) else []
        journaled = [p.target_key for p in pending if p.side == side and p.target_key]
        journaled += [p.source_key for p in pending if p.side == _other(side)]
        created = (self.store.created_since_cursor(self.spec.name, side)
                   if read.cursor_used is not None else [])
        judged = judge_read(
            side, read.result, read.description, self.provider(side), self.query(side),
            archived=archived, created_since_cursor=created, journaled=journaled,
            incremental=read.cursor_used is not None,
            out_of_scope=self.spec.deletes.out_of_scope)
        notes.extend(judged.notes)
        if judged.result is read.result:
            return read
        return SideRead(judged.result, read.description, read.cursor_used, read.seconds)

    def _find_stamped(self, pending: list[PendingInsert]) -> list[PendingInsert]:
        """Journaled inserts whose created record's key was never recorded: ask systems that
        stamp created records (``find_stamps``) for it."""
        out = list(pending)
        for side in SIDES:
            todo = [p for p in out if p.side == side and p.target_key is None]
            if not todo or not self.describe(side).stamps:
                continue
            provider = self.provider(side)
            if not can_find_stamps(provider):
                continue
            found = provider.find_stamps(self.query(side),  # type: ignore[attr-defined]
                                         [p.pair_id for p in todo])
            for p in todo:
                if found.get(p.pair_id):
                    p.target_key = str(found[p.pair_id])
        return out

    def _judge_window(self, side: Side, read: SideRead, archive: pd.DataFrame,
                      notes: list[str], moved: dict[Side, int]) -> SideRead:
        """Turn a windowed read into what the engine judges: archived records of the window
        the read missed are looked up; found ones join the frame (moved: an update), the rest
        are reported deleted. Without ``lookup`` none of them is judged deleted."""
        result = read.result
        missing = missing_keys(archive, side, result.frame.index)
        if not missing:
            return read
        provider = self.provider(side)
        label = window_label(self.window)  # type: ignore[arg-type]
        if can_lookup(provider):
            found = provider.lookup(self.read_query(side), missing)  # type: ignore[attr-defined]
            frame = result.frame if found.empty else pd.concat([result.frame, found])
            gone = sorted(set(missing) - {str(k) for k in found.index})
            moved[side] = len(found)
            if len(found):
                notes.append(f"{side}: {len(found)} archived records of {label} moved to "
                             "another window; synced as updates")
            judged = ReadResult(frame, complete=False, deleted=gone, cursor=result.cursor)
        elif result.present_keys is not None:
            present = {str(k) for k in result.present_keys}
            gone = [k for k in missing if k not in present]
            judged = ReadResult(result.frame, complete=False, deleted=gone,
                                cursor=result.cursor)
        else:
            notes.append(
                f"{side}: {len(missing)} archived records of {label} were not returned by the "
                f"windowed read and the {self.entity(side).provider} provider cannot look keys "
                "up; no delete was judged for them (they may have moved to another window)")
            judged = ReadResult(result.frame, complete=False, deleted=[], cursor=result.cursor)
        return SideRead(judged, read.description, read.cursor_used, read.seconds)

    @contextmanager
    def locked(self, run_id: str) -> Iterator[None]:
        """Hold the connection's lock (fails fast when another run holds it)."""
        self.store.acquire_lock(self.spec.name, run_id)
        try:
            yield
        finally:
            self.store.release_lock(self.spec.name, run_id)

    def apply(self, prep: Prepared) -> ApplyReport:
        """Apply the plan in batches, committing the archive after every batch."""
        plan, name, store = prep.plan, self.spec.name, self.store
        if plan.blocked:
            raise SyncAborted(f"{self.spec.display_path}: {plan.blocked}")
        sig = prep.mapping.signature()
        report = ApplyReport()
        t0 = time.perf_counter()
        store.record_conflicts(name, prep.run_id, plan.conflicts)
        remaining: dict[str, int] = {}
        for w in plan.writes:
            remaining[w.pair_id] = remaining.get(w.pair_id, 0) + 1
        old = {(p.pair_id, p.side) for p in prep.old_pending}
        no_write = [(pid, e) for pid, e in plan.effects.items() if pid not in remaining]
        stale = [k for k in old if k[0] not in remaining]
        wf = self.window_name()
        store.commit_effects(name, sig, no_write, done_pending=stale, window_field=wf)
        report.succeeded_pairs.update(pid for pid, _ in no_write)
        journal = {(p.pair_id, p.side): p for p in prep.new_pending}
        failed: set[str] = set()
        total = len(plan.writes)
        done = 0
        self.progress("write", 0, total)
        for side in ("right", "left"):
            writes = plan.writes_to(side)  # type: ignore[arg-type]
            if not writes:
                continue
            provider = self.provider(side)  # type: ignore[arg-type]
            size = self.spec.batch_size or provider.max_batch_size()
            for start in range(0, len(writes), size):
                batch = writes[start:start + size]
                ins = [journal[(w.pair_id, side)] for w in batch
                       if w.op == "insert" and (w.pair_id, side) in journal]
                store.journal_inserts(name, prep.run_id, ins)
                stamps = self.describe(side).stamps  # type: ignore[arg-type]
                changes = [Change(w.op, w.pair_id, w.key, w.values, w.version,
                                  stamp=w.pair_id if stamps and w.op == "insert" else None)
                           for w in batch]
                unknown = {p.pair_id for p in ins if p.target_key is None}
                outcomes = {o.ref: o for o in _apply(
                    provider, self.query(side), changes,  # type: ignore[arg-type]
                    lambda outs, side=side, unknown=unknown: store.record_created_keys(
                        name, [(o.ref, side, str(o.key)) for o in outs
                               if o.ok and o.key is not None and o.ref in unknown]))}
                finished: list[str] = []
                cleared: list[tuple[str, str]] = []
                for w in batch:
                    o = outcomes.get(w.pair_id)
                    counts = report.written[side]  # type: ignore[index]
                    if w.op == "insert":
                        cleared.append((w.pair_id, side))
                    if (w.pair_id, side) in old:
                        cleared.append((w.pair_id, side))
                    if o is None or not o.ok:
                        counts["failed"] += 1
                        failed.add(w.pair_id)
                        report.errors.append({"side": side, "op": w.op, "key": str(w.key),
                                              "error": (o.error if o else "no outcome")
                                              or "unknown error"})
                        continue
                    counts[{"insert": "inserted", "update": "updated",
                            "delete": "deleted"}[w.op]] += 1
                    if w.op == "insert" and o.key is not None:
                        report.created[side].append(str(o.key))  # type: ignore[index]
                    eff = plan.effects.get(w.pair_id)
                    if eff is not None:
                        if w.op == "insert" and o.key is not None:
                            setattr(eff, f"{side}_key", str(o.key))
                        if o.version is not None:
                            setattr(eff, f"{side}_version", o.version)
                    remaining[w.pair_id] -= 1
                    if remaining[w.pair_id] == 0 and w.pair_id not in failed:
                        finished.append(w.pair_id)
                store.commit_effects(name, sig, [(p, plan.effects.get(p)) for p in finished],
                                     done_pending=cleared, window_field=wf)
                report.succeeded_pairs.update(finished)
                done += len(batch)
                self.progress("write", done, total)
        report.seconds = time.perf_counter() - t0
        return report

    def save_cursors(self, prep: Prepared, report: ApplyReport) -> bool:
        """Advance cursors when every record read was fully handled; True when they moved."""
        plan = prep.plan
        skipped = any(c.resolution.startswith("skipped") for c in plan.conflicts)
        if report.failed or plan.rejections or skipped or self.window is not None:
            for side in SIDES:
                # the old cursor stays: its feed may never report these records' deletes
                self.store.note_created(self.spec.name, side, report.created[side],
                                        replace=False)
            return False
        for side in SIDES:
            self.store.save_cursor(self.spec.name, side, prep.reads[side].result.cursor,
                                   prep.mapping.cursor_signature(self.spec.direction))
            # the new cursor was taken before this run's inserts: its feed may never report
            # their deletes, so the next incremental run looks them up
            self.store.note_created(self.spec.name, side, report.created[side], replace=True)
        return True

    def check(self, prep: Prepared, report: ApplyReport) -> CheckResult:
        """Re-read what was written and compare with what the archive now expects."""
        mapping = prep.mapping
        names = mapping.names
        mismatches: list[dict[str, str]] = []
        checked = 0
        for side in SIDES:
            writes = [w for w in prep.plan.writes
                      if w.side == side and w.pair_id in report.succeeded_pairs]
            if not writes:
                continue
            provider = self.provider(side)
            fresh = provider.read(self.query(side), cursor=None)
            if self.describe(side).scope != "all" and can_lookup(provider):
                # records written outside the query's WHERE are checked by key
                have = {str(k) for k in fresh.frame.index}
                keys = {str(getattr(prep.plan.effects[w.pair_id], f"{side}_key"))
                        for w in writes if prep.plan.effects.get(w.pair_id) is not None}
                missing = sorted(k for k in keys if k not in have)
                if missing:
                    found = provider.lookup(self.query(side), missing)  # type: ignore[attr-defined]
                    fresh = ReadResult(pd.concat([fresh.frame, found]), complete=False)
            canon = canonicalize(SideRead(fresh, self.describe(side), None, 0).side_input(),
                                 mapping, side)
            pos = {k: i for i, k in enumerate(canon.keys.to_pylist())}
            for w in writes:
                checked += 1
                eff = prep.plan.effects.get(w.pair_id)
                if eff is None:
                    key = w.key
                    if key is not None and key in pos:
                        mismatches.append({"side": side, "key": key,
                                           "problem": "deleted record is still there"})
                    continue
                key = getattr(eff, f"{side}_key")
                if key not in pos:
                    mismatches.append({"side": side, "key": str(key),
                                       "problem": "written record not found"})
                    continue
                i = pos[key]
                h = int(row_hash([canon.cols[n].slice(i, 1) for n in names], 1)[0])
                if h != getattr(eff, f"{side}_hash"):
                    mismatches.append({"side": side, "key": str(key),
                                       "problem": "values read back differ from the plan"})
        return CheckResult(not mismatches, checked, mismatches)

    def finish(self, prep: Prepared) -> RunReport:
        """Apply a prepared plan inside a started run: abort when it is blocked, else write,
        advance cursors and record the outcome. The caller holds the lock."""
        name, run_id = self.spec.name, prep.run_id
        report = RunReport(name, run_id, "running", prep,
                           window=window_label(self.window) if self.window else None)
        if prep.plan.blocked:
            report.status, report.message = "aborted", prep.plan.blocked
            self.store.record_conflicts(name, run_id, prep.plan.conflicts)
            self.store.finish_run(run_id, "aborted", report.counts(), prep.plan.blocked)
            raise SyncAborted(f"{self.spec.display_path}: {prep.plan.blocked}")
        report.applied = self.apply(prep)
        self.save_cursors(prep, report.applied)
        report.stats = dict(self.stats())
        report.status = "succeeded" if not report.applied.failed else "partial"
        if report.applied.failed:
            report.message = f"{report.applied.failed} writes failed"
        self.store.finish_run(run_id, report.status, report.counts(), report.message)
        if self.windows:
            self.store.record_windows(name, self.windows, run_id, report.status, report.counts())
        return report

    @contextmanager
    def recorded_run(self, run_id: str) -> Iterator[None]:
        """Hold the lock and record the run; an unexpected error is recorded as failed."""
        with self.locked(run_id):
            self.store.start_run(self.spec.name, run_id)
            try:
                yield
            except SyncAborted:
                raise
            except Exception as exc:
                self.store.finish_run(run_id, "failed", None, str(exc)[:2000])
                raise

    def run(self, *, full: bool = False, allow_mass_delete: bool = False,
            dry_run: bool = False, check: bool = False) -> RunReport:
        """A whole run (``sync.steps.run_steps`` to the end): lock, read, plan, apply, advance
        cursors, record the run, and with ``check`` the in_sync check."""
        from l2sync_dagster.sync.steps import RunOptions, run_to_end

        return run_to_end(self, RunOptions(full=full, allow_mass_delete=allow_mass_delete,
                                           dry_run=dry_run, check=check))

    def probe(self, side: Side, cursor: str | None = None) -> str:
        """The side's cheapest fingerprint (``Provider.probe``), for sensors. Raises
        ``ProviderError`` when the provider cannot be probed."""
        provider = self.provider(side)
        if not callable(getattr(provider, "probe", None)):
            raise ProviderError(
                f"{side} side: the {self.entity(side).provider} provider cannot be probed (it "
                "has no probe()); this connection cannot be watched by a sensor, use a schedule")
        return str(provider.probe(self.query(side), cursor))


def _apply(provider: Provider, query: Query, changes: list[Change],
           created: Callable[[list[Outcome]], None]) -> list[Outcome]:
    """``provider.apply`` with the ``created`` callback, for providers that take it."""
    try:
        params = inspect.signature(provider.apply).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    if "created" in params:
        return provider.apply(query, changes, created=created)  # type: ignore[call-arg]
    outcomes = provider.apply(query, changes)
    inserts = {c.ref for c in changes if c.op == "insert"}
    created([o for o in outcomes if o.ok and o.key is not None and o.ref in inserts])
    return outcomes


def _other(side: Side) -> Side:
    return "right" if side == "left" else "left"
