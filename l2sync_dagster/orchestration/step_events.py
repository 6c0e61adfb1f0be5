"""How the steps of a run (``sync.steps``) become Dagster events, and which error a failed
step raises: the one translation the resource uses for a plain run and for every partition of
a ``for_each`` run."""

from collections.abc import Callable, Iterator, Set
from typing import Any

import dagster as dg

from l2sync_dagster.orchestration.metadata import (
    apply_metadata,
    check_metadata,
    plan_metadata,
    read_metadata,
    sync_metadata,
)
from l2sync_dagster.orchestration.operations import as_step_error
from l2sync_dagster.spec.masking import mask_secrets
from l2sync_dagster.sync.runner import Prepared, Sync, SyncAborted
from l2sync_dagster.sync.steps import ApplyStep, CheckStep, PlanStep, ReadStep, Step

Event = dg.MaterializeResult | dg.AssetCheckResult


class StepEvents:
    """The events of one connection's steps for the assets a Dagster run selected."""

    def __init__(self, keys: dict[str, dg.AssetKey], selected: Set[dg.AssetKey],
                 applies: list[str], check_key: dg.AssetCheckKey) -> None:
        """``keys``: the connection's asset keys; ``selected``: the run's selection;
        ``applies``: the sides whose apply assets are selected; ``check_key``: in_sync."""
        self.keys = keys
        self.selected = selected
        self.applies = applies
        self.check_key = check_key
        self._prepared: dict[int, Prepared] = {}

    def of(self, sync: Sync, step: Step) -> Iterator[Event]:
        """The events of ``step`` of ``sync``'s run (its plan is kept for its apply step)."""
        keys = self.keys
        if isinstance(step, ReadStep):
            yield dg.MaterializeResult(asset_key=keys[step.side],
                                       metadata=read_metadata(step.read))
        elif isinstance(step, PlanStep):
            prep = self._prepared[id(sync)] = step.prepared
            if keys["plan"] in self.selected:
                yield dg.MaterializeResult(
                    asset_key=keys["plan"],
                    metadata={**plan_metadata(prep.plan, links=sync.web_links()),
                              **sync_metadata(sync, prep)})
        elif isinstance(step, ApplyStep):
            prep = self._prepared.pop(id(sync))
            assert step.report.applied is not None
            extra = sync_metadata(sync, prep)
            for side in self.applies:
                yield dg.MaterializeResult(
                    asset_key=keys[f"apply_{side}"],
                    metadata={**apply_metadata(side, prep.plan, step.report.applied,
                                               links=sync.web_links()), **extra})
        elif isinstance(step, CheckStep):
            yield dg.AssetCheckResult(
                asset_key=self.check_key.asset_key, check_name=self.check_key.name,
                passed=step.result.passed, metadata=check_metadata(step.result),
                severity=dg.AssetCheckSeverity.ERROR)


def log_progress(log: Any, prefix: str = "") -> Callable[[str, int, int], None]:
    """A run's progress callback: a line in the step's log every 10,000 records and at the
    end of each stage (``prefix``: the mailbox, in a run over several)."""

    def progress(stage: str, done: int, total: int) -> None:
        if total and (done == total or done % 10000 == 0):
            log.info(f"{prefix}{stage}: {done}/{total}")
    return progress


def step_error(exc: Exception, log: Any) -> Exception:
    """What a failed step raises for ``exc``: a plan the brakes stopped and every
    configuration error as a Failure without retries, a transient error as itself (the retry
    policy retries the step; ``log`` says so)."""
    if isinstance(exc, SyncAborted):
        return dg.Failure(description=mask_secrets(str(exc)), allow_retries=False)
    if isinstance(exc, dg.Failure):
        return exc
    err = as_step_error(exc)
    if err is exc:
        log.warning("transient error, the step will be retried: " + mask_secrets(str(exc)))
    return err
