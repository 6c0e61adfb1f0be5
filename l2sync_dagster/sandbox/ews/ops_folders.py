"""GetFolder, FindFolder, CreateFolder, DeleteFolder, SyncFolderHierarchy."""

import base64
import json

from lxml import etree

from l2sync_dagster.sandbox.ews.call import Call, EwsError, message, response
from l2sync_dagster.sandbox.ews.fields import Path, Shape, item_size, local, render_folder
from l2sync_dagster.sandbox.ews.soap import m, sub, t
from l2sync_dagster.sandbox.ews.store import Folder
from l2sync_dagster.sandbox.ews.views import Page, matches

FOLDER_KINDS = {"Folder", "CalendarFolder", "ContactsFolder", "TasksFolder", "SearchFolder"}


def _render(call: Call, folder: Folder, shape: Shape) -> etree._Element:
    store = call.store
    unread = sum(1 for i in store.folder_items(folder.id)
                 if i.element.findtext(t("IsRead")) == "false")
    parent = store.folders.get(folder.parent_id or "")
    size = 0
    if shape.extended:
        size = sum(item_size(i) for f in [folder, *store.descendants(folder.id)]
                   for i in store.folder_items(f.id))
    return render_folder(folder, shape, len(store.by_folder.get(folder.id, {})),
                         len(store.children(folder.id)), call.order, unread,
                         parent.change_key if parent is not None else None, size)


def _folder_value(folder: Folder, name: str) -> str | None:
    return {"DisplayName": folder.display_name, "FolderClass": folder.folder_class}.get(name)


def get_folder(call: Call, req: etree._Element) -> etree._Element:
    """GetFolder: one response message per requested folder."""
    shape = Shape.parse(req.find(m("FolderShape")))
    root, msgs = response("GetFolder")
    for ref in req.find(m("FolderIds")):
        try:
            folder = call.folder(ref)
        except EwsError as err:
            message(msgs, "GetFolder", err)
            continue
        msg = message(msgs, "GetFolder")
        sub(msg, m("Folders")).append(_render(call, folder, shape))
    return root


def find_folder(call: Call, req: etree._Element) -> etree._Element:
    """FindFolder: Shallow or Deep traversal, optional restriction and paging."""
    shape = Shape.parse(req.find(m("FolderShape")))
    deep = req.get("Traversal") == "Deep"
    page = Page.parse(req.find(m("IndexedPageFolderView")))
    restriction = req.find(m("Restriction"))
    root, msgs = response("FindFolder")
    for ref in req.find(m("ParentFolderIds")):
        try:
            parent = call.folder(ref)
        except EwsError as err:
            message(msgs, "FindFolder", err)
            continue
        found = (call.store.descendants(parent.id) if deep
                 else call.store.children(parent.id))
        if restriction is not None and len(restriction):
            found = [f for f in found
                     if matches(restriction[0], lambda p, f=f: _folder_value(f, p.name))]
        rows, nxt, last = page.apply(found, call.service.find_limit)
        msg = message(msgs, "FindFolder")
        rf = sub(msg, m("RootFolder"), IndexedPagingOffset=str(nxt),
                 TotalItemsInView=str(len(found)),
                 IncludesLastItemInRange="true" if last else "false")
        folders = sub(rf, t("Folders"))
        for f in rows:
            folders.append(_render(call, f, shape))
    return root


def create_folder(call: Call, req: etree._Element) -> etree._Element:
    """CreateFolder under one parent; a duplicate name is ErrorFolderExists."""
    root, msgs = response("CreateFolder")
    try:
        parent = call.folder(req.find(m("ParentFolderId"))[0])
    except EwsError as err:
        for _ in req.find(m("Folders")):
            message(msgs, "CreateFolder", err)
        return root
    for spec in req.find(m("Folders")):
        name = spec.findtext(t("DisplayName")) or ""
        kind = local(spec) if local(spec) in FOLDER_KINDS else "Folder"
        if any(c.display_name.lower() == name.lower() for c in call.store.children(parent.id)):
            message(msgs, "CreateFolder", EwsError(
                "ErrorFolderExists", f"Could not create folder '{name}' because a folder "
                                     "with that name already exists (names ignore case)."))
            continue
        # a plain t:Folder without a FolderClass has none (exchangelib then reads it back as
        # a generic Folder, as from Exchange); the typed folders get theirs
        cls = spec.findtext(t("FolderClass")) or {
            "CalendarFolder": "IPF.Appointment", "ContactsFolder": "IPF.Contact",
            "TasksFolder": "IPF.Task"}.get(kind)
        folder = call.store.add_folder(parent.mailbox, parent.id, name, kind, cls)
        msg = message(msgs, "CreateFolder")
        out = sub(sub(msg, m("Folders")), t(kind))
        sub(out, t("FolderId"), Id=folder.id, ChangeKey=folder.change_key)
    return root


def delete_folder(call: Call, req: etree._Element) -> etree._Element:
    """DeleteFolder: HardDelete/SoftDelete remove the subtree with its items,
    MoveToDeletedItems moves it; well-known folders cannot be deleted."""
    root, msgs = response("DeleteFolder")
    move = req.get("DeleteType") == "MoveToDeletedItems"
    for ref in req.find(m("FolderIds")):
        try:
            folder = call.folder(ref)
            if folder.distinguished:
                raise EwsError("ErrorDeleteDistinguishedFolder",
                               "Distinguished folders cannot be deleted.")
            if folder.system:
                raise EwsError("ErrorCannotDeleteObject", "The object cannot be deleted.")
        except EwsError as err:
            message(msgs, "DeleteFolder", err)
            continue
        trash = call.store.distinguished(folder.mailbox, "deleteditems")
        if move and trash is not None and folder.parent_id != trash.id:
            call.store.move_folder(folder, trash)
        else:
            call.store.remove_folder(folder)
        message(msgs, "DeleteFolder")
    return root


def _hierarchy_state(folder_id: str, epoch: int, seq: int) -> str:
    return base64.b64encode(json.dumps(["H", folder_id, epoch, seq]).encode()).decode()


def sync_folder_hierarchy(call: Call, req: etree._Element) -> etree._Element:
    """SyncFolderHierarchy: folders created, changed or deleted below the sync folder (the
    mailbox root by default) since the SyncState; all in one answer."""
    root, msgs = response("SyncFolderHierarchy")
    store = call.store
    try:
        ref = req.find(m("SyncFolderId"))
        if ref is not None:
            top = call.folder(ref[0])
        else:
            found = store.distinguished(call.open(call.acting), "root")
            if found is None:
                raise EwsError("ErrorFolderNotFound", "The mailbox has no root folder.")
            top = found
        since = 0
        state = (req.findtext(m("SyncState")) or "").strip()
        if state:
            try:
                kind, fid, epoch, since = json.loads(base64.b64decode(state, validate=True))
                valid = kind == "H" and fid == top.id and epoch == store.epoch
            except (ValueError, TypeError):
                valid = False
            if not valid:
                raise EwsError("ErrorInvalidSyncStateData",
                               "Synchronization state data is corrupt or otherwise invalid.")
    except EwsError as err:
        msg = message(msgs, "SyncFolderHierarchy", err)
        sub(msg, m("SyncState"), "")
        sub(msg, m("IncludesLastFolderInRange"), "true")
        return root
    shape = Shape.parse(req.find(m("FolderShape")))
    events: list[tuple[int, str, object]] = []
    for folder in store.descendants(top.id):
        if folder.seq > since:
            events.append((folder.seq, "Create" if folder.created_seq > since else "Update",
                           folder))
    for stone in store.folder_stones:
        if stone.mailbox == top.mailbox and stone.seq > since and stone.created_seq <= since:
            events.append((stone.seq, "Delete", stone.folder_id))
    events.sort(key=lambda e: e[0])
    msg = message(msgs, "SyncFolderHierarchy")
    sub(msg, m("SyncState"), _hierarchy_state(top.id, store.epoch, store.seq))
    sub(msg, m("IncludesLastFolderInRange"), "true")
    changes = sub(msg, m("Changes"))
    for _, kind, obj in events:
        change = sub(changes, t(kind))
        if isinstance(obj, Folder):
            change.append(_render(call, obj, shape))
        else:
            sub(change, t("FolderId"), Id=str(obj))
    return root


#: folder properties UpdateFolder may set (FolderClass only to the value it has: a folder's
#: class cannot change, ErrorObjectTypeChanged)
_SETTABLE = frozenset({"DisplayName", "FolderClass"})


def update_folder(call: Call, req: etree._Element) -> etree._Element:
    """UpdateFolder: rename (ErrorFolderExists when the parent holds that name in any case);
    a changed FolderClass is ErrorObjectTypeChanged, setting other properties
    ErrorInvalidPropertySet (deleting one the sandbox never holds changes nothing); all updates
    of one folder or none."""
    root, msgs = response("UpdateFolder")
    for change in req.find(m("FolderChanges")):
        try:
            try:
                folder = call.folder(change[0])
            except EwsError as err:
                if err.code != "ErrorFolderNotFound":
                    raise
                # UpdateFolder of a folder that is gone: Exchange answers ErrorItemNotFound
                raise EwsError("ErrorItemNotFound", "The specified object was not found in "
                                                    "the store.") from err
            name = folder.display_name
            for upd in change.find(t("Updates")):
                path = Path.parse(upd[0])
                if local(upd) == "DeleteFolderField":
                    if path.name in _SETTABLE:
                        raise EwsError("ErrorInvalidPropertyDelete",
                                       f"This property may not be deleted. ({path.name})")
                    continue  # a property the sandbox never holds stays unset
                if local(upd) != "SetFolderField" or path.kind != "plain" or \
                        path.name not in _SETTABLE:
                    raise EwsError("ErrorInvalidPropertySet",
                                   f"The sandbox does not update this folder property. "
                                   f"({path.name or path.kind})")
                value = (upd[1][0].text or "") if len(upd[1]) else ""
                if path.name == "FolderClass":
                    if value != (folder.folder_class or ""):
                        raise EwsError("ErrorObjectTypeChanged",
                                       "The folder class of a folder cannot be changed.")
                    continue
                name = value
            if name != folder.display_name:
                if folder.distinguished or folder.system:
                    raise EwsError("ErrorInvalidPropertySet",
                                   "A distinguished folder cannot be renamed.")
                siblings = call.store.children(folder.parent_id or "")
                if any(c.id != folder.id and c.display_name.lower() == name.lower()
                       for c in siblings):
                    raise EwsError("ErrorFolderExists",
                                   "A folder with the specified name already exists.")
                call.store.rename_folder(folder, name)
        except EwsError as err:
            message(msgs, "UpdateFolder", err)
            continue
        out = sub(sub(message(msgs, "UpdateFolder"), m("Folders")), t(folder.kind))
        sub(out, t("FolderId"), Id=folder.id, ChangeKey=folder.change_key)
    return root


def move_folder(call: Call, req: etree._Element) -> etree._Element:
    """MoveFolder: the folder keeps its FolderId (new ChangeKey); a distinguished folder,
    a move under itself, or a name the target already holds are refused."""
    root, msgs = response("MoveFolder")
    try:
        to = call.folder(req.find(m("ToFolderId"))[0])
    except EwsError as err:
        for _ in req.find(m("FolderIds")):
            message(msgs, "MoveFolder", err)
        return root
    for ref in req.find(m("FolderIds")):
        try:
            folder = call.folder(ref)
            if folder.distinguished or folder.system:
                raise EwsError("ErrorMoveDistinguishedFolder",
                               "Distinguished folders cannot be moved.")
            if to.id == folder.id or to in call.store.descendants(folder.id) or \
                    to.mailbox != folder.mailbox:
                raise EwsError("ErrorMoveCopyFailed", "The move or copy operation failed.")
            if to.id != folder.parent_id and any(
                    c.display_name.lower() == folder.display_name.lower()
                    for c in call.store.children(to.id)):
                raise EwsError("ErrorFolderExists",
                               "A folder with the specified name already exists.")
        except EwsError as err:
            message(msgs, "MoveFolder", err)
            continue
        if to.id != folder.parent_id:
            call.store.move_folder(folder, to)
        out = sub(sub(message(msgs, "MoveFolder"), m("Folders")), t(folder.kind))
        sub(out, t("FolderId"), Id=folder.id, ChangeKey=folder.change_key)
    return root


def empty_folder(call: Call, req: etree._Element) -> etree._Element:
    """EmptyFolder: its items go (moved to Deleted Items with MoveToDeletedItems), and with
    DeleteSubFolders its subfolders too."""
    root, msgs = response("EmptyFolder")
    move = req.get("DeleteType") == "MoveToDeletedItems"
    subfolders = req.get("DeleteSubFolders") in ("true", "1")
    for ref in req.find(m("FolderIds")):
        try:
            folder = call.folder(ref)
        except EwsError as err:
            message(msgs, "EmptyFolder", err)
            continue
        store = call.store
        trash = store.distinguished(folder.mailbox, "deleteditems") if move else None
        for item in store.folder_items(folder.id):
            if trash is not None and trash.id != folder.id:
                store.move_item(item, trash.id)
            else:
                store.remove_item(item)
        if subfolders:
            for child in [c for c in store.children(folder.id)
                          if not c.distinguished and not c.system]:
                if trash is not None and trash.id != folder.id:
                    store.move_folder(child, trash)
                else:
                    store.remove_folder(child)
        message(msgs, "EmptyFolder")
    return root
