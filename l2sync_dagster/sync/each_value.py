"""Runs of several values (mailboxes) of one ``for_each`` connection in one process, the one
place both callers go through: ``l2sync run NAME --all`` and a Dagster run over a range of the
connection's partitions (a backfill, the schedule).

Each value is its own run (its own :class:`Sync`: archive, cursors, lock, run record); the
values are synced ``workers`` at once; the side that is the same for every value is read once
for all of them (:class:`SharedReads`) when there is more than one, and Graph clients of the
same identity share one sign-in and connection pool (``providers.graph.shared``). A value
that fails is reported with its error and never stops the others.
"""

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Generic, TypeVar

from l2sync_dagster.spec.model import ConnectionSpec
from l2sync_dagster.state.store import StateStore
from l2sync_dagster.sync.runner import Sync
from l2sync_dagster.sync.shared_reads import SharedReads

T = TypeVar("T")


@dataclass
class ValueRun(Generic[T]):
    """How one value's run ended: what ``one`` returned, or the error that stopped it."""

    value: str
    result: T | None = None
    error: Exception | None = None


def run_each_value(spec: ConnectionSpec, values: Sequence[str], store: StateStore | None,
                   one: Callable[[Sync], T], *, workers: int = 1,
                   done: Callable[[ValueRun[T]], None] | None = None,
                   progress: Callable[[str], Callable[[str, int, int], None]] | None = None,
                   ) -> list[ValueRun[T]]:
    """Run ``one(sync)`` for each value of ``values`` (``spec`` is the file's connection),
    ``workers`` at once; ``done`` is called as each ends (in the caller's thread). The outcomes
    come back in the order of ``values``. ``progress(value)``: the progress callback of that
    value's run."""
    from l2sync_dagster.providers.graph.shared import shared_sign_ins

    shared = SharedReads(spec) if len(values) > 1 else None

    def run_one(value: str) -> ValueRun[T]:
        sync: Sync | None = None
        try:
            kwargs = {"progress": progress(value)} if progress is not None else {}
            sync = Sync(spec.for_value(value), store, shared=shared, **kwargs)
            return ValueRun(value, result=one(sync))
        except Exception as exc:  # reported with the value; the other values go on
            return ValueRun(value, error=exc)
        finally:
            if sync is not None:
                sync.close()

    outcomes: dict[str, ValueRun[T]] = {}
    # one sign-in (token, connections) per identity for all the values' Graph clients; each
    # worker runs in a copy of this context, so it sees the sharing
    with shared_sign_ins(), \
            ThreadPoolExecutor(max_workers=max(1, min(workers, len(values)))) as pool:
        futures = [pool.submit(contextvars.copy_context().run, run_one, v) for v in values]
        for future in as_completed(futures):
            outcome = future.result()
            outcomes[outcome.value] = outcome
            if done is not None:
                done(outcome)
    return [outcomes[v] for v in values]
