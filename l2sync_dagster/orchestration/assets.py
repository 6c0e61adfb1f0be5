"""The asset graph of one connection: extract, plan, apply, and the in_sync check.

One ``@multi_asset(can_subset=True)`` per connection: record frames stay inside the step (no
pickling IO manager ever sees contact data), and a user can still materialize any subset.
A connection with ``partitions:`` is time partitioned (one window per partition; a backfill is
one run over the union of its windows); transient provider errors are retried with exponential
back-off, any other error fails the step without retry (see ``operations.py``).
"""

from typing import TYPE_CHECKING

import dagster as dg
from dagster._core.storage.tags import (  # the tags of a run over a partition range
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from l2sync_dagster.orchestration.operations import retry_policy
from l2sync_dagster.orchestration.partitions import build_partitions_def
from l2sync_dagster.orchestration.resource import L2SyncResource, SyncConfig
from l2sync_dagster.spec.model import ConnectionSpec
from l2sync_dagster.sync.runner import SIDES

if TYPE_CHECKING:  # dagster does not export the type define_asset_job returns
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

CONNECTION_TAG = "l2sync/connection"
#: the run tag of a for_each connection's jobs instead of CONNECTION_TAG, which the shipped
#: dagster.yaml limits to one run per value: its mailboxes may run at once, each holding the
#: lock of its own partition
FOR_EACH_TAG = "l2sync/for_each"


def run_tags_of(spec: ConnectionSpec) -> dict[str, str]:
    """The tags of a connection's runs (its job, schedule, sensor)."""
    return {(FOR_EACH_TAG if spec.for_each is not None else CONNECTION_TAG): spec.dagster_name}


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


def backfill_policy(spec: ConnectionSpec) -> dg.BackfillPolicy | None:
    """A time-partitioned connection backfills a range in one run (the union of its
    windows); a for_each connection in runs of ``for_each.per_run`` mailboxes (the side that
    is the same for every mailbox read once per run)."""
    if spec.for_each is not None:
        return dg.BackfillPolicy.multi_run(max_partitions_per_run=spec.for_each.per_run)
    return dg.BackfillPolicy.single_run() if spec.partitions else None


def build_connection_assets(
    spec: ConnectionSpec, *, retry: dg.RetryPolicy | None = None,
) -> dg.AssetsDefinition:
    """The multi-asset of one connection (``retry``: the policy for transient errors). The
    decorated function only hands the step to the ``l2sync`` resource
    (:class:`L2SyncResource`, which ``build_definitions`` provides): the run itself is
    ``sync.steps.run_steps``, as for the command line."""
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
    check_key = dg.AssetCheckKey(check_asset(spec), "in_sync")

    @dg.multi_asset(
        name=f"{group}_sync",
        specs=specs,
        check_specs=checks,
        can_subset=True,
        # one step at a time per connection; a for_each connection's partitions may run at once
        pool=None if spec.for_each is not None else f"l2sync_{group}",
        op_tags={CONNECTION_TAG: group},
        description=spec.description or title,
        partitions_def=partitions_def,
        backfill_policy=backfill_policy(spec),
        retry_policy=retry or retry_policy(),
    )
    def _sync(context: dg.AssetExecutionContext, config: SyncConfig, l2sync: L2SyncResource):
        yield from l2sync.run(context, spec, keys, check_key, config)

    return _sync


def build_connection_job(spec: ConnectionSpec) -> "UnresolvedAssetJobDefinition":
    """A job materializing the whole graph of a connection, tagged for the run queue."""
    return dg.define_asset_job(
        f"{spec.dagster_name}_job",
        selection=dg.AssetSelection.groups(spec.dagster_name),
        tags=run_tags_of(spec),
        description=f"sync {spec.title or spec.name}",
    )


def partition_range_request(keys: list[str], stamp: str, tags: dict[str, str]
                            ) -> dg.RunRequest:
    """A run of the consecutive partitions ``keys`` (one partition: a plain partition run)."""
    if len(keys) == 1:
        return dg.RunRequest(run_key=f"{keys[0]}@{stamp}", partition_key=keys[0], tags=tags)
    return dg.RunRequest(run_key=f"{keys[0]}..{keys[-1]}@{stamp}", tags={
        **tags, ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]})


def build_connection_schedule(
    spec: ConnectionSpec, job: "UnresolvedAssetJobDefinition"
) -> dg.ScheduleDefinition | None:
    """The connection's schedule, when its file has ``schedule:``."""
    if not spec.schedule:
        return None
    pdef = build_partitions_def(spec)
    if isinstance(pdef, dg.DynamicPartitionsDefinition):
        assert spec.for_each is not None
        per_run = spec.for_each.per_run

        # every value of for_each, in runs of per_run consecutive partitions (a range each)
        @dg.schedule(name=f"{spec.dagster_name}_schedule", job=job,
                     cron_schedule=spec.schedule, execution_timezone=spec.timezone or "UTC",
                     default_status=dg.DefaultScheduleStatus.STOPPED)
        def _every_value(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
            keys = context.instance.get_dynamic_partitions(pdef.name or "")
            try:  # one run per range and tick; a manual test tick has no time
                stamp = context.scheduled_execution_time.isoformat()
            except Exception:
                stamp = "test"
            return [partition_range_request(keys[i:i + per_run], stamp, run_tags_of(spec))
                    for i in range(0, len(keys), per_run)]

        return _every_value
    if isinstance(pdef, dg.TimeWindowPartitionsDefinition):
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
