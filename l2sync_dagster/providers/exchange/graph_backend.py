"""The Microsoft Graph backend of the ``exchange`` provider (Exchange Online, ``Backend=graph``).

Same connection strings and select statements as the EWS backend, so a connection moves from
on-premises to Online by changing the connection string only::

    Backend=graph;TenantId=...;ClientId=...;ClientSecret=env:GRAPH_SECRET;Email=sales@contoso.com

``URL`` (or ``GraphURL`` when the connection-string parser accepts it) is the Graph endpoint,
default ``https://graph.microsoft.com/v1.0``; ``Authority`` and ``CABundle`` as for every Graph
provider (:mod:`l2sync_dagster.providers.graph`).

Item types and scopes:

- ``Contact``: the default Contacts folder or contact folders by path (``Contacts/Customers``,
  ``Contacts/**`` for the folder and its subfolders); contact delta per folder.
- ``CalendarItem``: the default calendar; reads are a ``calendarView`` delta over a time
  window: ``WHERE Start >= '...' AND Start < '...'`` (or End), a partition window, else the
  last 365 and next 730 days. Occurrences of a series are reported as their series master
  (with ``Recurrence``); times come in UTC (``Prefer: outlook.timezone="UTC"``).
- ``Task``: a Microsoft To Do list: ``Tasks`` is the default list, ``Tasks/<list name>`` another.
- ``Message``: mail folders (``Inbox``, ``SentItems``, ``Inbox/Projects/**``...); read, update
  (e.g. ``IsRead``, ``Categories``) and delete; new messages cannot be created this way.
  ``Body.Plaintext`` is read with ``Prefer: outlook.body-content-type="text"``.
- Extended properties of the select list are single- (or multi-) value extended properties.
- ``DirectoryUser`` (``FROM Directory``): the organisation's people from ``/users``, read-only
  (``graph_directory.py``).
- ``ContactGroup`` and ``Note`` have no Graph API: refused when the statement is loaded, as
  is any field listed in ``graph_fields.GRAPH_UNAVAILABLE`` (``SELECT *`` leaves those out).
- Read scope: a calendar read is a calendarView over a time window, so it is ``filtered``
  even without WHERE (an event outside the window is not deleted; ``lookup`` finds it).
- Stamps (``stamps.py``) are a single-value extended property, found with
  ``$filter=singleValueExtendedProperties/Any(ep: ep/id eq '...' and ep/value eq '...')``;
  contacts and events have them, To Do tasks do not (todoTask has no extended properties) and
  messages are not created through Graph.

Field names and values follow ``fields.py``; the Graph mapping is ``graph_fields.py``. A field
Graph does not have reads as null and refuses a value. ``_version`` is the item's
``@odata.etag`` (sent as ``If-Match`` on update and delete), ``_modified`` its
``lastModifiedDateTime``. The cursor is JSON of the delta link per folder; a 410 from an
expired delta link turns the read into a complete one.
"""

import dataclasses
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import pandas as pd

from l2sync_dagster.providers.base import (
    KEY_INDEX,
    Change,
    CreatedCallback,
    Outcome,
    ProviderError,
    ReadResult,
    ReadScope,
)
from l2sync_dagster.providers.exchange.backend import (
    ExchangeBackend,
    Record,
    Window,
    records_frame,
)
from l2sync_dagster.providers.exchange.connection import ExchangeSettings
from l2sync_dagster.providers.exchange.graph_directory import DirectoryReader, is_directory
from l2sync_dagster.providers.exchange.graph_fields import (
    GRAPH_FIELDS,
    GRAPH_NO_API,
    GRAPH_UNAVAILABLE,
    GraphField,
    dtz_body,
    event_start,
    extended_id,
    extended_value_read,
    extended_value_write,
    recurrence_to_graph,
)
from l2sync_dagster.providers.exchange.graph_folders import MAIL_FOLDERS, Folder, FolderResolver
from l2sync_dagster.providers.exchange.graph_where import matches, top
from l2sync_dagster.providers.exchange.select import SelectStatement
from l2sync_dagster.providers.exchange.stamps import GRAPH_ID, check_stamp
from l2sync_dagster.providers.graph.batch import BatchRequest, BatchResult
from l2sync_dagster.providers.graph.client import DEFAULT_GRAPH_URL, GraphClient, GraphError
from l2sync_dagster.providers.graph.delta import DeltaResult
from l2sync_dagster.providers.graph.throttle import RetryPolicy
from l2sync_dagster.providers.graph.values import format_datetime, parse_datetime
from l2sync_dagster.providers.msauth import MicrosoftAuth, scope_for

log = logging.getLogger("l2sync.providers.exchange.graph")

PREFER_UTC = 'outlook.timezone="UTC"'
PREFER_TEXT = 'outlook.body-content-type="text"'
DEFAULT_PAST = dt.timedelta(days=365)
DEFAULT_FUTURE = dt.timedelta(days=730)
EVENT_TIME_FIELDS = ("Start", "End", "IsAllDayEvent", "StartTimeZone", "EndTimeZone",
                     "Recurrence")
#: well-known mail folder names (a Folder's id before it is resolved)
MAIL_FOLDER_NAMES = frozenset(MAIL_FOLDERS)
#: requests per $batch (Graph's limit)
BATCH_LIMIT = 20
#: item types whose inserts carry a stamp (an extended property)
STAMPED_TYPES = frozenset({"Contact", "CalendarItem"})
#: item type -> the mailbox-wide collection that addresses an item of any folder
MAILBOX_WIDE = {"Contact": "contacts", "Message": "messages", "CalendarItem": "events"}


class GraphBackend(ExchangeBackend):
    """Exchange Online through Microsoft Graph (see the module docstring)."""

    name = "graph"
    label = "Microsoft Graph (Backend=graph)"

    def __init__(self, settings: ExchangeSettings) -> None:
        super().__init__(settings)
        self._client: GraphClient | None = None
        self._folders: dict[str, list[Folder]] = {}
        self._real_ids: dict[str, str | None] = {}

    # -- capabilities ------------------------------------------------------------------------

    def unavailable(self, item_type: str) -> dict[str, str]:
        """Catalog fields Graph has no property for (``graph_fields.GRAPH_UNAVAILABLE``)."""
        return dict(GRAPH_UNAVAILABLE.get(item_type, {}))

    def type_unavailable(self, item_type: str) -> str | None:
        """Contact groups and notes: Graph has no API for them."""
        return GRAPH_NO_API.get(item_type)

    def read_scope(self, stmt: SelectStatement) -> tuple[ReadScope, str | None]:
        """As EWS, except that a calendar read is always bounded by its calendarView window."""
        scope, restriction = super().read_scope(stmt)
        if stmt.item_type.name == "CalendarItem" and scope == "all":
            days_back, days_ahead = DEFAULT_PAST.days, DEFAULT_FUTURE.days
            return "filtered", (f"calendarView window ({days_back} days back, "
                                f"{days_ahead} days ahead)")
        return scope, restriction

    def stamps_supported(self, stmt: SelectStatement) -> bool:
        """Contacts and events (extended properties); not To Do tasks nor messages."""
        return stmt.item_type.name in STAMPED_TYPES

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def graph_url(self) -> str:
        """The Graph endpoint: GraphURL, else URL, else Microsoft's."""
        cs = self.settings.cs
        url = (cs.get("GraphURL") if "GraphURL" in cs else None) or self.settings.url
        return (url or DEFAULT_GRAPH_URL).rstrip("/")

    @property
    def client(self) -> GraphClient:
        """The Graph client (created on first use; no I/O before)."""
        if self._client is None:
            url = self.graph_url
            auth = MicrosoftAuth.from_connection_string(self.settings.cs, scope=scope_for(url),
                                                        base_dir=self.settings.base_dir)
            retry = RetryPolicy(max_retry_after_s=max(self.settings.max_retry_wait_s, 1.0))
            self._client = GraphClient(url, auth, retry=retry)
        return self._client

    @property
    def user(self) -> str:
        """The mailbox path (``/users/<email>``)."""
        return f"/users/{quote(self.settings.email)}"

    def stats(self) -> dict[str, Any]:
        """HTTP requests sent to Graph and seconds spent waiting for throttling."""
        return self.client.stats() if self._client else {"requests": 0, "throttle_wait_s": 0.0}

    def close(self) -> None:
        """Close the HTTP connections."""
        if self._client is not None:
            self._client.close()

    def max_batch_size(self) -> int:
        """Changes per apply() call (sent as $batch requests of 20)."""
        return max(self.settings.batch_size, 20)

    @property
    def directory(self) -> DirectoryReader:
        """The reader of ``FROM Directory`` (``graph_directory.py``)."""
        return DirectoryReader(self.client, self.settings.page_size, self.graph_url)

    def _fields(self, stmt: SelectStatement) -> dict[str, GraphField]:
        mapping = GRAPH_FIELDS.get(stmt.item_type.name)
        if mapping is None:
            raise ProviderError(f"exchange (Graph): {stmt.item_type.name} items have no "
                                "Microsoft Graph API; use Backend=ews for them")
        return mapping

    def _get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, mailbox=self.settings.email, **kw)

    def _mailbox_error(self, exc: GraphError) -> ProviderError:
        if exc.status == 404 and exc.code in {"ErrorInvalidUser", "ResourceNotFound",
                                               "MailboxNotEnabledForRESTAPI", "Request_"
                                               "ResourceNotFound"}:
            return ProviderError(f"exchange (Graph): mailbox {self.settings.email} not found "
                                 f"({exc.code}: {exc.graph_message})")
        if exc.status in {401, 403}:
            return ProviderError(f"exchange (Graph): not authorized for mailbox "
                                 f"{self.settings.email} ({exc.code}: {exc.graph_message}); "
                                 "the app needs Contacts/Calendars/Tasks/Mail permissions")
        return exc

    # -- scope resolution --------------------------------------------------------------------

    def folders(self, stmt: SelectStatement) -> list[Folder]:
        """The collections the statement's scope covers (cached per statement)."""
        if is_directory(stmt):
            # writes and stamps are refused by the provider; nothing else needs folders
            raise ProviderError(f"exchange (Graph): {stmt.item_type.read_only}")
        key = stmt.scope.text + "|" + stmt.item_type.name
        if key not in self._folders:
            self._fields(stmt)
            try:
                resolver = FolderResolver(self.client, self.settings.email)
                self._folders[key] = resolver.resolve(stmt)
            except GraphError as exc:
                raise self._mailbox_error(exc) from exc
        return self._folders[key]

    def create_entity(self, stmt: SelectStatement) -> list[str]:
        """Create the scope's missing contact or mail folders (``FolderResolver.create``)."""
        try:
            made = FolderResolver(self.client, self.settings.email).create(stmt)
        except GraphError as exc:
            raise self._mailbox_error(exc) from exc
        self._folders.pop(stmt.scope.text + "|" + stmt.item_type.name, None)
        return made

    # -- verify ------------------------------------------------------------------------------

    def verify(self, stmt: SelectStatement) -> str:
        """Open the mailbox and the scope's folder(s); ProviderError saying what failed."""
        if is_directory(stmt):
            return self.directory.verify(stmt)
        try:
            folders = self.folders(stmt)
            first = folders[0]
            params: dict[str, Any] = {"$top": 1}
            if stmt.item_type.name == "CalendarItem":
                start, end = self._calendar_window(stmt, None)
                params.update(startDateTime=format_datetime(start),
                              endDateTime=format_datetime(end))
            self._get(first.list_path, params=params)
        except GraphError as exc:
            raise self._mailbox_error(exc) from exc
        left_out = [f.name for f in stmt.item_type.default_fields()
                    if stmt.star and f.name in self.unavailable(stmt.item_type.name)]
        note = (f"; SELECT * leaves out what Graph does not have: {', '.join(left_out)}"
                if left_out else "")
        return (f"Graph mailbox {self.settings.email}: {len(folders)} folder(s) for "
                f"{stmt.scope.text} via {self.graph_url}{note}")

    # -- reads -------------------------------------------------------------------------------

    def _select(self, stmt: SelectStatement) -> list[str]:
        mapping = self._fields(stmt)
        props = {"id", "lastModifiedDateTime"}
        for f in stmt.fields:
            spec = mapping.get(f.name)
            if spec is not None:
                props.update(spec.select)
        for cond in stmt.where:
            spec = mapping.get(cond.field)
            if spec is not None:
                props.update(spec.select)
        if stmt.item_type.name == "CalendarItem":
            props.update({"type", "seriesMasterId", "isAllDay", "originalStartTimeZone"})
        if stmt.item_type.name == "Contact":
            props.add("parentFolderId")
        return sorted(props)

    def _headers(self, stmt: SelectStatement, *, text_body: bool) -> dict[str, str]:
        prefer = [f"odata.maxpagesize={self.settings.page_size}"]
        if stmt.item_type.name in {"CalendarItem", "Task", "Message"}:
            prefer.append(PREFER_UTC)
        if text_body:
            prefer.append(PREFER_TEXT)
        return {"Prefer": ", ".join(prefer)}

    def _body_modes(self, stmt: SelectStatement) -> tuple[bool, bool]:
        """(read the delta with a text body, fetch text bodies separately)."""
        names = {f.name for f in stmt.fields}
        if stmt.item_type.name == "Contact":
            return False, False
        wants_text = "Body.Plaintext" in names
        wants_html = "Body" in names
        return wants_text and not wants_html, wants_text and wants_html

    def _calendar_window(self, stmt: SelectStatement,
                         window: Window | None) -> tuple[dt.datetime, dt.datetime]:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        start, end = now - DEFAULT_PAST, now + DEFAULT_FUTURE
        for cond in stmt.where:
            if cond.field in {"Start", "End"} and isinstance(cond.value, dt.datetime | dt.date):
                value = cond.value
                if not isinstance(value, dt.datetime):
                    value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
                if value.tzinfo is None:
                    value = value.replace(tzinfo=dt.UTC)
                if cond.op in {">", ">="}:
                    start = value
                elif cond.op in {"<", "<="}:
                    end = value
        if window is not None:
            lo, hi = window
            if lo is not None:
                start = parse_datetime(format_datetime(lo)) or start
            if hi is not None:
                end = parse_datetime(format_datetime(hi)) or end
        return start, end

    def _signature(self, stmt: SelectStatement) -> str:
        text = json.dumps([stmt.item_type.name, stmt.scope.text, self._select(stmt),
                           [e.column for e in stmt.extended], self._body_modes(stmt)])
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def read(self, stmt: SelectStatement, cursor: str | None = None,
             window: Window | None = None, window_field: str | None = None) -> ReadResult:
        """Every item of the scope (plus a cursor), or the changes since ``cursor``."""
        if is_directory(stmt):
            if window is not None:
                raise ProviderError("exchange (Graph): the directory is not read in windows "
                                    "(partitions); read it whole")
            return self.directory.read(stmt, cursor)
        key = stmt.scope.text + "|" + stmt.item_type.name
        if not _fixed_scope(stmt):
            # folders come and go between runs: resolve the tree again for every read
            self._folders.pop(key, None)
        links: dict[str, str] = {}
        remembered: list[Folder] | None = None
        if cursor and window is None:
            try:
                state = json.loads(cursor)
                if state.get("sig") == self._signature(stmt):
                    links = dict(state.get("links") or {})
                    remembered = _folders_of_state(state)
                else:
                    log.info("select statement changed since the cursor; reading everything")
            except (ValueError, AttributeError, TypeError):
                log.warning("ignoring a cursor that is not a Graph delta state")
        if remembered and key not in self._folders and _fixed_scope(stmt):
            # the folders the cursor was made for: following their delta links needs no
            # look-up; a folder that is gone since fails its delta link (below)
            self._fields(stmt)
            self._folders[key] = remembered
            try:
                return self._read(stmt, self._folders[key], links, window, window_field,
                                  cursor, remembered=True)
            except _RememberedFolderGone:
                log.info("a folder of %s is gone since the cursor; looking it up again",
                         stmt.scope.text)
                self._folders.pop(key, None)
        return self._read(stmt, self.folders(stmt), links, window, window_field, cursor)

    def _read(self, stmt: SelectStatement, folders: list[Folder], links: dict[str, str],
              window: Window | None, window_field: str | None, cursor: str | None, *,
              remembered: bool = False) -> ReadResult:
        if set(links) - {f.id for f in folders}:
            # a folder of the scope is gone: only a complete read tells which items went
            log.info("a folder of %s is gone since the cursor; reading everything",
                     stmt.scope.text)
            links = {}
        delta_text, separate_text = self._body_modes(stmt)
        headers = self._headers(stmt, text_body=delta_text)
        params = self._delta_params(stmt, window)
        items: list[tuple[Folder, dict[str, Any]]] = []
        removed: list[str] = []
        complete = True
        new_links: dict[str, str] = {}
        for folder in folders:
            if window is not None:
                listed = self._list_window(stmt, folder, window, window_field, headers)
                items.extend((folder, it) for it in listed)
                complete = False
                continue
            try:
                result = self.client.delta(folder.delta, params=params, headers=headers,
                                           mailbox=self.settings.email,
                                           delta_link=links.get(folder.id))
            except GraphError as exc:
                if remembered and exc.status == 404:
                    raise _RememberedFolderGone from exc
                raise self._mailbox_error(exc) from exc
            if not result.full:
                complete = False
            removed.extend(result.removed)
            new_links[folder.id] = result.delta_link or ""
            items.extend((folder, it) for it in self._expand_series(stmt, folder, result))
        self._load_extended(stmt, items)
        if separate_text:
            self._load_text_bodies(stmt, items)
        records, out_of_scope = self._records(stmt, items)
        if complete:
            records = top(stmt, records)
            deleted: list[str] = []
        else:
            deleted = list(dict.fromkeys(removed + out_of_scope))
        frame = records_frame(stmt, records)
        if window is not None:
            return ReadResult(frame, complete=False, cursor=cursor)
        state: dict[str, Any] = {"sig": self._signature(stmt), "links": new_links}
        if _fixed_scope(stmt):
            state["folders"] = [dataclasses.asdict(f) for f in folders]
        new_cursor = json.dumps(state)
        present = None
        if not complete and removed and stmt.item_type.name == "CalendarItem":
            # calendarView delta reports a deleted series as its occurrences: list what is
            # still there so that the series master's deletion is seen too
            present = self._calendar_keys(stmt, folders[0])
            deleted = [k for k in deleted if k not in set(present)]
        return ReadResult(frame, complete=complete, deleted=deleted, cursor=new_cursor,
                          present_keys=present)

    def _calendar_keys(self, stmt: SelectStatement, folder: Folder) -> pd.Index:
        """Keys of every event (single, series master) in the calendar window."""
        start, end = self._calendar_window(stmt, None)
        params = {"startDateTime": format_datetime(start), "endDateTime": format_datetime(end),
                  "$select": "id,type,seriesMasterId", "$top": 1000}
        keys: dict[str, None] = {}
        for item in self.client.items(folder.list_path, params=params,
                                      mailbox=self.settings.email):
            master = item.get("seriesMasterId")
            if item.get("type") in {"occurrence", "exception"} and master:
                keys[str(master)] = None
            else:
                keys[str(item["id"])] = None
        return pd.Index(list(keys), name=KEY_INDEX, dtype=object)

    def _delta_params(self, stmt: SelectStatement, window: Window | None) -> dict[str, Any]:
        if stmt.item_type.name == "CalendarItem":
            start, end = self._calendar_window(stmt, window)
            return {"startDateTime": format_datetime(start), "endDateTime": format_datetime(end)}
        if stmt.item_type.name == "Task":
            return {}
        return {"$select": ",".join(self._select(stmt))}

    def _list_window(self, stmt: SelectStatement, folder: Folder, window: Window,
                     window_field: str | None, headers: dict[str, str]) -> list[dict[str, Any]]:
        if stmt.item_type.name == "CalendarItem" and window_field in {None, "Start", "End"}:
            start, end = self._calendar_window(stmt, window)
            params = {"startDateTime": format_datetime(start),
                      "endDateTime": format_datetime(end)}
            return list(self.client.items(folder.list_path, params=params, headers=headers,
                                          mailbox=self.settings.email))
        found = list(self.client.items(folder.list_path, headers=headers,
                                       mailbox=self.settings.email))
        spec = self._fields(stmt).get(window_field or "")
        if spec is None:
            raise ProviderError(f"exchange (Graph): cannot window on {window_field!r}")
        lo, hi = window
        lo_dt = parse_datetime(format_datetime(lo)) if lo is not None else None
        hi_dt = parse_datetime(format_datetime(hi)) if hi is not None else None
        out = []
        for item in found:
            value = spec.read(item)
            if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
                value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
            if value is None or (lo_dt and value < lo_dt) or (hi_dt and value >= hi_dt):
                continue
            out.append(item)
        return out

    def _expand_series(self, stmt: SelectStatement, folder: Folder,
                       result: DeltaResult) -> list[dict[str, Any]]:
        """Calendar: occurrences and exceptions are reported as their series master."""
        if stmt.item_type.name != "CalendarItem":
            return result.items
        out: dict[str, dict[str, Any]] = {}
        masters: set[str] = set()
        for item in result.items:
            kind = item.get("type")
            if kind in {"occurrence", "exception"} and item.get("seriesMasterId"):
                masters.add(str(item["seriesMasterId"]))
            else:
                out[str(item["id"])] = item
        missing = [m for m in masters if m not in out]
        if missing:
            query = self._event_query(stmt)
            reqs = [BatchRequest(f"m{i}", "GET", f"{folder.items}/{m}{query}",
                                 headers={"Prefer": PREFER_UTC})
                    for i, m in enumerate(missing)]
            for res in self.client.batch(reqs, mailbox=self.settings.email):
                if res.ok and isinstance(res.body, dict):
                    out[str(res.body["id"])] = res.body
                elif res.status != 404:
                    raise ProviderError(f"exchange (Graph): reading a series master failed: "
                                        f"{res.error()}")
        return list(out.values())

    def _event_query(self, stmt: SelectStatement) -> str:
        """The query string of a GET of one event: a series master's exceptions when the
        statement reads them (``cancelledOccurrences`` must be selected, the changed
        occurrences expanded)."""
        names = {f.name for f in stmt.fields}
        parts = []
        if "DeletedOccurrences" in names:
            parts.append("$select=" + ",".join(self._select(stmt)))
        if "ModifiedOccurrences" in names:
            parts.append("$expand=exceptionOccurrences($select=start,end,originalStart)")
        return "?" + "&".join(parts) if parts else ""

    def _extended_expand(self, stmt: SelectStatement) -> str:
        singles = [extended_id(e) for e in stmt.extended if not e.is_array]
        multis = [extended_id(e) for e in stmt.extended if e.is_array]
        parts = []
        for name, ids in (("singleValueExtendedProperties", singles),
                          ("multiValueExtendedProperties", multis)):
            if ids:
                filt = " or ".join(f"id eq '{i}'" for i in ids)
                parts.append(f"{name}($filter={filt})")
        return ",".join(parts)

    def _load_extended(self, stmt: SelectStatement,
                       items: list[tuple[Folder, dict[str, Any]]]) -> None:
        """Fetch the declared extended properties of the items (20 per $batch)."""
        if not stmt.extended or not items:
            return
        expand = self._extended_expand(stmt)
        reqs = [BatchRequest(f"x{i}", "GET",
                             f"{folder.items}/{item['id']}?$select=id&$expand={expand}")
                for i, (folder, item) in enumerate(items)]
        for res, (_, item) in zip(self.client.batch(reqs, mailbox=self.settings.email), items,
                                  strict=True):
            if res.ok and isinstance(res.body, dict):
                item["singleValueExtendedProperties"] = res.body.get(
                    "singleValueExtendedProperties") or []
                item["multiValueExtendedProperties"] = res.body.get(
                    "multiValueExtendedProperties") or []
            elif res.status != 404:
                raise ProviderError(f"exchange (Graph): reading extended properties failed: "
                                    f"{res.error()}")

    def _load_text_bodies(self, stmt: SelectStatement,
                          items: list[tuple[Folder, dict[str, Any]]]) -> None:
        reqs = [BatchRequest(f"t{i}", "GET", f"{folder.items}/{item['id']}?$select=body",
                             headers={"Prefer": PREFER_TEXT})
                for i, (folder, item) in enumerate(items)]
        for res, (_, item) in zip(self.client.batch(reqs, mailbox=self.settings.email), items,
                                  strict=True):
            if res.ok and isinstance(res.body, dict):
                item["@l2sync.textBody"] = res.body.get("body")

    def _records(self, stmt: SelectStatement, items: list[tuple[Folder, dict[str, Any]]],
                 *, where: bool = True) -> tuple[list[Record], list[str]]:
        mapping = self._fields(stmt)
        records: list[Record] = []
        out_of_scope: list[str] = []
        for folder, item in items:
            values: dict[str, Any] = {}
            for f in stmt.fields:
                if f.name == "FolderPath":
                    values[f.name] = folder.path or None
                    continue
                if f.name == "ItemClass":
                    values[f.name] = stmt.item_type.item_class
                    continue
                spec = mapping.get(f.name)
                try:
                    value = spec.read(item) if spec else None
                except (TypeError, ValueError, KeyError) as exc:
                    log.warning("cannot read %s of an item: %s", f.name, exc)
                    value = None
                # Exchange keeps no empty text (EWS reads it as null): neither do we
                values[f.name] = None if isinstance(value, str) and not value.strip() \
                    else value
            ext = {p.get("id", "").lower(): p.get("value")
                   for p in (item.get("singleValueExtendedProperties") or [])
                   + (item.get("multiValueExtendedProperties") or [])}
            for e in stmt.extended:
                try:
                    values[e.column] = extended_value_read(e, ext.get(extended_id(e).lower()))
                except (TypeError, ValueError):
                    values[e.column] = None
            key = str(item["id"])
            if where and not matches(stmt, mapping, item, values):
                out_of_scope.append(key)
                continue
            records.append(Record(key, item.get("@odata.etag") or item.get("changeKey"),
                                  parse_datetime(item.get("lastModifiedDateTime")), values))
        return records, out_of_scope

    # -- probe -------------------------------------------------------------------------------

    def probe(self, stmt: SelectStatement, cursor: str | None = None) -> str:
        """One page of one item per folder from the stored delta links (nothing stored)."""
        if is_directory(stmt):
            return self.directory.probe(stmt, cursor)
        folders = self.folders(stmt)
        links: dict[str, str] = {}
        if cursor:
            try:
                links = dict(json.loads(cursor).get("links") or {})
            except (ValueError, AttributeError):
                links = {}
        parts: list[Any] = []
        for folder in folders:
            link = links.get(folder.id)
            if link:
                try:
                    page = self._get(link, headers={"Prefer": "odata.maxpagesize=1"})
                except GraphError as exc:
                    if exc.status != 410:
                        raise
                    parts.append(["resync", folder.id])
                    continue
                entries = page.get("value", [])
                if not entries:
                    parts.append(["same", link])
                else:
                    e = entries[0]
                    parts.append(["changed", e.get("id"), e.get("@odata.etag"),
                                  "@removed" in e, bool(page.get("@odata.nextLink"))])
            else:
                params: dict[str, Any] = {"$top": 1, "$select": "id,lastModifiedDateTime",
                                          "$orderby": "lastModifiedDateTime desc"}
                if stmt.item_type.name == "CalendarItem":
                    start, end = self._calendar_window(stmt, None)
                    params = {"$top": 1, "startDateTime": format_datetime(start),
                              "endDateTime": format_datetime(end)}
                if stmt.item_type.name == "Task":
                    params = {"$top": 1}
                page = self._get(folder.list_path, params=params)
                first = (page.get("value") or [{}])[0]
                parts.append(["top", first.get("id"), first.get("lastModifiedDateTime")])
        return "graph:" + hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]

    # -- writes ------------------------------------------------------------------------------

    def _items_path(self, stmt: SelectStatement, folders: list[Folder]) -> str:
        """The prefix that addresses an item by id: the folder's, or the mailbox-wide
        collection for a scope of several folders."""
        target = folders[0]
        if len(folders) == 1:
            return target.items
        wide = MAILBOX_WIDE.get(stmt.item_type.name)
        return f"{self.user}/{wide}" if wide else target.items

    def apply(self, stmt: SelectStatement, changes: Sequence[Change], *,
              created: CreatedCallback | None = None) -> list[Outcome]:
        """Inserts first, in $batch requests of 20 (``created`` after each response), then
        updates and deletes through $batch; one Outcome per change."""
        folders = self.folders(stmt)
        target = folders[0]
        mapping = self._fields(stmt)
        kind = stmt.item_type.name
        items = self._items_path(stmt, folders)
        current = self._current(stmt, items, changes)
        outcomes: dict[int, Outcome] = {}
        inserts: list[tuple[int, BatchRequest]] = []
        others: list[tuple[int, BatchRequest]] = []
        for i, ch in enumerate(changes):
            rid = f"w{i}"
            try:
                if ch.op == "delete":
                    req = BatchRequest(rid, "DELETE", f"{items}/{ch.key}",
                                       headers=self._if_match(ch))
                else:
                    if kind == "Message" and ch.op == "insert":
                        raise ValueError("new messages cannot be created through Graph "
                                         "(read, update and delete only)")
                    body = self._body(stmt, mapping, ch, current.get(ch.key or "", {}))
                    if ch.op == "insert":
                        if ch.stamp and self.stamps_supported(stmt):
                            body.setdefault("singleValueExtendedProperties", []).append(
                                {"id": GRAPH_ID, "value": check_stamp(ch.stamp)})
                        req = BatchRequest(rid, "POST", target.create, body=body)
                    else:
                        req = BatchRequest(rid, "PATCH", f"{items}/{ch.key}",
                                           body=body, headers=self._if_match(ch))
            except (ValueError, TypeError, KeyError) as exc:
                outcomes[i] = Outcome(ch.ref, False, key=ch.key, error=str(exc))
                continue
            (inserts if ch.op == "insert" else others).append((i, req))
        for start in range(0, len(inserts), BATCH_LIMIT):
            chunk = inserts[start:start + BATCH_LIMIT]
            # one $batch at a time: its created items are reported before the next request
            results = self.client.batch([r for _, r in chunk], mailbox=self.settings.email,
                                        concurrency=1)
            made: list[Outcome] = []
            for (i, _req), res in zip(chunk, results, strict=True):
                outcomes[i] = self._outcome(changes[i], res)
                if outcomes[i].ok:
                    made.append(outcomes[i])
            if created is not None and made:
                try:
                    created(made)
                except BaseException:
                    self._undo(items, made)
                    raise
        if others:
            results = self.client.batch([r for _, r in others], mailbox=self.settings.email)
            for (i, _req), res in zip(others, results, strict=True):
                outcomes[i] = self._outcome(changes[i], res)
        return [outcomes[i] for i in range(len(changes))]

    def _undo(self, items: str, made: Sequence[Outcome]) -> None:
        """Delete items whose creation the caller could not record (best effort: the
        caller's exception is what the run reports; the stamp finds leftovers)."""
        reqs = [BatchRequest(f"u{i}", "DELETE", f"{items}/{o.key}")
                for i, o in enumerate(made) if o.key]
        try:
            self.client.batch(reqs, mailbox=self.settings.email)
        except Exception:  # noqa: BLE001, S110
            pass

    # -- lookup and stamps -------------------------------------------------------------------

    def _real_id(self, name: str, collection: str) -> str | None:
        """The id of a folder known by its well-known name (None when the server does not
        resolve the name)."""
        cache = f"{collection}/{name}"
        if cache not in self._real_ids:
            try:
                got = self._get(f"{self.user}/{collection}/{name}", params={"$select": "id"})
                self._real_ids[cache] = str(got.get("id")) if got.get("id") else None
            except GraphError as exc:
                if exc.status not in {400, 404}:
                    raise
                self._real_ids[cache] = None
        return self._real_ids[cache]

    def _folder_of(self, stmt: SelectStatement, folders: list[Folder],
                   item: dict[str, Any]) -> Folder | None:
        """The scope folder an item is in (None: it is elsewhere, e.g. in Deleted Items)."""
        kind = stmt.item_type.name
        parent = item.get("parentFolderId")
        if kind not in {"Contact", "Message"} or not parent:
            return folders[0]
        collection = "contactFolders" if kind == "Contact" else "mailFolders"
        unresolved: Folder | None = None
        for folder in folders:
            real = folder.id
            if folder.id.lower() in {"contacts", *MAIL_FOLDER_NAMES}:
                real = self._real_id(folder.id, collection) or ""
                if not real:
                    unresolved = folder
            if real and real == parent:
                return folder
        if unresolved is not None and parent != self._real_id("deleteditems", "mailFolders"):
            # the server does not name the default folder: anything but Deleted Items
            known = {f.id for f in folders}
            return unresolved if parent not in known else None
        return None

    def lookup(self, stmt: SelectStatement, keys: Sequence[str]) -> pd.DataFrame:
        """GET of each key in $batch requests of 20; an item counts when it is in one of
        the scope's folders. WHERE, TOP and the calendar window do not apply."""
        if is_directory(stmt):
            return self.directory.lookup(stmt, keys)
        if not keys:
            return records_frame(stmt, [])
        folders = self.folders(stmt)
        kind = stmt.item_type.name
        base = self._items_path(stmt, folders)
        delta_text, separate_text = self._body_modes(stmt)
        headers = {"Prefer": PREFER_UTC + (", " + PREFER_TEXT if delta_text else "")}
        query = self._event_query(stmt) if kind == "CalendarItem" else ""
        if kind in {"Contact", "Message"}:
            query = "?$select=" + ",".join(sorted({*self._select(stmt), "parentFolderId"}))
        reqs = [BatchRequest(f"l{i}", "GET", f"{base}/{key}{query}", headers=headers)
                for i, key in enumerate(keys)]
        try:
            results = self.client.batch(reqs, mailbox=self.settings.email)
        except GraphError as exc:
            raise self._mailbox_error(exc) from exc
        pairs: list[tuple[Folder, dict[str, Any]]] = []
        for res in results:
            if res.status in {400, 404}:  # gone (or an id this mailbox never had)
                continue
            if not res.ok or not isinstance(res.body, dict):
                raise ProviderError(f"exchange (Graph): looking items up failed: "
                                    f"{res.error()}")
            folder = self._folder_of(stmt, folders, res.body)
            if folder is not None:
                pairs.append((folder, res.body))
        self._load_extended(stmt, pairs)
        if separate_text:
            self._load_text_bodies(stmt, pairs)
        records, _ = self._records(stmt, pairs, where=False)
        return records_frame(stmt, records)

    def find_stamps(self, stmt: SelectStatement, stamps: Sequence[str]) -> dict[str, str]:
        """One filtered GET per folder and stamp
        (``singleValueExtendedProperties/Any(ep: ep/id eq ... and ep/value eq ...)``), 20
        per $batch."""
        folders = self.folders(stmt)
        kind = stmt.item_type.name
        if kind == "CalendarItem":  # the calendarView needs a window; events do not
            collections = [f"{self.user}/events"]
        else:
            collections = [f.list_path for f in folders]
        reqs: list[BatchRequest] = []
        asked: list[str] = []
        for coll in collections:
            for stamp in stamps:
                value = check_stamp(stamp).replace("'", "''")
                filt = (f"singleValueExtendedProperties/Any(ep: ep/id eq '{GRAPH_ID}' and "
                        f"ep/value eq '{value}')")
                reqs.append(BatchRequest(f"s{len(reqs)}", "GET",
                                         f"{coll}?$filter={quote(filt, safe='')}&$select=id"))
                asked.append(stamp)
        try:
            results = self.client.batch(reqs, mailbox=self.settings.email)
        except GraphError as exc:
            raise self._mailbox_error(exc) from exc
        found: dict[str, str] = {}
        for stamp, res in zip(asked, results, strict=True):
            if not res.ok or not isinstance(res.body, dict):
                raise ProviderError(f"exchange (Graph): finding stamped items failed: "
                                    f"{res.error()}")
            for item in res.body.get("value") or []:
                if item.get("id"):
                    found.setdefault(stamp, str(item["id"]))
        return found

    @staticmethod
    def _if_match(ch: Change) -> dict[str, str]:
        return {"If-Match": ch.version} if ch.version else {}

    @staticmethod
    def _outcome(ch: Change, res: BatchResult) -> Outcome:
        body = res.body if isinstance(res.body, dict) else {}
        if ch.op == "delete" and (res.ok or res.status == 404):
            return Outcome(ch.ref, True, key=ch.key)
        if res.ok:
            key = str(body.get("id")) if ch.op == "insert" else ch.key
            return Outcome(ch.ref, True, key=key, version=body.get("@odata.etag"))
        message = res.error()
        if res.status == 412:
            message = f"the item was changed by someone else since it was read; {message}"
        return Outcome(ch.ref, False, key=ch.key, error=message)

    def _current(self, stmt: SelectStatement, items: str,
                 changes: Sequence[Change]) -> dict[str, dict[str, Any]]:
        """Items whose update touches list/complex fields: their current values."""
        mapping = self._fields(stmt)
        keys = []
        props: set[str] = {"id"}
        for ch in changes:
            if ch.op != "update" or not ch.key:
                continue
            needs = [n for n in ch.values if (mapping.get(n) and mapping[n].needs_current)
                     or (stmt.item_type.name == "CalendarItem" and n in EVENT_TIME_FIELDS)]
            if needs:
                keys.append(ch.key)
                for n in needs:
                    props.update(mapping[n].select if n in mapping else ())
                if stmt.item_type.name == "CalendarItem":
                    props.update({"start", "end", "isAllDay", "originalStartTimeZone",
                                  "originalEndTimeZone", "recurrence"})
        if not keys:
            return {}
        select = ",".join(sorted(props))
        reqs = [BatchRequest(f"c{i}", "GET", f"{items}/{k}?$select={select}",
                             headers={"Prefer": PREFER_UTC})
                for i, k in enumerate(keys)]
        out = {}
        for k, res in zip(keys, self.client.batch(reqs, mailbox=self.settings.email),
                          strict=True):
            if res.ok and isinstance(res.body, dict):
                out[k] = res.body
        return out

    def _body(self, stmt: SelectStatement, mapping: dict[str, GraphField], ch: Change,
              current: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {}
        event_values: dict[str, Any] = {}
        for name, value in ch.values.items():
            ext = stmt.extended_by_column(name)
            if ext is not None:
                key = ("multiValueExtendedProperties" if ext.is_array
                       else "singleValueExtendedProperties")
                converted = extended_value_write(ext, value)
                if converted is None and ch.op == "insert":
                    continue
                body.setdefault(key, []).append({"id": extended_id(ext), "value": converted})
                continue
            if stmt.item_type.name == "CalendarItem" and name in EVENT_TIME_FIELDS:
                event_values[name] = value
                continue
            spec = mapping.get(name)
            if spec is None or spec.write is None:
                if value is None:
                    continue
                raise ValueError(f"{name} cannot be written through Graph"
                                 + ("" if spec else " (Graph has no such property)"))
            spec.write(body, value, current)
        if event_values:
            self._event_times(body, event_values, current, ch.op == "insert")
        if ch.op == "insert":
            body = {k: v for k, v in body.items() if v is not None}
        return body

    @staticmethod
    def _event_times(body: dict[str, Any], values: dict[str, Any], current: dict[str, Any],
                     insert: bool) -> None:
        """Start/End/IsAllDayEvent/time zones/Recurrence, which depend on each other."""
        all_day = values.get("IsAllDayEvent")
        if all_day is None and "IsAllDayEvent" not in values:
            all_day = bool(current.get("isAllDay"))
        all_day = bool(all_day) and str(all_day).lower() not in {"false", "0"}
        zone = values.get("StartTimeZone") or current.get("originalStartTimeZone")
        end_zone = values.get("EndTimeZone") or current.get("originalEndTimeZone") or zone
        if "IsAllDayEvent" in values:
            body["isAllDay"] = all_day

        def existing(which: str) -> Any:
            raw = current.get(which)
            if isinstance(raw, dict) and raw.get("dateTime"):
                return event_start(current, which)
            return None

        touched = {"Start", "End", "IsAllDayEvent", "StartTimeZone", "EndTimeZone"} & set(values)
        if touched:
            start = values["Start"] if "Start" in values else existing("start")
            end = values["End"] if "End" in values else existing("end")
            if start is not None:
                body["start"] = dtz_body(start, zone, all_day)
            if end is not None:
                body["end"] = dtz_body(end, end_zone if not all_day else zone, all_day)
        if "Recurrence" in values:
            body["recurrence"] = recurrence_to_graph(values["Recurrence"], zone)


class _RememberedFolderGone(Exception):
    """The delta link of a folder the cursor remembered answered 404: look it up again."""


def _fixed_scope(stmt: SelectStatement) -> bool:
    """True when the scope's folders cannot change between runs without their delta links
    failing (no subfolder recursion, no wildcards): the cursor may remember them."""
    return not (stmt.scope.recursive or stmt.scope.has_wildcards)


def _folders_of_state(state: dict[str, Any]) -> list[Folder] | None:
    """The folders a cursor remembers (None when it has none, or not in this form)."""
    raw = state.get("folders")
    if not isinstance(raw, list) or not raw:
        return None
    try:
        return [Folder(**{f.name: str(item[f.name]) for f in dataclasses.fields(Folder)})
                for item in raw]
    except (KeyError, TypeError):
        return None
