"""The ``exchange`` provider: contacts, contact groups, calendar items, tasks, messages and
notes of an Exchange mailbox, through EWS (exchangelib) or Microsoft Graph.

Connection string: see ``connection.py`` (``URL=...;User=...;Password=env:VAR;Email=...;
Impersonation=true;Backend=ews|graph``). Query: a select statement, see ``select.py``
(``SELECT * FROM Contacts``, ``SELECT TOP 50 Subject, Start FROM Calendar WHERE ...``,
``SELECT * FROM Inbox/**``). Fields: ``fields.py``.

The key of a record is the item id, ``_version`` its ChangeKey, ``_modified`` its
LastModifiedTime. The cursor of an incremental read is the backend's change-feed state.

Integrity (see ``providers/base.py``): ``describe`` reports the read scope (``limited`` for
``TOP n``, ``filtered`` for a WHERE clause or, on Graph, the calendar's time window, ``all``
otherwise; folder wildcards and ``/**`` read all of their folders), ``lookup`` finds items by
key whatever the WHERE and TOP, and inserts carry a hidden stamp (``stamps.py``) that
``find_stamps`` finds after any user edit. A field the backend cannot read or write
(``PercentComplete`` through Graph) is refused when the statement is loaded, naming the
field, the backend and the fix; ``SELECT *`` leaves such fields out.

``FROM Directory`` reads the organisation's people under the contact field names: on
``Backend=graph`` from Graph ``/users`` (change feed ``/users/delta``, ``graph_directory.py``),
on ``Backend=ews`` the persons of the global address list through FindPeople (complete reads
only, keyed by primary SMTP address, ``ews_directory.py``); it is read-only (``describe``
says not writable, so a connection that writes to it is refused when it is loaded).
"""

import dataclasses
import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from l2sync_dagster.providers.base import (
    KEY_INDEX,
    MODIFIED,
    Capability,
    Change,
    CreatedCallback,
    EntityDescription,
    FieldInfo,
    Outcome,
    ProviderError,
    Query,
    ReadResult,
)
from l2sync_dagster.providers.exchange.backend import ExchangeBackend
from l2sync_dagster.providers.exchange.connection import (
    ExchangeOptions,
    ExchangeSettings,
    parse_settings,
)
from l2sync_dagster.providers.exchange.fields import SHAREPOINT_NAMES
from l2sync_dagster.providers.exchange.select import SelectError, SelectStatement, parse_select
from l2sync_dagster.spec.connection_string import ConnectionString

__all__ = ["ExchangeProvider"]

#: backend name -> (module, class)
BACKENDS = {
    "ews": ("l2sync_dagster.providers.exchange.ews_backend", "EwsBackend"),
    "graph": ("l2sync_dagster.providers.exchange.graph_backend", "GraphBackend"),
}


def load_backend(settings: ExchangeSettings) -> ExchangeBackend:
    """The backend named by ``Backend=`` (imported lazily); ProviderError when missing."""
    module_name, class_name = BACKENDS[settings.backend]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise ProviderError(
            f"exchange: Backend={settings.backend} is not available in this installation "
            f"({module_name} is missing); use Backend=ews") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ProviderError(f"exchange: {module_name} defines no {class_name}")
    return cls(settings)


class ExchangeProvider:
    """Reads and writes the items of one mailbox folder scope (see the module docstring)."""

    name: ClassVar[str] = "exchange"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {"lookup", "find_stamps", "probe", "stats", "close", "create_entity"})
    options: ClassVar[type[ExchangeOptions]] = ExchangeOptions

    def __init__(self, settings: ExchangeSettings, backend: ExchangeBackend | None = None
                 ) -> None:
        """Use ``settings``; the backend is loaded from ``settings.backend`` unless given."""
        self.settings = settings
        self.backend = backend or load_backend(settings)
        self._statements: dict[str, SelectStatement] = {}

    def __repr__(self) -> str:
        return f"ExchangeProvider({self.settings.cs.redacted()!r})"

    @classmethod
    def from_connection_string(cls, text: str | ConnectionString, *,
                               base_dir: Path | None = None) -> "ExchangeProvider":
        """Parse the connection string (``connection.py``) and pick the backend."""
        return cls(parse_settings(text, base_dir=base_dir))

    # --- select statement and names ----------------------------------------------------------
    def statement(self, query: Query) -> SelectStatement:
        """The parsed select statement of a query (cached); ProviderError when it is invalid."""
        text = (query.text or "").strip()
        stmt = self._statements.get(text)
        if stmt is None:
            if not text:
                raise ProviderError("exchange: the query is empty; write a select statement "
                                    "like SELECT * FROM Contacts")
            try:
                first = parse_select(text)
                naming = self._naming(first)
                stmt = parse_select(text, naming) if naming else first
            except SelectError as exc:
                if self.settings.naming_scheme == "sharepoint":
                    stmt = self._parse_sharepoint(text, exc)
                else:
                    raise ProviderError(f"exchange: {exc}") from None
            stmt = self._for_backend(stmt)
            self._statements[text] = stmt
        return stmt

    def _for_backend(self, stmt: SelectStatement) -> SelectStatement:
        """Refuse what the backend cannot do (an item type, a named field); ``*`` keeps only
        the fields the backend has."""
        backend = self.backend
        why = backend.type_unavailable(stmt.item_type.name)
        if why:
            raise ProviderError(f"exchange: {stmt.item_type.name} items are not available "
                                f"through {backend.label} ({why}); use "
                                f"{_other_backend(backend.name)} for them")
        missing = backend.unavailable(stmt.item_type.name)
        if not missing:
            return stmt
        named = [n for n in stmt.explicit if n in missing]
        if named:
            details = "; ".join(f"{n}: {missing[n]}" for n in named)
            it = "it" if len(named) == 1 else "them"
            verb = "is" if len(named) == 1 else "are"
            raise ProviderError(
                f"exchange: {', '.join(named)} {verb} not available through {backend.label} "
                f"({details}); remove {it} from the select statement or use "
                f"{_other_backend(backend.name)}")
        kept = tuple(f for f in stmt.fields if f.name not in missing)
        return dataclasses.replace(stmt, fields=kept) if len(kept) != len(stmt.fields) else stmt

    def _parse_sharepoint(self, text: str, first_error: SelectError) -> SelectStatement:
        # the item type decides which SharePoint names apply; find it without the names
        errors: list[str] = []
        for names in SHAREPOINT_NAMES.values():
            try:
                stmt = parse_select(text, names)
            except SelectError as exc:
                errors.append(str(exc))
                continue
            if SHAREPOINT_NAMES.get(stmt.item_type.name) is names:
                return stmt
        best = next((e for e in errors if "did you mean" in e), str(first_error))
        raise ProviderError(f"exchange: {best}") from None

    def _naming(self, stmt: SelectStatement) -> dict[str, str] | None:
        if self.settings.naming_scheme != "sharepoint":
            return None
        return SHAREPOINT_NAMES.get(stmt.item_type.name)

    def _column_names(self, stmt: SelectStatement) -> dict[str, str]:
        """Canonical column -> the column name users see (SharePoint names under that scheme)."""
        naming = self._naming(stmt)
        out = {c: c for c in stmt.columns}
        if naming:
            for sp_name, dotted in naming.items():
                if dotted in out and out[dotted] == dotted:
                    out[dotted] = sp_name
        return out

    # --- Provider protocol -------------------------------------------------------------------
    def verify(self, query: Query) -> str:
        """Open the mailbox and the scope's folder(s); say precisely what failed."""
        return self.backend.verify(self.statement(query))

    def describe(self, query: Query) -> EntityDescription:
        """The selected fields with their canonical types and read-only flags."""
        stmt = self.statement(query)
        names = self._column_names(stmt)
        infos = [FieldInfo(names[f.name], f.type, True, f.read_only,
                           alternative=_alternative(f.name)) for f in stmt.fields]
        infos += [FieldInfo(names[e.column], e.type, True, False) for e in stmt.extended]
        scope, restriction = self.backend.read_scope(stmt)
        return EntityDescription(fields=tuple(infos), key=KEY_INDEX, key_generated=True,
                                 writable=not stmt.item_type.read_only, modified=MODIFIED,
                                 scope=scope,
                                 restriction=restriction,
                                 stamps=self.backend.stamps_supported(stmt))

    def read(self, query: Query, cursor: str | None = None,
             window: tuple[Any, Any] | None = None) -> ReadResult:
        """Every item in scope (with a cursor for the next read), or only what changed."""
        stmt = self.statement(query)
        window_field = None
        if window is not None:
            if not query.window_field:
                raise ProviderError("exchange: a window needs Query.window_field")
            window_field = self._canonical_name(stmt, query.window_field)
        result = self.backend.read(stmt, cursor, window, window_field)
        names = self._column_names(stmt)
        if any(k != v for k, v in names.items()):
            result.frame = result.frame.rename(columns=names)
        return result

    def _canonical_name(self, stmt: SelectStatement, name: str) -> str:
        low = name.lower()
        for canonical, shown in self._column_names(stmt).items():
            if low in (canonical.lower(), shown.lower()):
                return canonical
        f = stmt.item_type.field(name)
        if f is not None:
            return f.name
        raise ProviderError(f"exchange: unknown field {name!r} for {stmt.item_type.name} items")

    def lookup(self, query: Query, keys: Sequence[str]) -> pd.DataFrame:
        """The items among ``keys`` still in the query's folder(s), ignoring WHERE and TOP
        (GetItem / Graph GETs in batches); a deleted key is simply missing."""
        stmt = self.statement(query)
        wanted = list(dict.fromkeys(str(k) for k in keys if k))
        frame = self.backend.lookup(stmt, wanted)
        names = self._column_names(stmt)
        if any(k != v for k, v in names.items()):
            frame = frame.rename(columns=names)
        return frame

    def find_stamps(self, query: Query, stamps: Sequence[str]) -> dict[str, str]:
        """{stamp: key} of the items in the query's folder(s) created with those stamps."""
        stmt = self.statement(query)
        wanted = list(dict.fromkeys(s for s in stamps if s))
        if not wanted or not self.backend.stamps_supported(stmt):
            return {}
        return self.backend.find_stamps(stmt, wanted)

    def apply(self, query: Query, changes: Sequence[Change], *,
              created: CreatedCallback | None = None) -> list[Outcome]:
        """Write in batches; refuses read-only and unknown fields per record. Inserts carry
        their ``stamp``; ``created`` is called right after each response that created items."""
        stmt = self.statement(query)
        if stmt.item_type.read_only:
            return [Outcome(ch.ref, False, ch.key, None, stmt.item_type.read_only)
                    for ch in changes]
        shown_to_canonical = {v.lower(): k for k, v in self._column_names(stmt).items()}
        read_only = {f.name for f in stmt.fields if f.read_only}
        good: list[Change] = []
        bad: dict[str, Outcome] = {}
        for ch in changes:
            values: dict[str, Any] = {}
            error = None
            for name, value in ch.values.items():
                canonical = shown_to_canonical.get(name.lower())
                if canonical is None:
                    error = f"{name} is not a selected field of this entity"
                    break
                if canonical in read_only:
                    error = f"{name} is read-only"
                    break
                values[canonical] = value
            if error:
                bad[ch.ref] = Outcome(ch.ref, False, ch.key, None, error)
                continue
            stamp = ch.stamp if ch.op == "insert" and self.backend.stamps_supported(stmt) \
                else None
            good.append(Change(ch.op, ch.ref, ch.key, values, ch.version, stamp))
        done = {o.ref: o for o in self.backend.apply(stmt, good, created=created)} \
            if good else {}
        out = []
        for ch in changes:
            o = bad.get(ch.ref) or done.get(ch.ref)
            out.append(o or Outcome(ch.ref, False, ch.key, None, "no outcome from the backend"))
        return out

    def create_entity(self, query: Query) -> str:
        """Create the folder path of the query's scope where it is missing (a read said
        :class:`EntityMissing`); only paths without wildcards. Refused for read-only item
        types (the directory)."""
        stmt = self.statement(query)
        if stmt.item_type.read_only:
            raise ProviderError(f"exchange: {stmt.item_type.read_only}")
        made = self.backend.create_entity(stmt)
        where = f"in {self.settings.email}"
        return f"created folder {made[-1]!r} {where}" if made else \
            f"folder {'/'.join(stmt.scope.segments)!r} exists {where}"

    def probe(self, query: Query, cursor: str | None = None) -> str:
        """The cheapest fingerprint of the scope (a change-feed check that stores nothing)."""
        return self.backend.probe(self.statement(query), cursor)

    def max_batch_size(self) -> int:
        """Changes per ``apply`` call (``BatchSize``, default 100)."""
        return self.backend.max_batch_size()

    def stats(self) -> dict[str, Any]:
        """HTTP requests and throttling waits since the provider was opened."""
        return self.backend.stats()

    def close(self) -> None:
        """Close the backend's connections."""
        self.backend.close()


def _other_backend(name: str) -> str:
    return "Backend=ews" if name == "graph" else "Backend=graph"



def _alternative(name: str) -> str | None:
    """The writable field(s) to map instead of a read-only one, where Exchange has them."""
    from l2sync_dagster.providers.exchange.fields import COMPLETE_NAME_SOURCES

    parent, _, part = name.partition(".")
    return COMPLETE_NAME_SOURCES.get(part) if parent == "CompleteName" else None
