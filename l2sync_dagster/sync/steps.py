"""The one place a run is sequenced: :func:`run_steps` yields the steps of a run for given
options, and every caller consumes them: ``Sync.run`` (the command line prints the report it
returns) and the Dagster resource (``orchestration.resource.L2SyncResource``, which turns each
step into a ``MaterializeResult`` or an ``AssetCheckResult``).

A run that writes holds the connection's lock and is recorded; a dry run or a read-only
selection (Dagster materializing only ``left``, say) neither locks nor records.
"""

import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field

from l2sync_dagster.engine.plan import Side
from l2sync_dagster.sync import collector
from l2sync_dagster.sync.runner import (
    SIDES,
    CheckResult,
    Prepared,
    RunReport,
    SideRead,
    Sync,
)


@dataclass(frozen=True)
class RunOptions:
    """What one run does. ``read``: the sides whose reads are wanted as such (a plan reads
    both anyway); ``plan``: reconcile; ``apply``: write (implies plan); ``check``: re-read what
    was written and compare (after apply); ``dry_run``: plan, never write."""

    full: bool = False
    allow_mass_delete: bool = False
    dry_run: bool = False
    check: bool = False
    read: tuple[Side, ...] = SIDES
    plan: bool = True
    apply: bool = True

    @property
    def writes(self) -> bool:
        """True when the run may write (it then locks the connection and is recorded)."""
        return self.apply and not self.dry_run


@dataclass
class ReadStep:
    """One side was read."""

    side: Side
    read: SideRead


@dataclass
class PlanStep:
    """Both sides were reconciled against the archive: the plan (nothing written yet)."""

    prepared: Prepared


@dataclass
class ApplyStep:
    """The plan was applied (every side's writes; ``report.applied`` has them per side)."""

    report: RunReport
    sides: tuple[Side, ...] = field(default_factory=tuple)


@dataclass
class CheckStep:
    """The in_sync check: what was written, read back and compared with the plan."""

    result: CheckResult


Step = ReadStep | PlanStep | ApplyStep | CheckStep


def run_steps(sync: Sync, options: RunOptions = RunOptions(),
              run_id: str | None = None) -> Iterator[Step]:
    """The steps of one run of ``sync``'s connection, in order. Raises ``SyncAborted`` when the
    plan is blocked (mass-delete brake, ``conflicts: fail``) before anything is written."""
    run_id = run_id or uuid.uuid4().hex
    writes = options.writes
    wants_plan = options.plan or writes or options.dry_run
    guard = sync.recorded_run(run_id) if writes else nullcontext()
    with guard, collector.relaxed():
        reads: dict[Side, SideRead] = {}
        for side in sync.read_order():
            if side in options.read or wants_plan:
                reads[side] = sync.read(side, options.full, before=reads)
                if side in options.read:
                    yield ReadStep(side, reads[side])
        if not wants_plan:
            return
        prep = sync.prepare(full=options.full, allow_mass_delete=options.allow_mass_delete,
                            reads=reads)
        prep.run_id = run_id
        yield PlanStep(prep)
        if not writes:
            return
        report = sync.finish(prep)
        assert report.applied is not None
        written = tuple(s for s in SIDES if sync.policy().writes_to(s))
        yield ApplyStep(report, written)
        if options.check:
            yield CheckStep(sync.check(prep, report.applied))


def run_to_end(sync: Sync, options: RunOptions = RunOptions()) -> RunReport:
    """Consume :func:`run_steps`; the run's report (a dry run's: status ``planned``), with the
    in_sync check's result when the options ask for it."""
    report: RunReport | None = None
    for step in run_steps(sync, options):
        if isinstance(step, PlanStep) and not options.writes:
            report = RunReport(sync.spec.name, step.prepared.run_id, "planned", step.prepared)
        elif isinstance(step, ApplyStep):
            report = step.report
        elif isinstance(step, CheckStep) and report is not None:
            report.check = step.result
    assert report is not None, "a run to the end plans"
    return report
