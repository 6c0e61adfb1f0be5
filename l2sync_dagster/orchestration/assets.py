"""The asset graph of one connection: extract, plan, apply, and the in_sync check.

One ``@multi_asset(can_subset=True)`` per connection: record frames stay inside the step (no
pickling IO manager ever sees contact data), and a user can still materialize any subset.
A connection with ``partitions:`` is time partitioned (one window per partition; a backfill is
one run over the union of its windows); transient provider errors are retried with exponential
back-off, any other error fails the step without retry (see ``operations.py``).
"""

from contextlib import nullcontext
from typing import TYPE_CHECKING

import dagster as dg

from l2sync_dagster.orchestration.metadata import (
    apply_metadata,
    check_metadata,
    plan_metadata,
    read_metadata,
    run_tags,
    sync_metadata,
)
from l2sync_dagster.orchestration.operations import as_step_error, retry_policy
from l2sync_dagster.orchestration.partitions import build_partitions_def, run_windows
from l2sync_dagster.spec.model import ConnectionSpec
from l2sync_dagster.spec.secrets import mask_secrets
from l2sync_dagster.state.store import StateStore
from l2sync_dagster.sync.runner import SIDES, Sync, SyncAborted

if TYPE_CHECKING:  # dagster does not export the type define_asset_job returns
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

CONNECTION_TAG = "l2sync/connection"


def asset_keys(spec: ConnectionSpec) -> dict[str, dg.AssetKey]:
    """Asset keys of a connection: left, right, plan and the apply steps its direction has."""
    n = spec.dagster_name
    keys = {"left": dg.AssetKey([n, "left"]), "right": dg.AssetKey([n, "right"]),
            "plan": dg.AssetKey([n, "plan"])}
    if spec.direction in ("left_to_right", "bidirectional"):
        keys["apply_right"] = dg.AssetKey([n, "apply_right"])
    if spec.direction in ("right_to_left", "bidirectional"):
        keys["apply_left"] = dg.AssetKey([n, "apply_left"])
    return keys


def check_asset(spec: ConnectionSpec) -> dg.AssetKey:
    """The asset the in_sync check is attached to (the first apply step)."""
    keys = asset_keys(spec)
    return keys.get("apply_right") or keys["apply_left"]


def build_connection_assets(
    spec: ConnectionSpec, store_url: str | None = None, *,
    retry: dg.RetryPolicy | None = None,
) -> dg.AssetsDefinition:
    """The multi-asset of one connection (``retry``: the policy for transient errors)."""
    keys = asset_keys(spec)
    group = spec.dagster_name
    title = spec.title or spec.name
    entity = {"left": spec.left, "right": spec.right}
    specs = [
        dg.AssetSpec(keys[s], group_name=group, kinds={entity[s].provider},
                     description=f"{title}: {s} side ({entity[s].provider}), as read",
                     tags={CONNECTION_TAG: group})
        for s in SIDES
    ]
    specs.append(dg.AssetSpec(keys["plan"], group_name=group, deps=[keys["left"], keys["right"]],
                              description=f"{title}: the reconciliation plan (dry run)",
                              tags={CONNECTION_TAG: group}))
    for target in ("right", "left"):
        k = keys.get(f"apply_{target}")
        if k is not None:
            specs.append(dg.AssetSpec(
                k, group_name=group, deps=[keys["plan"]], kinds={entity[target].provider},
                description=f"{title}: changes written to the {target} side",
                tags={CONNECTION_TAG: group}))
    checks = [dg.AssetCheckSpec("in_sync", asset=check_asset(spec),
                                description="re-reads what was written and compares it with "
                                            "the plan")]
    partitions_def = build_partitions_def(spec)

    @dg.multi_asset(
        name=f"{group}_sync",
        specs=specs,
        check_specs=checks,
        can_subset=True,
        pool=f"l2sync_{group}",
        op_tags={CONNECTION_TAG: group},
        description=spec.description or title,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run() if partitions_def else None,
        retry_policy=retry or retry_policy(),
    )
    def _sync(context: dg.AssetExecutionContext):
        selected = context.selected_asset_keys
        applies = [s for s in ("right", "left") if keys.get(f"apply_{s}") in selected]
        wants_plan = keys["plan"] in selected or bool(applies)
        progress_log = context.log

        def progress(stage: str, done: int, total: int) -> None:
            if total and (done == total or done % 10000 == 0):
                progress_log.info(f"{stage}: {done}/{total}")

        run_id = context.run.run_id
        sync: Sync | None = None
        try:
            store = StateStore(store_url) if store_url else None
            windows = run_windows(context) if partitions_def is not None else None
            if windows is not None:
                window, parts = windows
                context.log.info(f"syncing the window [{window[0].isoformat()}, "
                                 f"{window[1].isoformat()}) ({len(parts)} partitions)")
                sync = Sync(spec, store, progress=progress, window=window, windows=parts)
            else:
                sync = Sync(spec, store, progress=progress)
            # only runs that write take the connection's lock and are recorded as sync runs
            guard = sync.recorded_run(run_id) if applies else nullcontext()
            with guard:
                reads = {}
                for side in SIDES:
                    if keys[side] in selected or wants_plan:
                        reads[side] = sync.read(side)
                    if keys[side] in selected:
                        yield dg.MaterializeResult(asset_key=keys[side],
                                                   metadata=read_metadata(reads[side]))
                if not wants_plan:
                    return
                prep = sync.prepare(reads=reads)
                prep.run_id = run_id
                if keys["plan"] in selected:
                    yield dg.MaterializeResult(
                        asset_key=keys["plan"],
                        metadata={**plan_metadata(prep.plan, links=sync.web_links()),
                                  **sync_metadata(sync, prep)})
                if not applies:
                    return
                report = sync.finish(prep)
                assert report.applied is not None
                extra = sync_metadata(sync, prep)
                for side in applies:
                    yield dg.MaterializeResult(
                        asset_key=keys[f"apply_{side}"],
                        metadata={**apply_metadata(side, prep.plan, report.applied,
                                                   links=sync.web_links()), **extra})
                context.instance.add_run_tags(run_id, run_tags(report))
                check_key = dg.AssetCheckKey(check_asset(spec), "in_sync")
                if check_key in context.selected_asset_check_keys:
                    result = sync.check(prep, report.applied)
                    yield dg.AssetCheckResult(
                        asset_key=check_asset(spec), check_name="in_sync",
                        passed=result.passed, metadata=check_metadata(result),
                        severity=dg.AssetCheckSeverity.ERROR)
        except SyncAborted as exc:
            raise dg.Failure(description=mask_secrets(str(exc)), allow_retries=False) from None
        except dg.Failure:
            raise
        except Exception as exc:
            err = as_step_error(exc)
            if err is exc:
                context.log.warning("transient error, the step will be retried: "
                                    + mask_secrets(str(exc)))
                raise
            raise err from None
        finally:
            if sync is not None:
                sync.close()

    return _sync


def build_connection_job(spec: ConnectionSpec) -> "UnresolvedAssetJobDefinition":
    """A job materializing the whole graph of a connection, tagged for the run queue."""
    return dg.define_asset_job(
        f"{spec.dagster_name}_job",
        selection=dg.AssetSelection.groups(spec.dagster_name),
        tags={CONNECTION_TAG: spec.dagster_name},
        description=f"sync {spec.title or spec.name}",
    )


def build_connection_schedule(
    spec: ConnectionSpec, job: "UnresolvedAssetJobDefinition"
) -> dg.ScheduleDefinition | None:
    """The connection's schedule, when its file has ``schedule:``."""
    if not spec.schedule:
        return None
    pdef = build_partitions_def(spec)
    if pdef is not None:
        # a partitioned job needs a partition: the scheduled run syncs the current window
        @dg.schedule(name=f"{spec.dagster_name}_schedule", job=job,
                     cron_schedule=spec.schedule, execution_timezone=spec.timezone or "UTC",
                     default_status=dg.DefaultScheduleStatus.STOPPED)
        def _current_window(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
            return dg.RunRequest(partition_key=pdef.get_last_partition_key(),
                                 tags={CONNECTION_TAG: spec.dagster_name})

        return _current_window
    return dg.ScheduleDefinition(
        name=f"{spec.dagster_name}_schedule", job=job, cron_schedule=spec.schedule,
        execution_timezone=spec.timezone or "UTC",
        tags={CONNECTION_TAG: spec.dagster_name},
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
