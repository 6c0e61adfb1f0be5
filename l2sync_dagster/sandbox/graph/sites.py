"""SharePoint through Graph: sites (by id or ``{hostname}:/sites/{path}``), lists (by id or
display name), columns, list items with their open ``fields`` (checked against the list's
columns), item delta."""

import re
import uuid
from typing import Any

from l2sync_dagster.sandbox.graph.common import Ctx, GraphError, Kind, paged
from l2sync_dagster.sandbox.graph.delta import delta
from l2sync_dagster.sandbox.graph.query import parse_datetime
from l2sync_dagster.sandbox.graph.store import Collection, guid, now_iso
from l2sync_dagster.sandbox.service import Response

SITES = Kind("sites", "site", 100, 999)
LISTS = Kind("lists", "list", 100, 999)
COLUMNS = Kind("columns", "columnDefinition", 100, 999)
ITEMS = Kind("listItems", "listItem", 200, 5000, removed_style="deleted")

#: lookup ids of the site users (SharePoint's User Information List)
SITE_USERS = {"sync@sandbox.test": 7, "alice@sandbox.test": 8, "sales@sandbox.test": 9,
              "l2sync-sandbox": 1073741822}
COLUMN_TYPES = ("text", "number", "boolean", "dateTime", "choice", "lookup", "personOrGroup",
                "currency")
_FACETS: dict[str, dict[str, Any]] = {
    "text": {"allowMultipleLines": False, "appendChangesToExistingText": False,
             "linesForEditing": 0, "maxLength": 255},
    "number": {"decimalPlaces": "automatic", "displayAs": "number"},
    "boolean": {},
    "dateTime": {"displayAs": "default", "format": "dateTime"},
    "choice": {"allowTextEntry": False, "choices": [], "displayAs": "dropDownMenu"},
    "lookup": {"allowMultipleValues": False, "allowUnlimitedLength": False,
               "columnName": "Title", "listId": ""},
    "personOrGroup": {"allowMultipleSelection": False, "chooseFromType": "peopleOnly",
                      "displayAs": "account"},
    "currency": {"locale": "en-us"},
}
#: columns every list has (name, type, readOnly, hidden)
SYSTEM_COLUMNS = (("ID", "number", True, False), ("Created", "dateTime", True, False),
                  ("Modified", "dateTime", True, False), ("Author", "personOrGroup", True, False),
                  ("Editor", "personOrGroup", True, False),
                  ("ContentType", "text", True, True), ("Attachments", "boolean", True, False),
                  ("_UIVersionString", "text", True, True))
ITEM_CONTENT_TYPE = {"id": "0x0100A1B2C3D4E5F60718293A4B5C6D7E8F90", "name": "Item"}


def column_type(col: dict[str, Any]) -> str:
    """Which of :data:`COLUMN_TYPES` a column definition is."""
    return next((t for t in COLUMN_TYPES if t in col), "text")


def make_column(spec: dict[str, Any], *, system: bool = False) -> dict[str, Any]:
    """A columnDefinition from ``{"name", "type", "choices"?, "readOnly"?, "hidden"?,
    "required"?, "indexed"?, "lookupListId"?}`` or a Graph columnDefinition body."""
    ctype = spec.get("type") or next((t for t in COLUMN_TYPES if t in spec), None)
    if ctype not in COLUMN_TYPES:
        raise GraphError(400, "invalidRequest", f"Unsupported column type {ctype!r}; use one of "
                         f"{', '.join(COLUMN_TYPES)}.")
    name = spec.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise GraphError(400, "invalidRequest", f"Invalid column name {name!r}.")
    facet = dict(_FACETS[ctype])
    if isinstance(spec.get(ctype), dict):
        facet.update(spec[ctype])
    if ctype == "choice" and spec.get("choices"):
        facet["choices"] = list(spec["choices"])
    if ctype == "lookup" and spec.get("lookupListId"):
        facet["listId"] = spec["lookupListId"]
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, name)) if system else guid(),
            "name": name, "displayName": spec.get("displayName") or name,
            "description": spec.get("description", ""),
            "columnGroup": "Core Columns" if system else "Custom Columns",
            "enforceUniqueValues": False, "hidden": bool(spec.get("hidden", False)),
            "indexed": bool(spec.get("indexed", name in ("ID", "Created", "Modified"))),
            "readOnly": bool(spec.get("readOnly", False)),
            "required": bool(spec.get("required", False)), ctype: facet}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_fields(columns: dict[str, dict[str, Any]], fields: dict[str, Any], *,
                 writing: bool) -> list[str]:
    """Problems of a fieldValueSet against the list's columns (writes also refuse read-only
    columns)."""
    problems = []
    for name, value in fields.items():
        if "@" in name:
            continue
        if name == "id" and not writing:
            if not isinstance(value, str):
                problems.append("id: expected a string")
            continue
        col = columns.get(name)
        base = name[:-8] if name.endswith("LookupId") else None
        if col is None and base and base in columns \
                and column_type(columns[base]) in ("lookup", "personOrGroup"):
            col = columns[base]
            if writing and col["readOnly"]:
                problems.append(f"Field '{name}' is read-only")
            elif value is not None and not (isinstance(value, int) and not writing
                                            or isinstance(value, str) and value.isdigit()
                                            or isinstance(value, int) and writing):
                problems.append(f"Field '{name}': {value!r} is not a lookup id")
            continue
        if col is None:
            problems.append(f"Field '{name}' is not recognized")
            continue
        if writing and col["readOnly"]:
            problems.append(f"Field '{name}' is read-only")
            continue
        if value is None:
            if writing and col["required"]:
                problems.append(f"Field '{name}' is required")
            continue
        ctype = column_type(col)
        ok = True
        if ctype == "text":
            ok = isinstance(value, str) and len(value) <= col["text"].get("maxLength", 255)
        elif ctype in ("number", "currency"):
            ok = _is_number(value)
        elif ctype == "boolean":
            ok = isinstance(value, bool)
        elif ctype == "dateTime":
            try:
                ok = isinstance(value, str) and bool(parse_datetime(value))
            except ValueError:
                ok = False
        elif ctype == "choice":
            choice = col["choice"]
            ok = isinstance(value, str) and (choice.get("allowTextEntry")
                                             or value in choice.get("choices", []))
        elif ctype in ("lookup", "personOrGroup"):
            problems.append(f"Field '{name}' is a lookup: set '{name}LookupId' instead")
            continue
        if not ok:
            problems.append(f"Field '{name}': {value!r} is not a valid {ctype} value")
    return problems


# ---------------------------------------------------------------------- site/list helpers
def create_site(svc: Any, hostname: str, path: str, display_name: str) -> dict[str, Any]:
    """A site at ``https://{hostname}{path}`` (idempotent)."""
    sites = svc.store.collection("sites", "sites")
    ref = f"{hostname.lower()}:{path.rstrip('/').lower()}"
    with svc.store.lock:
        existing = sites.meta.setdefault("paths", {}).get(ref)
        if existing:
            return sites.items[existing]
        stamp = now_iso()
        site_id = f"{hostname},{guid()},{guid()}"
        entity = {"id": site_id, "name": path.rstrip("/").rsplit("/", 1)[-1],
                  "displayName": display_name, "description": "",
                  "webUrl": f"https://{hostname}{path}", "createdDateTime": stamp,
                  "lastModifiedDateTime": stamp, "siteCollection": {"hostname": hostname}}
        sites.meta["paths"][ref] = site_id
        svc.store.put(sites, entity)
        svc.store.collection(f"lists|{site_id}", "lists")
        return entity


def create_list(svc: Any, site: dict[str, Any], display_name: str,
                columns: list[dict[str, Any]]) -> dict[str, Any]:
    """A generic list with the system columns plus ``columns``."""
    lists = svc.store.collection(f"lists|{site['id']}", "lists")
    with svc.store.lock:
        if any(x["displayName"].lower() == display_name.lower() for x in lists.items.values()):
            raise GraphError(409, "nameAlreadyExists", f"A list named '{display_name}' already "
                             "exists on this site.")
        stamp = now_iso()
        list_id = guid()
        entity = {"id": list_id, "name": display_name.replace(" ", ""),
                  "displayName": display_name, "description": "",
                  "webUrl": f"{site['webUrl']}/Lists/{display_name.replace(' ', '')}",
                  "createdDateTime": stamp, "lastModifiedDateTime": stamp,
                  "eTag": f'"{list_id},1"',
                  "list": {"template": "genericList", "hidden": False,
                           "contentTypesEnabled": False},
                  "parentReference": {"siteId": site["id"]}}
        entity["@odata.etag"] = entity["eTag"]
        cols = svc.store.collection(f"columns|{list_id}", "columns")
        specs = [{"name": "Title", "type": "text", "required": False}]
        specs += [c for c in columns if c.get("name") != "Title"]
        for name, ctype, ro, hidden in SYSTEM_COLUMNS:
            svc.store.put(cols, make_column({"name": name, "type": ctype, "readOnly": ro,
                                             "hidden": hidden}, system=True))
        for spec in specs:
            if any(c["name"] == spec.get("name") for c in cols.items.values()):
                raise GraphError(400, "invalidRequest", f"Duplicate column {spec.get('name')}.")
            svc.store.put(cols, make_column(spec, system=spec.get("name") == "Title"))
        items = svc.store.collection(f"items|{list_id}", "items")
        items.meta.update({"next": 1, "site": site["id"]})
        svc.store.put(lists, entity)
        return entity


def columns_by_name(svc: Any, list_id: str) -> dict[str, dict[str, Any]]:
    """The list's columns by internal name."""
    cols = svc.store.collection(f"columns|{list_id}")
    return {c["name"]: c for c in cols.items.values()} if cols else {}


def _person(upn: str) -> dict[str, Any]:
    return {"user": {"displayName": upn.partition("@")[0].title(),
                     "id": str(uuid.uuid5(uuid.NAMESPACE_URL, upn))}}


def new_item(svc: Any, items: Collection, list_id: str, fields: dict[str, Any],
             author: str) -> dict[str, Any]:
    """A list item from checked fields; ID and system fields set by the server."""
    with svc.store.lock:
        n = items.meta["next"]
        items.meta["next"] = n + 1
    stamp = now_iso()
    etag = f'"{uuid.uuid4()},1"'
    lookup = str(SITE_USERS.get(author, 1073741823))
    stored = {k: v for k, v in fields.items() if "@" not in k}
    for k, v in list(stored.items()):
        if k.endswith("LookupId") and v is not None:
            stored[k] = str(v)
    stored.update({"ID": n, "Created": stamp, "Modified": stamp, "AuthorLookupId": lookup,
                   "EditorLookupId": lookup, "ContentType": "Item", "Attachments": False,
                   "_UIVersionString": "1.0"})
    site_id = items.meta.get("site", "")
    return {"id": str(n), "@odata.etag": etag, "eTag": etag, "createdDateTime": stamp,
            "lastModifiedDateTime": stamp, "webUrl": f"https://sandbox.sharepoint.com/"
            f"Lists/{list_id}/DispForm.aspx?ID={n}", "createdBy": _person(author),
            "lastModifiedBy": _person(author), "contentType": dict(ITEM_CONTENT_TYPE),
            "parentReference": {"id": list_id, "siteId": site_id},
            "sharepointIds": {"listId": list_id, "listItemId": str(n)}, "fields": stored}


def update_item(item: dict[str, Any], fields: dict[str, Any], editor: str) -> dict[str, Any]:
    """A new version of ``item`` with ``fields`` merged."""
    updated = dict(item)
    merged = dict(item["fields"])
    for k, v in fields.items():
        if "@" in k:
            continue
        merged[k] = str(v) if k.endswith("LookupId") and v is not None else v
    stamp = now_iso()
    version = int(item["eTag"].rsplit(",", 1)[1].rstrip('"')) + 1
    etag = f'"{item["eTag"][1:].split(",")[0]},{version}"'
    merged["Modified"] = stamp
    merged["EditorLookupId"] = str(SITE_USERS.get(editor, 1073741823))
    merged["_UIVersionString"] = f"{version}.0"
    updated.update({"fields": merged, "eTag": etag, "@odata.etag": etag,
                    "lastModifiedDateTime": stamp, "lastModifiedBy": _person(editor)})
    return updated


# ---------------------------------------------------------------------- routing
_SITE_PATH = re.compile(r"^([^/:]+):(/[^:]*?)(?::(/.*)?)?$")


def route_sites(ctx: Ctx, rest_path: str) -> Response:
    """Everything under ``/sites/``; ``rest_path`` is the decoded path after it."""
    svc = ctx.service
    sites = svc.store.collection("sites", "sites")
    m = _SITE_PATH.match(rest_path)
    if m:
        host, path, tail = m.group(1), m.group(2), m.group(3) or ""
        site_id = sites.meta.get("paths", {}).get(f"{host.lower()}:{path.rstrip('/').lower()}")
        if site_id is None:
            raise GraphError(404, "itemNotFound", "Requested site could not be found")
        rest = [p for p in tail.split("/") if p]
    else:
        parts = [p for p in rest_path.split("/") if p]
        if not parts:
            if ctx.method != "GET":
                raise GraphError(405, "invalidRequest", "Sites are created with the control API.")
            with svc.store.lock:
                entities = list(sites.items.values())
            return paged(ctx, SITES, entities, svc.emitter(ctx, SITES), "sites")
        site_id, rest = parts[0], parts[1:]
        if site_id == "root":
            site_id = next(iter(sites.items), "")
    site = sites.items.get(site_id)
    if site is None:
        raise GraphError(404, "itemNotFound", "Requested site could not be found")
    if not rest:
        return Response.json(svc.emitter(ctx, SITES)(site), operation="sites.get")
    if rest[0] != "lists":
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{rest[0]}'.")
    return _lists(ctx, site, rest[1:])


def _lists(ctx: Ctx, site: dict[str, Any], rest: list[str]) -> Response:
    svc = ctx.service
    lists = svc.store.collection(f"lists|{site['id']}", "lists")
    context = f"sites('{site['id']}')/lists"
    if not rest:
        if ctx.method == "GET":
            with svc.store.lock:
                entities = list(lists.items.values())
            return paged(ctx, LISTS, entities, svc.emitter(ctx, LISTS), context)
        if ctx.method == "POST":
            body = svc.checked_body(ctx, "list")
            name = body.get("displayName")
            if not name:
                raise GraphError(400, "invalidRequest", "displayName is required.")
            columns = body.get("columns") or []
            entity = create_list(svc, site, name, columns)
            return Response.json(svc.emitter(ctx, LISTS)(entity), 201, operation="lists.create")
        raise GraphError(405, "invalidRequest", f"{ctx.method} is not supported here.")
    ref = rest[0]
    with svc.store.lock:
        lst = lists.items.get(ref) or next(
            (x for x in lists.items.values() if x["displayName"].lower() == ref.lower()
             or x["name"].lower() == ref.lower()), None)
    if lst is None:
        raise GraphError(404, "itemNotFound", "The specified list was not found")
    if len(rest) == 1:
        if ctx.method != "GET":
            raise GraphError(405, "invalidRequest", f"{ctx.method} is not supported here.")
        return Response.json(svc.emitter(ctx, LISTS)(lst), operation="lists.get")
    if rest[1] == "columns":
        return _columns(ctx, lst, rest[2:])
    if rest[1] == "items":
        return _items(ctx, lst, rest[2:], f"{context}('{lst['id']}')/items")
    raise GraphError(400, "BadRequest", f"Resource not found for the segment '{rest[1]}'.")


def _columns(ctx: Ctx, lst: dict[str, Any], rest: list[str]) -> Response:
    svc = ctx.service
    cols = svc.store.collection(f"columns|{lst['id']}", "columns")
    emit = svc.emitter(ctx, COLUMNS)
    if not rest:
        if ctx.method == "GET":
            with svc.store.lock:
                entities = list(cols.items.values())
            return paged(ctx, COLUMNS, entities, emit, f"lists('{lst['id']}')/columns")
        if ctx.method == "POST":
            body = svc.checked_body(ctx, "columnDefinition")
            if any(c["name"] == body.get("name") for c in cols.items.values()):
                raise GraphError(409, "nameAlreadyExists", f"A column named '{body.get('name')}'"
                                 " already exists.")
            col = make_column(body)
            svc.store.put(cols, col)
            return Response.json(emit(col), 201, operation="columns.create")
    elif len(rest) == 1 and ctx.method == "GET":
        col = cols.items.get(rest[0]) or next(
            (c for c in cols.items.values() if c["name"] == rest[0]), None)
        if col is None:
            raise GraphError(404, "itemNotFound", "The column was not found")
        return Response.json(emit(col), operation="columns.get")
    raise GraphError(405, "invalidRequest", f"{ctx.method} is not supported here.")


def _check_filter_indexed(ctx: Ctx, columns: dict[str, dict[str, Any]]) -> None:
    text = ctx.opt("filter") or ""
    honored = "honornonindexedquerieswarningmayfailrandomly" in ctx.headers.get(
        "prefer", "").lower()
    for name in re.findall(r"fields/(\w+)", text):
        col = columns.get(name) or columns.get(name[:-8] if name.endswith("LookupId") else "")
        if col is None:
            raise GraphError(400, "invalidRequest", f"Field '{name}' is not recognized")
        if not col["indexed"] and not honored:
            raise GraphError(400, "invalidRequest", f"Field '{name}' cannot be referenced in "
                             "filter or orderby as it is not indexed. Provide the 'Prefer: "
                             "HonorNonIndexedQueriesWarningMayFailRandomly' header to allow "
                             "this, but be warned that such queries may fail on large lists.")


def _items(ctx: Ctx, lst: dict[str, Any], rest: list[str], context: str) -> Response:
    svc = ctx.service
    items = svc.store.collection(f"items|{lst['id']}", "items")
    columns = columns_by_name(svc, lst["id"])
    emit = svc.item_emitter(ctx, columns)
    user = ctx.principal.name
    if not rest:
        if ctx.method == "GET":
            _check_filter_indexed(ctx, columns)
            with svc.store.lock:
                entities = list(items.items.values())
            return paged(ctx, ITEMS, entities, emit, context)
        if ctx.method == "POST":
            body = svc.checked_body(ctx, "listItem")
            fields = body.get("fields") or {}
            svc.check_fields_or_400(columns, fields)
            item = new_item(svc, items, lst["id"], fields, user)
            svc.store.put(items, item)
            ctx.extra["force_fields"] = True
            return Response.json(emit(item), 201, operation="listItems.create")
        raise GraphError(405, "invalidRequest", f"{ctx.method} is not supported here.")
    if rest == ["delta"] and ctx.method == "GET":
        ctx.extra["force_fields"] = True
        return delta(ctx, ITEMS, [items], items.key, lambda i, e: [(i, e)], emit,
                     f"{context}/delta")
    item_id = rest[0]
    with svc.store.lock:
        item = items.items.get(item_id)
    if item is None:
        raise GraphError(404, "itemNotFound", "The resource could not be found.")
    if len(rest) == 1:
        if ctx.method == "GET":
            return Response.json(emit(item), operation="listItems.get")
        if ctx.method == "DELETE":
            with svc.store.lock:
                _check_etag(ctx, items.items.get(item_id, item))
                svc.store.delete(items, item_id)
            return Response(204, operation="listItems.delete")
        if ctx.method == "PATCH":
            body = svc.checked_body(ctx, "listItem")
            fields = body.get("fields") or {}
            svc.check_fields_or_400(columns, fields)
            with svc.store.lock:
                current = items.items.get(item_id, item)
                _check_etag(ctx, current)
                updated = update_item(current, fields, user)
                svc.store.put(items, updated)
            ctx.extra["force_fields"] = True
            return Response.json(emit(updated), operation="listItems.update")
    if rest[1:] == ["fields"]:
        fields_emit = svc.fields_emitter(ctx, columns)
        if ctx.method == "GET":
            return Response.json(fields_emit(item), operation="listItems.get")
        if ctx.method == "PATCH":
            fields = ctx.body if isinstance(ctx.body, dict) else None
            if fields is None:
                raise GraphError(400, "invalidRequest", "The request body must be a JSON "
                                 "object of field values.")
            svc.check_fields_or_400(columns, fields)
            with svc.store.lock:
                current = items.items.get(item_id, item)
                _check_etag(ctx, current)
                updated = update_item(current, fields, user)
                svc.store.put(items, updated)
            return Response.json(fields_emit(updated), operation="listItems.update")
    raise GraphError(405, "invalidRequest", f"{ctx.method} is not supported here.")


def _check_etag(ctx: Ctx, item: dict[str, Any]) -> None:
    wanted = ctx.headers.get("if-match")
    if wanted and wanted != "*" and wanted.removeprefix("W/") != item["eTag"]:
        raise GraphError(412, "resourceModified", "ETag mismatch: the item was changed since "
                         "you read it.")
