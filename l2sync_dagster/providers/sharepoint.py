"""The ``sharepoint`` provider: SharePoint Online lists through Microsoft Graph.

Connection string (Layer2 style)::

    URL=https://contoso.sharepoint.com/sites/sales/Lists/Customers/AllItems.aspx;
    Authentication=Microsoft_Modern;ClientId=...;TenantId=...;User=svc@contoso.com;
    Password=env:SP_PASSWORD

or client credentials (``ClientId``, ``TenantId``, ``ClientSecret=env:VAR`` or
``CertificatePath``). ``URL`` is a view URL (``.../Lists/Customers/AllItems.aspx``), a list URL
(``.../Lists/Customers``) or the site URL with ``List=<title>``. Shared Graph keys:
``GraphURL`` (default ``https://graph.microsoft.com/v1.0``), ``Authority``, ``CABundle``.
``PageSize`` (list items per Graph request when reading, 1 to 5000, default 1000) tunes reads;
``Timeout`` (seconds per HTTP request, default 120; sign-in included). The options are declared
in :class:`SharePointOptions`.

The query (``query:`` in the connection file) is optional: empty, or the title of the list
when the URL names only the site. A read always covers the whole list (``describe().scope`` is
``all``): a view in the URL only locates the list, its filter is not applied.

Fields are the list's columns (internal names) with types from their definitions; read-only
and hidden columns are read but refused as targets. Lookup and person columns appear twice:
``<Name>LookupId`` (the id, writable; a json list for multi-value columns) and ``<Name>``
(the display value, read-only). The key is the list item id (``ID``), ``_version`` the item's
eTag and ``_modified`` its lastModifiedDateTime. Reads use the list-item delta query: a full
read is a delta round from scratch, an incremental read follows the stored delta link (a 410
falls back to a complete read). Writes go through ``$batch`` (20 per batch) with ``If-Match``
on updates and deletes, so a concurrent edit is a per-record error, not a lost update.
``apply(..., created=...)`` hands over the new item ids after each ``$batch`` answer. SharePoint
makes item ids and a list has no hidden field a client may stamp (only a column someone adds to
the list could hold one), so the provider offers no ``stamps``; ``lookup`` fetches items by id.
"""

import hashlib
import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, unquote, urlsplit

from l2sync_dagster.providers.base import (
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
from l2sync_dagster.providers.graph.batch import MAX_BATCH, BatchRequest, BatchResult
from l2sync_dagster.providers.graph.client import GraphClient, GraphError
from l2sync_dagster.providers.graph.values import (
    build_frame,
    format_datetime,
    format_value,
    parse_datetime,
    parse_value,
)
from l2sync_dagster.providers.microsoft_options import GraphSignIn
from l2sync_dagster.providers.options import ProviderOptions, option
from l2sync_dagster.spec.connection_string import ConnectionString, ConnectionStringError

log = logging.getLogger("l2sync.providers.sharepoint")

LABEL = "sharepoint"
#: what the app registration needs (API, delegated, application), named in sign-in errors
GRAPH_PERMISSIONS = ("Microsoft Graph", "Sites.ReadWrite.All", "Sites.ReadWrite.All (or "
                     "Sites.Selected with write access granted to the site)")
KEY_FIELD = "ID"
#: how many changes the sync hands over per apply() (sent as $batch calls of 20)
APPLY_CHUNK = 200
#: columns that exist on every list but are not data (never selected, never mapped)
SKIP_COLUMNS = frozenset({"ContentType", "Attachments", "_UIVersionString", "Edit",
                          "LinkTitleNoMenu", "LinkTitle", "DocIcon", "ItemChildCount",
                          "FolderChildCount", "_ComplianceFlags", "_ComplianceTag",
                          "_ComplianceTagWrittenTime", "_ComplianceTagUserId",
                          "AppAuthor", "AppEditor", "_IsRecord"})
HONOR_NON_INDEXED = "HonorNonIndexedQueriesWarningMayFailRandomly"


class SharePointOptions(GraphSignIn):
    """The ``sharepoint`` provider's connection-string options (and the Graph sign-in)."""

    provider: ClassVar[str] = LABEL
    url: str | None = option("URL", "a list view URL (`.../Lists/Customers/AllItems.aspx`), "
                             "a list URL, or the site URL with List=", required=True)
    list_title: str | None = option("List", "title of the list when URL names only the site")
    page_size: int = option("PageSize", "list items per Graph request when reading", 1000,
                            low=1, high=5000)


DEFAULT_PAGE_SIZE: int = SharePointOptions.default("PageSize")


@dataclass(frozen=True)
class Column:
    """One field of the list as the provider reads and writes it."""

    name: str  # the field name in the RecordFrame (and in Graph's fields)
    type: str
    read_only: bool
    hidden: bool = False
    multi: bool = False
    kind: str = "plain"  # plain | lookupId | lookupValue
    source: str = ""  # the column's internal name (for lookup pairs)


@dataclass
class ListRef:
    """A resolved list: site id, list id, columns by field name."""

    site_id: str
    list_id: str
    title: str
    web_url: str
    columns: dict[str, Column] = field(default_factory=dict)

    @property
    def base(self) -> str:
        """The list's path relative to GraphURL."""
        return f"/sites/{self.site_id}/lists/{self.list_id}"


def column_type(definition: dict[str, Any]) -> tuple[str, str, bool]:
    """(canonical type, Graph facet name, multi-valued) of a columnDefinition."""
    if "boolean" in definition:
        return "boolean", "boolean", False
    if "currency" in definition:
        return "decimal", "currency", False
    if "number" in definition:
        return "float", "number", False
    if "dateTime" in definition:
        fmt = (definition.get("dateTime") or {}).get("format")
        return ("date" if fmt == "dateOnly" else "datetime"), "dateTime", False
    if "lookup" in definition:
        multi = bool((definition.get("lookup") or {}).get("allowMultipleValues"))
        return "integer", "lookup", multi
    if "personOrGroup" in definition:
        multi = bool((definition.get("personOrGroup") or {}).get("allowMultipleSelection"))
        return "integer", "personOrGroup", multi
    if "choice" in definition:
        return "string", "choice", False
    if "calculated" in definition:
        out = (definition.get("calculated") or {}).get("outputType")
        return {"number": "float", "boolean": "boolean", "dateTime": "datetime",
                "currency": "decimal"}.get(out or "", "string"), "calculated", False
    if "hyperlinkOrPicture" in definition or "geolocation" in definition \
            or "term" in definition or "thumbnail" in definition:
        return "json", next(k for k in ("hyperlinkOrPicture", "geolocation", "term",
                                         "thumbnail") if k in definition), False
    return "string", "text", False


def parse_url(url: str, list_title: str | None) -> tuple[str, str, str | None]:
    """(hostname, server-relative site path, list name or None) from a Layer2 URL."""
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ConnectionStringError(f"{LABEL}: URL must be an https:// SharePoint URL, not "
                                    f"{url!r}")
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if segments and segments[-1].lower().endswith(".aspx"):
        segments = segments[:-1]
        if segments and segments[-1].lower() == "forms":
            segments = segments[:-1]  # a library view: .../<Library>/Forms/AllItems.aspx
            name = segments.pop() if segments else None
            return parts.hostname, "/" + "/".join(segments), list_title or name
    low = [s.lower() for s in segments]
    if "lists" in low:
        i = low.index("lists")
        name = segments[i + 1] if i + 1 < len(segments) else None
        return parts.hostname, "/" + "/".join(segments[:i]), list_title or name
    return parts.hostname, "/" + "/".join(segments), list_title


class SharePointProvider:
    """SharePoint Online lists through Microsoft Graph (see the module docstring)."""

    name: ClassVar[str] = "sharepoint"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {"lookup", "probe", "stats", "web_link", "close"})

    options: ClassVar[type[ProviderOptions]] = SharePointOptions

    def __init__(self, client: GraphClient, url: str, list_title: str | None,
                 page_size: int = DEFAULT_PAGE_SIZE) -> None:
        self.client = client
        self.url = url
        self.hostname, self.site_path, self.list_name = parse_url(url, list_title)
        self.page_size = page_size
        self._site_id: str | None = None
        self._lists: dict[str, ListRef] = {}

    def __repr__(self) -> str:
        return f"SharePointProvider({self.url!r}, list={self.list_name!r})"

    @classmethod
    def from_connection_string(cls, text: str | ConnectionString, *,
                               base_dir: Path | None = None) -> "SharePointProvider":
        """Parse the connection string; ConnectionStringError naming a bad or missing key."""
        cs = text if isinstance(text, ConnectionString) else ConnectionString(text, label=LABEL)
        opts: SharePointOptions = SharePointOptions.parse(cs)
        client = GraphClient.from_connection_string(cs, base_dir=base_dir,
                                                    permissions=GRAPH_PERMISSIONS)
        return cls(client, opts.url, opts.list_title, opts.page_size)

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()

    def stats(self) -> dict[str, float]:
        """HTTP requests sent and seconds waited on throttling (run metadata)."""
        return self.client.stats()

    # -- resolution --------------------------------------------------------------------------

    def _site(self) -> str:
        if self._site_id is None:
            path = self.site_path.rstrip("/")
            target = (f"/sites/{self.hostname}:{quote(path)}" if path
                      else f"/sites/{self.hostname}")
            try:
                site = self.client.get(target, params={"$select": "id,webUrl,displayName"})
            except GraphError as exc:
                if exc.status == 404:
                    raise ProviderError(f"{LABEL}: site {self.hostname}{path or '/'} not found "
                                        f"({exc.code}: {exc.graph_message})") from exc
                raise
            self._site_id = str(site["id"])
        return self._site_id

    def _list(self, query: Query) -> ListRef:
        title = (query.text or "").strip() or self.list_name
        if not title:
            raise ProviderError(f"{LABEL}: no list named: give a list URL "
                                "(.../Lists/<name>/AllItems.aspx), List=<title>, or the title "
                                "as the query")
        cached = self._lists.get(title.lower())
        if cached is not None:
            return cached
        site = self._site()
        lists = list(self.client.items(f"/sites/{site}/lists",
                                       params={"$select": "id,name,displayName,webUrl"}))
        low = title.lower()
        found = None
        for lst in lists:
            url_name = unquote(str(lst.get("webUrl", "")).rstrip("/").rsplit("/", 1)[-1])
            if low in {str(lst.get("displayName", "")).lower(), str(lst.get("name", "")).lower(),
                       url_name.lower(), str(lst.get("id", "")).lower()}:
                found = lst
                break
        if found is None:
            names = sorted(str(x.get("displayName")) for x in lists)
            raise ProviderError(f"{LABEL}: list {title!r} not found in site "
                                f"{self.hostname}{self.site_path}; lists: {', '.join(names)}")
        ref = ListRef(site, str(found["id"]), str(found.get("displayName") or title),
                      str(found.get("webUrl") or ""))
        ref.columns = self._columns(ref)
        self._lists[title.lower()] = ref
        return ref

    def _columns(self, ref: ListRef) -> dict[str, Column]:
        cols: dict[str, Column] = {}
        for definition in self.client.items(f"{ref.base}/columns"):
            name = str(definition.get("name"))
            if not name or name in SKIP_COLUMNS:
                continue
            type_, facet, multi = column_type(definition)
            read_only = bool(definition.get("readOnly")) or facet == "calculated"
            hidden = bool(definition.get("hidden"))
            if facet in {"lookup", "personOrGroup"}:
                cols[f"{name}LookupId"] = Column(f"{name}LookupId", "json" if multi else type_,
                                                 read_only or hidden, hidden, multi,
                                                 "lookupId", name)
                cols[name] = Column(name, "json" if multi else "string", True, hidden, multi,
                                    "lookupValue", name)
            else:
                cols[name] = Column(name, type_, read_only or hidden, hidden, False, "plain",
                                    name)
        if KEY_FIELD not in cols:
            cols[KEY_FIELD] = Column(KEY_FIELD, "integer", True)
        else:
            cols[KEY_FIELD] = Column(KEY_FIELD, "integer", True, cols[KEY_FIELD].hidden)
        return cols

    # -- contract ----------------------------------------------------------------------------

    def verify(self, query: Query) -> str:
        """Resolve site and list (one token, a few GETs); says what was found."""
        ref = self._list(query)
        return (f"SharePoint list {ref.title!r} ({len(ref.columns)} fields) in site "
                f"{self.hostname}{self.site_path} via {self.client.base_url}")

    def describe(self, query: Query) -> EntityDescription:
        """Fields from the list's column definitions; key ``ID`` (generated by SharePoint).

        The scope is always ``all``: the query only names the list, a view in the URL only
        locates the list (its filter is not applied) and no connection-string key restricts a
        read. SharePoint makes item ids and a list has no column for a hidden stamp unless a
        user creates one, so ``stamps`` is False."""
        ref = self._list(query)
        fields = tuple(FieldInfo(c.name, c.type, True, c.read_only, c.name != KEY_FIELD)
                       for c in ref.columns.values())
        return EntityDescription(fields, key=KEY_FIELD, key_generated=True, writable=True,
                                 modified="Modified" if "Modified" in ref.columns else None,
                                 scope="all", restriction=None, stamps=False)

    def max_batch_size(self) -> int:
        """Changes per apply() call (sent as $batch requests of 20, up to 4 at a time)."""
        return APPLY_CHUNK

    def _select(self, ref: ListRef) -> str:
        names = sorted({c.source if c.kind == "lookupValue" else c.name
                        for c in ref.columns.values() if c.name != KEY_FIELD})
        return ",".join(names)

    def _signature(self, ref: ListRef) -> str:
        return hashlib.sha1(f"{ref.list_id}|{self._select(ref)}".encode()).hexdigest()[:16]

    def read(self, query: Query, cursor: str | None = None,
             window: tuple[Any, Any] | None = None) -> ReadResult:
        """The list's items (all, or the changes since ``cursor``; ``window`` filters on
        ``query.window_field``)."""
        ref = self._list(query)
        if window is not None:
            return self._read_window(ref, query, window, cursor)
        expand = f"fields($select={self._select(ref)})"
        delta_link = None
        if cursor:
            try:
                state = json.loads(cursor)
                if state.get("sig") == self._signature(ref):
                    delta_link = state.get("delta")
                else:
                    log.info("the list's fields changed since the cursor; reading everything")
            except (ValueError, AttributeError):
                log.warning("ignoring a cursor that is not a sharepoint delta state")
        result = self.client.delta(f"{ref.base}/items/delta",
                                   params={"$expand": expand, "$top": self.page_size},
                                   delta_link=delta_link, mailbox=ref.site_id)
        frame = self._frame(ref, result.items)
        new_cursor = json.dumps({"delta": result.delta_link, "sig": self._signature(ref)})
        if result.full:
            return ReadResult(frame, complete=True, cursor=new_cursor)
        return ReadResult(frame, complete=False, deleted=[str(k) for k in result.removed],
                          cursor=new_cursor)

    def lookup(self, query: Query, keys: Sequence[str]) -> Any:
        """The items among ``keys`` that still exist in the list, with the same columns as
        :meth:`read`: one ``GET items/{id}`` per key, sent through ``$batch`` (20 per call).
        A key that is not an item id, or that the list answers 404 for, is not returned."""
        ref = self._list(query)
        expand = quote(f"fields($select={self._select(ref)})", safe="()$=,")
        wanted = [k for k in dict.fromkeys(str(k) for k in keys) if k.isdigit()]
        reqs = [BatchRequest(f"k{n}", "GET", f"{ref.base}/items/{k}?$expand={expand}")
                for n, k in enumerate(wanted)]
        results = self.client.batch(reqs, mailbox=ref.site_id) if reqs else []
        items = []
        for res in results:
            if res.ok and isinstance(res.body, dict):
                items.append(res.body)
            elif res.status != 404:
                raise ProviderError(f"{LABEL}: looking up items of {ref.title!r} failed: "
                                    f"{res.error()}", transient=res.status >= 500)
        return self._frame(ref, items)

    def _read_window(self, ref: ListRef, query: Query, window: tuple[Any, Any],
                     cursor: str | None) -> ReadResult:
        name = query.window_field or query.modified
        if not name:
            raise ProviderError(f"{LABEL}: a read window needs `window_field` in the connection")
        col = ref.columns.get(name) or next(
            (c for c in ref.columns.values() if c.name.lower() == name.lower()), None)
        if col is None or col.type not in {"datetime", "date"}:
            raise ProviderError(f"{LABEL}: window field {name!r} is not a date/time column of "
                                f"{ref.title!r}")
        start, end = window
        conditions = []
        if start is not None:
            conditions.append(f"fields/{col.name} ge '{format_datetime(start)}'")
        if end is not None:
            conditions.append(f"fields/{col.name} lt '{format_datetime(end)}'")
        params: dict[str, Any] = {"$expand": f"fields($select={self._select(ref)})",
                                  "$top": self.page_size}
        if conditions:
            params["$filter"] = " and ".join(conditions)
        items = list(self.client.items(f"{ref.base}/items", params=params,
                                       headers={"Prefer": HONOR_NON_INDEXED},
                                       mailbox=ref.site_id))
        frame = self._frame(ref, items)
        lo = parse_datetime(format_datetime(start)) if start is not None else None
        hi = parse_datetime(format_datetime(end)) if end is not None else None
        if len(frame):
            values = frame[col.name]
            keep = values.notna()
            if lo is not None:
                keep &= values >= (lo.date() if col.type == "date" else lo)
            if hi is not None:
                keep &= values < (hi.date() if col.type == "date" else hi)
            frame = frame[keep.astype(bool)]
        return ReadResult(frame, complete=False, cursor=cursor)

    def _frame(self, ref: ListRef, items: Sequence[dict[str, Any]]) -> Any:
        types = {c.name: c.type for c in ref.columns.values()}
        rows: list[dict[str, Any]] = []
        keys, modified, versions = [], [], []
        for item in items:
            fields = item.get("fields") or {}
            row: dict[str, Any] = {}
            for c in ref.columns.values():
                if c.name == KEY_FIELD:
                    row[c.name] = int(item["id"]) if str(item["id"]).isdigit() else None
                elif c.kind == "lookupValue":
                    row[c.name] = _lookup_display(fields.get(c.source), c.multi)
                elif c.kind == "lookupId":
                    row[c.name] = _lookup_id(fields, c)
                else:
                    try:
                        row[c.name] = parse_value(fields.get(c.name), c.type)
                    except (TypeError, ValueError):
                        row[c.name] = None
            rows.append(row)
            keys.append(str(item["id"]))
            modified.append(parse_datetime(item.get("lastModifiedDateTime")))
            versions.append(item.get("eTag") or item.get("@odata.etag"))
        return build_frame(rows, types, keys, modified, versions)

    def web_link(self, key: str) -> str | None:
        """The item's display form (``<list URL>/DispForm.aspx?ID=<id>``) once the list is
        resolved; None while none or several lists are."""
        refs = {ref.list_id: ref for ref in self._lists.values()}
        if len(refs) != 1:
            return None
        ref = next(iter(refs.values()))
        if not ref.web_url:
            return None
        return f"{ref.web_url.rstrip('/')}/DispForm.aspx?ID={quote(str(key))}"

    # -- sensors -----------------------------------------------------------------------------

    def probe(self, query: Query, cursor: str | None = None) -> str:
        """A cheap fingerprint: one delta page of one item from the stored delta link, or the
        list's newest item and last-modified time without a cursor."""
        ref = self._list(query)
        if cursor:
            try:
                link = json.loads(cursor).get("delta")
            except (ValueError, AttributeError):
                link = None
            if link:
                try:
                    page = self.client.get(link, params={"$top": 1}, mailbox=ref.site_id)
                except GraphError as exc:
                    if exc.status != 410:
                        raise
                    return "resync:" + _digest(cursor)
                entries = page.get("value", [])
                if not entries:
                    return "unchanged:" + _digest(link)
                first = entries[0]
                return "changed:" + _digest(json.dumps(
                    [first.get("id"), first.get("eTag"), "deleted" in first,
                     bool(page.get("@odata.nextLink"))], sort_keys=True))
        meta = self.client.get(ref.base, params={"$select": "id,lastModifiedDateTime"},
                               mailbox=ref.site_id)
        newest = self.client.get(f"{ref.base}/items",
                                 params={"$top": 1, "$orderby": "lastModifiedDateTime desc",
                                         "$select": "id,eTag,lastModifiedDateTime"},
                                 mailbox=ref.site_id).get("value", [])
        top = newest[0] if newest else {}
        return "list:" + _digest(json.dumps([meta.get("lastModifiedDateTime"), top.get("id"),
                                             top.get("eTag")], sort_keys=True))

    # -- writes ------------------------------------------------------------------------------

    def apply(self, query: Query, changes: Sequence[Change], *,
              created: CreatedCallback | None = None) -> list[Outcome]:
        """Inserts, updates (PATCH fields, If-Match) and deletes (If-Match) through $batch
        (20 per call, up to 4 calls in flight).

        ``created`` is called in the calling thread with the successful inserts of each
        ``$batch`` answer, in order. If it raises, the items that answer and the answers still
        in flight created are deleted again (best effort: they were never recorded) and the
        exception propagates."""
        ref = self._list(query)
        outcomes: dict[int, Outcome] = {}
        reqs: list[BatchRequest] = []
        index: dict[str, int] = {}
        for i, change in enumerate(changes):
            try:
                req = self._request(ref, change, f"r{i}")
            except (ValueError, TypeError, KeyError) as exc:
                outcomes[i] = Outcome(change.ref, False, key=change.key, error=str(exc))
                continue
            reqs.append(req)
            index[req.id] = i
        groups = [reqs[i:i + MAX_BATCH] for i in range(0, len(reqs), MAX_BATCH)]

        def send(group: list[BatchRequest]) -> list[BatchResult]:
            return self.client.batch(group, mailbox=ref.site_id, concurrency=1)

        def settle(results: list[BatchResult]) -> list[Outcome]:
            new = []
            for res in results:
                i = index[res.id]
                outcomes[i] = self._outcome(changes[i], res)
                if outcomes[i].ok and changes[i].op == "insert":
                    new.append(outcomes[i])
            return new

        failed: BaseException | None = None
        lost: BaseException | None = None
        with ThreadPoolExecutor(max_workers=max(1, min(4, len(groups)))) as pool:
            futures = [pool.submit(send, g) for g in groups]
            for fut in futures:
                # in order, in this thread: the callback never runs concurrently
                if failed is not None:
                    results = _quiet(fut)
                else:
                    try:
                        results = fut.result()
                    except ProviderError as exc:  # settle the other batches, then raise
                        lost = lost or exc
                        continue
                new = settle(results)
                if failed is not None:
                    self._undo_inserts(ref, new)
                    continue
                if created is not None and new:
                    try:
                        created(new)
                    except BaseException as exc:
                        failed = exc
                        for f in futures:
                            f.cancel()
                        self._undo_inserts(ref, new)
        if failed is not None:
            raise failed
        if lost is not None:
            raise lost
        return [outcomes[i] for i in range(len(changes))]

    def _outcome(self, change: Change, res: BatchResult) -> Outcome:
        body = res.body if isinstance(res.body, dict) else {}
        if change.op == "delete" and (res.ok or res.status == 404):
            return Outcome(change.ref, True, key=change.key)
        if res.ok and change.op == "insert":
            return Outcome(change.ref, True, key=str(body.get("id")),
                           version=body.get("eTag") or body.get("@odata.etag"))
        if res.ok:
            version = body.get("@odata.etag") or res.headers.get("ETag") \
                or res.headers.get("etag")
            return Outcome(change.ref, True, key=change.key, version=version)
        message = res.error()
        if res.status == 412:
            message = ("the item was changed by someone else since it was read "
                       f"(version {change.version}); {message}")
        return Outcome(change.ref, False, key=change.key, error=message)

    def _undo_inserts(self, ref: ListRef, new: Sequence[Outcome]) -> None:
        """Delete items this call created but could not record (best effort, logged)."""
        reqs = [BatchRequest(f"u{n}", "DELETE", f"{ref.base}/items/{o.key}")
                for n, o in enumerate(new) if o.key]
        if not reqs:
            return
        try:
            for res in self.client.batch(reqs, mailbox=ref.site_id):
                if not res.ok and res.status != 404:
                    log.error("%s: could not delete a created item again (%s); it was "
                              "created but not recorded", LABEL, res.error())
        except (ProviderError, GraphError) as exc:
            log.error("%s: could not delete %d created items again: %s", LABEL, len(reqs), exc)

    def _request(self, ref: ListRef, change: Change, rid: str) -> BatchRequest:
        headers = {"If-Match": change.version} if change.version else {}
        if change.op == "delete":
            if not change.key:
                raise ValueError("delete without a key")
            return BatchRequest(rid, "DELETE", f"{ref.base}/items/{change.key}", headers=headers)
        fields = self._fields_body(ref, change.values, insert=change.op == "insert")
        if change.op == "insert":
            return BatchRequest(rid, "POST", f"{ref.base}/items", body={"fields": fields})
        if not change.key:
            raise ValueError("update without a key")
        return BatchRequest(rid, "PATCH", f"{ref.base}/items/{change.key}/fields", body=fields,
                            headers=headers)

    def _fields_body(self, ref: ListRef, values: dict[str, Any], *,
                     insert: bool) -> dict[str, Any]:
        body: dict[str, Any] = {}
        by_low = {name.lower(): c for name, c in ref.columns.items()}
        for name, value in values.items():
            col = ref.columns.get(name) or by_low.get(name.lower())
            if col is None:
                raise KeyError(f"{name!r} is not a column of list {ref.title!r}")
            if col.read_only:
                raise ValueError(f"column {col.name!r} of list {ref.title!r} is read-only"
                                 + (" (hidden)" if col.hidden else ""))
            formatted = format_value(value, col.type)
            if col.kind == "lookupId" and col.multi:
                ids = [int(v) for v in (formatted or [])]
                body[f"{col.name}@odata.type"] = "Collection(Edm.Int32)"
                body[col.name] = ids
            elif col.kind == "lookupId":
                body[col.name] = None if formatted is None else str(formatted)
            else:
                body[col.name] = formatted
        if insert:
            body = {k: v for k, v in body.items() if v is not None}
        return body


def _quiet(fut: Any) -> list[BatchResult]:
    """The results of a batch still in flight when the run is failing ([] if it failed too)."""
    if fut.cancelled():
        return []
    try:
        return fut.result()
    except Exception:  # the run already fails for another reason; this one is only logged
        log.exception("%s: a $batch in flight failed", LABEL)
        return []


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _lookup_display(value: Any, multi: bool) -> Any:
    """The display value(s) of a lookup/person field as Graph returns them."""
    if value is None:
        return None
    if isinstance(value, list):
        shown = [v.get("LookupValue") if isinstance(v, dict) else v for v in value]
        return json.dumps(shown, ensure_ascii=False, separators=(",", ":")) if shown else None
    if isinstance(value, dict):
        return value.get("LookupValue") or value.get("DisplayName") or value.get("Email")
    return str(value)


def _lookup_id(fields: dict[str, Any], col: Column) -> Any:
    value = fields.get(col.name)
    if value is None and isinstance(fields.get(col.source), list):
        value = [v.get("LookupId") for v in fields[col.source] if isinstance(v, dict)]
    if value is None:
        return None
    if col.multi:
        ids = [int(v) for v in (value if isinstance(value, list) else [value])]
        return json.dumps(ids, separators=(",", ":")) if ids else None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
