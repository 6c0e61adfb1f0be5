"""Time partitions of a connection (``partitions:`` in its file) and the window a run syncs.

One Dagster partition = one time window of the connection's window field (an hour, a day, a
week or a month in the connection's time zone). A run of one partition syncs that window; a
backfill over a range runs as ONE run (``BackfillPolicy.single_run()``) that syncs the union of
its windows, and records each of them as seen in the archive. The partition set extends one
window past now (``end_offset=1``) when the file gives no ``end``, so the current window (this
month's calendar items) can be synced too.

A connection with ``for_each:`` has dynamic partitions instead, one per value (a mailbox),
named ``<connection>_for_each``; its sensor (``sensors.build_for_each_sensor``) adds and
removes them as the list changes. Each partition is its own run (no single-run backfill):
a run holds the lock of the partition it syncs.
"""

import datetime as dt

import dagster as dg

from l2sync_dagster.contract import utc
from l2sync_dagster.spec.model import ConnectionSpec

_CLASSES: dict[str, type[dg.TimeWindowPartitionsDefinition]] = {
    "hour": dg.HourlyPartitionsDefinition,
    "day": dg.DailyPartitionsDefinition,
    "week": dg.WeeklyPartitionsDefinition,
    "month": dg.MonthlyPartitionsDefinition,
}

Window = tuple[dt.datetime, dt.datetime]


def for_each_partitions_name(spec: ConnectionSpec) -> str:
    """The name of the dynamic partitions of a ``for_each`` connection."""
    return f"{spec.dagster_name}_for_each"


def build_partitions_def(spec: ConnectionSpec) -> dg.PartitionsDefinition | None:
    """The partitions of a connection, or None when its file has neither ``partitions:`` nor
    ``for_each:``."""
    if spec.for_each is not None:
        return dg.DynamicPartitionsDefinition(name=for_each_partitions_name(spec))
    part = spec.partitions
    if part is None:
        return None
    cls = _CLASSES[part.granularity]
    start = dt.datetime.fromisoformat(part.start)
    end = dt.datetime.fromisoformat(part.end) if part.end else None
    return cls(  # type: ignore[call-arg]
        start_date=start, end_date=end, timezone=spec.timezone or "UTC",
        end_offset=0 if end else 1,
    )


def run_windows(context: dg.AssetExecutionContext) -> tuple[Window, list[Window]] | None:
    """The window a run syncs (the union for a backfill range) and its partitions' windows;
    None for an unpartitioned run."""
    if not context.has_partition_key_range and not context.has_partition_key:
        return None
    whole = context.partition_time_window
    pdef = context.assets_def.partitions_def
    parts: list[Window] = []
    if isinstance(pdef, dg.TimeWindowPartitionsDefinition):
        for key in context.partition_keys:
            w = pdef.time_window_for_partition_key(key)
            parts.append((utc(w.start), utc(w.end)))
    return (utc(whole.start), utc(whole.end)), parts
