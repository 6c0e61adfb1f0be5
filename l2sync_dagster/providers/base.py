"""The provider contract: what every system connector implements.

A provider instance is one connection to a system (built from a connection string). The data
entity inside it is named by a :class:`Query` (a table, a select statement, a folder...).

RecordFrame convention (what :meth:`Provider.read` returns): a pandas DataFrame whose index is
the record's native key as a string (index name ``_key``), whose columns are the provider's
fields (dotted names for nested fields), plus ``_modified`` (UTC timestamp) and ``_version``
(ETag / ChangeKey / row version as a string) where the system has them.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import pandas as pd

from l2sync_dagster.spec.connection_string import ConnectionString

#: canonical field types understood by the engine's converters
FieldType = Literal[
    "string", "integer", "float", "decimal", "boolean", "date", "datetime", "json"
]
FIELD_TYPES: tuple[str, ...] = (
    "string", "integer", "float", "decimal", "boolean", "date", "datetime", "json"
)

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


@dataclass(frozen=True)
class EntityDescription:
    """Fields of a data entity, which one is the key and whether the system makes new keys."""

    fields: tuple[FieldInfo, ...]
    key: str
    key_generated: bool = False
    writable: bool = True
    modified: str | None = None

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
    an incremental read reveal deletes.
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
    """

    op: Literal["insert", "update", "delete"]
    ref: str
    key: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    version: str | None = None


@dataclass(frozen=True)
class Outcome:
    """The result of one :class:`Change`: the record's key (new for inserts), version, or error."""

    ref: str
    ok: bool
    key: str | None = None
    version: str | None = None
    error: str | None = None


@runtime_checkable
class Provider(Protocol):
    """What the sync needs from a system. See DESIGN.md, "The provider contract"."""

    #: the name used in connection files (``provider: sql``)
    name: ClassVar[str]

    @classmethod
    def from_connection_string(
        cls, text: str | ConnectionString, *, base_dir: Path | None = None
    ) -> "Provider":
        """Parse the connection string; raise ConnectionStringError naming a bad key."""
        ...

    def verify(self, query: Query) -> str:
        """One cheap call proving credentials and scope; returns what was checked."""
        ...

    def describe(self, query: Query) -> EntityDescription:
        """Fields, types, read-only fields and the key of the entity."""
        ...

    def read(
        self, query: Query, cursor: str | None = None, window: tuple[Any, Any] | None = None
    ) -> ReadResult:
        """A RecordFrame of the entity (only what changed since ``cursor`` when given)."""
        ...

    def apply(self, query: Query, changes: Sequence[Change]) -> list[Outcome]:
        """Write changes in batches; one outcome per change; never raise for one bad record."""
        ...

    def max_batch_size(self) -> int:
        """How many changes one ``apply`` call should carry."""
        ...

