"""Time windows of partitioned connections: which archived records a windowed read must judge.

A windowed read returns only the records whose window field lies in the window. An archived
record of the window that the read did not return either moved to another window (its field
changed: an update) or is gone (a delete); only the provider can tell which (its ``lookup``).
Pure functions: no I/O, no Dagster.
"""

from collections.abc import Sequence

import pandas as pd

from l2sync_dagster.contract import Window


def missing_keys(archive: pd.DataFrame, side: str, read_keys: Sequence[str] | pd.Index
                 ) -> list[str]:
    """Keys of ``side`` that the archive holds but a windowed read did not return."""
    if archive.empty:
        return []
    keys = archive[f"{side}_key"].dropna().astype(str)
    return sorted(set(keys) - {str(k) for k in read_keys})


def window_label(window: Window) -> str:
    """``[start, end)`` in ISO form for messages and metadata."""
    start, end = window
    return (f"[{start.isoformat() if start else '-inf'}, "
            f"{end.isoformat() if end else '+inf'})")
