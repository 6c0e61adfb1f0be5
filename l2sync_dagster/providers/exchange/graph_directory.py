"""``FROM Directory`` on the Graph backend: the organisation's people from ``/users``.

A complete read is a ``/users/delta`` round (``$select`` of the selected fields' properties,
pages to the ``@odata.deltaLink``); the cursor keeps the delta link, so an incremental read
follows it alone and gets the changed users and the deleted ones (``@removed``). WHERE is
evaluated on what Graph returned (:mod:`graph_where`, as for contacts: a delta query takes no
``$filter`` but on ids), and a changed user that no longer matches is reported deleted. A
user's ``_version`` is a hash of the values read (users carry no ETag) and ``_modified`` is
null (``user`` has no ``lastModifiedDateTime`` in v1.0).

Graph may answer a changed user in a later round with only the properties that changed; a
selected property missing from such an entry (absent, not null) is read with a GET of the user
(20 per ``$batch``), so a record never loses the values that did not change.

The app needs ``User.Read.All`` (or ``Directory.Read.All``); without it Graph answers 403
``Authorization_RequestDenied`` and the read fails saying so. The directory is never written:
``apply`` is refused by the provider before it reaches here.
"""

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import pandas as pd

from l2sync_dagster.providers.base import ProviderError, ReadResult
from l2sync_dagster.providers.exchange.backend import Record, records_frame
from l2sync_dagster.providers.exchange.graph_fields import GRAPH_FIELDS, GraphField
from l2sync_dagster.providers.exchange.graph_where import matches, top
from l2sync_dagster.providers.exchange.select import SelectStatement
from l2sync_dagster.providers.graph.batch import BatchRequest
from l2sync_dagster.providers.graph.client import GraphClient, GraphError

log = logging.getLogger("l2sync.providers.exchange.graph.directory")

USERS = "/users"
USERS_DELTA = "/users/delta"
#: the item type of ``FROM Directory``
DIRECTORY_TYPE = "DirectoryUser"
#: the application permission the read needs (what the error names)
PERMISSION = "User.Read.All"


def is_directory(stmt: SelectStatement) -> bool:
    """Whether the statement reads the directory (``FROM Directory``)."""
    return stmt.item_type.name == DIRECTORY_TYPE


class DirectoryReader:
    """Reads, looks up and probes ``FROM Directory`` through one Graph client."""

    def __init__(self, client: GraphClient, page_size: int, graph_url: str) -> None:
        self.client = client
        self.page_size = page_size
        self.graph_url = graph_url

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _mapping() -> dict[str, GraphField]:
        return GRAPH_FIELDS[DIRECTORY_TYPE]

    def select(self, stmt: SelectStatement) -> list[str]:
        """The user properties the statement reads (its fields and its WHERE fields)."""
        mapping = self._mapping()
        props = {"id"}
        for name in [f.name for f in stmt.fields] + [c.field for c in stmt.where]:
            spec = mapping.get(name)
            if spec is not None:
                props.update(spec.select)
        return sorted(props)

    def _signature(self, stmt: SelectStatement) -> str:
        return hashlib.sha1(json.dumps(["directory", self.select(stmt)]).encode()
                            ).hexdigest()[:16]

    def _headers(self) -> dict[str, str]:
        return {"Prefer": f"odata.maxpagesize={self.page_size}"}

    @staticmethod
    def error(exc: GraphError) -> ProviderError | GraphError:
        """A Graph error of a directory request as the provider reports it."""
        if exc.status in {401, 403}:
            return ProviderError(f"exchange (Graph): not authorized to read the directory "
                                 f"({exc.code}: {exc.graph_message}); the app needs the "
                                 f"application permission {PERMISSION}")
        return exc

    # -- verify ----------------------------------------------------------------------------
    def verify(self, stmt: SelectStatement) -> str:
        """One user of the directory (proves the permission)."""
        try:
            self.client.get(USERS, params={"$top": 1, "$select": "id"})
        except GraphError as exc:
            raise self.error(exc) from exc
        return f"Graph directory (/users) via {self.graph_url}"

    # -- reads -----------------------------------------------------------------------------
    def read(self, stmt: SelectStatement, cursor: str | None) -> ReadResult:
        """Every user (with a cursor), or the changes since ``cursor`` (its delta link)."""
        link = None
        if cursor:
            try:
                state = json.loads(cursor)
                if state.get("sig") == self._signature(stmt):
                    link = state.get("link") or None
                else:
                    log.info("select statement changed since the cursor; reading everything")
            except (ValueError, AttributeError, TypeError):
                log.warning("ignoring a cursor that is not a directory delta state")
        try:
            result = self.client.delta(USERS_DELTA, params={"$select": ",".join(
                self.select(stmt))}, headers=self._headers(), delta_link=link)
            items = result.items if result.full else self._complete(stmt, result.items)
        except GraphError as exc:
            raise self.error(exc) from exc
        records, out_of_scope = self._records(stmt, items)
        new_cursor = json.dumps({"sig": self._signature(stmt), "link": result.delta_link})
        if result.full:
            return ReadResult(records_frame(stmt, top(stmt, records)), complete=True,
                              cursor=new_cursor)
        deleted = list(dict.fromkeys([*result.removed, *out_of_scope]))
        return ReadResult(records_frame(stmt, records), complete=False, deleted=deleted,
                          cursor=new_cursor)

    def _complete(self, stmt: SelectStatement, items: list[dict[str, Any]]
                  ) -> list[dict[str, Any]]:
        """Changed users with a selected property left out: read whole (see the module
        docstring)."""
        wanted = self.select(stmt)
        partial = [it for it in items if any(p not in it for p in wanted)]
        if not partial:
            return items
        fetched = self._get_users([str(it["id"]) for it in partial], wanted)
        return [{**it, **fetched.get(str(it["id"]), {})} for it in items]

    def _get_users(self, ids: Sequence[str], props: Sequence[str]) -> dict[str, dict[str, Any]]:
        query = "?$select=" + ",".join(props)
        reqs = [BatchRequest(f"u{i}", "GET", f"{USERS}/{quote(key, safe='')}{query}")
                for i, key in enumerate(ids)]
        found: dict[str, dict[str, Any]] = {}
        for res in self.client.batch(reqs):
            if res.status in {400, 404}:  # gone (or not a user id)
                continue
            if not res.ok or not isinstance(res.body, dict):
                if res.status in {401, 403}:
                    raise ProviderError(f"exchange (Graph): not authorized to read the "
                                        f"directory ({res.error()}); the app needs the "
                                        f"application permission {PERMISSION}")
                raise ProviderError(f"exchange (Graph): reading directory users failed: "
                                    f"{res.error()}")
            found[str(res.body.get("id"))] = res.body
        return found

    def _records(self, stmt: SelectStatement, items: list[dict[str, Any]], *,
                 where: bool = True) -> tuple[list[Record], list[str]]:
        mapping = self._mapping()
        records: list[Record] = []
        out_of_scope: list[str] = []
        for item in items:
            values: dict[str, Any] = {}
            for f in stmt.fields:
                spec = mapping.get(f.name)
                value = spec.read(item) if spec else None
                values[f.name] = None if isinstance(value, str) and not value.strip() \
                    else value
            key = str(item["id"])
            if where and not matches(stmt, mapping, item, values):
                out_of_scope.append(key)
                continue
            version = hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()
                                   ).hexdigest()[:20]
            records.append(Record(key, version, None, values))
        return records, out_of_scope

    def lookup(self, stmt: SelectStatement, keys: Sequence[str]) -> pd.DataFrame:
        """The users among ``keys`` that still exist (GETs, 20 per ``$batch``)."""
        if not keys:
            return records_frame(stmt, [])
        try:
            found = self._get_users(keys, self.select(stmt))
        except GraphError as exc:
            raise self.error(exc) from exc
        records, _ = self._records(stmt, [found[k] for k in keys if k in found], where=False)
        return records_frame(stmt, records)

    def probe(self, stmt: SelectStatement, cursor: str | None) -> str:
        """One page of one entry from the stored delta link (nothing stored), else the first
        user."""
        link = None
        if cursor:
            try:
                link = json.loads(cursor).get("link")
            except (ValueError, AttributeError):
                link = None
        try:
            if link:
                try:
                    page = self.client.get(link, headers={"Prefer": "odata.maxpagesize=1"})
                except GraphError as exc:
                    if exc.status != 410:
                        raise
                    part: list[Any] = ["resync"]
                else:
                    entries = page.get("value", [])
                    part = ["same", link] if not entries else [
                        "changed", entries[0].get("id"), "@removed" in entries[0],
                        bool(page.get("@odata.nextLink"))]
            else:
                page = self.client.get(USERS, params={"$top": 1, "$select": "id"})
                part = ["top", [u.get("id") for u in page.get("value") or []]]
        except GraphError as exc:
            raise self.error(exc) from exc
        return "graph-directory:" + hashlib.sha256(json.dumps(part).encode()).hexdigest()[:24]
