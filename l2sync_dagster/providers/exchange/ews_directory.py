"""``FROM Directory`` on the EWS backend: the persons of the global address list (GAL) through
FindPeople (Exchange 2013 and later).

FindPeople with ``ParentFolderId`` = ``DistinguishedFolderId Id="directory"`` searches the GAL.
The GAL cannot be browsed (Microsoft: a ``QueryString`` is required there, a ``Restriction``
is refused), so a complete read is a sweep: one query per character of :data:`SWEEP` (a-z,
0-9), each paged with ``IndexedPageItemView`` (``PageSize`` personas a page) up to its
``TotalNumberOfPeopleInView``. Exchange resolves a query string like ambiguous name
resolution (a prefix of the display name, given name, surname, alias or SMTP address), so
every recipient with a name or address starting with a letter or a digit is found; what
several queries return is merged by key. A query whose pages end before its total fails the
read: a partial directory would reach the sync as deletions.

Not ResolveNames: it answers at most 100 candidates a name and cannot page, so a directory of
thousands cannot be read whole through it.

The key is the primary SMTP address, lower-cased. Not the PersonaId: a persona is assembled
from its sources when a request asks for it and Microsoft does not document its id as stable;
the primary SMTP address is unique in the organisation, every GAL entry has one, and it is
Graph's ``mail`` of the same person. A changed primary address reads as a delete and an
insert. Only personas of ``PersonaType`` ``Person`` are read (not the GAL's groups); the GAL
lists mail-enabled recipients only, so a directory user without a mailbox (no ``mail``) is
not there (Graph ``/users`` has it).

No change feed: FindPeople keeps no sync state, so every read is complete (``cursor`` None)
and the sync reconciles it as a full read. A persona element is parsed with exchangelib's
field parsers for the requested properties only, and only the first time the sweep meets it
(``Persona.from_xml`` parses all of its ninety fields: most of a large read's time).
``_version`` is a hash of the values read,
``_modified`` null. WHERE, ORDER BY and TOP are evaluated on what was read (the GAL takes no
restriction); windows are refused. ``lookup`` queries each key's address (up to
:data:`LOOKUP_QUERIES` keys, else one sweep); ``probe`` digests a sweep. The directory is
never written: the provider refuses ``apply`` before it reaches here.
"""

import hashlib
import json
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import pandas as pd
from exchangelib.fields import Field
from exchangelib.items import Persona
from exchangelib.services import FindPeople
from exchangelib.util import MNS, add_xml_child, create_element

from l2sync_dagster.providers.base import ProviderError, ReadResult
from l2sync_dagster.providers.exchange.backend import Record, records_frame
from l2sync_dagster.providers.exchange.connection import ExchangeSettings
from l2sync_dagster.providers.exchange.ews_client import EwsConnection, retrying
from l2sync_dagster.providers.exchange.ews_values import ACCESSORS, Accessor
from l2sync_dagster.providers.exchange.select import (
    SelectStatement,
    order_records,
    statement_matches,
)

#: the distinguished folder id of the GAL
GAL = "directory"
#: the query strings of a complete read
SWEEP = "abcdefghijklmnopqrstuvwxyz0123456789"
#: more keys than this are looked up with one sweep instead of one query each
LOOKUP_QUERIES = 50
PERSON = "Person"
#: the Persona fields every directory read requests besides the selected ones (type, key)
_ALWAYS = ("persona_type", "email_address")


class GalPeople(FindPeople):
    """exchangelib's FindPeople as the GAL needs it: a plain ``QueryString`` (exchangelib's
    carries attributes FindPeople's schema does not define) and paging by offset up to
    ``TotalNumberOfPeopleInView`` (exchangelib's FindPeople reads one page only)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: (total, first loaded row, personas) of each page answered
        self.pages: list[tuple[int, int, int]] = []

    def people(self, query: str, uris: Sequence[str]) -> Iterator[Any]:
        """The ``t:Persona`` elements matching ``query``, with the ``persona:`` properties
        ``uris`` (parsed by the caller: see :func:`persona_head`)."""
        for found in self._paged_call(
                payload_func=self.get_payload, max_items=None, folders=[GAL], query=query,
                uris=list(uris), page_size=self.page_size, offset=0):
            if isinstance(found, Exception):
                raise found
            yield found

    def get_payload(self, folders: Any, query: str, uris: list[str],  # type: ignore[override]
                    page_size: int, offset: int = 0) -> Any:
        """The FindPeople request of one page."""
        payload = create_element("m:FindPeople")
        shape = create_element("m:PersonaShape")
        add_xml_child(shape, "t:BaseShape", "IdOnly")
        props = create_element("t:AdditionalProperties")
        for uri in uris:
            props.append(create_element("t:FieldURI", attrs={"FieldURI": uri}))
        shape.append(props)
        payload.append(shape)
        payload.append(create_element("m:IndexedPageItemView", attrs={
            "MaxEntriesReturned": page_size, "Offset": offset, "BasePoint": "Beginning"}))
        parent = create_element("m:ParentFolderId")
        parent.append(create_element("t:DistinguishedFolderId", attrs={"Id": GAL}))
        payload.append(parent)
        add_xml_child(payload, "m:QueryString", query)
        return payload

    def _get_paging_values(self, elem: Any) -> tuple[int, int | None]:  # type: ignore[override]
        total = int(elem.findtext(f"{{{MNS}}}TotalNumberOfPeopleInView") or 0)
        first = int(elem.findtext(f"{{{MNS}}}FirstLoadedRowIndex") or 0)
        people = elem.find(f"{{{MNS}}}People")
        count = len(people) if people is not None else 0
        self.pages.append((total, first, count))
        following = first + count
        return total, following if count and following < total else None


_KEY_FIELDS = [Persona.get_field_by_fieldname(name) for name in _ALWAYS]


def persona_head(elem: Any) -> tuple[str | None, SimpleNamespace]:
    """The key of a GAL person (its primary SMTP address, lower-cased: see the module
    docstring; None for a persona that is not a person or has no address) and the parsed
    key fields. exchangelib's field parsers take what they parse out of the element, so
    :func:`parse_persona` adds the other fields to what this returns."""
    head = SimpleNamespace(**{f.name: f.from_xml(elem=elem, account=None)
                              for f in _KEY_FIELDS})
    if head.persona_type not in (None, PERSON):
        return None, head
    address = getattr(head.email_address, "email_address", None)
    key = address.strip().lower() if isinstance(address, str) and address.strip() else None
    return key, head


def parse_persona(elem: Any, head: SimpleNamespace, fields: Sequence[Field]
                  ) -> SimpleNamespace:
    """``head`` with the other ``fields`` of the ``t:Persona`` element, as exchangelib's
    Persona attributes."""
    for f in fields:
        if f not in _KEY_FIELDS:
            setattr(head, f.name, f.from_xml(elem=elem, account=None))
    return head


class EwsDirectoryReader:
    """Reads, looks up and probes ``FROM Directory`` through one EWS connection."""

    def __init__(self, conn: EwsConnection, settings: ExchangeSettings) -> None:
        self.conn = conn
        self.settings = settings

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def accessors(stmt: SelectStatement) -> dict[str, Accessor]:
        """The accessors of the statement's fields and of the fields WHERE and ORDER BY
        name."""
        table = ACCESSORS[stmt.item_type.name]
        names = [f.name for f in stmt.fields] + [c.field for c in stmt.where]
        names += [stmt.order_by] if stmt.order_by else []
        return {n: table[n] for n in names if n in table}

    def fields(self, stmt: SelectStatement) -> list[Field]:
        """The Persona fields a read of the statement requests (key and type first)."""
        out = list(_KEY_FIELDS)
        for acc in self.accessors(stmt).values():
            field = Persona.get_field_by_fieldname(acc.attr)
            if field not in out:
                out.append(field)
        return out

    def _query(self, query: str, fields: Sequence[Field]) -> list[Any]:
        """The persona elements of every page of one query; ProviderError when the pages
        end before the total."""
        uris = [f.field_uri for f in fields]

        def run() -> list[Any]:
            try:
                service = GalPeople(account=self.conn.account, page_size=self.settings.page_size)
            except NotImplementedError as exc:
                raise ProviderError(
                    "exchange (EWS): FROM Directory reads the global address list with "
                    "FindPeople, which needs Exchange 2013 or later; use Backend=graph"
                ) from exc
            found = list(service.people(query, uris))
            total = max((p[0] for p in service.pages), default=0)
            if len(found) < total:
                raise ProviderError(
                    f"exchange (EWS): the global address list answered {len(found)} of "
                    f"{total} people for the query {query!r}; the directory was not read "
                    "whole", transient=True)
            return found

        return retrying(run, self.settings, "reading the directory (FindPeople)")

    def _sweep(self, fields: Sequence[Field]) -> dict[str, SimpleNamespace]:
        """Every person of the GAL by key (one paged query per character of SWEEP)."""
        people: dict[str, SimpleNamespace] = {}
        for query in SWEEP:
            for elem in self._query(query, fields):
                key, head = persona_head(elem)
                if key is not None and key not in people:
                    people[key] = parse_persona(elem, head, fields)
        return people

    def _records(self, stmt: SelectStatement, people: dict[str, SimpleNamespace], *,
                 where: bool = True) -> list[Record]:
        accessors = self.accessors(stmt)
        records = []
        for key in sorted(people):
            values = {name: acc.read(people[key]) for name, acc in accessors.items()}
            if where and not statement_matches(stmt, values):
                continue
            selected = {f.name: values.get(f.name) for f in stmt.fields}
            version = hashlib.sha1(json.dumps(selected, sort_keys=True, default=str).encode()
                                   ).hexdigest()[:20]
            records.append(Record(key, version, None, selected))
        return records

    # -- the backend's calls ---------------------------------------------------------------
    def verify(self, stmt: SelectStatement) -> str:
        """One FindPeople query against the GAL (proves access and the server version)."""
        found = self._query(SWEEP[0], _KEY_FIELDS)
        return (f"exchange (EWS): global address list via FindPeople as "
                f"{self.settings.email} ({len(found)} entries for {SWEEP[0]!r}; every read "
                "is complete: FindPeople has no change feed)")

    def read(self, stmt: SelectStatement) -> ReadResult:
        """Every person of the GAL (complete, no cursor: there is no change feed)."""
        records = self._records(stmt, self._sweep(self.fields(stmt)))
        records = order_records(stmt, records, lambda r, col: r.values.get(col))
        return ReadResult(records_frame(stmt, records), complete=True, cursor=None)

    def lookup(self, stmt: SelectStatement, keys: Sequence[str]) -> pd.DataFrame:
        """The persons among ``keys`` (SMTP addresses) still in the GAL, whatever WHERE and
        TOP say."""
        wanted = {k.strip().lower() for k in keys if k and k.strip()}
        fields = self.fields(stmt)
        if len(wanted) > LOOKUP_QUERIES:
            people = self._sweep(fields)
        else:
            people = {}
            for key in sorted(wanted):
                for elem in self._query(key, fields):
                    found, head = persona_head(elem)
                    if found == key:
                        people[key] = parse_persona(elem, head, fields)
        found = {k: p for k, p in people.items() if k in wanted}
        return records_frame(stmt, self._records(stmt, found, where=False))

    def probe(self, stmt: SelectStatement) -> str:
        """A digest of the whole directory as the statement reads it (nothing is stored)."""
        records = self._records(stmt, self._sweep(self.fields(stmt)))
        parts = [f"{r.key}={r.version}" for r in records]
        return "ews-directory:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]
