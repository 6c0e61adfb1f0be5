"""The interface both backends of the ``exchange`` provider implement (EWS and Graph).

:class:`~l2sync_dagster.providers.exchange.ExchangeProvider` does what does not depend on the
protocol: it parses the connection string (``connection.py``) and the select statement
(``select.py``), describes the entity from the field catalog (``fields.py``), renames columns
for ``NamingScheme=SharePoint``, refuses writes to read-only fields, and then calls the backend
with a parsed :class:`SelectStatement` whose field names are the canonical dotted ones.

A backend (stable interface; subclass :class:`ExchangeBackend`):

- ``__init__(settings: ExchangeSettings)``: no network I/O (connect lazily).
- ``verify(stmt) -> str``: open the mailbox and the scope's folder(s); raise ProviderError
  saying precisely what failed (unreachable, unauthorized, mailbox not found, folder not
  found with close matches).
- ``read(stmt, cursor, window, window_field) -> ReadResult``: a RecordFrame built with
  :func:`records_frame` (index ``_key`` = the item id, ``_version`` = ChangeKey / ETag,
  ``_modified`` = last-modified time in UTC, one column per ``stmt.columns`` holding canonical
  values, see ``fields.py``). ``cursor`` None = complete read that also returns a cursor;
  a cursor = only the changes (``complete=False``, ``deleted`` from the feed). ``window`` =
  ``(start, end)`` on ``window_field``, pushed down to the server.
- ``apply(stmt, changes, created=None) -> list[Outcome]``: one outcome per change, in order;
  never raises for one bad record; ``Change.values`` are keyed by canonical dotted names /
  extended property columns and hold canonical Python values (json as JSON text or lists).
  An insert's ``Change.stamp`` is stored in the stamp property (``stamps.py``). ``created``
  is called with the outcomes of the items each server response created, right after that
  response and before any other request; when it raises, those items are deleted again and
  the exception propagates.
- ``lookup(stmt, keys) -> DataFrame``: the items among ``keys`` that still exist in the
  scope's folder(s), ignoring WHERE, TOP and windows (same frame as ``read``).
- ``find_stamps(stmt, stamps) -> {stamp: key}``: the scope's items carrying those stamps.
- ``unavailable(item_type) -> {field: reason}``: catalog fields this backend has no binding
  for; the provider refuses a statement that names one (``describe``) and ``*`` leaves them
  out. ``read_scope(stmt)``: ("all" | "filtered" | "limited", the restriction as written).
  ``stamps_supported(stmt)``: whether inserts of the statement's item type can carry a stamp.
- ``probe(stmt, cursor) -> str``: the cheapest fingerprint of the scope's state (equal
  fingerprint = nothing changed); must not advance anything stored.
- ``max_batch_size() -> int``, ``stats() -> {"requests": int, "throttle_wait_s": float, ...}``
  (counters since the backend was created), ``close()``.
"""

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from l2sync_dagster.providers.base import (
    KEY_INDEX,
    MODIFIED,
    VERSION,
    Change,
    CreatedCallback,
    Outcome,
    ReadResult,
    ReadScope,
)
from l2sync_dagster.providers.exchange.connection import ExchangeSettings
from l2sync_dagster.providers.exchange.select import SelectStatement

Window = tuple[Any, Any]


@dataclass
class Record:
    """One item as a backend read it: key, version, modified time and canonical values."""

    key: str
    version: str | None
    modified: dt.datetime | None
    values: dict[str, Any] = field(default_factory=dict)


class ExchangeBackend(ABC):
    """Base class of the EWS and Graph backends (see the module docstring)."""

    name: ClassVar[str] = ""
    #: how messages name the backend: "EWS (Backend=ews)"
    label: ClassVar[str] = ""

    def __init__(self, settings: ExchangeSettings) -> None:
        self.settings = settings

    @abstractmethod
    def verify(self, stmt: SelectStatement) -> str:
        """Open mailbox and folder(s); return what was checked; ProviderError when not."""

    @abstractmethod
    def read(self, stmt: SelectStatement, cursor: str | None = None,
             window: Window | None = None, window_field: str | None = None) -> ReadResult:
        """A RecordFrame of the scope, or only its changes since ``cursor``."""

    @abstractmethod
    def apply(self, stmt: SelectStatement, changes: Sequence[Change], *,
              created: CreatedCallback | None = None) -> list[Outcome]:
        """Inserts, updates and deletes in batches; one Outcome per change."""

    @abstractmethod
    def lookup(self, stmt: SelectStatement, keys: Sequence[str]) -> pd.DataFrame:
        """The items among ``keys`` still in the scope's folders, whatever WHERE and TOP say."""

    @abstractmethod
    def find_stamps(self, stmt: SelectStatement, stamps: Sequence[str]) -> dict[str, str]:
        """{stamp: key} of the scope's items that carry one of ``stamps``."""

    @abstractmethod
    def create_entity(self, stmt: SelectStatement) -> list[str]:
        """Create the folders of the scope's path that are missing; returns their paths."""

    def unavailable(self, item_type: str) -> dict[str, str]:
        """Catalog fields of ``item_type`` this backend cannot read or write: {name: why}."""
        return {}

    def type_unavailable(self, item_type: str) -> str | None:
        """Why this backend has no API for ``item_type`` at all (None: it has one)."""
        return None

    def read_scope(self, stmt: SelectStatement) -> tuple[ReadScope, str | None]:
        """How much of the folders a read of ``stmt`` returns, and the clause that limits it."""
        if stmt.top is not None:
            return "limited", stmt.restriction
        if stmt.where:
            return "filtered", stmt.restriction
        return "all", None

    def stamps_supported(self, stmt: SelectStatement) -> bool:
        """Whether an insert of the statement's item type can carry a stamp."""
        return True

    @abstractmethod
    def probe(self, stmt: SelectStatement, cursor: str | None = None) -> str:
        """The cheapest fingerprint of the scope's state."""

    def max_batch_size(self) -> int:
        """Changes per ``apply`` call."""
        return self.settings.batch_size

    def stats(self) -> dict[str, Any]:
        """HTTP requests made and seconds spent waiting for throttling."""
        return {"requests": 0, "throttle_wait_s": 0.0}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def records_frame(stmt: SelectStatement, records: Sequence[Record]) -> pd.DataFrame:
    """The RecordFrame of ``records``: index ``_key``, ``stmt.columns``, ``_modified``,
    ``_version`` (a record's missing column is null)."""
    columns = stmt.columns
    data: dict[str, list[Any]] = {c: [r.values.get(c) for r in records] for c in columns}
    frame = pd.DataFrame(data, columns=columns, dtype=object)
    frame[MODIFIED] = pd.to_datetime([r.modified for r in records], utc=True)
    frame[VERSION] = pd.Series([r.version for r in records], dtype=object)
    frame.index = pd.Index([r.key for r in records], name=KEY_INDEX, dtype=object)
    return frame
