"""Control endpoints ``/_sandbox/ews/...`` (JSON) for tests and benchmarks."""

import datetime as dt
from typing import TYPE_CHECKING, Any

from l2sync_dagster.sandbox.ews import demo, occurrences
from l2sync_dagster.sandbox.ews.fields import FieldError
from l2sync_dagster.sandbox.ews.records import from_dict, to_dict
from l2sync_dagster.sandbox.ews.store import Folder, Item, iso
from l2sync_dagster.sandbox.service import Request, Response

if TYPE_CHECKING:
    from l2sync_dagster.sandbox.ews.endpoint import EwsService


def _folder(service: "EwsService", mailbox: str | None, path: str | None) -> Folder:
    mailbox = (mailbox or "").lower()
    if mailbox not in service.store.mailboxes():
        raise KeyError(f"no mailbox {mailbox!r}")
    folder = service.store.folder_by_path(mailbox, path or "")
    if folder is None:
        raise KeyError(f"no folder {path!r} in {mailbox}")
    return folder


def item_json(item: Item) -> dict[str, Any]:
    """An item as the control API shows it."""
    return {"id": item.id, "change_key": item.change_key, "type": item.tag,
            "created": iso(item.created), "modified": iso(item.modified),
            "fields": to_dict(item.element)}


def _one(query: dict[str, list[str]], name: str) -> str | None:
    return query.get(name, [None])[0]


def handle_control(service: "EwsService", request: Request, subpath: str) -> Response:
    """Dispatch one control request (the caller holds the service lock)."""
    store = service.store
    parts = [p for p in subpath.split("/") if p]
    what = parts[0] if parts else ""
    body: dict[str, Any] = (request.json() or {}) if request.method in ("POST", "PATCH") else {}
    q = request.query
    if what == "items" and len(parts) == 1 and request.method == "POST":
        folder = _folder(service, body.get("mailbox"), body.get("folder"))
        tag = body.get("type", "Contact")
        specs = list(body.get("items", []))
        start = int(body.get("start", len(store.by_folder[folder.id])))
        specs += [demo.demo_contact(start + n) for n in range(int(body.get("count", 0)))]
        created = [store.add_item(folder.mailbox, folder.id, from_dict(tag, s, service.order))
                   for s in specs]
        return Response.json({"created": len(created), "ids": [i.id for i in created]})
    if what == "items" and len(parts) == 2 and request.method == "PATCH":
        item = store.items[parts[1]]
        merged = {**to_dict(item.element), **body.get("fields", {})}
        merged = {k: v for k, v in merged.items() if v is not None}
        item.element = from_dict(item.tag, merged, service.order)
        store.touch(item)
        return Response.json(item_json(item))
    if what == "items" and len(parts) == 3 and parts[2] == "move" and request.method == "POST":
        # what Outlook does on delete: the item moves to Deleted Items (with a new id there)
        item = store.items[parts[1]]
        target = _folder(service, store.folders[item.folder_id].mailbox,
                         body.get("folder", "deleteditems"))
        store.move_item(item, target.id)
        return Response.json(item_json(item))
    if what == "items" and len(parts) == 3 and parts[2] == "occurrences" \
            and request.method == "POST":
        # what Outlook does on "delete this occurrence" / moving one occurrence
        master = store.items[parts[1]]
        index = int(body["index"])
        try:
            if body.get("delete"):
                occurrences.delete_occurrence(master, index)
                made = None
            else:
                times = {k: dt.datetime.fromisoformat(str(body[k]).replace("Z", "+00:00"))
                         for k in ("Start", "End") if body.get(k)}
                made = occurrences.modify_occurrence(master, index, times.get("Start"),
                                                     times.get("End"))
        except FieldError as err:
            return Response.json({"error": err.message, "code": err.code}, 400)
        store.touch(master)
        return Response.json({**item_json(master), "occurrence": made})
    if what == "items" and len(parts) == 2 and request.method == "GET":
        return Response.json(item_json(store.items[parts[1]]))
    if what == "items" and len(parts) == 2 and request.method == "DELETE":
        store.remove_item(store.items[parts[1]])
        return Response.json({"deleted": parts[1]})
    if what == "items" and request.method == "GET":
        folder = _folder(service, _one(q, "mailbox"), _one(q, "folder"))
        return Response.json({"folder": folder.id,
                              "items": [item_json(i) for i in store.folder_items(folder.id)]})
    if what == "items" and request.method == "DELETE":
        folder = _folder(service, _one(q, "mailbox"), _one(q, "folder"))
        items = store.folder_items(folder.id)
        for item in items:
            store.remove_item(item)
        return Response.json({"deleted": len(items)})
    if what == "folders" and request.method == "POST":
        parent = _folder(service, body.get("mailbox"), body.get("parent", "msgfolderroot"))
        kind = body.get("kind", "Folder")
        folder = store.add_folder(parent.mailbox, parent.id, body["name"], kind,
                                  body.get("folder_class", "IPF.Note"))
        return Response.json({"id": folder.id})
    if what == "folders" and request.method == "GET":
        mailbox = (_one(q, "mailbox") or "").lower()
        return Response.json({"folders": [
            {"id": f.id, "name": f.display_name, "parent": f.parent_id, "kind": f.kind,
             "distinguished": f.distinguished, "items": len(store.by_folder[f.id])}
            for f in store.folders.values() if f.mailbox == mailbox]})
    if what == "find-limit" and request.method == "POST":
        service.find_limit = int(body["limit"])
        return Response.json({"find_limit": service.find_limit})
    if what == "expire-sync-states" and request.method == "POST":
        store.epoch += 1
        return Response.json({"epoch": store.epoch})
    return Response.json({"error": f"no control endpoint {request.method} {subpath!r}"}, 404)

