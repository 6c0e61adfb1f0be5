"""Outlook resources under ``/users/{id}``: contacts and contact folders, events and
calendarView (recurrence expanded), To Do lists and tasks, mail folders and messages."""

import functools
import json
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from l2sync_dagster.sandbox import identities
from l2sync_dagster.sandbox.graph import directory
from l2sync_dagster.sandbox.graph.common import (
    Ctx,
    GraphError,
    Kind,
    decode_token,
    dtz_utc,
    html_to_text,
    paged,
    to_utc_dtz,
    zone,
)
from l2sync_dagster.sandbox.graph.delta import delta
from l2sync_dagster.sandbox.graph.query import parse_datetime
from l2sync_dagster.sandbox.graph.recurrence import occurrence_dates
from l2sync_dagster.sandbox.graph.store import (
    Collection,
    change_key,
    now_iso,
    outlook_id,
)
from l2sync_dagster.sandbox.service import Response
from l2sync_dagster.sandbox.token_service import object_id

USERS = Kind("users", "user", 100, 999)
CONTACTS = Kind("contacts", "contact")
CONTACT_FOLDERS = Kind("contactFolders", "contactFolder")
EVENTS = Kind("events", "event")
CALENDAR_VIEW = Kind("calendarView", "event")
EVENT_INSTANCES = Kind("eventInstances", "event")
CALENDARS = Kind("calendars", "calendar")
TODO_LISTS = Kind("todoLists", "todoTaskList")
TODO_TASKS = Kind("todoTasks", "todoTask")
MAIL_FOLDERS = Kind("mailFolders", "mailFolder")
MESSAGES = Kind("messages", "message")

#: Outlook item types have a changeKey property; the others only an @odata.etag
_CHANGE_KEY_TYPES = {"contact", "event", "message"}
#: set by the server, ignored when a client sends them
_MANAGED = {"id", "changeKey", "createdDateTime", "lastModifiedDateTime", "parentFolderId",
            "seriesMasterId", "type", "bodyPreview", "originalStartTimeZone",
            "originalEndTimeZone", "cancelledOccurrences", "originalStart"}
WELL_KNOWN_MAIL = ("inbox", "sentitems", "drafts", "deleteditems", "archive")
_WELL_KNOWN_NAMES = {"inbox": "Inbox", "sentitems": "Sent Items", "drafts": "Drafts",
                     "deleteditems": "Deleted Items", "archive": "Archive"}


def key(kind: str, user: str, *parts: str) -> str:
    """The store key of a user's collection."""
    return "|".join((kind, user, *parts))


def find_user(name: str) -> str | None:
    """The UPN of a demo user by UPN or object id."""
    return _users_by_name(identities.MAILBOXES).get(name.lower())


@functools.cache
def _users_by_name(mailboxes: tuple[str, ...]) -> dict[str, str]:
    out = {upn: upn for upn in mailboxes}
    out.update({object_id(upn): upn for upn in mailboxes})
    return out


def user_entity(upn: str) -> dict[str, Any]:
    """A demo user as Graph returns it (its directory profile as the tenant starts)."""
    return directory.person(upn)


# ---------------------------------------------------------------------- entity lifecycle
def new_entity(service: Any, kind: Kind, body: dict[str, Any], **fixed: Any) -> dict[str, Any]:
    """A new entity from a checked request body, with server-managed properties."""
    stamp = now_iso()
    entity: dict[str, Any] = {"id": outlook_id(), "createdDateTime": stamp,
                              "lastModifiedDateTime": stamp}
    if kind.type == "contactFolder" or kind.type == "mailFolder" or kind.type == "todoTaskList":
        entity.pop("createdDateTime")
        entity.pop("lastModifiedDateTime")
    entity.update({k: v for k, v in body.items() if k not in _MANAGED and not k.startswith("@")})
    entity.update(fixed)
    normalize(kind, entity)
    stamp_version(kind, entity)
    return entity


def stamp_version(kind: Kind, entity: dict[str, Any]) -> None:
    """A new change key / ETag and lastModifiedDateTime."""
    ck = change_key()
    if kind.type in _CHANGE_KEY_TYPES:
        entity["changeKey"] = ck
    entity["@odata.etag"] = f'W/"{ck}"'
    if "lastModifiedDateTime" in entity:
        entity["lastModifiedDateTime"] = now_iso()


def normalize(kind: Kind, entity: dict[str, Any]) -> None:
    """Type-specific defaults and conversions (UTC storage of dateTimeTimeZone values)."""
    if kind.type == "contact":
        if not entity.get("displayName"):
            names = [entity.get("givenName"), entity.get("surname")]
            entity["displayName"] = " ".join(n for n in names if n) or None
        entity.setdefault("emailAddresses", [])
        entity.setdefault("businessPhones", [])
        entity.setdefault("homePhones", [])
    elif kind.type == "event":
        _normalize_event(entity)
    elif kind.type == "todoTask":
        entity.setdefault("status", "notStarted")
        entity.setdefault("importance", "normal")
        entity.setdefault("isReminderOn", False)
        entity.setdefault("body", {"content": "", "contentType": "text"})
        entity.setdefault("categories", [])
        entity.setdefault("hasAttachments", False)
        for prop in ("dueDateTime", "startDateTime", "completedDateTime", "reminderDateTime"):
            if entity.get(prop) is not None:
                entity[prop] = to_utc_dtz(entity[prop], prop)
    elif kind.type == "message":
        body = entity.get("body") or {"contentType": "text", "content": ""}
        entity.setdefault("body", body)
        content = body.get("content") or ""
        preview = html_to_text(content) if body.get("contentType") == "html" else content
        entity["bodyPreview"] = preview[:255]
        entity.setdefault("isRead", False)
        entity.setdefault("importance", "normal")
        entity.setdefault("hasAttachments", False)


def _normalize_event(entity: dict[str, Any]) -> None:
    for prop in ("start", "end"):
        if entity.get(prop) is None:
            raise GraphError(400, "ErrorInvalidRequest", f"Your request can't be completed. "
                             f"The '{prop}' property is required.")
    entity.setdefault("isAllDay", False)
    # the zones the event was created in (Graph keeps them; the values are stored in UTC)
    entity.setdefault("originalStartTimeZone", entity["start"].get("timeZone") or "UTC")
    entity.setdefault("originalEndTimeZone", entity["end"].get("timeZone") or "UTC")
    if entity["isAllDay"]:
        for prop in ("start", "end"):
            value = entity[prop]
            if not str(value.get("dateTime", "")).split("T")[-1].startswith("00:00:00"):
                raise GraphError(400, "ErrorPropertyValidationFailure", "Start and End time "
                                 "must be at midnight for an all-day event.")
            # all-day events are floating dates: kept as given, returned unconverted
            entity[prop] = {"dateTime": value["dateTime"].split("T")[0] + "T00:00:00.0000000",
                            "timeZone": value.get("timeZone") or "UTC"}
    else:
        recurrence = entity.get("recurrence")
        if recurrence and isinstance(recurrence.get("range"), dict):
            # occurrences keep their local time of day across DST changes
            recurrence["range"].setdefault("recurrenceTimeZone",
                                           entity["start"].get("timeZone") or "UTC")
        entity["start"] = to_utc_dtz(entity["start"], "start")
        entity["end"] = to_utc_dtz(entity["end"], "end")
    if dtz_utc(entity["end"]) < dtz_utc(entity["start"]):
        raise GraphError(400, "ErrorInvalidRequest", "The end of the event is before its "
                         "start.")
    entity.setdefault("subject", "")
    entity.setdefault("showAs", "busy")
    entity.setdefault("importance", "normal")
    entity.setdefault("sensitivity", "normal")
    entity.setdefault("isCancelled", False)
    entity.setdefault("categories", [])
    entity.setdefault("body", {"contentType": "html", "content": ""})
    recurrence = entity.get("recurrence")
    if recurrence:
        pattern = recurrence.get("pattern") or {}
        rng = recurrence.get("range") or {}
        if not pattern.get("type") or not rng.get("type") or not rng.get("startDate"):
            raise GraphError(400, "ErrorInvalidRequest", "A recurrence needs pattern.type, "
                             "range.type and range.startDate.")
        pattern.setdefault("interval", 1)
        for k in ("dayOfMonth", "month"):
            pattern.setdefault(k, 0)
        pattern.setdefault("firstDayOfWeek", "sunday")
        pattern.setdefault("index", "first")
        pattern.setdefault("daysOfWeek", [])
        rng.setdefault("numberOfOccurrences", 0)
        rng.setdefault("endDate", "0001-01-01")
        rng.setdefault("recurrenceTimeZone", "UTC")
        entity["type"] = "seriesMaster"
        entity.setdefault("cancelledOccurrences", [])
    else:
        entity["recurrence"] = None
        entity["type"] = "singleInstance"
        entity.pop("cancelledOccurrences", None)


def merge(kind: Kind, entity: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """PATCH semantics: top-level replace; extended properties merged by id."""
    updated = dict(entity)
    for prop, original in (("start", "originalStartTimeZone"), ("end", "originalEndTimeZone")):
        if prop in body:
            updated.pop(original, None)
    for k, v in body.items():
        if k in _MANAGED or k.startswith("@"):
            continue
        if k == "singleValueExtendedProperties" and isinstance(v, list):
            props = {p["id"]: p for p in updated.get(k) or []}
            props.update({p.get("id"): p for p in v})
            updated[k] = list(props.values())
        else:
            updated[k] = v
    if kind.type == "event" and {"recurrence", "start", "end"} & set(body):
        # a new pattern or time for the series: its exceptions go (as in Outlook)
        updated.pop("_exceptions", None)
        updated.pop("cancelledOccurrences", None)
    normalize(kind, updated)
    stamp_version(kind, updated)
    return updated


def check_if_match(ctx: Ctx, entity: dict[str, Any]) -> None:
    """412 when ``If-Match`` names another version."""
    wanted = ctx.headers.get("if-match")
    if wanted and wanted != "*" and wanted != entity.get("@odata.etag"):
        raise GraphError(412, "ErrorIrresolvableConflict", "The send or update operation could "
                         "not be performed because the change key passed in the request does "
                         "not match the current change key for the item.")


# ---------------------------------------------------------------------- generic collections
def collection_route(ctx: Ctx, kind: Kind, coll: Collection, rest: list[str], context: str,
                     *, fixed: dict[str, Any] | None = None,
                     expand: Callable[[str, dict[str, Any]],
                                      Iterable[tuple[str, dict[str, Any] | None]]] | None = None,
                     window: dict[str, str] | None = None,
                     on_delete: Callable[[dict[str, Any]], None] | None = None) -> Response:
    """List/create (``rest == []``), ``delta``, get/update/delete one (``[id]``)."""
    svc = ctx.service
    emit = svc.emitter(ctx, kind)
    if not rest:
        if ctx.method == "GET":
            with svc.store.lock:
                entities = list(coll.items.values())
            return paged(ctx, kind, entities, emit, context)
        if ctx.method == "POST":
            body = svc.checked_body(ctx, kind.type)
            entity = new_entity(svc, kind, body, **(fixed or {}))
            svc.store.put(coll, entity)
            return Response.json(emit(entity), 201, operation=f"{kind.op}.create")
        raise GraphError(405, "ErrorInvalidRequest", f"{ctx.method} is not supported here.")
    if rest == ["delta"] and ctx.method == "GET":
        return delta(ctx, kind, [coll], coll.key, expand or (lambda i, e: [(i, e)]), emit,
                     f"{context}/delta", window)
    if len(rest) != 1:
        raise GraphError(400, "BadRequest", f"Resource not found for the segment "
                         f"'{rest[1]}'.")
    item_id = rest[0]
    with svc.store.lock:
        entity = coll.items.get(item_id)
    if entity is None:
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the "
                         "store.")
    if ctx.method == "GET":
        return Response.json(emit(entity), operation=f"{kind.op}.get")
    if ctx.method == "PATCH":
        body = svc.checked_body(ctx, kind.type)
        with svc.store.lock:
            check_if_match(ctx, coll.items.get(item_id, entity))
            updated = merge(kind, coll.items.get(item_id, entity), body)
            svc.store.put(coll, updated)
        return Response.json(emit(updated), operation=f"{kind.op}.update")
    if ctx.method == "DELETE":
        with svc.store.lock:
            check_if_match(ctx, entity)
            svc.store.delete(coll, item_id)
        if on_delete:
            on_delete(entity)
        return Response(204, operation=f"{kind.op}.delete")
    raise GraphError(405, "ErrorInvalidRequest", f"{ctx.method} is not supported here.")


# ---------------------------------------------------------------------- per-user data
def ensure_user(svc: Any, upn: str) -> None:
    """A user's default folders (contacts, mail folders) exist."""
    store = svc.store
    with store.lock:
        folders = store.collection(key("contactFolders", upn), "contactFolders")
        assert folders is not None
        if "default" not in folders.meta:
            folders.meta["default"] = outlook_id()
            store.collection(key("contacts", upn, folders.meta["default"]), "contacts")
        mail = store.collection(key("mailFolders", upn), "mailFolders")
        assert mail is not None
        if "wellKnown" not in mail.meta:
            # the mailbox root ("Top of Information Store") holds the well-known folders
            root = new_entity(svc, MAIL_FOLDERS, {
                "displayName": "Top of Information Store", "childFolderCount": 0,
                "unreadItemCount": 0, "totalItemCount": 0, "isHidden": False},
                parentFolderId=outlook_id())
            store.put(mail, root)
            store.collection(key("messages", upn, root["id"]), "messages")
            mail.meta["wellKnown"] = {"msgfolderroot": root["id"]}
            for wk, display in _WELL_KNOWN_NAMES.items():
                entity = new_entity(svc, MAIL_FOLDERS, {
                    "displayName": display, "childFolderCount": 0, "unreadItemCount": 0,
                    "totalItemCount": 0, "isHidden": False}, parentFolderId=root["id"])
                mail.meta["wellKnown"][wk] = entity["id"]
                store.put(mail, entity)
                store.collection(key("messages", upn, entity["id"]), "messages")
        store.collection(key("events", upn), "events")
        lists = store.collection(key("todoLists", upn), "todoLists")
        assert lists is not None
        if "default" not in lists.meta:
            # every mailbox has the default To Do list "Tasks" (it cannot be deleted)
            default_list = new_entity(svc, TODO_LISTS, {"displayName": "Tasks"},
                                      wellknownListName="defaultList", isOwner=True,
                                      isShared=False)
            store.put(lists, default_list)
            lists.meta["default"] = default_list["id"]
            store.collection(key("todoTasks", upn, default_list["id"]), "todoTasks")


def route_user(ctx: Ctx, upn: str, rest: list[str]) -> Response:
    """Everything under ``/users/{id}``."""
    svc = ctx.service
    ensure_user(svc, upn)
    base = f"users('{upn}')"
    if not rest:
        if ctx.method != "GET":
            raise GraphError(405, "BadRequest", "Only GET is supported on users here.")
        return Response.json(svc.emitter(ctx, USERS)(user_entity(upn)), operation="users.get")
    head, tail = rest[0], rest[1:]
    store = svc.store
    if head == "contacts":
        folders = store.collection(key("contactFolders", upn))
        assert folders is not None
        default = folders.meta["default"]
        coll = store.collection(key("contacts", upn, default))
        assert coll is not None
        if tail and tail[0] != "delta" and tail[0] not in coll.items:
            # /users/{id}/contacts/{contact id} addresses a contact of any contact folder
            for fid in folders.items:
                other = store.collection(key("contacts", upn, fid))
                if other is not None and tail[0] in other.items:
                    return collection_route(ctx, CONTACTS, other, tail, f"{base}/contacts",
                                            fixed={"parentFolderId": fid})
        return collection_route(ctx, CONTACTS, coll, tail, f"{base}/contacts",
                                fixed={"parentFolderId": default})
    if head == "contactFolders":
        return _contact_folders(ctx, upn, tail, base)
    if head == "calendar":
        if not tail:
            if ctx.method != "GET":
                raise GraphError(405, "ErrorInvalidRequest", "The calendar is read-only here.")
            calendar = {"id": key("calendar", upn).replace("|", "-"), "name": "Calendar",
                        "canEdit": True, "canShare": True, "canViewPrivateItems": True,
                        "isDefaultCalendar": True, "isRemovable": False,
                        "owner": {"name": upn, "address": upn}}
            return Response.json(svc.emitter(ctx, CALENDARS)(calendar),
                                 operation="calendars.get")
        if tail[0] in ("events", "calendarView"):
            return route_user(ctx, upn, tail)
    if head == "events":
        coll = store.collection(key("events", upn))
        assert coll is not None
        if len(tail) == 2 and tail[1] == "instances" and ctx.method == "GET":
            master = coll.items.get(tail[0])
            if master is None:
                raise GraphError(404, "ErrorItemNotFound", "The specified object was not found "
                                 "in the store.")
            start, end = _window(ctx)
            instances = expand_event(master, start, end)
            return paged(ctx, EVENT_INSTANCES, instances, svc.emitter(ctx, EVENT_INSTANCES),
                         f"{base}/events('{tail[0]}')/instances")
        if tail == ["delta"]:
            raise GraphError(400, "BadRequest", "Use /calendarView/delta with startDateTime and "
                             "endDateTime to track event changes.")
        if len(tail) == 1 and "_OCC" in tail[0] and tail[0] not in coll.items:
            return _occurrence(ctx, coll, tail[0])
        return collection_route(ctx, EVENTS, coll, tail, f"{base}/events")
    if head == "calendarView":
        return _calendar_view(ctx, upn, tail, base)
    if head == "todo" and tail[:1] == ["lists"]:
        return _todo(ctx, upn, tail[1:], base)
    if head == "mailFolders":
        return _mail_folders(ctx, upn, tail, base)
    if head == "messages":
        return _messages(ctx, upn, tail, base)
    raise GraphError(400, "BadRequest", f"Resource not found for the segment '{head}'.")


# ---------------------------------------------------------------------- folder trees
def _children(folders: Collection, parent: str) -> list[dict[str, Any]]:
    """The folders whose parent is ``parent``."""
    return [f for f in folders.items.values() if f.get("parentFolderId") == parent]


def _subtree(folders: Collection, folder_id: str) -> list[str]:
    """``folder_id`` and the ids of every folder below it."""
    out, queue = [], [folder_id]
    while queue:
        current = queue.pop(0)
        out.append(current)
        queue += [f["id"] for f in _children(folders, current)]
    return out


def _new_folder(ctx: Ctx, kind: Kind, folders: Collection, parent: str,
                **fixed: Any) -> dict[str, Any]:
    """A new child folder of ``parent`` from a checked body (409 when a sibling has the name)."""
    svc = ctx.service
    body = svc.checked_body(ctx, kind.type)
    name = body.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise GraphError(400, "ErrorInvalidRequest", "The displayName property is required.")
    if any(str(f.get("displayName", "")).lower() == name.lower()
           for f in _children(folders, parent)):
        raise GraphError(409, "ErrorFolderExists", "A folder with the specified name already "
                         "exists.")
    entity = new_entity(svc, kind, body, parentFolderId=parent, **fixed)
    svc.store.put(folders, entity)
    return entity


def _drop_subtree(svc: Any, folders: Collection, folder_id: str, items_kind: str,
                  upn: str) -> None:
    """Remove the folders below ``folder_id`` and every item collection of the subtree (the
    folder itself was removed by the caller)."""
    for fid in _subtree(folders, folder_id):
        if fid != folder_id:
            svc.store.delete(folders, fid)
        svc.store.drop(key(items_kind, upn, fid))


def _contact_folders(ctx: Ctx, upn: str, rest: list[str], base: str) -> Response:
    store = ctx.service.store
    folders = store.collection(key("contactFolders", upn))
    assert folders is not None
    default = folders.meta["default"]
    if not rest:
        # the folders of the default Contacts folder (as Graph lists them)
        return _contact_children(ctx, upn, folders, default, f"{base}/contactFolders")
    if rest[0] == "delta":
        return collection_route(ctx, CONTACT_FOLDERS, folders, ["delta"],
                                f"{base}/contactFolders")
    return _contact_folder(ctx, upn, folders, rest[0], rest[1:], f"{base}/contactFolders")


def _contact_children(ctx: Ctx, upn: str, folders: Collection, parent: str,
                      context: str) -> Response:
    svc = ctx.service
    emit = svc.emitter(ctx, CONTACT_FOLDERS)
    if ctx.method == "GET":
        with svc.store.lock:
            entities = _children(folders, parent)
        return paged(ctx, CONTACT_FOLDERS, entities, emit, context)
    if ctx.method == "POST":
        with svc.store.lock:
            entity = _new_folder(ctx, CONTACT_FOLDERS, folders, parent)
            svc.store.collection(key("contacts", upn, entity["id"]), "contacts")
        return Response.json(emit(entity), 201, operation="contactFolders.create")
    raise GraphError(405, "ErrorInvalidRequest", f"{ctx.method} is not supported here.")


def _contact_folder(ctx: Ctx, upn: str, folders: Collection, folder_id: str, rest: list[str],
                    context: str) -> Response:
    svc = ctx.service
    store = svc.store
    default = folders.meta["default"]
    contacts = store.collection(key("contacts", upn, folder_id))
    if contacts is None:
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the "
                         "store.")
    if not rest:
        if folder_id == default:
            if ctx.method != "GET":
                raise GraphError(403, "ErrorAccessDenied", "The default contacts folder cannot "
                                 "be changed.")
            entity = {"id": default, "displayName": "Contacts", "parentFolderId": outlook_id()}
            return Response.json(svc.emitter(ctx, CONTACT_FOLDERS)(entity),
                                 operation="contactFolders.get")
        return collection_route(
            ctx, CONTACT_FOLDERS, folders, [folder_id], context,
            on_delete=lambda e: _drop_subtree(svc, folders, e["id"], "contacts", upn))
    if rest[0] == "childFolders":
        svc.navigation_or_400(CONTACT_FOLDERS.type, "childFolders")
        if len(rest) == 1:
            return _contact_children(ctx, upn, folders, folder_id,
                                     f"{context}('{folder_id}')/childFolders")
        child = folders.items.get(rest[1])
        if child is None or child.get("parentFolderId") != folder_id:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in "
                             "the store.")
        return _contact_folder(ctx, upn, folders, rest[1], rest[2:],
                               f"{context}('{folder_id}')/childFolders")
    if rest[0] == "contacts":
        return collection_route(ctx, CONTACTS, contacts, rest[1:],
                                f"{context}('{folder_id}')/contacts",
                                fixed={"parentFolderId": folder_id})
    raise GraphError(400, "BadRequest", f"Resource not found for the segment '{rest[0]}'.")


# ---------------------------------------------------------------------- calendar
def _window(ctx: Ctx, token_window: dict[str, str] | None = None) -> tuple[datetime, datetime]:
    start = ctx.query.get("startDateTime") or ctx.query.get("startdatetime")
    end = ctx.query.get("endDateTime") or ctx.query.get("enddatetime")
    if (not start or not end) and token_window:
        start, end = token_window["s"], token_window["e"]
    if not start or not end:
        raise GraphError(400, "ErrorInvalidParameter", "This request requires a time window "
                         "specified by the query string parameters StartDateTime and "
                         "EndDateTime.")
    try:
        return parse_datetime(start), parse_datetime(end)
    except ValueError as exc:
        raise GraphError(400, "ErrorInvalidParameter", f"Invalid time window: {exc}") from exc


def _utc_text(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.0000000")


def occurrence_id(master_id: str, day: date) -> str:
    """The id of the occurrence of series ``master_id`` on ``day``."""
    return f"{master_id}_OCC{day.strftime('%Y%m%d')}"


def cancelled_id(master_id: str, day: date) -> str:
    """Graph's ``cancelledOccurrences`` entry (an occurrenceId: ``OID.{master}.{date}``)."""
    return f"OID.{master_id}.{day.isoformat()}"


def _series(entity: dict[str, Any], until: date
            ) -> Iterable[tuple[date, datetime, datetime]]:
    """(day, original start, original end) of each occurrence of a series master, in UTC."""
    s, e = dtz_utc(entity["start"]), dtz_utc(entity["end"])
    duration = e - s
    tz = UTC if entity.get("isAllDay") else zone(
        entity["recurrence"]["range"].get("recurrenceTimeZone") or "UTC")
    local_time = s.astimezone(tz).time()
    for day in occurrence_dates(entity["recurrence"], until):
        occ_start = datetime.combine(day, local_time, tzinfo=tz).astimezone(UTC)
        yield day, occ_start, occ_start + duration


def _instance(entity: dict[str, Any], day: date, start: datetime,
              end: datetime) -> dict[str, Any]:
    """The occurrence of ``day`` (an exception when it was changed on its own)."""
    occ = {k: v for k, v in entity.items() if k not in ("cancelledOccurrences",)}
    occ["id"] = occurrence_id(entity["id"], day)
    occ["seriesMasterId"] = entity["id"]
    occ["type"] = "occurrence"
    occ["recurrence"] = None
    occ["originalStart"] = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    tz_name = entity["start"]["timeZone"]
    occ["start"] = {"dateTime": _utc_text(start), "timeZone": tz_name}
    occ["end"] = {"dateTime": _utc_text(end), "timeZone": tz_name}
    changed = (entity.get("_exceptions") or {}).get(day.isoformat())
    if changed:
        occ.update(changed)
        occ["type"] = "exception"
        occ["@odata.etag"] = changed.get("@odata.etag", occ.get("@odata.etag"))
    occ.pop("_exceptions", None)
    return occ


def expand_event(entity: dict[str, Any], start: datetime, end: datetime
                 ) -> list[dict[str, Any]]:
    """The instances of ``entity`` overlapping [start, end): itself, or its occurrences and
    exceptions (cancelled occurrences left out)."""
    s, e = dtz_utc(entity["start"]), dtz_utc(entity["end"])
    if not entity.get("recurrence"):
        return [entity] if s < end and e > start else []
    cancelled = set(entity.get("cancelledOccurrences") or ())
    out = []
    # an exception may have moved: look a little past the window for its original day
    for day, occ_start, occ_end in _series(entity, (end + timedelta(days=31)).date()):
        if cancelled_id(entity["id"], day) in cancelled:
            continue
        occ = _instance(entity, day, occ_start, occ_end)
        if dtz_utc(occ["start"]) < end and dtz_utc(occ["end"]) > start:
            out.append(occ)
    return out


def exception_events(entity: dict[str, Any]) -> list[dict[str, Any]]:
    """The exceptions of a series master (``exceptionOccurrences``)."""
    changed = entity.get("_exceptions") or {}
    if not entity.get("recurrence") or not changed:
        return []
    last = max(date.fromisoformat(d) for d in changed)
    return [_instance(entity, day, s, e) for day, s, e in _series(entity, last)
            if day.isoformat() in changed]


def cancelled_in(entity: dict[str, Any], start: datetime, end: datetime) -> list[str]:
    """Ids of the cancelled occurrences of a master whose original time overlaps the window."""
    cancelled = set(entity.get("cancelledOccurrences") or ())
    if not entity.get("recurrence") or not cancelled:
        return []
    return [occurrence_id(entity["id"], day)
            for day, s, e in _series(entity, end.date())
            if cancelled_id(entity["id"], day) in cancelled and s < end and e > start]


#: what an exception may change (the rest stays the series')
_EXCEPTION_PROPS = {"start", "end", "subject", "location", "body", "showAs", "importance",
                    "sensitivity", "isReminderOn", "reminderMinutesBeforeStart", "categories"}


def _occurrence(ctx: Ctx, coll: Collection, occ_id: str) -> Response:
    """GET, PATCH (makes an exception) or DELETE (cancels) one occurrence of a series."""
    svc = ctx.service
    master_id, _, stamp = occ_id.rpartition("_OCC")
    with svc.store.lock:
        master = coll.items.get(master_id)
        try:
            day = datetime.strptime(stamp, "%Y%m%d").date()
        except ValueError:
            day = None
        found = None
        if master is not None and master.get("recurrence") and day is not None \
                and cancelled_id(master_id, day) not in (master.get("cancelledOccurrences")
                                                         or ()):
            found = next(((s, e) for d, s, e in _series(master, day) if d == day), None)
        if found is None:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in "
                             "the store.")
        emit = svc.emitter(ctx, EVENTS)
        if ctx.method == "GET":
            return Response.json(emit(_instance(master, day, *found)), operation="events.get")
        check_if_match(ctx, _instance(master, day, *found))
        updated = dict(master)
        exceptions = dict(updated.get("_exceptions") or {})
        if ctx.method == "DELETE":
            exceptions.pop(day.isoformat(), None)
            updated["cancelledOccurrences"] = [*(updated.get("cancelledOccurrences") or ()),
                                               cancelled_id(master_id, day)]
        elif ctx.method == "PATCH":
            body = svc.checked_body(ctx, EVENTS.type)
            unsupported = sorted(k for k in body if k not in _EXCEPTION_PROPS
                                 and not k.startswith("@"))
            if unsupported:
                raise GraphError(400, "ErrorInvalidRequest", f"{unsupported[0]} cannot be "
                                 "changed on one occurrence here.")
            change = {**exceptions.get(day.isoformat(), {}), **body}
            for prop in ("start", "end"):
                if prop in body:
                    change[prop] = to_utc_dtz(body[prop], prop)
            change["@odata.etag"] = f'W/"{change_key()}"'
            exceptions[day.isoformat()] = change
        else:
            raise GraphError(405, "ErrorInvalidRequest", f"{ctx.method} is not supported here.")
        updated["_exceptions"] = exceptions
        stamp_version(EVENTS, updated)
        svc.store.put(coll, updated)
    if ctx.method == "DELETE":
        return Response(204, operation="events.delete")
    return Response.json(emit(_instance(updated, day, *found)), operation="events.update")


def _calendar_view(ctx: Ctx, upn: str, rest: list[str], base: str) -> Response:
    svc = ctx.service
    coll = svc.store.collection(key("events", upn))
    assert coll is not None
    if ctx.method != "GET":
        raise GraphError(405, "ErrorInvalidRequest", "calendarView is read-only.")
    emit = svc.emitter(ctx, CALENDAR_VIEW)
    if rest == ["delta"]:
        token_window = None
        token = ctx.opt("deltatoken") or ctx.opt("skiptoken")
        if token:
            token_window = decode_token(token, "$deltatoken").get("w")
        start, end = _window(ctx, token_window)

        def expand(item_id: str, entity: dict[str, Any]
                   ) -> list[tuple[str, dict[str, Any] | None]]:
            instances = expand_event(entity, start, end)
            gone: list[tuple[str, dict[str, Any] | None]] = [
                (occ, None) for occ in cancelled_in(entity, start, end)]
            if not instances:
                return [(item_id, None), *gone]
            return [(i["id"], i) for i in instances] + gone
        window = {"s": start.isoformat(), "e": end.isoformat()}
        return delta(ctx, CALENDAR_VIEW, [coll], f"{coll.key}|view", expand, emit,
                     f"{base}/calendarView/delta", window)
    if rest:
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{rest[0]}'.")
    start, end = _window(ctx)
    with svc.store.lock:
        instances = [i for e in coll.items.values() for i in expand_event(e, start, end)]
    instances.sort(key=lambda i: i["start"]["dateTime"])
    return paged(ctx, CALENDAR_VIEW, instances, emit, f"{base}/calendarView")


# ---------------------------------------------------------------------- To Do
def _todo(ctx: Ctx, upn: str, rest: list[str], base: str) -> Response:
    store = ctx.service.store
    lists = store.collection(key("todoLists", upn))
    assert lists is not None
    if not rest or rest == ["delta"]:
        resp = collection_route(ctx, TODO_LISTS, lists, rest, f"{base}/todo/lists",
                                fixed={"wellknownListName": "none", "isOwner": True,
                                       "isShared": False})
        if ctx.method == "POST" and resp.status == 201:
            store.collection(key("todoTasks", upn, json.loads(resp.body)["id"]), "todoTasks")
        return resp
    list_id = rest[0]
    tasks = store.collection(key("todoTasks", upn, list_id))
    if tasks is None or list_id not in lists.items:
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the "
                         "store.")
    if len(rest) == 1:
        if ctx.method == "DELETE" and list_id == lists.meta.get("default"):
            raise GraphError(400, "invalidRequest", "The default task list cannot be deleted.")
        return collection_route(ctx, TODO_LISTS, lists, [list_id], f"{base}/todo/lists",
                                on_delete=lambda e: store.drop(key("todoTasks", upn, e["id"])))
    if rest[1] == "tasks":
        return collection_route(ctx, TODO_TASKS, tasks, rest[2:],
                                f"{base}/todo/lists('{list_id}')/tasks")
    raise GraphError(400, "BadRequest", f"Resource not found for the segment '{rest[1]}'.")


# ---------------------------------------------------------------------- mail
def mail_folder_id(svc: Any, upn: str, name: str) -> str:
    """A mail folder id from an id or a well-known name (``inbox``)."""
    folders = svc.store.collection(key("mailFolders", upn))
    return folders.meta["wellKnown"].get(name.lower(), name)


def _mail_folders(ctx: Ctx, upn: str, rest: list[str], base: str) -> Response:
    svc = ctx.service
    folders = svc.store.collection(key("mailFolders", upn))
    assert folders is not None
    root = folders.meta["wellKnown"]["msgfolderroot"]
    if not rest:
        # the folders of the mailbox root (Inbox, Drafts, ... and the user's own)
        return _mail_children(ctx, upn, folders, root, f"{base}/mailFolders")
    folder_id = mail_folder_id(svc, upn, rest[0])
    return _mail_folder(ctx, upn, folders, folder_id, rest[1:],
                        f"{base}/mailFolders('{rest[0]}')")


def _mail_children(ctx: Ctx, upn: str, folders: Collection, parent: str,
                   context: str) -> Response:
    svc = ctx.service
    if ctx.method == "GET":
        with svc.store.lock:
            entities = _with_counts(svc, upn, folders, _children(folders, parent))
        return paged(ctx, MAIL_FOLDERS, entities, svc.emitter(ctx, MAIL_FOLDERS), context)
    if ctx.method == "POST":
        with svc.store.lock:
            entity = _new_folder(ctx, MAIL_FOLDERS, folders, parent, childFolderCount=0,
                                 unreadItemCount=0, totalItemCount=0)
            entity.setdefault("isHidden", False)
            svc.store.collection(key("messages", upn, entity["id"]), "messages")
        return Response.json(svc.emitter(ctx, MAIL_FOLDERS)(entity), 201,
                             operation="mailFolders.create")
    raise GraphError(405, "ErrorInvalidRequest", f"{ctx.method} is not supported here.")


def _mail_folder(ctx: Ctx, upn: str, folders: Collection, folder_id: str, rest: list[str],
                 context: str) -> Response:
    svc = ctx.service
    store = svc.store
    messages = store.collection(key("messages", upn, folder_id))
    if messages is None or folder_id not in folders.items:
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the "
                         "store.")
    if not rest:
        if ctx.method == "GET":
            with store.lock:
                (entity,) = _with_counts(svc, upn, folders, [folders.items[folder_id]])
            return Response.json(svc.emitter(ctx, MAIL_FOLDERS)(entity),
                                 operation="mailFolders.get")
        if folder_id in folders.meta["wellKnown"].values():
            raise GraphError(403, "ErrorDeleteDistinguishedFolder" if ctx.method == "DELETE"
                             else "ErrorAccessDenied", "Distinguished folders cannot be "
                             "deleted or renamed.")
        return collection_route(
            ctx, MAIL_FOLDERS, folders, [folder_id], context,
            on_delete=lambda e: _drop_subtree(svc, folders, e["id"], "messages", upn))
    if rest[0] == "childFolders":
        svc.navigation_or_400(MAIL_FOLDERS.type, "childFolders")
        if len(rest) == 1:
            return _mail_children(ctx, upn, folders, folder_id, f"{context}/childFolders")
        child = folders.items.get(rest[1])
        if child is None or child.get("parentFolderId") != folder_id:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in "
                             "the store.")
        return _mail_folder(ctx, upn, folders, rest[1], rest[2:],
                            f"{context}/childFolders('{rest[1]}')")
    if rest[0] == "messages":
        return collection_route(ctx, MESSAGES, messages, rest[1:], f"{context}/messages",
                                fixed={"parentFolderId": folder_id})
    raise GraphError(400, "BadRequest", f"Resource not found for the segment '{rest[0]}'.")


def _with_counts(svc: Any, upn: str, folders: Collection,
                 chosen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The folders with their item, unread and child folder counts."""
    out = []
    for f in chosen:
        msgs = svc.store.collection(key("messages", upn, f["id"]))
        items = list(msgs.items.values()) if msgs else []
        out.append({**f, "totalItemCount": len(items),
                    "unreadItemCount": sum(1 for m in items if not m.get("isRead")),
                    "childFolderCount": len(_children(folders, f["id"]))})
    return out


def _messages(ctx: Ctx, upn: str, rest: list[str], base: str) -> Response:
    svc = ctx.service
    store = svc.store
    folders = store.collection(key("mailFolders", upn))
    assert folders is not None
    colls = [c for c in (store.collection(key("messages", upn, f)) for f in folders.items)
             if c is not None]
    if not rest:
        if ctx.method != "GET":
            raise GraphError(405, "ErrorInvalidRequest", "Create messages in a mail folder.")
        with store.lock:
            entities = [m for c in colls for m in c.items.values()]
        entities.sort(key=lambda m: m.get("receivedDateTime") or "", reverse=True)
        return paged(ctx, MESSAGES, entities, svc.emitter(ctx, MESSAGES), f"{base}/messages")
    if rest == ["delta"]:
        raise GraphError(400, "BadRequest", "Message delta is per folder: use "
                         "/mailFolders/{id}/messages/delta.")
    for coll in colls:
        if rest[0] in coll.items:
            return collection_route(ctx, MESSAGES, coll, rest, f"{base}/messages")
    raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the "
                     "store.")
