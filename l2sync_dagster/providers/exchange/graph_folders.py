"""Where the Graph backend's items live: the select statement's scope resolved to Graph
collections (contact folders, the calendar, a To Do list, mail folders).

Contacts: the default folder is ``contactFolders/contacts`` (Exchange Online's well-known
name), else ``/contacts``; subfolders by display name through ``/contactFolders`` and
``childFolders``. Mail: well-known folder names, subfolders through ``childFolders``. Tasks:
``Tasks`` is the To Do list whose ``wellknownListName`` is ``defaultList``, ``Tasks/<name>``
another list. Calendar: the default calendar (``calendarView`` for reads, ``/events`` for
writes). Wildcards (``*``, ``?``) and ``/**`` recursion as in the EWS backend.
"""

import fnmatch
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from l2sync_dagster.providers.base import EntityMissing, ProviderError
from l2sync_dagster.providers.exchange.fields import suggestion
from l2sync_dagster.providers.exchange.select import SelectStatement
from l2sync_dagster.providers.graph.client import GraphClient, GraphError

#: mail folders Graph knows by well-known name
MAIL_FOLDERS = {"inbox": "inbox", "sentitems": "sentitems", "drafts": "drafts",
                "deleteditems": "deleteditems", "junkemail": "junkemail", "outbox": "outbox",
                "msgfolderroot": "msgfolderroot"}


@dataclass(frozen=True)
class Folder:
    """One collection of the scope: where to read (delta), create, and address its items."""

    id: str
    path: str  # relative to the scope's root ("" for the root)
    delta: str  # path of the delta query
    create: str  # POST target for new items
    items: str  # prefix of an item's path: f"{items}/{item_id}"
    list_path: str  # a plain (non-delta) listing, for windows and probes


class FolderResolver:
    """Resolves a scope to :class:`Folder` objects for one mailbox."""

    def __init__(self, client: GraphClient, email: str) -> None:
        self.client = client
        self.email = email
        self.user = f"/users/{quote(email)}"

    def resolve(self, stmt: SelectStatement) -> list[Folder]:
        """The folders (collections) of the statement's scope."""
        kind = stmt.item_type.name
        scope = stmt.scope
        u = self.user
        if kind == "CalendarItem":
            if scope.segments:
                raise ProviderError("exchange (Graph): calendar scopes other than the default "
                                    "Calendar are not supported by the Graph backend")
            return [Folder("calendar", "", f"{u}/calendarView/delta", f"{u}/events",
                           f"{u}/events", f"{u}/calendarView")]
        if kind == "Task":
            return [self._todo_list(stmt)]
        if kind == "Contact":
            return self._walk(stmt, self._default_contacts(), f"{u}/contactFolders",
                              "contactFolders")
        # messages
        root_name = MAIL_FOLDERS.get(scope.root.lower())
        if root_name is None:
            raise ProviderError(f"exchange (Graph): {scope.root} is not a mail folder")
        root = self._mail_folder(root_name, "")
        return self._walk(stmt, root, f"{u}/mailFolders", "mailFolders")

    def _default_contacts(self) -> Folder:
        """The default Contacts folder: by its well-known name ``contacts`` when the server
        knows it (Exchange Online does), else through ``/contacts`` (same folder)."""
        u = self.user
        try:
            folder = self.client.get(f"{u}/contactFolders/contacts", params={"$select": "id"},
                                     mailbox=self.email)
        except GraphError as exc:
            if exc.status not in {400, 404}:
                raise
            return Folder("contacts", "", f"{u}/contacts/delta", f"{u}/contacts",
                          f"{u}/contacts", f"{u}/contacts")
        root = self._contact_folder(str(folder["id"]), "")
        return Folder("contacts", "", root.delta, f"{u}/contacts", f"{u}/contacts",
                      root.list_path)

    def _mail_folder(self, folder_id: str, path: str) -> Folder:
        u = self.user
        base = f"{u}/mailFolders/{folder_id}"
        return Folder(folder_id, path, f"{base}/messages/delta", f"{base}/messages",
                      f"{u}/messages", f"{base}/messages")

    def _contact_folder(self, folder_id: str, path: str) -> Folder:
        u = self.user
        base = f"{u}/contactFolders/{folder_id}"
        return Folder(folder_id, path, f"{base}/contacts/delta", f"{base}/contacts",
                      f"{u}/contacts", f"{base}/contacts")

    def _children(self, collection: str, folder: Folder) -> list[dict[str, Any]]:
        if collection == "contactFolders" and folder.id == "contacts":
            path = f"{self.user}/contactFolders"  # the folders under the default one
        else:
            path = f"{self.user}/{collection}/{folder.id}/childFolders"
        return list(self.client.items(path, params={"$select": "id,displayName"},
                                      mailbox=self.email))

    def create(self, stmt: SelectStatement) -> list[str]:
        """Create the contact or mail folders of the scope's path that do not exist (one POST
        each, below the parent found or made before it); returns the paths created."""
        kind = stmt.item_type.name
        if kind == "Contact":
            root, collection = self._default_contacts(), "contactFolders"
        elif kind in ("CalendarItem", "Task"):
            raise ProviderError(f"exchange (Graph): a missing {kind} folder is not created "
                                "by the Graph backend; create it in Outlook")
        else:
            root_name = MAIL_FOLDERS.get(stmt.scope.root.lower())
            if root_name is None:
                raise ProviderError(f"exchange (Graph): {stmt.scope.root} is not a mail folder")
            root, collection = self._mail_folder(root_name, ""), "mailFolders"
        make = self._contact_folder if collection == "contactFolders" else self._mail_folder
        parent, made = root, []
        for segment in stmt.scope.segments:
            path = f"{parent.path}/{segment}".lstrip("/")
            same = [c for c in self._children(collection, parent)
                    if str(c.get("displayName", "")).lower() == segment.lower()]
            if same:
                parent = make(str(same[0]["id"]), path)
                continue
            if collection == "contactFolders" and parent.id == "contacts":
                target = f"{self.user}/contactFolders"  # children of the default folder
            else:
                target = f"{self.user}/{collection}/{parent.id}/childFolders"
            created = self.client.request("POST", target, body={"displayName": segment},
                                          mailbox=self.email, idempotent=False).json()
            parent = make(str(created["id"]), path)
            made.append(path)
        return made

    def _walk(self, stmt: SelectStatement, root: Folder, base: str,
              collection: str) -> list[Folder]:
        """The folders below ``root`` whose path matches the scope's segments (case
        insensitive, ``*``/``?`` per segment), each followed by its subfolders for ``/**``."""
        make = self._contact_folder if collection == "contactFolders" else self._mail_folder
        current = [root]
        for segment in stmt.scope.segments:
            found: list[Folder] = []
            for folder in current:
                for child in self._children(collection, folder):
                    name = str(child.get("displayName", ""))
                    if fnmatch.fnmatchcase(name.lower(), segment.lower()):
                        path = f"{folder.path}/{name}".lstrip("/")
                        found.append(make(str(child["id"]), path))
            if not found:
                error = self._not_found(stmt, root, collection)
                if stmt.scope.has_wildcards:
                    raise error
                raise EntityMissing(str(error), what=f"folder {'/'.join(stmt.scope.segments)!r}"
                                    f" of {self.email}")
            current = found
        if stmt.scope.recursive:
            out: list[Folder] = []
            seen: set[str] = set()
            for top_folder in current:
                for folder in [top_folder, *self._descendants(collection, top_folder, make)]:
                    if folder.id not in seen:
                        seen.add(folder.id)
                        out.append(folder)
            current = out
        return current

    def _descendants(self, collection: str, folder: Folder,
                     make: Any) -> list[Folder]:
        """Every folder below ``folder`` (breadth first), paths relative to the scope root."""
        out: list[Folder] = []
        queue = [folder]
        while queue:
            parent = queue.pop(0)
            for child in self._children(collection, parent):
                path = f"{parent.path}/{child.get('displayName')}".lstrip("/")
                sub = make(str(child["id"]), path)
                out.append(sub)
                queue.append(sub)
        return out

    def _not_found(self, stmt: SelectStatement, root: Folder, collection: str
                   ) -> ProviderError:
        """Folder not found, with the close matches among every folder below the root (as the
        EWS backend says it)."""
        make = self._contact_folder if collection == "contactFolders" else self._mail_folder
        known = [f.path for f in self._descendants(collection, root, make)]
        wanted = "/".join(stmt.scope.segments)
        root_name = stmt.scope.root if stmt.scope.root != "msgfolderroot" \
            else "the mailbox root"
        hint = suggestion(wanted, known)
        if not hint:
            tops = sorted(p for p in known if "/" not in p)
            hint = f"; folders there: {', '.join(tops[:20]) or 'none'}"
        return ProviderError(f"exchange (Graph): folder not found: no folder {wanted!r} under "
                             f"{root_name} of {self.email}{hint}")

    def _todo_list(self, stmt: SelectStatement) -> Folder:
        lists = list(self.client.items(f"{self.user}/todo/lists",
                                       mailbox=self.email))
        segments = stmt.scope.segments
        if stmt.scope.recursive or len(segments) > 1:
            raise ProviderError("exchange (Graph): To Do lists have no subfolders; use Tasks "
                                "or Tasks/<list name>")
        if segments:
            found = [x for x in lists
                     if fnmatch.fnmatchcase(str(x.get("displayName", "")).lower(),
                                            segments[0].lower())]
        else:
            found = [x for x in lists if x.get("wellknownListName") == "defaultList"]
        if len(found) != 1:
            names = sorted(str(x.get("displayName")) for x in lists)
            what = segments[0] if segments else "the default task list"
            hint = suggestion(segments[0], names) if segments else ""
            raise ProviderError(f"exchange (Graph): To Do list {what!r} not found (or not "
                                f"unique) in {self.email}{hint}; lists: {', '.join(names)}")
        lst = found[0]
        base = f"{self.user}/todo/lists/{lst['id']}/tasks"
        path = "" if not segments else str(lst.get("displayName"))
        return Folder(str(lst["id"]), path, f"{base}/delta", base, base, base)
