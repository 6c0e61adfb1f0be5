"""Reading through EWS: folder resolution, SyncFolderItems passes, FindItem with
restrictions, GetItem in batches, and the cursor.

Request plan of a complete read of a folder with N items: ``ceil(N/512)`` SyncFolderItems
(IdOnly; this pass also yields the sync state that becomes the cursor) plus ``ceil(N/B)``
GetItem calls for the selected fields (``B`` = ``ReadBatchSize``, default 250), because
SyncFolderItems and FindItem cannot return bodies, indexed properties or extended
properties. With a WHERE clause the ids come from FindItem with a server-side restriction
(IndexedPageItemView, 1000 a page) and only matching items are fetched; the SyncFolderItems
pass still runs for the cursor. An incremental read costs one SyncFolderItems per folder (512
changes a page) plus GetItem for the created and updated items only.

Cursor (opaque JSON): ``{"v": 1, "version": "<build>|<api>", "scope": ..., "folders":
{folder id: {"path": ..., "state": SyncState}}}``; a well-known folder is keyed
``@<distinguished name>`` so that neither read needs a GetFolder.
"""

import fnmatch
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from exchangelib import Q
from exchangelib.errors import (
    ErrorInvalidSyncStateData,
    ErrorItemNotFound,
)
from exchangelib.fields import FieldOrder, FieldPath
from exchangelib.folders import BaseFolder, Folder, Root
from exchangelib.items import ID_ONLY, CalendarItem, Item
from exchangelib.properties import DistinguishedFolderId, Mailbox
from exchangelib.restriction import Restriction
from exchangelib.services import (
    CreateFolder,
    FindFolder,
    FindItem,
    GetFolder,
    GetItem,
    SyncFolderItems,
)
from exchangelib.util import TNS

from l2sync_dagster.providers.base import EntityMissing, ProviderError
from l2sync_dagster.providers.exchange.ews_client import EwsConnection, retrying
from l2sync_dagster.providers.exchange.ews_values import (
    NOTE_CLASS,
    Shape,
    _ews_date,
    _ews_datetime,
)
from l2sync_dagster.providers.exchange.fields import suggestion
from l2sync_dagster.providers.exchange.select import Condition, SelectStatement

SYNC_PAGE = 512
FIND_PAGE = 1000
CURSOR_VERSION = 1
DEEP = "Deep"


class CursorExpired(Exception):
    """The server no longer knows a stored sync state (ErrorInvalidSyncStateData)."""


@dataclass
class ScopeFolder:
    """One folder of the scope: the exchangelib folder and its path relative to the root."""

    folder: Folder
    path: str
    id: str | None = None


@dataclass
class SyncResult:
    """What SyncFolderItems passes reported for one folder."""

    state: str | None
    changed: dict[str, str] = field(default_factory=dict)  # id -> changekey (create/update)
    deleted: list[str] = field(default_factory=list)
    changed_classes: dict[str, str] = field(default_factory=dict)  # id -> ItemClass
    requests: int = 0


# --- folders --------------------------------------------------------------------------------
def root_folder(conn: EwsConnection, distinguished: str) -> Folder:
    """A folder object for a well-known folder of the mailbox (no request)."""
    account = conn.account
    root = Root(account=account)
    mailbox = Mailbox(email_address=conn.settings.email)
    return Folder(root=root, _distinguished_id=DistinguishedFolderId(id=distinguished,
                                                                       mailbox=mailbox))


def folder_by_id(conn: EwsConnection, folder_id: str) -> Folder:
    """A folder object for a known folder id (no request)."""
    return Folder(root=Root(account=conn.account), id=folder_id)


def get_folder(conn: EwsConnection, folder: Folder) -> Folder:
    """GetFolder (one request): raises the server's error (mailbox/folder not found...)."""
    fields = {FieldPath(field=Folder.get_field_by_fieldname(n))
              for n in ("name", "folder_class", "total_count")}
    svc = GetFolder(account=conn.account)
    result = list(svc.call(folders=[folder], additional_fields=fields, shape=ID_ONLY))
    if not result:
        raise ProviderError("exchange: GetFolder returned nothing")
    if isinstance(result[0], Exception):
        raise result[0]
    return result[0]


def descendants(conn: EwsConnection, folder: Folder) -> list[Folder]:
    """Every subfolder (FindFolder Deep, 1000 a page)."""
    fields = {FieldPath(field=Folder.get_field_by_fieldname(n))
              for n in ("name", "folder_class", "parent_folder_id")}
    svc = FindFolder(account=conn.account, page_size=FIND_PAGE)
    out = []
    for f in svc.call(folders=[folder], additional_fields=fields, restriction=None,
                      shape=ID_ONLY, depth=DEEP, max_items=None, offset=0):
        if isinstance(f, Exception):
            raise f
        out.append(f)
    return out


def _tree_paths(root_id: str, folders: list[Folder]) -> dict[str, tuple[str, Folder]]:
    """folder id -> (path relative to the root, folder)."""
    by_id = {f.id: f for f in folders}
    paths: dict[str, tuple[str, Folder]] = {}

    def path_of(f: Folder, depth: int = 0) -> str | None:
        if f.id in paths:
            return paths[f.id][0]
        parent = f.parent_folder_id.id if f.parent_folder_id else None
        if depth > 64:
            return None
        if parent == root_id:
            p = f.name or ""
        elif parent in by_id:
            up = path_of(by_id[parent], depth + 1)
            if up is None:
                return None
            p = f"{up}/{f.name or ''}"
        else:
            return None
        paths[f.id] = (p, f)
        return p

    for f in folders:
        path_of(f)
    return paths


def resolve_scope(conn: EwsConnection, stmt: SelectStatement,
                  check_root: bool = False) -> list[ScopeFolder]:
    """The folders of the statement's scope (FolderNotFound with close matches)."""
    scope = stmt.scope
    root = root_folder(conn, scope.root)
    if scope.well_known:
        if check_root:
            got = get_folder(conn, root)
            return [ScopeFolder(got, "", got.id)]
        return [ScopeFolder(root, "", None)]
    if not scope.segments:  # well-known root with /**
        got = get_folder(conn, root)
        root_id = got.id
        subs = descendants(conn, got)
        paths = _tree_paths(root_id, subs)
        return [ScopeFolder(got, "", root_id)] + [
            ScopeFolder(f, p, f.id) for p, f in sorted(paths.values(), key=lambda x: x[0])]
    got = get_folder(conn, root)
    subs = descendants(conn, got)
    paths = _tree_paths(got.id, subs)
    pattern = [s.lower() for s in scope.segments]
    matched = []
    for fid, (p, f) in paths.items():
        parts = [x.lower() for x in p.split("/")]
        if len(parts) == len(pattern) and all(
                fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pattern, strict=True)):
            matched.append((p, f, fid))
    if not matched:
        known = [p for p, _ in paths.values()]
        root_name = scope.root if scope.root != "msgfolderroot" else "the mailbox root"
        wanted = "/".join(scope.segments)
        message = (f"exchange: folder not found: no folder {wanted!r} under {root_name} of "
                   f"{conn.settings.email}" + suggestion(wanted, known))
        if scope.has_wildcards:
            raise ProviderError(message)
        raise EntityMissing(message, what=f"folder {wanted!r} under {root_name} of "
                                          f"{conn.settings.email}")
    out: list[ScopeFolder] = []
    seen: set[str] = set()
    for p, f, fid in sorted(matched, key=lambda x: x[0]):
        if fid not in seen:
            out.append(ScopeFolder(f, p, fid))
            seen.add(fid)
        if scope.recursive:
            prefix = p.lower() + "/"
            for sub_id, (sp, sf) in sorted(paths.items(), key=lambda x: x[1][0]):
                if sp.lower().startswith(prefix) and sub_id not in seen:
                    out.append(ScopeFolder(sf, sp, sub_id))
                    seen.add(sub_id)
    return out


def create_path(conn: EwsConnection, stmt: SelectStatement) -> list[str]:
    """Create the folders of the scope's path that do not exist (CreateFolder, one request
    each, with the item type's folder class); returns the paths created."""
    scope = stmt.scope
    root = get_folder(conn, root_folder(conn, scope.root))
    existing = {p.lower(): f for p, f in _tree_paths(root.id, descendants(conn, root)).values()}
    parent: Folder = root
    made: list[str] = []
    for depth in range(1, len(scope.segments) + 1):
        path = "/".join(scope.segments[:depth])
        if path.lower() in existing:
            parent = existing[path.lower()]
            continue
        new = Folder(root=Root(account=conn.account), name=scope.segments[depth - 1],
                     folder_class=stmt.item_type.folder_class or None)
        result = list(CreateFolder(account=conn.account).call(parent_folder=parent,
                                                             folders=[new]))
        if not result or isinstance(result[0], Exception):
            raise result[0] if result else ProviderError("exchange: CreateFolder returned "
                                                         "nothing")
        parent = result[0]
        made.append(path)
    return made


# --- change feed ----------------------------------------------------------------------------
@dataclass
class _Ref:
    """An item as an IdOnly change reports it."""

    id: str
    changekey: str | None
    item_class: str | None = None


class IdOnlySyncFolderItems(SyncFolderItems):
    """SyncFolderItems that reads only ItemId, ChangeKey and ItemClass from each change
    (exchangelib would build a full item object of 80 empty fields for each)."""

    def _elem_to_obj(self, elem: Any) -> tuple[str, Any]:
        kind = self.change_types_map[elem.tag]
        if kind == self.DELETE:
            ref = elem.find(f"{{{TNS}}}ItemId")
            return kind, _Ref(ref.get("Id"), ref.get("ChangeKey"))
        if kind == self.READ_FLAG_CHANGE:
            ref = elem.find(f"{{{TNS}}}ItemId")
            return kind, _Ref(ref.get("Id"), ref.get("ChangeKey"))
        item = elem[0]
        ref = item.find(f"{{{TNS}}}ItemId")
        return kind, _Ref(ref.get("Id"), ref.get("ChangeKey"),
                          item.findtext(f"{{{TNS}}}ItemClass"))


class SelectedGetItem(GetItem):
    """GetItem that parses only the requested fields of each item (exchangelib parses every
    field of the model, most of them absent, which dominates the time of large reads)."""

    wanted: dict[type, list[Any]]
    paths: list[Any]

    def _elem_to_obj(self, elem: Any) -> Any:
        model = BaseFolder.item_model_from_tag(elem.tag)
        if model is CalendarItem:  # its from_xml converts all-day values to dates
            return model.from_xml(elem=elem, account=self.account)
        fields = self.wanted.get(model)
        if fields is None:
            names = {p.field.name for p in self.paths} | {"_id", "item_class",
                                                          "last_modified_time"}
            fields = [f for f in model.FIELDS if f.name in names]
            self.wanted[model] = fields
        kwargs = {f.name: f.from_xml(elem=elem, account=self.account) for f in fields}
        elem.clear()
        item = model(**kwargs)
        item.account = self.account
        return item


def sync_pass(conn: EwsConnection, folder: Folder, state: str | None, *,
              max_changes: int | None = None, pages: int | None = None) -> SyncResult:
    """SyncFolderItems (IdOnly + ItemClass) from ``state`` to the end (or ``pages`` pages);
    ``max_changes`` per page, default the connection's PageSize (EWS allows at most 512)."""
    if max_changes is None:
        max_changes = min(conn.settings.page_size, SYNC_PAGE)
    result = SyncResult(state=state)
    item_class = {FieldPath(field=Item.get_field_by_fieldname("item_class"))}
    done = 0
    while True:
        svc = IdOnlySyncFolderItems(account=conn.account)
        try:
            changes = list(svc.call(folder=folder, shape=ID_ONLY, additional_fields=item_class,
                                    sync_state=result.state, ignore=None,
                                    max_changes_returned=max_changes, sync_scope=None))
        except ErrorInvalidSyncStateData as exc:
            raise CursorExpired(str(exc)) from exc
        result.requests += 1
        for kind, obj in changes:
            if isinstance(obj, Exception):
                raise obj
            if kind == SyncFolderItems.DELETE:
                result.changed.pop(obj.id, None)
                result.deleted.append(obj.id)
            else:
                result.changed[obj.id] = obj.changekey
                if getattr(obj, "item_class", None):
                    result.changed_classes[obj.id] = obj.item_class
        new_state = svc.sync_state
        done += 1
        last = svc.includes_last_item_in_range or new_state == result.state
        result.state = new_state
        if last or (pages is not None and done >= pages):
            return result


# --- FindItem with restrictions -------------------------------------------------------------
def _lookup(cond: Condition) -> tuple[str, Any] | None:
    op = cond.op
    if op == "IN":
        return "__in", list(cond.value or ())
    if op in ("IS NULL", "IS NOT NULL"):
        return "__exists", op == "IS NOT NULL"
    suffix = {"=": "", "<": "__lt", "<=": "__lte", ">": "__gt", ">=": "__gte",
              "CONTAINS": "__icontains", "STARTSWITH": "__istartswith", "<>": ""}.get(op)
    return None if suffix is None else (suffix, cond.value)


def _q_value(value: Any, kind: str, name: str) -> Any:
    if kind == "date":
        return _ews_date(value, name)
    if kind == "datetime":
        return _ews_datetime(value, name)
    return value


def build_q(stmt: SelectStatement, shape: Shape, conditions: Iterable[Condition]
            ) -> tuple[Q | None, list[Condition]]:
    """(a Q for the conditions the server can evaluate, the rest for client-side filtering)."""
    q: Q | None = None
    rest: list[Condition] = []
    types = {f.name: f.type for f in stmt.fields}
    types.update({e.column: e.type for e in stmt.extended})
    for cond in conditions:
        acc = shape.accessors.get(cond.field)
        kind = types.get(cond.field)
        if acc is None:
            f = stmt.item_type.field(cond.field)
            from l2sync_dagster.providers.exchange.ews_values import accessor

            acc = accessor(stmt.item_type, f) if f is not None else None
            kind = f.type if f is not None else None
        lookup = _lookup(cond)
        if cond.op == "IS NULL":
            # a blank text is NULL too (select.is_null) but exists for the server: client side
            lookup = None
        if acc is None or lookup is None or kind == "json" or acc.sub is not None or \
                not acc.on_server:
            rest.append(cond)
            continue
        path = acc.attr if acc.label is None else f"{acc.attr}__{acc.label}"
        suffix, value = lookup
        if cond.op == "IN":
            value = [_q_value(v, kind or "", cond.field) for v in value]
        elif cond.op not in ("IS NULL", "IS NOT NULL"):
            value = _q_value(value, kind or "", cond.field)
        if cond.op == "<>":
            # SQL semantics (select.condition_holds): an item without the value is not "<>"
            part = Q(**{f"{path}__exists": True}) & \
                ~Q(**{path: _q_value(cond.value, kind or "", cond.field)})
        else:
            part = Q(**{f"{path}{suffix}": value})
        q = part if q is None else q & part
    return q, rest


def find_ids(conn: EwsConnection, folder: Folder, q: Q | None, *,
             order: tuple[FieldPath, bool] | None = None, limit: int | None = None,
             calendar_view: Any = None) -> list[tuple[str, str]]:
    """FindItem (IdOnly) with a restriction and sort order, paged by the connection's
    PageSize."""
    restriction = Restriction(q, folders=[folder], applies_to=Restriction.ITEMS) \
        if q is not None else None
    order_fields = None
    if order is not None:
        path, desc = order
        order_fields = [FieldOrder(field_path=path, reverse=desc)]
    page = conn.settings.page_size
    svc = FindItem(account=conn.account, page_size=min(page, limit or page))
    out = []
    for row in svc.call(folders=[folder], additional_fields=None, restriction=restriction,
                        order_fields=order_fields, shape=ID_ONLY, query_string=None,
                        depth="Shallow", calendar_view=calendar_view, max_items=limit,
                        offset=0):
        if isinstance(row, Exception):
            raise row
        out.append((row[0], row[1]) if isinstance(row, tuple) else (row.id, row.changekey))
    return out


def find_with(conn: EwsConnection, folder: Folder, q: Q, paths: set[FieldPath]
              ) -> list[Item]:
    """FindItem (IdOnly plus ``paths``) with a restriction, paged by the connection's PageSize:
    items."""
    restriction = Restriction(q, folders=[folder], applies_to=Restriction.ITEMS)
    svc = FindItem(account=conn.account, page_size=conn.settings.page_size)
    out = []
    for row in svc.call(folders=[folder], additional_fields=paths, restriction=restriction,
                        order_fields=None, shape=ID_ONLY, query_string=None, depth="Shallow",
                        calendar_view=None, max_items=None, offset=0):
        if isinstance(row, Exception):
            raise row
        out.append(row)
    return out


# --- GetItem --------------------------------------------------------------------------------
def get_items(conn: EwsConnection, shape: Shape, ids: list[str], batch: int
              ) -> Iterator[tuple[str, Item | None]]:
    """(id, item or None when it no longer exists) in batches of ``batch``."""
    for i in range(0, len(ids), batch):
        chunk = ids[i:i + batch]

        def call(chunk: list[str] = chunk) -> list[Any]:
            svc = SelectedGetItem(account=conn.account, chunk_size=batch)
            svc.paths, svc.wanted = shape.paths, {}
            return list(svc.call(items=[(x, None) for x in chunk],
                                 additional_fields=set(shape.paths), shape=ID_ONLY))

        results = retrying(call, conn.settings, "reading items (GetItem)")
        for item_id, res in zip(chunk, results, strict=True):
            if isinstance(res, ErrorItemNotFound):
                yield item_id, None
            elif isinstance(res, Exception):
                raise res
            else:
                yield item_id, res


def wanted(stmt: SelectStatement, item: Item) -> bool:
    """Whether an item is of the statement's item type (Contacts hold groups too)."""
    name = stmt.item_type.name
    tag = type(item).__name__
    cls = getattr(item, "item_class", None) or ""
    if name == "Contact":
        return tag == "Contact"
    if name == "ContactGroup":
        return tag == "DistributionList"
    if name == "CalendarItem":
        return tag == "CalendarItem"
    if name == "Task":
        return tag == "Task"
    if name == "Note":
        return tag == "Message" and cls.lower().startswith(NOTE_CLASS.lower())
    return tag in ("Message", "MeetingRequest", "MeetingResponse", "MeetingCancellation") \
        and not cls.lower().startswith(NOTE_CLASS.lower())


# --- cursor ---------------------------------------------------------------------------------
def encode_cursor(conn: EwsConnection, stmt: SelectStatement,
                  folders: dict[str, dict[str, str | None]]) -> str:
    """The opaque cursor string."""
    return json.dumps({"v": CURSOR_VERSION, "version": conn.version_text(),
                       "scope": stmt.scope.text, "type": stmt.item_type.name,
                       "folders": folders}, separators=(",", ":"))


def decode_cursor(text: str, stmt: SelectStatement) -> dict[str, Any] | None:
    """The cursor's data, or None when it is not one of ours or belongs to another scope."""
    try:
        data = json.loads(text)
    except (ValueError, TypeError):
        return None
    if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION:
        return None
    if data.get("scope") != stmt.scope.text or data.get("type") != stmt.item_type.name:
        return None
    if not isinstance(data.get("folders"), dict):
        return None
    return data
