"""What a run produces: one side's read, the planned run, what the load step wrote (and the
archive rows it committed), the in_sync check, and the whole run's report."""

from dataclasses import dataclass, field
from typing import Any

from l2sync_dagster.engine.classify import SideInput
from l2sync_dagster.engine.mapping import FieldMapping
from l2sync_dagster.engine.plan import ArchiveRow, PendingInsert, Side, SyncPlan
from l2sync_dagster.providers.base import (
    EntityDescription,
    ReadResult,
)

SIDES: tuple[Side, Side] = ("left", "right")


class SyncAborted(RuntimeError):
    """The run stopped before writing anything (mass-delete brake, conflict policy fail)."""


@dataclass
class SideRead:
    """One side's read and what it took."""

    result: ReadResult
    description: EntityDescription
    cursor_used: str | None
    seconds: float
    #: a one-way target read as a lookup of the pairs its source's changes touched
    by_key: bool = False

    @property
    def feed(self) -> str:
        """How the side was read: ``incremental`` (its change feed), ``by key`` or ``full``."""
        return ("by key" if self.by_key else "incremental" if self.cursor_used is not None
                else "full")

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
    #: the archive row committed for every pair whose writes all succeeded (with the keys and
    #: versions the systems answered)
    archive_rows: dict[str, ArchiveRow] = field(default_factory=dict)

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
                side: {"feed": r.feed,
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
