"""Dagster Definitions built from a folder of connection files."""

import logging
from pathlib import Path

import dagster as dg

from l2sync_dagster.orchestration.assets import (
    build_connection_assets,
    build_connection_job,
    build_connection_schedule,
)
from l2sync_dagster.orchestration.operations import build_failure_sensor, retry_policy
from l2sync_dagster.orchestration.partitions import build_partitions_def
from l2sync_dagster.orchestration.resource import L2SyncResource
from l2sync_dagster.orchestration.sensors import build_connection_sensor, build_for_each_sensor
from l2sync_dagster.spec.loader import load_connections
from l2sync_dagster.spec.masking import mask_secrets

log = logging.getLogger("l2sync")


def build_definitions(connections_dir: Path | str, store_url: str | None = None, *,
                      retry: dg.RetryPolicy | None = None,
                      executor: dg.ExecutorDefinition | None = None) -> dg.Definitions:
    """One asset graph, job and (optional) schedule and sensor per connection file, plus the
    sensor recording failed syncs on their assets.

    ``retry`` replaces the retry policy for transient errors (default: 3 retries, exponential
    back-off from 5 s). ``executor`` runs the steps of each run (default: Dagster's
    multiprocess executor), e.g. ``dagster_k8s.k8s_job_executor``. A file that does not load
    is reported in the log and left out; the others still load.
    """
    specs, errors = load_connections(connections_dir)
    for err in errors:
        log.error("l2sync: connection file skipped: %s", mask_secrets(str(err)))
    policy = retry or retry_policy()
    assets, jobs, schedules, sensors = [], [], [], []
    for spec in specs:
        assets.append(build_connection_assets(spec, retry=policy))
        job = build_connection_job(spec)
        jobs.append(job)
        schedule = build_connection_schedule(spec, job)
        if schedule is not None:
            schedules.append(schedule)
        pdef = build_partitions_def(spec)
        windows = pdef if isinstance(pdef, dg.TimeWindowPartitionsDefinition) else None
        sensor = build_connection_sensor(spec, job, windows, store_url)
        if sensor is not None:
            sensors.append(sensor)
        partitions_sensor = build_for_each_sensor(spec, store_url)
        if partitions_sensor is not None:
            sensors.append(partitions_sensor)
    if specs:
        sensors.append(build_failure_sensor(specs))
    return dg.Definitions(assets=assets, jobs=jobs, schedules=schedules, sensors=sensors,
                          resources={"l2sync": L2SyncResource(state_url=store_url)},
                          executor=executor)
