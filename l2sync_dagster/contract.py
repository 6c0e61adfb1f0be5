"""The record contract every layer shares: spec, engine, state, sync and providers import it
from here, so that no layer imports upwards.

What a provider reads and writes (see ``providers/base.py`` for the ``Provider`` protocol that
uses these): field types, the reserved column names, the ``Query`` that names an entity, the
description of its fields and read scope, a read's result, one change and its outcome, and the
time windows of partitioned connections.
"""

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

#: how much of an entity a read of the query can return (see the module docstring)
ReadScope = Literal["all", "filtered", "limited"]

#: canonical field types understood by the engine's converters
FieldType = Literal[
    "string", "integer", "float", "decimal", "boolean", "date", "datetime", "json"
]
FIELD_TYPES: tuple[str, ...] = (
    "string", "integer", "float", "decimal", "boolean", "date", "datetime", "json"
)

#: how booleans may be written in text (a CSV cell, a connection string, a JSON string)
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "on"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "off"})

MODIFIED = "_modified"
VERSION = "_version"
KEY_INDEX = "_key"


class ProviderError(RuntimeError):
    """A provider call failed as a whole (unreachable, unauthorized, bad query...).

    ``transient`` tells the orchestration layer whether a retry may help.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class EntityMissing(ProviderError):
    """The entity a query names does not exist, and the provider could create it
    (``create_entity``): a folder path without wildcards, for instance. The sync creates it
    only on a side it writes to and holds nothing of yet; anywhere else this is an error, as a
    source that is missing must never read as empty."""

    def __init__(self, message: str, *, what: str) -> None:
        super().__init__(message)
        #: what is missing, for messages ("folder 'Contacts/Company Directory'")
        self.what = what


@dataclass(frozen=True)
class Query:
    """The data entity inside a connection: what to read and write.

    ``text`` is provider specific (a table name or ``SELECT ...`` for SQL, unused for a file).
    ``key`` names the native key field (None: the provider's default). ``modified`` names the
    last-modified field used as watermark, when the system has one. ``window_field`` names the
    field a time-partitioned connection slices on: ``read(..., window=(start, end))`` then
    returns only records with ``start <= field < end`` (pushed down to the system's query).
    """

    text: str | None = None
    key: str | None = None
    modified: str | None = None
    window_field: str | None = None


@dataclass(frozen=True)
class FieldInfo:
    """One field of a data entity as the provider describes it.

    ``typed`` is True when ``type`` comes from a schema (a SQL column) rather than a guess
    (a CSV column is text; its type is only a guess).
    """

    name: str
    type: str = "string"
    typed: bool = True
    read_only: bool = False
    nullable: bool = True
    #: for a read-only field: the writable field(s) to map instead ("GivenName, Surname")
    alternative: str | None = None


@dataclass(frozen=True)
class EntityDescription:
    """Fields of a data entity, which one is the key and whether the system makes new keys."""

    fields: tuple[FieldInfo, ...]
    key: str
    key_generated: bool = False
    writable: bool = True
    modified: str | None = None
    #: what a read of the query can return: "all", "filtered" (WHERE) or "limited" (TOP)
    scope: ReadScope = "all"
    #: the clause that restricts the read, as written ("TOP 5", "WHERE statecode = 0")
    restriction: str | None = None
    #: inserts can carry ``Change.stamp`` into the record and ``find_stamps`` finds it
    stamps: bool = False

    def field(self, name: str) -> FieldInfo | None:
        """The field with this name, compared case-insensitively."""
        low = name.lower()
        for f in self.fields:
            if f.name.lower() == low:
                return f
        return None


@dataclass
class ReadResult:
    """What one read returns.

    ``complete`` is True when ``frame`` holds every record in scope (a record of the archive that
    is missing from a complete read was deleted). An incremental read (``complete=False``) holds
    only changed records; ``deleted`` lists the keys the change feed reports deleted. ``cursor``
    is the opaque value to pass to the next read to get only what changed since this one.
    ``present_keys`` lists every key in scope when the provider can list them cheaply; it lets
    an incremental read reveal deletes. An incremental read of a *filtered* query must list in
    ``deleted`` (or leave out of ``present_keys``) the records that changed and no longer match
    the filter: the runner looks every such key up before it judges anything deleted.
    """

    frame: pd.DataFrame
    complete: bool = True
    deleted: list[str] = field(default_factory=list)
    cursor: str | None = None
    present_keys: pd.Index | None = None


@dataclass(frozen=True)
class Change:
    """One write. ``ref`` is the engine's id for the record, echoed back in the outcome.

    insert: ``key`` is the key to create (None when the system generates it), ``values`` all
    mapped fields. update: ``key`` the native key, ``values`` only the fields to change.
    delete: ``key`` only. ``version`` is the expected version for optimistic concurrency.
    ``stamp`` (inserts, providers describing ``stamps=True``): an id to store in the created
    record where the user does not see it, found again by ``find_stamps``.
    """

    op: Literal["insert", "update", "delete"]
    ref: str
    key: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    version: str | None = None
    stamp: str | None = None


@dataclass(frozen=True)
class Outcome:
    """The result of one :class:`Change`: the record's key (new for inserts), version, or error."""

    ref: str
    ok: bool
    key: str | None = None
    version: str | None = None
    error: str | None = None


#: what ``Provider.apply`` calls with insert outcomes before they become durable
CreatedCallback = Callable[[Sequence[Outcome]], None]

#: the window a partitioned run reads: [start, end) in UTC; either end may be None
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
