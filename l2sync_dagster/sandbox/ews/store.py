"""Mailboxes, folders and items held in memory: ids, change keys, the change log for sync.

Items keep their writable fields as the XML element the client sent (``t:Contact`` ...);
server-managed fields (ItemId, ParentFolderId, DateTimeCreated, LastModifiedTime ...) live in
:class:`Item` attributes and are added when an item is written out. Every change bumps a
per-store sequence number; ``SyncFolderItems`` states are positions in that sequence.
"""

import base64
import copy
import datetime as dt
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from l2sync_dagster.sandbox.ews.soap import T

#: distinguished folder name -> (display name, element kind, folder class)
STANDARD_FOLDERS: dict[str, tuple[str, str, str | None]] = {
    "inbox": ("Inbox", "Folder", "IPF.Note"),
    "sentitems": ("Sent Items", "Folder", "IPF.Note"),
    "drafts": ("Drafts", "Folder", "IPF.Note"),
    "deleteditems": ("Deleted Items", "Folder", "IPF.Note"),
    "calendar": ("Calendar", "CalendarFolder", "IPF.Appointment"),
    "contacts": ("Contacts", "ContactsFolder", "IPF.Contact"),
    "tasks": ("Tasks", "TasksFolder", "IPF.Task"),
    "notes": ("Notes", "Folder", "IPF.StickyNote"),
    "journal": ("Journal", "Folder", "IPF.Journal"),
}

#: the other folders of an Exchange Online mailbox (empty; a client finds them where Exchange
#: has them): parent's distinguished name -> (display name, kind, folder class, distinguished
#: name). Folder classes are Exchange's (none where Exchange sets none).
SYSTEM_FOLDERS: dict[str, list[tuple[str, str, str | None, str | None]]] = {
    "root": [(name, "Folder", None, None) for name in (
        "Common Views", "Deferred Action", "ExchangeSyncData", "Freebusy Data", "Location",
        "MailboxAssociations", "Schedule", "Shortcuts", "Spooler Queue", "System",
        "Views")] + [
        ("Finder", "Folder", None, "searchfolders"),
        ("Recoverable Items", "Folder", None, "recoverableitemsroot"),
        ("Reminders", "Folder", "Outlook.Reminder", None),
        ("Sharing", "Folder", "IPF.Note", None)],
    "recoverableitemsroot": [("Deletions", "Folder", None, "recoverableitemsdeletions"),
                             ("Purges", "Folder", None, "recoverableitemspurges"),
                             ("Versions", "Folder", None, "recoverableitemsversions")],
    "msgfolderroot": [("Outbox", "Folder", "IPF.Note", "outbox"),
                      ("Junk Email", "Folder", "IPF.Note", "junkemail"),
                      ("Conversation History", "Folder", None, "conversationhistory"),
                      ("Conversation Action Settings", "Folder", "IPF.Configuration", None),
                      ("Sync Issues", "Folder", "IPF.Note", "syncissues")],
    "syncissues": [("Conflicts", "Folder", None, "conflicts"),
                   ("Local Failures", "Folder", None, "localfailures"),
                   ("Server Failures", "Folder", None, "serverfailures")],
    "contacts": [("GAL Contacts", "ContactsFolder", "IPF.Contact.GalContacts", None),
                 ("Recipient Cache", "ContactsFolder", "IPF.Contact.RecipientCache",
                  "recipientcache")],
}

#: item element -> default ItemClass
ITEM_CLASSES: dict[str, str] = {
    "Item": "IPM", "Message": "IPM.Note", "CalendarItem": "IPM.Appointment",
    "Contact": "IPM.Contact", "DistributionList": "IPM.DistList", "Task": "IPM.Task",
    "PostItem": "IPM.Post",
}


def now() -> dt.datetime:
    """The current UTC time, to the second (as Exchange reports it)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@functools.lru_cache(maxsize=4096)
def iso(ts: dt.datetime) -> str:
    """``2026-01-02T03:04:05Z``."""
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass
class Folder:
    """One folder of one mailbox."""

    id: str
    mailbox: str
    parent_id: str | None
    display_name: str
    kind: str = "Folder"  # Folder | CalendarFolder | ContactsFolder | TasksFolder
    folder_class: str | None = "IPF.Note"
    distinguished: str | None = None
    version: int = 1
    seq: int = 0  # change-log position of its last change (SyncFolderHierarchy)
    created_seq: int = 0
    system: bool = False  # one of Exchange's own folders: it cannot be deleted or moved

    @property
    def change_key(self) -> str:
        """Changes with every rename."""
        return _b64(f"CKF:{self.id[-6:]}:{self.version}")


@dataclass
class Item:
    """One item: its client-written fields (``element``) and the server-managed ones."""

    id: str
    mailbox: str
    folder_id: str
    element: etree._Element  # t:Contact, t:Message ... holding only writable fields
    created: dt.datetime
    modified: dt.datetime
    version: int = 1
    seq: int = 0  # position in the change log of its last change
    created_seq: int = 0
    read_flag_only: bool = False  # the last change only flipped IsRead
    #: an occurrence of a series shown as an item of its own ("Occurrence" / "Exception");
    #: such items are made when answering, never stored
    occurrence: str | None = None
    master_id: str | None = None

    @property
    def tag(self) -> str:
        """Local name of the item element (Contact, Message ...)."""
        return self.element.tag.rpartition("}")[2]

    @property
    def change_key(self) -> str:
        """Changes with every update, as Exchange's does."""
        return _b64(f"CK:{self.id}:{self.version}")


@dataclass
class Tombstone:
    """A deleted (or moved-out) item, remembered for SyncFolderItems."""

    item_id: str
    seq: int
    created_seq: int


@dataclass
class FolderTombstone:
    """A deleted folder, remembered for SyncFolderHierarchy."""

    folder_id: str
    mailbox: str
    seq: int
    created_seq: int


@dataclass
class Store:
    """All mailboxes of the sandbox."""

    folders: dict[str, Folder] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    by_folder: dict[str, dict[str, None]] = field(default_factory=dict)  # ordered sets
    tombstones: dict[str, list[Tombstone]] = field(default_factory=dict)
    folder_stones: list[FolderTombstone] = field(default_factory=list)
    seq: int = 0
    next_id: int = 0
    epoch: int = 0  # bumped when sync states expire

    # -- ids ---------------------------------------------------------------------------------
    def new_id(self, kind: str, mailbox: str) -> str:
        """A fresh opaque id (base64, like Exchange's)."""
        self.next_id += 1
        return _b64(f"AAMk:{kind}:{mailbox}:{self.next_id:08d}")

    @staticmethod
    def well_formed_change_key(key: str) -> bool:
        """Whether ``key`` is an item ChangeKey this store could have issued (any version)."""
        try:
            return base64.b64decode(key, validate=True).decode().startswith("CK:")
        except (ValueError, UnicodeDecodeError):
            return False

    @staticmethod
    def mailbox_of(object_id: str) -> str | None:
        """The mailbox an id belongs to (None for a malformed id)."""
        try:
            parts = base64.b64decode(object_id, validate=True).decode().split(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return parts[2] if len(parts) == 4 and parts[0] == "AAMk" else None

    # -- folders -----------------------------------------------------------------------------
    def add_folder(self, mailbox: str, parent_id: str | None, name: str, kind: str = "Folder",
                   folder_class: str | None = "IPF.Note",
                   distinguished: str | None = None) -> Folder:
        """Create a folder."""
        seq = self._tick()
        folder = Folder(self.new_id("F", mailbox), mailbox, parent_id, name, kind,
                        folder_class, distinguished, 1, seq, seq)
        self.folders[folder.id] = folder
        self.by_folder[folder.id] = {}
        self.tombstones[folder.id] = []
        return folder

    def add_mailbox(self, mailbox: str) -> None:
        """The folder tree of a new mailbox: the standard folders, then the system ones."""
        root = self.add_folder(mailbox, None, "", "Folder", None, "root")
        top = self.add_folder(mailbox, root.id, "Top of Information Store", "Folder", None,
                              "msgfolderroot")
        made = {"root": root, "msgfolderroot": top}
        for dist, (name, kind, cls) in STANDARD_FOLDERS.items():
            made[dist] = self.add_folder(mailbox, top.id, name, kind, cls, dist)
        for parent, folders in SYSTEM_FOLDERS.items():  # parents come before their children
            for name, kind, cls, dist in folders:
                folder = self.add_folder(mailbox, made[parent].id, name, kind, cls, dist)
                folder.system = True
                if dist:
                    made[dist] = folder

    def remove_folder(self, folder: Folder) -> None:
        """Delete a folder with its subfolders and items."""
        for f in [*self.descendants(folder.id), folder]:
            for item in self.folder_items(f.id):
                self.remove_item(item)
            del self.folders[f.id]
            self.folder_stones.append(FolderTombstone(f.id, f.mailbox, self._tick(),
                                                      f.created_seq))

    def move_folder(self, folder: Folder, parent: Folder) -> None:
        """Move a folder under another parent."""
        folder.parent_id = parent.id
        folder.version += 1
        folder.seq = self._tick()

    def rename_folder(self, folder: Folder, name: str) -> None:
        """Give a folder a new DisplayName (a new ChangeKey; SyncFolderHierarchy reports it)."""
        folder.display_name = name
        folder.version += 1
        folder.seq = self._tick()

    def copy_item(self, item: Item, folder_id: str) -> Item:
        """A copy of ``item`` (a new item with its own id) in folder ``folder_id``."""
        return self.add_item(self.folders[folder_id].mailbox, folder_id,
                             copy.deepcopy(item.element))

    def mailboxes(self) -> set[str]:
        """Every mailbox with a folder tree."""
        return {f.mailbox for f in self.folders.values()}

    def distinguished(self, mailbox: str, name: str) -> Folder | None:
        """A well-known folder of ``mailbox``."""
        for f in self.folders.values():
            if f.mailbox == mailbox and f.distinguished == name:
                return f
        return None

    def children(self, folder_id: str) -> list[Folder]:
        """Direct subfolders."""
        return [f for f in self.folders.values() if f.parent_id == folder_id]

    def descendants(self, folder_id: str) -> list[Folder]:
        """Every subfolder, depth first."""
        out: list[Folder] = []
        for child in self.children(folder_id):
            out.append(child)
            out += self.descendants(child.id)
        return out

    def folder_by_path(self, mailbox: str, path: str) -> Folder | None:
        """``contacts`` (distinguished) or ``Inbox/Projects/Alpha`` under msgfolderroot."""
        parts = [p for p in path.split("/") if p]
        if len(parts) == 1 and self.distinguished(mailbox, parts[0].lower()):
            return self.distinguished(mailbox, parts[0].lower())
        current = self.distinguished(mailbox, "msgfolderroot")
        for part in parts:
            if current is None:
                return None
            current = next((c for c in self.children(current.id)
                            if c.display_name.lower() == part.lower()), None)
        return current

    # -- items -------------------------------------------------------------------------------
    def _tick(self) -> int:
        self.seq += 1
        return self.seq

    def add_item(self, mailbox: str, folder_id: str, element: etree._Element,
                 when: dt.datetime | None = None) -> Item:
        """Store a new item."""
        ts = when or now()
        seq = self._tick()
        item = Item(self.new_id("I", mailbox), mailbox, folder_id, element, ts, ts, 1, seq, seq)
        self.items[item.id] = item
        self.by_folder[folder_id][item.id] = None
        return item

    def touch(self, item: Item, *, read_flag_only: bool = False) -> None:
        """Record an update: new change key, modification time, change-log position."""
        item.version += 1
        item.modified = now()
        item.seq = self._tick()
        item.read_flag_only = read_flag_only

    def remove_item(self, item: Item) -> None:
        """Delete an item (a tombstone stays for sync)."""
        del self.items[item.id]
        self.by_folder[item.folder_id].pop(item.id, None)
        self.tombstones[item.folder_id].append(Tombstone(item.id, self._tick(), item.created_seq))

    def move_item(self, item: Item, folder_id: str) -> None:
        """Move an item: a delete in the old folder, a create in the new one. As on Exchange
        the item gets a new ItemId there (its old id is not found any more)."""
        self.by_folder[item.folder_id].pop(item.id, None)
        self.tombstones[item.folder_id].append(Tombstone(item.id, self._tick(), item.created_seq))
        del self.items[item.id]
        item.id = self.new_id("I", self.folders[folder_id].mailbox)
        item.mailbox = self.folders[folder_id].mailbox
        self.items[item.id] = item
        item.folder_id = folder_id
        self.by_folder[folder_id][item.id] = None
        item.created_seq = item.seq = self._tick()
        item.version += 1

    def folder_items(self, folder_id: str) -> list[Item]:
        """The items of a folder in creation order."""
        return [self.items[i] for i in self.by_folder.get(folder_id, {})]

    # -- persistence -------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Everything as JSON-able data."""
        return {
            "seq": self.seq, "next_id": self.next_id, "epoch": self.epoch,
            "folders": [vars(f) for f in self.folders.values()],
            "items": [{"id": i.id, "mailbox": i.mailbox, "folder_id": i.folder_id,
                       "xml": etree.tostring(i.element).decode(), "created": iso(i.created),
                       "modified": iso(i.modified), "version": i.version, "seq": i.seq,
                       "created_seq": i.created_seq} for i in self.items.values()],
            "tombstones": {k: [vars(t) for t in v] for k, v in self.tombstones.items() if v},
            "folder_stones": [vars(t) for t in self.folder_stones],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Store":
        """The inverse of :meth:`to_json`."""
        store = cls(seq=data["seq"], next_id=data["next_id"], epoch=data.get("epoch", 0))
        for f in data["folders"]:
            folder = Folder(**f)
            store.folders[folder.id] = folder
            store.by_folder[folder.id] = {}
            store.tombstones[folder.id] = []
        for i in data["items"]:
            item = Item(i["id"], i["mailbox"], i["folder_id"], etree.fromstring(i["xml"]),
                        _parse_ts(i["created"]), _parse_ts(i["modified"]), i["version"],
                        i["seq"], i["created_seq"])
            store.items[item.id] = item
            store.by_folder[item.folder_id][item.id] = None
        for folder_id, stones in data.get("tombstones", {}).items():
            store.tombstones[folder_id] = [Tombstone(**s) for s in stones]
        store.folder_stones = [FolderTombstone(**s) for s in data.get("folder_stones", [])]
        return store

    def save(self, path: Path) -> None:
        """Write the JSON state file (atomically)."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json()))
        tmp.replace(path)


def _parse_ts(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def type_element(tag: str) -> etree._Element:
    """An empty item element ``t:<tag>``."""
    return etree.Element(f"{{{T}}}{tag}", nsmap={"t": T})
