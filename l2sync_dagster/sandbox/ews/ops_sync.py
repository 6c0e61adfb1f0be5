"""SyncFolderItems: the change feed of one folder, at most 512 changes a page.

The SyncState is opaque to clients (base64 of the folder, the expiry epoch and positions in
the store's change log, see :func:`decode_state`). Like Exchange, an item created and deleted
between two calls is not reported at all, and an item changed several times is reported once.
"""

import base64
import json

from lxml import etree

from l2sync_dagster.sandbox.ews.call import Call, EwsError, message, response
from l2sync_dagster.sandbox.ews.fields import Shape, render_item
from l2sync_dagster.sandbox.ews.soap import m, sub, t
from l2sync_dagster.sandbox.ews.store import Item

MAX_CHANGES = 512


def encode_state(folder_id: str, epoch: int, hw: int, base: int, run_start: int) -> str:
    """The opaque SyncState string (see :func:`decode_state`)."""
    return base64.b64encode(json.dumps([folder_id, epoch, hw, base, run_start]).encode()).decode()


def decode_state(text: str, folder_id: str, epoch: int) -> tuple[int, int, int]:
    """``(hw, base, run_start)`` of a SyncState: changes up to ``hw`` were paged out; the
    client held every item as of ``base`` when the current run of pages began at
    ``run_start``. ErrorInvalidSyncStateData when it is not one of ours, belongs to another
    folder or has expired."""
    try:
        fid, ep, hw, base, run_start = json.loads(base64.b64decode(text, validate=True))
        ok = fid == folder_id and ep == epoch and all(
            isinstance(v, int) for v in (hw, base, run_start))
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise EwsError("ErrorInvalidSyncStateData",
                       "Synchronization state data is corrupt or otherwise invalid.")
    return hw, base, run_start


def sync_folder_items(call: Call, req: etree._Element) -> etree._Element:
    """One page of changes after the given SyncState."""
    root, msgs = response("SyncFolderItems")
    store = call.store
    try:
        folder = call.folder(req.find(m("SyncFolderId"))[0])
        state = (req.findtext(m("SyncState")) or "").strip()
        hw, base, run_start = decode_state(state, folder.id, store.epoch) if state else (0, 0, 0)
    except EwsError as err:
        # Exchange writes both even on errors (and exchangelib reads them before the code)
        msg = message(msgs, "SyncFolderItems", err)
        sub(msg, m("SyncState"), "")
        sub(msg, m("IncludesLastItemInRange"), "true")
        return root
    shape = Shape.parse(req.find(m("ItemShape")))
    limit = min(int(req.findtext(m("MaxChangesReturned")) or MAX_CHANGES), MAX_CHANGES)
    ignore_el = req.find(m("Ignore"))
    ignored = {i.get("Id") for i in ignore_el} if ignore_el is not None else set()
    if hw == base:  # the client is up to date as of base: a new run of pages begins
        run_start = store.seq
    events: list[tuple[int, str, Item | str]] = []
    for item in store.folder_items(folder.id):
        if item.seq > hw and item.id not in ignored:
            if item.created_seq > base:
                kind = "Create"
            elif item.read_flag_only and item.tag == "Message":
                kind = "ReadFlagChange"
            else:
                kind = "Update"
            events.append((item.seq, kind, item))
    for stone in store.tombstones.get(folder.id, []):
        if stone.seq <= hw or stone.item_id in ignored:
            continue
        # deleted before this run of pages: the client knew it only if it existed at base;
        # deleted during the run: it may have been paged out already
        known = stone.created_seq <= (base if stone.seq <= run_start else hw)
        if known:
            events.append((stone.seq, "Delete", stone.item_id))
    events.sort(key=lambda e: e[0])
    page = events[:limit]
    last = len(page) == len(events)
    if last:
        new_state = encode_state(folder.id, store.epoch, store.seq, store.seq, store.seq)
    else:
        new_state = encode_state(folder.id, store.epoch, page[-1][0], base, run_start)
    msg = message(msgs, "SyncFolderItems")
    sub(msg, m("SyncState"), new_state)
    sub(msg, m("IncludesLastItemInRange"), "true" if last else "false")
    changes = sub(msg, m("Changes"))
    for _, kind, obj in page:
        change = sub(changes, t(kind))
        if isinstance(obj, str):  # Delete
            sub(change, t("ItemId"), Id=obj)
        elif kind == "ReadFlagChange":
            sub(change, t("ItemId"), Id=obj.id, ChangeKey=obj.change_key)
            sub(change, t("IsRead"), obj.element.findtext(t("IsRead")) or "false")
        else:
            change.append(render_item(obj, folder, shape, call.order))
    return root
