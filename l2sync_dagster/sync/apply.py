"""The apply transaction of a run: the plan's writes in batches, crash-safe (see
:func:`apply_plan`)."""

import inspect
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from l2sync_dagster.engine.plan import ArchiveRow, PlannedWrite
from l2sync_dagster.providers.base import (
    Change,
    Outcome,
    Provider,
    Query,
)
from l2sync_dagster.sync.report import ApplyReport, Prepared, SyncAborted

if TYPE_CHECKING:
    from l2sync_dagster.sync.session import Session


def apply_plan(session: "Session", prep: Prepared) -> ApplyReport:
    """Apply the plan in batches: inserts journaled before they are sent, the keys systems
    answer recorded at once, and after every batch the archive rows of the pairs whose writes
    all succeeded committed with their journal entries. The rows are returned in the report."""
    plan, name, store = prep.plan, session.spec.name, session.store
    if plan.blocked:
        raise SyncAborted(f"{session.spec.display_path}: {plan.blocked}")
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
    wf = session.window_name()
    store.commit_effects(name, sig, no_write, done_pending=stale, window_field=wf,
                         fresh=plan.fresh)
    report.succeeded_pairs.update(pid for pid, _ in no_write)
    report.archive_rows.update({pid: e for pid, e in no_write if e is not None})
    rows: dict[str, ArchiveRow] = {}
    journal = {(p.pair_id, p.side): p for p in prep.new_pending}
    failed: set[str] = set()
    # a side whose saved cursor predates this run's inserts: its feed may never report their
    # deletes (SyncFolderItems does not report an item made and removed since its state)
    saved = store.cursors(name, prep.mapping.cursor_signature(session.spec.direction))
    behind = {s for s, cursor in saved.items() if cursor is not None}
    total = len(plan.writes)
    done = 0
    session.progress("write", 0, total)
    for side in ("right", "left"):
        writes = plan.writes_to(side)  # type: ignore[arg-type]
        if not writes:
            continue
        provider = session.provider(side)  # type: ignore[arg-type]
        if side in session.to_create:
            # the read found the entity (a folder) missing on a side this connection writes
            # to and holds nothing of: make it now that there is something to put there
            done_what = provider.create_entity(session.query(side))  # type: ignore
            prep.notes.append(f"{side}: {done_what}")
            del session.to_create[side]  # type: ignore[arg-type]
        size = session.spec.batch_size or provider.max_batch_size()
        for start in range(0, len(writes), size):
            batch = writes[start:start + size]
            ins = [journal[(w.pair_id, side)] for w in batch
                   if w.op == "insert" and (w.pair_id, side) in journal]
            store.journal_inserts(name, prep.run_id, ins)
            stamps = session.describe(side).stamps  # type: ignore[arg-type]
            changes = [Change(w.op, w.pair_id, w.key, w.values, w.version,
                              stamp=w.pair_id if stamps and w.op == "insert" else None)
                       for w in batch]
            unknown = {p.pair_id for p in ins if p.target_key is None}
            outcomes = {o.ref: o for o in _apply(
                provider, session.query(side), changes,  # type: ignore[arg-type]
                lambda outs, side=side, unknown=unknown: store.record_created_keys(
                    name, [(o.ref, side, str(o.key)) for o in outs
                           if o.ok and o.key is not None and o.ref in unknown]))}
            finished, cleared, made = _settle(batch, side, outcomes, old, remaining, failed,
                                              rows, plan.effects, report)
            if made and side in behind:
                # noted before the archive takes the pairs: if the run dies before it saves
                # its cursor, the next incremental run still looks these records up
                store.note_created(name, side, made, replace=False)
            store.commit_effects(name, sig, [(p, rows.get(p, plan.effects.get(p)))
                                             for p in finished],
                                 done_pending=cleared, window_field=wf, fresh=plan.fresh)
            report.archive_rows.update({p: rows[p] for p in finished if p in rows})
            report.succeeded_pairs.update(finished)
            done += len(batch)
            session.progress("write", done, total)
    report.seconds = time.perf_counter() - t0
    return report


_COUNTED = {"insert": "inserted", "update": "updated", "delete": "deleted"}


def _settle(batch: list[PlannedWrite], side: str, outcomes: dict[str, Outcome],
            old: set[tuple[str, str]], remaining: dict[str, int], failed: set[str],
            rows: dict[str, ArchiveRow], effects: dict[str, ArchiveRow | None],
            report: ApplyReport) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """Account for a batch's outcomes: counts and errors in ``report``, the archive row each
    written pair now has in ``rows`` (with the key and version the system answered). Returns
    the pairs all of whose writes are done, the journal entries to clear, the keys made."""
    finished: list[str] = []
    cleared: list[tuple[str, str]] = []
    made: list[str] = []
    counts = report.written[side]  # type: ignore[index]
    key_name, version_name = f"{side}_key", f"{side}_version"
    for w in batch:
        pid, op = w.pair_id, w.op
        o = outcomes.get(pid)
        if op == "insert" or (pid, side) in old:
            cleared.append((pid, side))
        if o is None or not o.ok:
            counts["failed"] += 1
            failed.add(pid)
            report.errors.append({"side": side, "op": op, "key": str(w.key),
                                  "error": (o.error if o else "no outcome") or "unknown error"})
            continue
        counts[_COUNTED[op]] += 1
        key = str(o.key) if op == "insert" and o.key is not None else None
        if key is not None:
            made.append(key)
        eff = rows.get(pid, effects.get(pid))
        if eff is not None:
            # what the system answered (the key it made, the new version), in a copy: the
            # plan's row stays as planned; no copy when the answer is what was planned
            learnt = {}
            if key is not None and getattr(eff, key_name) != key:
                learnt[key_name] = key
            if o.version is not None and getattr(eff, version_name) != o.version:
                learnt[version_name] = o.version
            rows[pid] = eff.with_values(**learnt) if learnt else eff
        remaining[pid] -= 1
        if remaining[pid] == 0 and pid not in failed:
            finished.append(pid)
    report.created[side].extend(made)  # type: ignore[index]
    return finished, cleared, made


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
