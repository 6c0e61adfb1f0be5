"""A Dagster run of a ``for_each`` connection: the partitions (mailboxes) of the run, synced
``for_each.workers`` at once through ``sync.each_value`` (as ``l2sync run NAME --all``), the
side that is the same for every mailbox read once for the run.

A backfill puts up to ``for_each.per_run`` partitions in one run
(``BackfillPolicy.multi_run``), the schedule requests runs of that many. Each partition's
materializations carry its own metadata. When every partition synced, the step's outputs
materialize them all; when some failed, the partitions that synced are materialized one by one
(``AssetMaterialization(partition=...)``), the step fails naming the others (retried when every
failure was transient: the partitions that synced then have nothing left to do), and Dagster
marks the ones that failed as failed. The in_sync check of a run over several partitions is one
result: passed when every partition's passed, with the mismatches of each.
"""

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from l2sync_dagster.orchestration.metadata import md_table, run_tags
from l2sync_dagster.orchestration.step_events import Event, StepEvents, log_progress, step_error
from l2sync_dagster.spec.errors import shorten
from l2sync_dagster.spec.masking import mask_secrets
from l2sync_dagster.spec.model import ConnectionSpec
from l2sync_dagster.state.store import StateStore, default_state_url
from l2sync_dagster.sync.each_value import ValueRun, run_each_value
from l2sync_dagster.sync.retry import is_transient
from l2sync_dagster.sync.runner import CheckResult, RunReport, Sync
from l2sync_dagster.sync.steps import ApplyStep, CheckStep, RunOptions, run_steps


def value_run_id(dagster_run_id: str, value: str) -> str:
    """The state store's run id of one partition of a run over several: the Dagster run's id
    (so a lock names it) and a digest of the value (run ids are unique and 64 characters)."""
    return f"{dagster_run_id}/{hashlib.sha1(value.encode()).hexdigest()[:16]}"


class _PartitionRun:
    """What one partition's run produced: its events, its report and check."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.report: RunReport | None = None
        self.check: CheckResult | None = None


def run_partitions(context: dg.AssetExecutionContext, spec: ConnectionSpec,
                   state_url: str | None, options: RunOptions,
                   translate: StepEvents) -> Iterator[Any]:
    """Sync the run's partitions of ``spec`` (a ``for_each`` connection), yielding events."""
    assert spec.for_each is not None
    if not (context.has_partition_key or context.has_partition_key_range):
        raise dg.Failure(
            description=f"{spec.display_path}: a for_each connection syncs its partitions "
            "(mailboxes): choose one, or backfill the ones to sync", allow_retries=False)
    values = list(context.partition_keys)
    many = len(values) > 1
    run_id = context.run.run_id
    log = context.log
    produced = {v: _PartitionRun() for v in values}
    if many:
        log.info(f"syncing {len(values)} mailboxes, {spec.for_each.workers} at once")

    def progress(value: str) -> Callable[[str, int, int], None]:
        return log_progress(log, f"{value}: " if many else "")

    def one(sync: Sync) -> None:
        value = sync.spec.partition_value or ""
        out = produced[value]
        for step in run_steps(sync, options,
                              run_id=value_run_id(run_id, value) if many else run_id):
            if isinstance(step, ApplyStep):
                out.report = step.report
                if not many:
                    context.instance.add_run_tags(run_id, run_tags(step.report))
            elif isinstance(step, CheckStep):
                out.check = step.result
            out.events.extend(translate.of(sync, step))

    def done(run: ValueRun[None]) -> None:
        if many:
            log.info(f"{run.value}: " + ("synced" if run.error is None else
                                         "failed: " + mask_secrets(shorten(str(run.error)))))

    store = StateStore(state_url or default_state_url(Path(spec.project_dir)))
    try:
        runs = run_each_value(spec, values, store, one, workers=spec.for_each.workers,
                              done=done, progress=progress)
    finally:
        store.close()
    failed = [r for r in runs if r.error is not None]
    if not many:
        yield from produced[values[0]].events
        if failed:
            raise step_error(failed[0].error, log)  # type: ignore[arg-type]
        return
    reports = [p.report for p in produced.values() if p.report is not None]
    if reports:
        context.instance.add_run_tags(run_id, {
            **run_tags(*reports), "l2sync/mailboxes": f"{len(values) - len(failed)}/{len(values)}"})
    if failed:
        yield from _materialize_each(produced)
        raise _partitions_failed(failed, len(values), log)
    yield from _materialize_all(context, produced, translate)


def _materialize_all(context: dg.AssetExecutionContext, produced: dict[str, _PartitionRun],
                     translate: StepEvents) -> Iterator[Any]:
    """Every partition synced: one output per asset, each partition's event with its own
    metadata; one in_sync result over them all."""
    order: list[dg.AssetKey] = []
    for value, part in produced.items():
        for event in part.events:
            if isinstance(event, dg.MaterializeResult) and event.asset_key is not None:
                context.add_asset_metadata(dict(event.metadata or {}),
                                           asset_key=event.asset_key, partition_key=value)
                if event.asset_key not in order:
                    order.append(event.asset_key)
    for key in order:
        yield dg.MaterializeResult(asset_key=key)
    checks = {v: p.check for v, p in produced.items() if p.check is not None}
    if checks:
        key = translate.check_key
        mismatches = [{"mailbox": v, **m} for v, c in checks.items() for m in c.mismatches]
        yield dg.AssetCheckResult(
            asset_key=key.asset_key, check_name=key.name,
            passed=all(c.passed for c in checks.values()),
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "mailboxes_checked": dg.MetadataValue.int(len(checks)),
                "mailboxes_failing": dg.MetadataValue.int(
                    sum(not c.passed for c in checks.values())),
                "records_checked": dg.MetadataValue.int(sum(c.checked for c in checks.values())),
                "mismatches": dg.MetadataValue.int(len(mismatches)),
                "mismatch_table": dg.MetadataValue.md(
                    md_table(mismatches, ["mailbox", "side", "key", "problem"])),
            })


def _materialize_each(produced: dict[str, _PartitionRun]) -> Iterator[Any]:
    """Some partitions failed: the materializations of each partition, one by one (a failed
    partition's reads, when it got that far, as in a run of its own)."""
    for value, part in produced.items():
        for event in part.events:
            if isinstance(event, dg.MaterializeResult) and event.asset_key is not None:
                yield dg.AssetMaterialization(asset_key=event.asset_key, partition=value,
                                              metadata=dict(event.metadata or {}))


def _partitions_failed(failed: list[ValueRun[None]], total: int, log: Any) -> Exception:
    """The error of a step some of whose partitions failed: the transient error itself when
    every failure was transient (the step is retried), else a Failure naming each."""
    errors = [r.error for r in failed if r.error is not None]
    if all(is_transient(e) for e in errors):
        return step_error(errors[0], log)
    why = [(r.value, mask_secrets(shorten(str(r.error) or type(r.error).__name__)))
           for r in failed]
    listed = "; ".join(f"{v}: {w}" for v, w in why[:10])
    more = f"; and {len(why) - 10} more" if len(why) > 10 else ""
    return dg.Failure(
        description=f"{len(failed)} of {total} mailboxes failed: {listed}{more}",
        allow_retries=False,
        metadata={"failed_mailboxes": dg.MetadataValue.md(
            md_table([{"mailbox": v, "why": w} for v, w in why], ["mailbox", "why"]))})
