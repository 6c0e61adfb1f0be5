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

The parts: ``session`` (providers, mapping, policy, lock), ``apply`` (the apply
transaction), ``report`` (what a run produces), ``steps`` (the sequence every caller runs).
"""

import time
import uuid
from typing import Any

import pandas as pd

from l2sync_dagster.engine.classify import canonicalize
from l2sync_dagster.engine.hashing import row_hash
from l2sync_dagster.engine.plan import PendingInsert, Side, other
from l2sync_dagster.engine.reconcile import reconcile
from l2sync_dagster.engine.windows import missing_keys, window_label
from l2sync_dagster.providers.base import (
    KEY_INDEX,
    EntityMissing,
    ReadResult,
    can_create_entity,
    can_find_stamps,
    can_lookup,
)
from l2sync_dagster.spec.errors import LocatedError
from l2sync_dagster.sync.apply import apply_plan
from l2sync_dagster.sync.report import (
    SIDES,
    ApplyReport,
    CheckResult,
    Prepared,
    RunReport,
    SideRead,
    SyncAborted,
)
from l2sync_dagster.sync.scope import judge_read, name_deletes, narrow, touched_keys
from l2sync_dagster.sync.session import Session

__all__ = ["SIDES", "ApplyReport", "CheckResult", "Prepared", "RunReport", "SideRead", "Sync",
           "SyncAborted"]


class Sync(Session):
    """Runs one connection: read, plan, apply, check. The CLI, the Dagster resource and the
    sensors use it (through ``sync.steps.run_steps``)."""

    #: runs whose reads are incremental load only the archive pairs they touch, and a one-way
    #: target is read by key (:meth:`_read_by_key`); False: every run loads the whole archive
    #: and reads every target in full (a test compares the two)
    follow_changes: bool = True

    def apply(self, prep: Prepared) -> ApplyReport:
        """Apply the plan (``sync.apply.apply_plan``)."""
        return apply_plan(self, prep)

    # --- steps -------------------------------------------------------------------------------
    def read_order(self) -> tuple[Side, ...]:
        """The order to read the sides in: a one-way connection's source first, so that its
        target can be read by key (:meth:`_read_by_key`)."""
        src = self.policy().source
        return (src, other(src)) if src is not None else SIDES  # type: ignore[return-value]

    def read(self, side: Side, full: bool = False,
             before: dict[Side, SideRead] | None = None) -> SideRead:
        """Extract one side (incrementally from the saved cursor unless ``full``). ``before``:
        the reads this run made already (the source's, when ``side`` is a one-way target)."""
        mapping = self.mapping()
        cursor = None
        if self.window is not None:
            # windowed runs read everything inside the window; cursors are for whole entities
            self.progress(f"read {side}", 0, 1)
            t0 = time.perf_counter()
            result = self._read_side(side, None, self.window)
            self.progress(f"read {side}", 1, 1)
            return SideRead(result, self.describe(side), None, time.perf_counter() - t0)
        if self.shared is not None and self.shared.covers(side) \
                and not self.policy().writes_to(side):
            t0 = time.perf_counter()
            result = self.shared.read(side, lambda: self._read_side(side, None))
            return SideRead(result, self.describe(side), None, time.perf_counter() - t0)
        if not full and self.store.has_pairs(self.spec.name):
            cursor = self.store.cursors(
                self.spec.name, mapping.cursor_signature(self.spec.direction)).get(side)
            if cursor is None:
                by_key = self._read_by_key(side, before or {})
                if by_key is not None:
                    return by_key
        self.progress(f"read {side}", 0, 1)
        t0 = time.perf_counter()
        result = self._read_side(side, cursor)
        if self.follow_changes and not result.complete and result.present_keys is not None:
            # judged against the archive's keys of this side alone, not every pair's values
            result = name_deletes(result, self.store.archived_keys(self.spec.name, side))
        self.progress(f"read {side}", 1, 1)
        return SideRead(result, self.describe(side), cursor, time.perf_counter() - t0)

    def _read_by_key(self, side: Side, before: dict[Side, SideRead]) -> SideRead | None:
        """The target of a one-way connection without mirror, read as a lookup of the records
        of the pairs its source's incremental read touched, instead of in full: nothing else of
        a target can change what such a run writes (target edits are kept, target-only records
        left alone, new source records inserted). None, and a full read, whenever the target
        could tell more: match_on (pairs new records with any target record), a crashed run's
        journal (its inserts are found among every target record), a looked-up record that is
        gone (the full read judges the delete as it always has), or an entity that does not
        answer for a record it held (one archived key is always asked, as the witness)."""
        pol = self.policy()
        src = other(side)
        if (not self.follow_changes or pol.source != src or pol.mirror or pol.match_on
                or src not in before or before[src].cursor_used is None
                or not narrow(before[src].result) or not can_lookup(self.provider(side))):
            return None
        name = self.spec.name
        if self.store.pending_inserts(name):
            return None
        witness = self.store.an_archived_key(name, side)
        if witness is None:
            return None
        t0 = time.perf_counter()
        touched = touched_keys(before[src].result) + self.store.created_since_cursor(name, src)
        keys = self.store.partner_keys(name, src, touched)
        self.progress(f"read {side}", 0, 1)
        try:
            found = self.provider(side).lookup(  # type: ignore[attr-defined]
                self.query(side), [*keys, witness] if witness not in keys else keys)
        except EntityMissing:
            return None
        have = {str(k) for k in found.index}
        if witness not in have or any(k not in have for k in keys):
            return None
        if witness not in keys:
            found = found[found.index.astype(str) != witness]
        self.progress(f"read {side}", 1, 1)
        return SideRead(ReadResult(found, complete=False, deleted=[], cursor=None),
                        self.describe(side), None, time.perf_counter() - t0, by_key=True)

    def _read_side(self, side: Side, cursor: str | None,
                   window: tuple[Any, Any] | None = None) -> ReadResult:
        """The provider's read of a side; a missing entity goes through :meth:`_missing`."""
        try:
            if window is not None:
                return self.provider(side).read(self.read_query(side), cursor=None,
                                                window=window)
            return self.provider(side).read(self.read_query(side), cursor=cursor)
        except EntityMissing as exc:
            return self._missing(side, exc)

    def _missing(self, side: Side, exc: EntityMissing) -> ReadResult:
        """A side whose entity (a folder) does not exist: empty, and created before the first
        write, when the connection writes to it and holds nothing of it yet. A missing
        source, or a missing target that earlier runs wrote to, is an error: read as empty it
        would delete the copies of everything the sync put there (or put it all there
        again)."""
        if not self.writes_to(side):
            raise LocatedError(self.spec, f"{side}.query", (
                f"{exc}. The {side} side is a source of this connection ({self.spec.direction})"
                ": a source that is missing is never read as empty. Create it, or correct the "
                "query"), side=side) from None
        synced = self.store.archive_size(self.spec.name)
        if synced:
            raise LocatedError(self.spec, f"{side}.query", (
                f"{exc}. Earlier runs synced {synced} records with it: restore it (or rename it "
                "back) instead of letting the sync start it again empty"), side=side) from None
        if not can_create_entity(self.provider(side)):
            raise LocatedError(self.spec, f"{side}.query", str(exc), side=side) from None
        self.to_create[side] = exc.what
        d = self.describe(side)
        frame = pd.DataFrame({f.name: pd.Series([], dtype=object) for f in d.fields},
                             index=pd.Index([], name=KEY_INDEX, dtype=object))
        return ReadResult(frame, complete=True, cursor=None)

    def prepare(self, *, full: bool = False, allow_mass_delete: bool = False,
                reads: dict[Side, SideRead] | None = None) -> Prepared:
        """Read both sides (unless given) and plan. Writes nothing."""
        mapping = self.mapping()
        if reads is None:
            self.to_create.clear()  # what this run's reads find missing, not an earlier one's
            reads = {}
            for side in self.read_order():
                reads[side] = self.read(side, full, before=reads)
        old_pending = self.store.pending_inserts(self.spec.name)
        notes: list[str] = [
            f"{s}: read by key, {len(r.result.frame)} records of the pairs the other side's "
            "changes touched (one-way without mirror; --full reads every record)"
            for s, r in reads.items() if r.by_key]
        moved: dict[Side, int] = {}
        pairs_before: int | None = None
        if self.window is None:
            old_pending = self._find_stamped(old_pending)
            if not self.follow_changes or any(not narrow(reads[s].result) for s in SIDES):
                archive = self.store.load_archive(self.spec.name, mapping)
                reads = {s: self._judge_scope(s, reads[s], archive, old_pending, notes)
                         for s in SIDES}
            else:
                # every read is incremental: it says nothing of the records it did not return,
                # so only the pairs it touched are loaded (the cost follows the changes)
                reads = {s: self._judge_scope(s, reads[s], None, old_pending, notes)
                         for s in SIDES}
                archive = self.store.load_archive(
                    self.spec.name, mapping, keys={s: touched_keys(reads[s].result) for s in SIDES},
                    pair_ids=[p.pair_id for p in old_pending])
                pairs_before = self.store.archive_size(self.spec.name)
        else:
            archive = self.store.load_archive(
                self.spec.name, mapping, window=self.window,
                keys={s: list(reads[s].result.frame.index) for s in SIDES},
                pair_ids=[p.pair_id for p in old_pending])
            reads = {s: self._judge_window(s, reads[s], archive, notes, moved) for s in SIDES}
        notes += [f"{side}: {what} does not exist; the run creates it before its first write"
                  for side, what in self.to_create.items()]
        self.progress("plan", 0, 1)
        plan, new_pending = reconcile(
            self.spec.name, reads["left"].side_input(), reads["right"].side_input(), archive,
            mapping, self.policy(allow_mass_delete), old_pending, pairs_before)
        self.progress("plan", 1, 1)
        return Prepared(uuid.uuid4().hex, mapping, reads, plan, new_pending, old_pending,
                        notes, moved)

    def _judge_scope(self, side: Side, read: SideRead, archive: pd.DataFrame | None,
                     pending: list[PendingInsert], notes: list[str]) -> SideRead:
        """Look up what a restricted read, a change feed or a crashed run left unknown (see
        ``sync.scope``), so that nothing is judged deleted, or inserted twice, by mistake.
        ``archive`` (every pair) is needed only for a read that is not ``narrow``."""
        result = read.result
        # only a complete read, or one that lists the keys in scope, says anything about the
        # archived records it did not return: an incremental read does not pay for the list
        archived = ([str(k) for k in archive[f"{side}_key"].dropna()]
                    if not narrow(result) and archive is not None and len(archive) else [])
        journaled = [p.target_key for p in pending if p.side == side and p.target_key]
        journaled += [p.source_key for p in pending if p.side == other(side)]
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
        return SideRead(judged.result, read.description, read.cursor_used, read.seconds,
                        read.by_key)

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

    def save_cursors(self, prep: Prepared, report: ApplyReport) -> bool:
        """Advance cursors when every record read was fully handled; True when they moved."""
        plan = prep.plan
        skipped = any(c.resolution.startswith("skipped") for c in plan.conflicts)
        if report.failed or plan.rejections or skipped or self.window is not None:
            # the old cursor stays; the keys this run created behind it were noted batch by
            # batch as they were written (``sync.apply``), so the next run looks them up
            return False
        for side in SIDES:
            cursor = prep.reads[side].result.cursor
            self.store.save_cursor(self.spec.name, side, cursor,
                                   prep.mapping.cursor_signature(self.spec.direction))
            # the new cursor was taken before this run's inserts: its feed may never report
            # their deletes, so the next incremental run looks them up
            self.store.note_created(self.spec.name, side,
                                    report.created[side] if cursor is not None else [],
                                    replace=True)
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
            written = {str(getattr(report.archive_rows[w.pair_id], f"{side}_key"))
                       for w in writes if w.pair_id in report.archive_rows}
            keys = sorted(written | {str(w.key) for w in writes if w.op == "delete" and w.key})
            if (self.follow_changes and can_lookup(provider)
                    and len(keys) * 2 < prep.plan.pairs_before):
                # a few writes into a large entity: read back only what was written
                fresh = ReadResult(provider.lookup(self.query(side), keys),  # type: ignore
                                   complete=False)
            else:
                fresh = provider.read(self.query(side), cursor=None)
                if self.describe(side).scope != "all" and can_lookup(provider):
                    # records written outside the query's WHERE are checked by key
                    have = {str(k) for k in fresh.frame.index}
                    missing = sorted(k for k in written if k not in have)
                    if missing:
                        found = provider.lookup(self.query(side), missing)  # type: ignore
                        fresh = ReadResult(pd.concat([fresh.frame, found]), complete=False)
            canon = canonicalize(SideRead(fresh, self.describe(side), None, 0).side_input(),
                                 mapping, side)
            pos = {k: i for i, k in enumerate(canon.keys.to_pylist())}
            # one vectorised pass: hashing record by record cost most of a fan-out run's CPU
            hashes = row_hash([canon.cols[n] for n in names], len(canon.keys))
            for w in writes:
                checked += 1
                eff = report.archive_rows.get(w.pair_id)
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
                h = int(hashes[pos[key]])
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
        report.applied = apply_plan(self, prep)
        self.save_cursors(prep, report.applied)
        self.store.refresh_statistics(len(report.applied.archive_rows), prep.plan.pairs_before)
        report.stats = dict(self.stats())
        report.status = "succeeded" if not report.applied.failed else "partial"
        if report.applied.failed:
            report.message = f"{report.applied.failed} writes failed"
        self.store.finish_run(run_id, report.status, report.counts(), report.message)
        if self.windows:
            self.store.record_windows(name, self.windows, run_id, report.status, report.counts())
        return report

    def run(self, *, full: bool = False, allow_mass_delete: bool = False,
            dry_run: bool = False, check: bool = False) -> RunReport:
        """A whole run (``sync.steps.run_steps`` to the end): lock, read, plan, apply, advance
        cursors, record the run, and with ``check`` the in_sync check."""
        from l2sync_dagster.sync.steps import RunOptions, run_to_end

        return run_to_end(self, RunOptions(full=full, allow_mass_delete=allow_mass_delete,
                                           dry_run=dry_run, check=check))

