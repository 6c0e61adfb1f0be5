"""Time windows of partitioned connections: which archived records a windowed read must judge.

A windowed read returns only the records whose window field lies in the window. An archived
record of the window that the read did not return either moved to another window (its field
changed: an update) or is gone (a delete); only the provider can tell which (its ``lookup``).
Pure functions: no I/O, no Dagster.
"""

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pandas as pd

Window = tuple[dt.datetime | None, dt.datetime | None]


def utc(value: Any) -> dt.datetime:
    """A timezone-aware UTC datetime (naive values are taken as UTC)."""
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def as_window(start: Any, end: Any) -> Window:
    """A half-open UTC window ``[start, end)``; either end may be None (unbounded)."""
    s = None if start is None else utc(start)
    e = None if end is None else utc(end)
    if s is not None and e is not None and e <= s:
        raise ValueError(f"window end {e.isoformat()} is not after its start {s.isoformat()}")
    return s, e


def in_window(values: pd.Series, window: Window) -> pd.Series:
    """A boolean mask: which values (dates, datetimes or ISO strings) lie in ``window``.

    Naive values are taken as UTC; empty and unparseable values lie in no window.
    """
    raw = values.where(values.astype(str).str.strip() != "", None)
    parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="mixed")
    mask = parsed.notna()
    start, end = window
    if start is not None:
        mask &= parsed >= pd.Timestamp(start)
    if end is not None:
        mask &= parsed < pd.Timestamp(end)
    return mask.fillna(False).astype(bool)


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
