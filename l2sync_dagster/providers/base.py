"""The provider contract: what every system connector implements.

A provider instance is one connection to a system (built from a connection string). The data
entity inside it is named by a :class:`Query` (a table, a select statement, a folder...).

RecordFrame convention (what :meth:`Provider.read` returns): a pandas DataFrame whose index is
the record's native key as a string (index name ``_key``), whose columns are the provider's
fields (dotted names for nested fields), plus ``_modified`` (UTC timestamp) and ``_version``
(ETag / ChangeKey / row version as a string) where the system has them.

Time windows (partitioned connections): ``read(query, window=(start, end))`` returns only the
records whose ``query.window_field`` lies in ``[start, end)`` (half-open; ``start`` and ``end``
are timezone-aware UTC datetimes, either may be None for "unbounded"), pushed down to the
system's query where it has one. A windowed read has ``complete=True`` when the frame holds
every record *of the window*; the runner never treats an archived record outside the window as
deleted because a windowed read missed it. Records whose window field is empty belong to no
window.

Read scope (integrity): ``describe(query).scope`` says how much of the entity a read of
``query`` can return. ``"all"``: every record of the entity (a table, a folder); a record
missing from a complete read is gone. ``"filtered"``: only records matching a condition (SQL
WHERE, ``$filter``, an Exchange WHERE); a missing record may merely have left the filter.
``"limited"``: at most N records (TOP, LIMIT, ``$top``), any of them may be missing.
``restriction`` is the clause as the user wrote it (``TOP 5``, ``WHERE statecode = 0``), for
messages. The runner never judges a record deleted because a restricted read missed it: it asks
``lookup`` first, and a connection that writes to a ``limited`` side is refused at load time.

Optional capabilities: a provider class declares the ones it has in ``capabilities`` (a
frozenset of names of :data:`CAPABILITIES`), and has the methods of each; the contract suite
checks that the declaration and the methods agree. The runner asks :func:`capabilities_of`
(through :func:`can_lookup`, :func:`can_probe`, ...), never the methods themselves: a provider
without a capability still works. The protocols below say what each one means.

``probe`` is part of the contract too (used by Dagster sensors), but providers written before
it existed lack it and then fail ``isinstance(p, Provider)``; use :func:`can_probe` rather than
``isinstance`` to ask whether a provider can be probed. A provider class that declares no
``capabilities`` (one written before the declaration) has those whose methods it has.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from l2sync_dagster.contract import (  # noqa: F401  (the record contract, re-exported)
    FIELD_TYPES,
    KEY_INDEX,
    MODIFIED,
    VERSION,
    Change,
    CreatedCallback,
    EntityDescription,
    EntityMissing,
    FieldInfo,
    FieldType,
    Outcome,
    ProviderError,
    Query,
    ReadResult,
    ReadScope,
    Window,
)
from l2sync_dagster.spec.connection_string import ConnectionString


@runtime_checkable
class Provider(Protocol):
    """What the sync needs from a system. See DESIGN.md, "The provider contract"."""

    #: the name used in connection files (``provider: sql``)
    name: ClassVar[str]
    # and ``capabilities: ClassVar[frozenset[Capability]]``: the optional capabilities it
    # has (see :data:`CAPABILITIES`; not a protocol member, so that providers written before
    # it still pass ``isinstance``), and ``options: ClassVar[type[ProviderOptions]]``: its
    # connection-string options, declared (``providers/options.py``; the README table)

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

    def apply(self, query: Query, changes: Sequence[Change], *,
              created: "CreatedCallback | None" = None) -> list[Outcome]:
        """Write changes in batches; one outcome per change; never raise for one bad record.

        ``created`` (when given) is called with the outcomes of successful inserts as soon as
        the system has assigned their keys: before the transaction commits where the system
        has transactions (SQL), right after each server response otherwise. If it raises, the
        provider rolls back what it can and lets the exception propagate: a created record
        whose key the sync never recorded must not become visible.
        """
        ...

    def max_batch_size(self) -> int:
        """How many changes one ``apply`` call should carry."""
        ...

    def probe(self, query: Query, cursor: str | None = None) -> str:
        """The cheapest fingerprint of the entity's state; equal fingerprints = no change.

        ``cursor`` is the provider's last read cursor, for systems whose cheapest question is
        "anything since this sync state?". Raises ProviderError (``transient`` when a retry may
        help) when the system cannot be asked.
        """
        ...




@runtime_checkable
class Lookup(Protocol):
    """``lookup``: the records among ``keys`` that still exist in the entity."""

    def lookup(self, query: Query, keys: Sequence[str]) -> pd.DataFrame:
        """The records among ``keys`` that still exist in the entity, *whatever the query's
        WHERE, TOP or window*, with the same columns as ``read``. The runner calls it for
        archived keys that a windowed or restricted read did not return, for keys a restricted
        change feed reports deleted, and for records the sync created since the saved cursor: a
        key it returns still exists (moved to another window, out of the filter); a key it does
        not return is gone (a delete). Without it the runner judges no deletes for such keys
        and says so in the run's metadata."""
        ...


@runtime_checkable
class FindStamps(Protocol):
    """``find_stamps``: records found by the pair id the sync stored in them."""

    def find_stamps(self, query: Query, stamps: Sequence[str]) -> dict[str, str]:
        """For providers whose description says ``stamps=True``: ``{stamp: key}`` of records
        created with ``Change.stamp`` (the engine's pair id, stored in the record itself, e.g.
        an Exchange extended property). Crash recovery uses it to find a record a killed run
        created even after a user edited it."""
        ...


@runtime_checkable
class Probe(Protocol):
    """``probe``: the cheapest fingerprint of the entity's state (see :class:`Provider`)."""

    def probe(self, query: Query, cursor: str | None = None) -> str:
        """The cheapest fingerprint of the entity's state; equal fingerprints = no change."""
        ...


@runtime_checkable
class Stats(Protocol):
    """``stats``: calls made and throttling waits, shown in the run's metadata."""

    def stats(self) -> dict[str, Any]:
        """``{"requests": int, "throttle_wait_s": float}`` since the provider was opened."""
        ...


@runtime_checkable
class WebLink(Protocol):
    """``web_link``: a link that opens a record in the system's web UI."""

    def web_link(self, key: str) -> str | None:
        """The link for ``key`` (the conflicts table links to it), or None."""
        ...


@runtime_checkable
class Closable(Protocol):
    """``close``: release connections, sessions and files."""

    def close(self) -> None:
        """Release what the provider holds; it is not used afterwards."""
        ...


@runtime_checkable
class CreateEntity(Protocol):
    """``create_entity``: make the entity a query names (a mailbox folder) when a read said
    :class:`EntityMissing`."""

    def create_entity(self, query: Query) -> str:
        """Create what ``query`` names (nothing when it exists by now); returns what was done,
        for the run's notes."""
        ...


Capability = Literal["lookup", "find_stamps", "probe", "stats", "web_link", "close",
                     "create_entity"]

#: every optional capability by name -> the protocol of its method (named like the capability)
CAPABILITIES: dict[Capability, type] = {
    "lookup": Lookup,
    "find_stamps": FindStamps,
    "probe": Probe,
    "stats": Stats,
    "web_link": WebLink,
    "close": Closable,
    "create_entity": CreateEntity,
}


def declared_capabilities(cls: type) -> frozenset[Capability] | None:
    """The capabilities a provider class declares (None: it declares none)."""
    declared = getattr(cls, "capabilities", None)
    return None if declared is None else frozenset(declared)


def capabilities_of(provider: object) -> frozenset[Capability]:
    """The capabilities ``provider`` has: those its class declares and whose methods it has
    (a declared capability whose method is missing is not had). A class that declares none
    has every capability whose methods it has."""
    declared = declared_capabilities(type(provider))
    names = CAPABILITIES if declared is None else declared
    # getattr, not isinstance(provider, Lookup): ABCMeta caches isinstance answers, so a
    # method removed later (a test's monkeypatch) would still be found
    return frozenset(n for n in names
                     if n in CAPABILITIES and callable(getattr(provider, n, None)))


def can_probe(provider: object) -> bool:
    """True when ``provider`` can be probed (providers written before ``probe`` existed
    cannot; Dagster sensors then report that they cannot watch the connection)."""
    return "probe" in capabilities_of(provider)


def can_lookup(provider: object) -> bool:
    """True when ``provider`` has the optional ``lookup(query, keys)`` capability."""
    return "lookup" in capabilities_of(provider)


def can_find_stamps(provider: object) -> bool:
    """True when ``provider`` has the optional ``find_stamps(query, stamps)`` capability."""
    return "find_stamps" in capabilities_of(provider)


def can_create_entity(provider: object) -> bool:
    """True when ``provider`` can create the entity its query names (``create_entity``)."""
    return "create_entity" in capabilities_of(provider)


def can_link(provider: object) -> bool:
    """True when ``provider`` can link records to its system's web UI."""
    return "web_link" in capabilities_of(provider)


def provider_stats(provider: object) -> dict[str, float] | None:
    """The provider's ``stats()`` (requests made, throttling waits), when it has them."""
    if "stats" not in capabilities_of(provider):
        return None
    try:
        out = provider.stats()  # type: ignore[attr-defined]
    except Exception:  # statistics must never fail a run
        return None
    return dict(out) if isinstance(out, dict) else None


def web_link_of(provider: object, key: str | None) -> str | None:
    """A link to the record in the system's web UI, when the provider can make one."""
    if key is None or not can_link(provider):
        return None
    try:
        link = provider.web_link(key)  # type: ignore[attr-defined]
    except Exception:  # a link is a convenience; never fail a run for it
        return None
    return str(link) if link else None


def typed_column(values: Sequence[Any], ftype: str) -> Any:
    """One RecordFrame column from Python values: nullable Int64/boolean, float64 with NaN for
    None, UTC datetimes; anything else (or values that do not fit) as an object array."""
    try:
        if ftype == "integer":
            return pd.array(values, dtype="Int64")
        if ftype == "boolean":
            return pd.array(values, dtype="boolean")
        if ftype == "float":
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        if ftype == "datetime":
            return pd.to_datetime(pd.Series(values, dtype=object), utc=True).array
    except (TypeError, ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
        pass
    # fromiter keeps a list or dict value as one element (np.array would unpack it)
    return np.fromiter(values, dtype=object, count=len(values))
