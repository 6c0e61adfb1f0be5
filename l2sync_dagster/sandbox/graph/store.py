"""The Graph sandbox's data: collections of entities with a change log for delta queries.

Every collection (one contact folder, one calendar, one To Do list's tasks, one SharePoint
list's items, ...) keeps its entities as Graph JSON (date-times in UTC), the sequence number of
each entity's last change and tombstones of deleted entities. One counter for the whole store
orders every change, so a delta token is just "changes after sequence N" (plus the store's
``epoch``: bumping it expires every token handed out).
"""

import base64
import json
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def now_iso() -> str:
    """The current UTC time as Graph writes it (``2024-01-02T03:04:05Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def outlook_id() -> str:
    """An opaque Outlook-style id (base64url, like ``AAMkAGI2...AAA=``)."""
    raw = b"\x00\x00\x1b\x00" + secrets.token_bytes(42)
    return "AAMk" + base64.urlsafe_b64encode(raw).decode()


def change_key() -> str:
    """An opaque change key (Outlook ``changeKey`` / ``@odata.etag`` ``W/"..."``)."""
    return base64.b64encode(b"\x10\x00\x00\x00" + secrets.token_bytes(12)).decode()


def guid() -> str:
    """A random GUID string."""
    return str(uuid.uuid4())


@dataclass
class Collection:
    """Entities of one kind under one parent; ``meta`` holds kind-specific data (columns)."""

    key: str
    kind: str
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)
    removed: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON for ``save()``."""
        return {"key": self.key, "kind": self.kind, "items": self.items, "seq": self.seq,
                "removed": {k: list(v) for k, v in self.removed.items()}, "meta": self.meta}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Collection":
        """Inverse of :meth:`to_json`."""
        return cls(data["key"], data["kind"], data["items"], data["seq"],
                   {k: (v[0], v[1]) for k, v in data["removed"].items()}, data["meta"])


class Store:
    """All collections; thread safe through ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.collections: dict[str, Collection] = {}
        self.counter = 0
        self.epoch = 1

    def collection(self, key: str, kind: str | None = None) -> Collection | None:
        """The collection at ``key``; created when ``kind`` is given and it does not exist."""
        with self.lock:
            coll = self.collections.get(key)
            if coll is None and kind is not None:
                coll = self.collections[key] = Collection(key, kind)
            return coll

    def put(self, coll: Collection, entity: dict[str, Any]) -> dict[str, Any]:
        """Store ``entity`` (insert or replace) as the newest change."""
        with self.lock:
            self.counter += 1
            coll.items[entity["id"]] = entity
            coll.seq[entity["id"]] = self.counter
            coll.removed.pop(entity["id"], None)
            return entity

    def delete(self, coll: Collection, item_id: str) -> dict[str, Any] | None:
        """Remove an entity, leaving a tombstone for delta queries."""
        with self.lock:
            entity = coll.items.pop(item_id, None)
            coll.seq.pop(item_id, None)
            if entity is not None:
                self.counter += 1
                coll.removed[item_id] = (self.counter, entity)
            return entity

    def drop(self, key: str) -> None:
        """Remove a whole collection (its parent was deleted)."""
        with self.lock:
            self.collections.pop(key, None)

    def to_json(self) -> dict[str, Any]:
        """Everything, for ``save()``."""
        with self.lock:
            return {"counter": self.counter, "epoch": self.epoch,
                    "collections": [c.to_json() for c in self.collections.values()]}

    def load_json(self, data: dict[str, Any]) -> None:
        """Replace the data with what :meth:`to_json` wrote."""
        with self.lock:
            self.counter = data["counter"]
            self.epoch = data["epoch"]
            self.collections = {c["key"]: Collection.from_json(c) for c in data["collections"]}

    def dumps(self) -> str:
        """JSON text of :meth:`to_json`."""
        return json.dumps(self.to_json())
