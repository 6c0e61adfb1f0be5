"""The side of a ``for_each`` connection that is the same for every value (the company
directory, the CRM's contacts) read once per run over many values and shared.

A side is shared when neither its connection string nor its query holds the placeholder, and
a value's run never writes to it (a side that one mailbox's run writes would be stale for the
others). The shared read is a complete read (no cursor): each value reconciles it against its
own archive, so deletes are judged as in a complete read of its own, and the cursor each value
saves is the one this read returned. A failed read is not kept: the next value tries again.
"""

import threading
from collections.abc import Callable
from dataclasses import replace

from l2sync_dagster.contract import EntityDescription, ReadResult
from l2sync_dagster.engine.plan import Side
from l2sync_dagster.spec.model import PLACEHOLDER, ConnectionSpec
from l2sync_dagster.sync.report import SIDES


def value_independent_sides(spec: ConnectionSpec) -> tuple[Side, ...]:
    """The sides of a ``for_each`` connection whose connection string and query hold no
    ``{mailbox}``: every value reads the same records there."""
    if spec.for_each is None:
        return ()
    out = []
    for side in SIDES:
        entity = getattr(spec, side)
        if not any(PLACEHOLDER.search(getattr(entity, a) or "")
                   for a in ("connection_string", "query")):
            out.append(side)
    return tuple(out)


class SharedReads:
    """Per run over many values of one connection: the reads and descriptions of its
    value-independent sides, made by the first value that needs them (thread safe)."""

    def __init__(self, spec: ConnectionSpec) -> None:
        """Share the value-independent sides of ``spec`` (the file's connection)."""
        self.sides = value_independent_sides(spec)
        self._locks = {side: threading.Lock() for side in self.sides}
        self._reads: dict[Side, ReadResult] = {}
        self._descriptions: dict[Side, EntityDescription] = {}
        self.reads_made = 0

    def covers(self, side: Side) -> bool:
        """True when ``side`` is read once and shared."""
        return side in self._locks

    def describe(self, side: Side, compute: Callable[[], EntityDescription]) -> EntityDescription:
        """The side's description, computed by the first caller."""
        with self._locks[side]:
            if side not in self._descriptions:
                self._descriptions[side] = compute()
            return self._descriptions[side]

    def read(self, side: Side, compute: Callable[[], ReadResult]) -> ReadResult:
        """The side's complete read, made by the first caller; each caller gets its own copy
        of the frame (a run may change its frame, never another run's)."""
        with self._locks[side]:
            if side not in self._reads:
                result = compute()
                if not result.complete:
                    raise ValueError(f"a shared read of the {side} side must be complete")
                self._reads[side] = result
                self.reads_made += 1
            shared = self._reads[side]
        return replace(shared, frame=shared.frame.copy(),
                       deleted=list(shared.deleted))
