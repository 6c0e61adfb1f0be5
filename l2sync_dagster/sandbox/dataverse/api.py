"""The Web API resources: entity sets, single records, $metadata, EntityDefinitions, WhoAmI.

:class:`WebApi` executes one request (a top-level one or one inside a ``$batch``) against the
store and answers a :class:`Reply`; the caller holds the service lock, and a raised
:class:`DataverseError` is turned into Dataverse's error reply by :func:`error_reply`.
"""

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

from l2sync_dagster.sandbox.dataverse import changes, metadata, records
from l2sync_dagster.sandbox.dataverse.errors import DataverseError, not_found, odata_error
from l2sync_dagster.sandbox.dataverse.metadata import TABLES, Table
from l2sync_dagster.sandbox.dataverse.query import (
    LIST_OPTIONS,
    ONE_OPTIONS,
    Expand,
    parse_expand,
    parse_filter,
    parse_options,
    parse_orderby,
    parse_select,
    sort_rows,
)
from l2sync_dagster.sandbox.dataverse.store import Store

API = "/api/data/v9.2"
MAX_PAGE = 5000
JSON_TYPE = ("application/json; odata.metadata=minimal; odata.streaming=true; "
             "IEEE754Compatible=false; charset=utf-8")

Row = dict[str, Any]


@dataclass
class SubRequest:
    """A request relative to ``/api/data/v9.2/`` (``path`` without the prefix)."""

    method: str
    path: str
    raw_query: str
    headers: Any  # case-insensitive mapping
    body: bytes
    base_url: str
    content_ids: Callable[[str], str | None] | None = None


@dataclass
class Reply:
    """What one request answers: status, headers, JSON (or raw) body, operation name."""

    status: int
    body: Any = None  # JSON-able object, bytes, or None
    headers: dict[str, str] = field(default_factory=dict)
    operation: str = "unknown"
    entity_id: str | None = None  # "accounts(<guid>)" of a created or updated record

    def payload(self) -> bytes:
        """The body as bytes."""
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


def error_reply(exc: DataverseError, operation: str) -> Reply:
    """Dataverse's error answer."""
    return Reply(exc.status, exc.body(), {"Content-Type": JSON_TYPE, **exc.headers}, operation)


_RECORD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\(([^()]*)\)$")


class WebApi:
    """Executes Web API requests against a :class:`Store`.

    ``report`` receives problems found when checking outgoing bodies against the metadata
    (the service passes ``stats.invalid_response``).
    """

    def __init__(self, store: Store, report: Callable[[str], None]) -> None:
        self.store = store
        self.report = report

    def lookup(self, table: Table, key: str) -> Row | None:
        """The row ``key`` of ``table`` or None."""
        return self.store.get(table, key)

    # -- routing --------------------------------------------------------------------------

    def execute(self, req: SubRequest) -> Reply:
        """Answer one request; Dataverse errors become error replies."""
        operation = "unknown"
        try:
            operation, handler = self.route(req)
            return handler()
        except DataverseError as exc:
            return error_reply(exc, operation)

    def route(self, req: SubRequest) -> tuple[str, Callable[[], Reply]]:
        """(operation name, handler) for ``req``; 404/405 for unknown resources."""
        path = req.path.strip("/")
        m = req.method
        if path == "":
            return "servicedocument", lambda: self.service_document(req)
        if path == "$metadata":
            return "metadata", lambda: self.metadata(req)
        if path == "WhoAmI" or path == "WhoAmI()":
            return "whoami", lambda: self.whoami()
        if path.startswith("EntityDefinitions("):
            return "entitydefinitions", lambda: self.entity_definitions(req, path)
        if path in TABLES:
            table = TABLES[path]
            if m == "GET":
                return f"{path}.list", lambda: self.list_rows(req, table)
            if m == "POST":
                return f"{path}.create", lambda: self.create(req, table)
            raise DataverseError("MethodNotAllowed", f"The HTTP method '{m}' is not allowed on "
                                 f"the entity set '{path}'.")
        if path.endswith("/$count") and path[:-7] in TABLES:
            table = TABLES[path[:-7]]
            return f"{table.entity_set}.count", lambda: self.count(table)
        rec = _RECORD.match(path)
        if rec and rec.group(1) in TABLES:
            table = TABLES[rec.group(1)]
            key = _key(rec.group(2), table)
            op = {"GET": "get", "PATCH": "update", "DELETE": "delete"}.get(m)
            if op is None:
                raise DataverseError("MethodNotAllowed", f"The HTTP method '{m}' is not "
                                     "allowed on a single record here.")
            handler = {"get": self.get_one, "update": self.update, "delete": self.delete}[op]
            return f"{table.entity_set}.{op}", lambda: handler(req, table, key)
        segment = path.split("/")[0].split("(")[0]
        raise DataverseError("ResourceNotFound", f"Resource not found for the segment "
                             f"'{segment}'.")

    # -- documents ------------------------------------------------------------------------

    def service_document(self, req: SubRequest) -> Reply:
        """The service document: one entry per entity set."""
        body = {"@odata.context": f"{req.base_url}{API}/$metadata",
                "value": [{"name": s, "kind": "EntitySet", "url": s} for s in TABLES]}
        return Reply(200, body, {"Content-Type": JSON_TYPE}, "servicedocument")

    def metadata(self, req: SubRequest) -> Reply:
        """The CSDL document."""
        annotations = "annotations=true" in req.raw_query.lower()
        return Reply(200, metadata.csdl(annotations).encode(),
                     {"Content-Type": "application/xml; charset=utf-8", "OData-Version": "4.0"},
                     "metadata")

    def whoami(self) -> Reply:
        """``WhoAmI``: fixed ids of the demo organisation."""
        ids = {k: str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-dataverse:{k}"))
               for k in ("BusinessUnitId", "UserId", "OrganizationId")}
        return Reply(200, {"@odata.context": "$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                           **ids}, {"Content-Type": JSON_TYPE}, "whoami")

    def entity_definitions(self, req: SubRequest, path: str) -> Reply:
        """``EntityDefinitions(LogicalName='x')`` and ``.../Attributes``."""
        m = re.fullmatch(r"EntityDefinitions\(LogicalName='([a-z_]+)'\)(/Attributes)?", path)
        if not m:
            raise odata_error(f"Unsupported EntityDefinitions request '{path}'.")
        table = metadata.BY_LOGICAL.get(m.group(1))
        if table is None:
            raise DataverseError("ObjectDoesNotExist", f"Could not find entity with name "
                                 f"{m.group(1)}")
        options = parse_options(req.raw_query, frozenset({"$select", "$filter"}))
        base = f"{req.base_url}{API}/$metadata#EntityDefinitions('{table.logical}')"
        if m.group(2):
            items = metadata.attribute_definitions(table)
            body: Any = {"@odata.context": f"{base}/Attributes", "value": _pick(items, options)}
        else:
            body = {"@odata.context": f"{base}/$entity",
                    **_pick([metadata.entity_definition(table)], options)[0]}
        return Reply(200, body, {"Content-Type": JSON_TYPE}, "entitydefinitions")

    # -- reads ----------------------------------------------------------------------------

    def count(self, table: Table) -> Reply:
        """``<set>/$count``: the number of rows as plain text."""
        n = len(self.store.rows[table.entity_set])
        return Reply(200, str(n).encode(), {"Content-Type": "text/plain"},
                     f"{table.entity_set}.count")

    def list_rows(self, req: SubRequest, table: Table) -> Reply:
        """A collection read: query options, paging, change tracking."""
        op = f"{table.entity_set}.list"
        options = parse_options(req.raw_query, LIST_OPTIONS)
        prefer = records.parse_prefer(req.headers)
        page_size = _page_size(prefer)
        annotations = records.wanted_annotations(prefer)
        select = parse_select(options.get("$select"), table)
        applied = [f"odata.maxpagesize={page_size}"] if "odata.maxpagesize" in prefer else []
        if annotations:
            applied.append(f'odata.include-annotations="{prefer["odata.include-annotations"]}"')
        if "$deltatoken" in options or "odata.track-changes" in prefer:
            changes.require_tracking(table)
            changes.check_options(options)
            if "odata.track-changes" in prefer:
                applied.append("odata.track-changes")
            return self._delta(req, table, options, select, annotations, page_size, applied)
        where = parse_filter(options.get("$filter"), table)
        order = parse_orderby(options.get("$orderby"), table)
        expand = parse_expand(options.get("$expand"), table)
        rows = list(self.store.rows[table.entity_set].values())
        if where is not None:
            rows = [r for r in rows if where(r)]
        rows = sort_rows(rows, order, table)
        body: Row = {"@odata.context": _context(req, table, select)}
        count = options.get("$count")
        if count not in (None, "true", "false"):
            raise odata_error(f"'{count}' is not a valid count option.")
        if count == "true":
            body["@odata.count"] = min(len(rows), MAX_PAGE)
        top = options.get("$top")
        offset = _offset(options.get("$skiptoken"))
        if top is not None:
            if not top.isdigit():
                raise odata_error(f"Invalid value '{top}' for $top query option found.")
            # $top limits the whole answer: no server paging (and no nextLink) with it
            rows = rows[: min(int(top), MAX_PAGE)]
            page_size = MAX_PAGE
        page = rows[offset: offset + page_size]
        body["value"] = [self._render(table, r, select, annotations, expand) for r in page]
        if offset + page_size < len(rows):
            body["@odata.nextLink"] = _next_link(req, offset + page_size, page_size)
        return Reply(200, body, _json_headers(applied), op)

    def _delta(self, req: SubRequest, table: Table, options: dict[str, str],
               select: list[str] | None, annotations: list[str], page_size: int,
               applied: list[str]) -> Reply:
        token = options.get("$deltatoken")
        since = changes.parse_token(token, self.store) if token is not None else None
        offset, upto = _offset(options.get("$skiptoken")), _upto(options.get("$skiptoken"))
        upto = upto if upto is not None else self.store.version
        ctx = _context(req, table, select) + "/$delta"
        deleted_ctx = f"{req.base_url}{API}/$metadata#{table.entity_set}/$deletedEntity"
        if since is None:
            items = [(0, "row", r) for r in sort_rows(
                list(self.store.rows[table.entity_set].values()), [], table)]
        else:
            items = [i for i in changes.changes_since(self.store, table, since) if i[0] <= upto]
        page = items[offset: offset + page_size]
        value = []
        for _, kind, item in page:
            if kind == "row":
                value.append(self._render(table, item, select, annotations, []))
            else:
                value.append({"@odata.context": deleted_ctx, "id": item, "reason": "deleted"})
        body: Row = {"@odata.context": ctx, "value": value}
        if offset + page_size < len(items):
            body["@odata.nextLink"] = _next_link(req, offset + page_size, page_size, upto)
        else:
            keep = [p for p in req.raw_query.split("&")
                    if p and unquote_plus(p.partition("=")[0]) not in ("$deltatoken", "$skiptoken")]
            keep.append("$deltatoken=" + quote(changes.make_token(upto), safe=""))
            body["@odata.deltaLink"] = f"{req.base_url}{API}/{table.entity_set}?{'&'.join(keep)}"
        op = f"{table.entity_set}.{'delta' if since is not None else 'track'}"
        return Reply(200, body, _json_headers(applied), op)

    def get_one(self, req: SubRequest, table: Table, key: str) -> Reply:
        """One record; ``If-None-Match`` with its current ETag answers 304."""
        op = f"{table.entity_set}.get"
        options = parse_options(req.raw_query, ONE_OPTIONS)
        select = parse_select(options.get("$select"), table)
        expand = parse_expand(options.get("$expand"), table)
        row = self.lookup(table, key)
        if row is None:
            raise not_found(table.logical, key)
        inm = req.headers.get("if-none-match")
        if inm and _etag_matches(inm, row):
            return Reply(304, None, {"ETag": records.etag(row)}, op)
        prefer = records.parse_prefer(req.headers)
        annotations = records.wanted_annotations(prefer)
        body = {"@odata.context": _context(req, table, select) + "/$entity",
                **self._render(table, row, select, annotations, expand)}
        headers = _json_headers([])
        headers["ETag"] = records.etag(row)
        return Reply(200, body, headers, op)

    # -- writes ---------------------------------------------------------------------------

    def create(self, req: SubRequest, table: Table) -> Reply:
        """POST: 204 + ``OData-EntityId``, or 201 + the record with return=representation."""
        body = _json_body(req)
        values = records.parse_body(table, body, creating=True, key=None, lookup=self.lookup,
                                    content_ids=req.content_ids)
        key = values.pop(table.key, None) or str(uuid.uuid4())
        if self.lookup(table, key) is not None:
            raise DataverseError("DuplicateRecord", "A record with matching key values already "
                                 "exists.")
        row = self.store.insert(table, key, values)
        return self._written(req, table, row, created=True, op=f"{table.entity_set}.create")

    def update(self, req: SubRequest, table: Table, key: str) -> Reply:
        """PATCH: update, or upsert (create with this key) when the record does not exist and
        no ``If-Match`` is sent; ``If-None-Match: *`` makes it create-only."""
        row = self.lookup(table, key)
        if_match = req.headers.get("if-match")
        if_none = req.headers.get("if-none-match")
        if if_match is not None:
            if row is None:
                raise not_found(table.logical, key)
            if not _etag_matches(if_match, row):
                raise DataverseError("ConcurrencyVersionMismatch", "The version of the existing "
                                     "record doesn't match the RowVersion property provided.")
        if if_none is not None and if_none.strip() == "*" and row is not None:
            raise DataverseError("DuplicateRecord", "A record with matching key values already "
                                 "exists.")
        body = _json_body(req)
        values = records.parse_body(table, body, creating=row is None, key=key,
                                    lookup=self.lookup, content_ids=req.content_ids)
        values.pop(table.key, None)
        if row is None:
            row = self.store.insert(table, key, values)
            return self._written(req, table, row, created=True,
                                 op=f"{table.entity_set}.upsert")
        row = self.store.update(table, key, values)
        return self._written(req, table, row, created=False, op=f"{table.entity_set}.update")

    def delete(self, req: SubRequest, table: Table, key: str) -> Reply:
        """DELETE (``If-Match`` checked)."""
        row = self.lookup(table, key)
        if row is None:
            raise not_found(table.logical, key)
        if_match = req.headers.get("if-match")
        if if_match is not None and not _etag_matches(if_match, row):
            raise DataverseError("ConcurrencyVersionMismatch", "The version of the existing "
                                 "record doesn't match the RowVersion property provided.")
        self.store.delete(table, key)
        return Reply(204, None, {"OData-Version": "4.0"}, f"{table.entity_set}.delete")

    def _written(self, req: SubRequest, table: Table, row: Row, *, created: bool,
                 op: str) -> Reply:
        entity = f"{table.entity_set}({row[table.key]})"
        headers = {"OData-Version": "4.0", "OData-EntityId": f"{req.base_url}{API}/{entity}",
                   "ETag": records.etag(row)}
        prefer = records.parse_prefer(req.headers)
        if prefer.get("return") == "representation":
            options = parse_options(req.raw_query, ONE_OPTIONS)
            select = parse_select(options.get("$select"), table)
            expand = parse_expand(options.get("$expand"), table)
            body = {"@odata.context": _context(req, table, select) + "/$entity",
                    **self._render(table, row, select, records.wanted_annotations(prefer),
                                   expand)}
            headers.update(_json_headers(["return=representation"]))
            return Reply(201 if created else 200, body, headers, op, entity)
        return Reply(204, None, headers, op, entity)

    def _render(self, table: Table, row: Row, select: list[str] | None,
                annotations: list[str], expand: list[Expand]) -> Row:
        out = records.render(table, row, select, annotations, expand, self.lookup)
        for problem in records.check_rendered(table, out, expand):
            self.report(f"dataverse answered an invalid {table.logical}: {problem}")
        return out


# -- helpers ----------------------------------------------------------------------------------

def _key(text: str, table: Table) -> str:
    text = unquote(text)
    if text.startswith(f"{table.key}="):
        text = text[len(table.key) + 1:]
    if not metadata.is_guid(text):
        raise odata_error(f"Bad Request - Error in query syntax: '{text}' is not a valid key "
                          f"for {table.entity_set}.")
    return text.lower()


def _json_body(req: SubRequest) -> Any:
    ctype = (req.headers.get("content-type") or "").lower()
    if not req.body:
        raise odata_error("The request body is empty; a JSON object is expected.")
    if "json" not in ctype:
        raise odata_error(f"The content type '{ctype or 'none'}' is not supported; send "
                          "application/json.")
    try:
        return json.loads(req.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise odata_error(f"The request body is not valid JSON: {exc}") from None


def _page_size(prefer: dict[str, str]) -> int:
    raw = prefer.get("odata.maxpagesize")
    if raw is None:
        return MAX_PAGE
    if not raw.isdigit() or int(raw) < 1:
        raise odata_error(f"The value '{raw}' of odata.maxpagesize is not valid.")
    return min(int(raw), MAX_PAGE)


def _context(req: SubRequest, table: Table, select: list[str] | None) -> str:
    cols = f"({','.join(select)})" if select else ""
    return f"{req.base_url}{API}/$metadata#{table.entity_set}{cols}"


def _json_headers(applied: list[str]) -> dict[str, str]:
    headers = {"Content-Type": JSON_TYPE, "OData-Version": "4.0"}
    if applied:
        headers["Preference-Applied"] = ",".join(applied)
    return headers


_COOKIE = re.compile(r'<cookie pagenumber="(\d+)" offset="(\d+)"(?: upto="(\d+)")? />')


def _offset(skiptoken: str | None) -> int:
    if skiptoken is None:
        return 0
    m = _COOKIE.fullmatch(skiptoken)
    if not m:
        raise odata_error(f"The $skiptoken '{skiptoken}' is not valid.")
    return int(m.group(2))


def _upto(skiptoken: str | None) -> int | None:
    m = _COOKIE.fullmatch(skiptoken or "")
    return int(m.group(3)) if m and m.group(3) else None


def _next_link(req: SubRequest, offset: int, page_size: int, upto: int | None = None) -> str:
    keep = [p for p in req.raw_query.split("&")
            if p and unquote_plus(p.partition("=")[0]) != "$skiptoken"]
    page = offset // page_size + 1
    cookie = f'<cookie pagenumber="{page}" offset="{offset}"'
    cookie += f' upto="{upto}" />' if upto is not None else " />"
    keep.append("$skiptoken=" + quote(cookie, safe=""))
    return f"{req.base_url}{API}/{req.path.strip('/')}?{'&'.join(keep)}"


def _etag_matches(header: str, row: Row) -> bool:
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or records.etag(row) in tags or f'"{row["versionnumber"]}"' in tags


def _pick(items: list[Row], options: dict[str, str]) -> list[Row]:
    select = options.get("$select")
    if not select:
        return items
    names = [n.strip() for n in select.split(",")]
    unknown = [n for n in names if items and n not in items[0]]
    if unknown:
        raise odata_error(f"Could not find a property named '{unknown[0]}' on type "
                          "'Microsoft.Dynamics.CRM.AttributeMetadata'.")
    return [{n: i[n] for n in names} for i in items]
