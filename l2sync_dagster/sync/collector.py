"""Python's cyclic garbage collector, kept out of a run's way.

A run holds Python objects per record and field for a while (reads, the plan, archive rows),
and with the default thresholds (700, 10, 10) the collector walks them again and again: a
quarter of an initial load's time (5.5 of 22 s for 100,000 rows, bench/README.md). Reference
counting frees a run's objects whatever the thresholds; the collector only finds cycles. So a
run raises the thresholds (:data:`RUN_THRESHOLDS`): young collections every 10,000 net
allocations instead of 700, full ones a hundred times rarer. Cycles are still collected, so
a long run's memory stays bounded. The thresholds before are restored when the last run of
the process (``--all --workers N`` runs several) ends.
"""

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: gen0 allocations, gen1 and gen2 collection counts (CPython's defaults: 700, 10, 10)
RUN_THRESHOLDS = (10_000, 100, 100)

_lock = threading.Lock()
_runs = 0
_before: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def relaxed() -> Iterator[None]:
    """The collector at :data:`RUN_THRESHOLDS` inside the block."""
    global _runs, _before
    with _lock:
        if _runs == 0:
            _before = gc.get_threshold()
            gc.set_threshold(*RUN_THRESHOLDS)
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0:
                gc.set_threshold(*_before)
