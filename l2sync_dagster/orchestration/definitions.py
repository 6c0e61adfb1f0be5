"""Dagster Definitions built from a folder of connection files."""

import logging
from pathlib import Path

import dagster as dg

from l2sync_dagster.orchestration.assets import (
    build_connection_assets,
    build_connection_job,
    build_connection_schedule,
)
from l2sync_dagster.spec.loader import load_connections

log = logging.getLogger("l2sync")


def build_definitions(connections_dir: Path | str, store_url: str | None = None
                      ) -> dg.Definitions:
    """One asset graph, job and (optional) schedule per connection file.

    A file that does not load is reported in the log and left out; the others still load.
    """
    specs, errors = load_connections(connections_dir)
    for err in errors:
        log.error("l2sync: connection file skipped: %s", err)
    assets, jobs, schedules = [], [], []
    for spec in specs:
        assets.append(build_connection_assets(spec, store_url))
        job = build_connection_job(spec)
        jobs.append(job)
        schedule = build_connection_schedule(spec, job)
        if schedule is not None:
            schedules.append(schedule)
    return dg.Definitions(assets=assets, jobs=jobs, schedules=schedules)
