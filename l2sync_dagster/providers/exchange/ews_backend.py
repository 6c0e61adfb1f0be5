"""The EWS backend of the ``exchange`` provider (exchangelib). See ``ews_reads.py`` for the
request plan and the cursor, ``ews_writes.py`` for writes, ``ews_values.py`` for fields,
``ews_client.py`` for authentication, throttling and request counting and
``ews_directory.py`` for ``FROM Directory`` (the global address list through FindPeople).
"""

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

import pandas as pd
from exchangelib import Q
from exchangelib.errors import ErrorFolderNotFound
from exchangelib.fields import FieldPath
from exchangelib.folders import Folder

from l2sync_dagster.providers.base import (
    Change,
    CreatedCallback,
    Outcome,
    ProviderError,
    ReadResult,
)
from l2sync_dagster.providers.exchange import ews_reads as reads
from l2sync_dagster.providers.exchange import ews_writes as writes
from l2sync_dagster.providers.exchange.backend import ExchangeBackend, Record, Window, records_frame
from l2sync_dagster.providers.exchange.connection import ExchangeSettings
from l2sync_dagster.providers.exchange.ews_client import EwsConnection, describe_error, retrying
from l2sync_dagster.providers.exchange.ews_directory import EwsDirectoryReader
from l2sync_dagster.providers.exchange.ews_values import (
    ACCESSORS,
    EWS_UNAVAILABLE,
    Shape,
    ews_utc,
    merge_members,
    read_values,
    register_extended,
    shape_of,
)
from l2sync_dagster.providers.exchange.fields import ITEM_TYPES
from l2sync_dagster.providers.exchange.graph_directory import is_directory
from l2sync_dagster.providers.exchange.select import (
    SelectStatement,
    order_records,
    statement_matches,
)
from l2sync_dagster.providers.exchange.stamps import FIND_BATCH, STAMP


class EwsBackend(ExchangeBackend):
    """Exchange Web Services through exchangelib."""

    name: ClassVar[str] = "ews"
    label: ClassVar[str] = "EWS (Backend=ews)"

    def __init__(self, settings: ExchangeSettings, *, retry_wait_s: float | None = None
                 ) -> None:
        """Connect lazily; ``retry_wait_s`` is the first back-off without BackOffMilliseconds
        (tests make it small)."""
        super().__init__(settings)
        self.conn = EwsConnection(settings, retry_wait_s=retry_wait_s)
        self.directory = EwsDirectoryReader(self.conn, settings)
        self._shapes: dict[str, Shape] = {}

    # --- helpers -----------------------------------------------------------------------------
    def shape(self, stmt: SelectStatement) -> Shape:
        """Accessors and request paths of a statement (cached)."""
        if stmt.text not in self._shapes:
            self._shapes[stmt.text] = shape_of(stmt)
        return self._shapes[stmt.text]

    def _call(self, what: str, fn: Any) -> Any:
        return retrying(fn, self.settings, what)

    def stats(self) -> dict[str, Any]:
        """HTTP requests (every attempt, throttled ones included) and throttling waits."""
        return self.conn.counters.as_dict()

    def close(self) -> None:
        """Close the HTTP sessions."""
        self.conn.close()

    # --- verify ------------------------------------------------------------------------------
    def verify(self, stmt: SelectStatement) -> str:
        """GetFolder of the scope's root (one request); FindFolder for paths and wildcards;
        one FindPeople query for the directory."""
        if is_directory(stmt):
            return self.directory.verify(stmt)
        try:
            folders = reads.resolve_scope(self.conn, stmt, check_root=True)
        except ErrorFolderNotFound:
            raise ProviderError(
                f"exchange: folder not found: {stmt.scope.root} in mailbox "
                f"{self.settings.email}") from None
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated precisely
            raise describe_error(exc, self.settings, "opening the mailbox") from exc
        names = ", ".join(f.path or stmt.scope.root for f in folders[:5])
        more = f" (+{len(folders) - 5} more)" if len(folders) > 5 else ""
        return (f"exchange (EWS): opened mailbox {self.settings.email}, "
                f"{len(folders)} folder(s): {names}{more}")

    def create_entity(self, stmt: SelectStatement) -> list[str]:
        """Create the scope's missing folders (see ``ews_reads.create_path``)."""
        if is_directory(stmt):
            raise ProviderError(f"exchange (EWS): {stmt.item_type.read_only}")
        return self._call("creating the folder", lambda: reads.create_path(self.conn, stmt))

    # --- read --------------------------------------------------------------------------------
    def read(self, stmt: SelectStatement, cursor: str | None = None,
             window: Window | None = None, window_field: str | None = None) -> ReadResult:
        """Complete read (with a cursor for the next read) or the changes since ``cursor``."""
        if is_directory(stmt):
            if window is not None:
                raise ProviderError("exchange (EWS): the directory is not read in windows "
                                    "(partitions); read it whole")
            return self.directory.read(stmt)
        try:
            if window is not None:
                return self._read_window(stmt, window, window_field or "")
            if stmt.top is not None:
                return self._read_top(stmt)
            data = reads.decode_cursor(cursor, stmt) if cursor else None
            if data is not None:
                self.conn.set_version(data.get("version"))
                try:
                    result = self._read_changes(stmt, data)
                except reads.CursorExpired:
                    result = None
                if result is not None:
                    return result
            return self._read_full(stmt)
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated precisely
            raise describe_error(exc, self.settings, "reading") from exc

    def unavailable(self, item_type: str) -> dict[str, str]:
        """Catalog fields exchangelib has no attribute for (none today)."""
        return dict(EWS_UNAVAILABLE.get(item_type, {}))

    def type_unavailable(self, item_type: str) -> str | None:
        """An item type EWS has no API for (none today: the directory is FindPeople's)."""
        return ITEM_TYPES[item_type].no_api.get("ews") if item_type in ITEM_TYPES else None

    def stamps_supported(self, stmt: SelectStatement) -> bool:
        """Every item type but the directory (never written)."""
        return not is_directory(stmt)

    def _fetch(self, stmt: SelectStatement, ids: list[str], folder_of: dict[str, str], *,
               where: bool = True, shape: Shape | None = None,
               parents: dict[str, str] | None = None) -> tuple[list[Record], list[str]]:
        """GetItem the ids: (records of the item type that match WHERE, ids gone or out).
        With ``parents`` (folder id -> path) only items in those folders count (``shape``
        then requests ParentFolderId) and FolderPath comes from the item's folder."""
        shape = shape or self.shape(stmt)
        records: list[Record] = []
        gone: list[str] = []
        for item_id, item in reads.get_items(self.conn, shape, ids,
                                             self.settings.read_batch_size):
            if item is None or not reads.wanted(stmt, item):
                gone.append(item_id)
                continue
            if parents is not None:
                parent = getattr(getattr(item, "parent_folder_id", None), "id", None)
                if parent not in parents:
                    gone.append(item_id)
                    continue
                folder_of = {**folder_of, item_id: parents[parent]}
            values = read_values(shape, item)
            if "FolderPath" in stmt.columns:
                values["FolderPath"] = folder_of.get(item_id)
            if where and stmt.where and not reads_matches(stmt, values):
                gone.append(item_id)
                continue
            records.append(Record(item.id, item.changekey,
                                  ews_utc(getattr(item, "last_modified_time", None)), values))
        return records, gone

    def _read_full(self, stmt: SelectStatement) -> ReadResult:
        folders = self._call("resolving the folder scope",
                             lambda: reads.resolve_scope(self.conn, stmt))
        states: dict[str, dict[str, str | None]] = {}
        ids: list[str] = []
        folder_of: dict[str, str] = {}
        shape = self.shape(stmt)
        for sf in folders:
            passed = self._call("reading the change feed (SyncFolderItems)",
                                lambda sf=sf: reads.sync_pass(self.conn, sf.folder, None))
            # a well-known folder is kept by its distinguished name: no GetFolder needed
            fid = sf.id or f"@{stmt.scope.root}"
            states[fid] = {"path": sf.path, "state": passed.state}
            if stmt.where:
                q, _rest = reads.build_q(stmt, shape, stmt.where)
                if q is not None:
                    found = self._call("finding items (FindItem)",
                                       lambda sf=sf, q=q: reads.find_ids(self.conn, sf.folder, q))
                    keep = {i for i, _ in found}
                    chosen = [i for i in passed.changed if i in keep]
                else:
                    chosen = list(passed.changed)
            else:
                chosen = list(passed.changed)
            chosen = [i for i in chosen if self._class_ok(stmt, passed.changed_classes.get(i))]
            for i in chosen:
                folder_of[i] = sf.path
            ids += chosen
        records, _gone = self._fetch(stmt, ids, folder_of)
        frame = records_frame(stmt, records)
        return ReadResult(frame, complete=True, deleted=[],
                          cursor=reads.encode_cursor(self.conn, stmt, states))

    @staticmethod
    def _class_ok(stmt: SelectStatement, item_class: str | None) -> bool:
        """Cheap pre-filter on ItemClass from the feed (None: unknown, keep)."""
        if not item_class:
            return True
        low = item_class.lower()
        name = stmt.item_type.name
        if name == "Note":
            return low.startswith("ipm.stickynote")
        if name == "ContactGroup":
            return low.startswith("ipm.distlist")
        if name == "Contact":
            return low.startswith("ipm.contact")
        if name == "Message":
            return not low.startswith(("ipm.stickynote", "ipm.contact", "ipm.distlist",
                                       "ipm.appointment", "ipm.task"))
        return True

    def _scope_folders(self, stmt: SelectStatement, data: dict[str, Any]
                       ) -> list[reads.ScopeFolder] | None:
        """The folders of an incremental read; None when folders disappeared (then the read
        must be complete to reveal the deletes)."""
        stored: dict[str, Any] = data["folders"]
        scope = stmt.scope
        dynamic = scope.recursive or scope.has_wildcards
        if not dynamic:
            return [reads.ScopeFolder(
                reads.root_folder(self.conn, fid[1:]) if fid.startswith("@")
                else reads.folder_by_id(self.conn, fid), info.get("path", ""), fid)
                for fid, info in stored.items()]
        current = self._call("resolving the folder scope",
                             lambda: reads.resolve_scope(self.conn, stmt))
        ids = {sf.id for sf in current}
        if any(fid not in ids for fid in stored):
            return None
        return current

    def _read_changes(self, stmt: SelectStatement, data: dict[str, Any]) -> ReadResult | None:
        folders = self._scope_folders(stmt, data)
        if folders is None:
            return None
        stored: dict[str, Any] = data["folders"]
        states: dict[str, dict[str, str | None]] = {}
        changed: list[str] = []
        deleted: list[str] = []
        folder_of: dict[str, str] = {}
        for sf in folders:
            fid = sf.id or ""
            state = (stored.get(fid) or {}).get("state")
            try:
                passed = self._call(
                    "reading the change feed (SyncFolderItems)",
                    lambda sf=sf, state=state: reads.sync_pass(self.conn, sf.folder, state))
            except ProviderError as exc:
                if isinstance(exc.__cause__, ErrorFolderNotFound):
                    return None
                raise
            states[fid] = {"path": sf.path, "state": passed.state}
            for i in passed.changed:
                if self._class_ok(stmt, passed.changed_classes.get(i)):
                    changed.append(i)
                    folder_of[i] = sf.path
            deleted += passed.deleted
        records, gone = self._fetch(stmt, changed, folder_of)
        frame = records_frame(stmt, records)
        return ReadResult(frame, complete=False, deleted=deleted + gone,
                          cursor=reads.encode_cursor(self.conn, stmt, states))

    def _read_top(self, stmt: SelectStatement) -> ReadResult:
        """TOP n: FindItem with the restriction and sort order, limited; always complete."""
        shape = self.shape(stmt)
        folders = self._call("resolving the folder scope",
                             lambda: reads.resolve_scope(self.conn, stmt))
        q, rest = reads.build_q(stmt, shape, stmt.where)
        order = None
        if stmt.order_by:
            acc = shape.accessors.get(stmt.order_by)
            if acc is not None and acc.label is None and acc.on_server:
                field = shape.model.get_field_by_fieldname(acc.attr)
                order = (FieldPath(field=field), stmt.descending)
        # the server's idea of NULL differs from ours (a blank text exists for it), so with a
        # WHERE the server's order is used but the limit is applied to what matches here
        limit = None if rest or stmt.where else stmt.top
        ids: list[str] = []
        folder_of: dict[str, str] = {}
        for sf in folders:
            found = self._call("finding items (FindItem)",
                               lambda sf=sf: reads.find_ids(self.conn, sf.folder, q,
                                                            order=order, limit=limit))
            for i, _ in found:
                folder_of[i] = sf.path
                ids.append(i)
        records: list[Record] = []
        step = self.settings.read_batch_size
        for i in range(0, len(ids), step):
            got, _ = self._fetch(stmt, ids[i:i + step], folder_of)
            records += got
            if order is not None and len(folders) == 1 and len(records) >= (stmt.top or 0):
                break  # FindItem's order is the order: the first matches are the TOP ones
        records = order_records(stmt, records, lambda r, col: r.values.get(col))
        # complete for what TOP selects; describe() says the scope is "limited"
        return ReadResult(records_frame(stmt, records), complete=True, cursor=None)

    def _read_window(self, stmt: SelectStatement, window: Window, field: str) -> ReadResult:
        """Items whose ``field`` is in [start, end), as a FindItem restriction; complete for
        the window, no cursor."""
        from l2sync_dagster.providers.exchange.select import Condition

        f = stmt.item_type.field(field)
        if f is None or not f.filterable:
            raise ProviderError(f"exchange: cannot partition by {field!r}")
        start, end = window
        conds = list(stmt.where)
        if start is not None:
            conds.append(Condition(f.name, ">=", _coerce(start, f.type)))
        if end is not None:
            conds.append(Condition(f.name, "<", _coerce(end, f.type)))
        windowed = SelectStatement(stmt.text, stmt.item_type, stmt.fields, stmt.extended,
                                   stmt.scope, None, tuple(conds), stmt.order_by,
                                   stmt.descending, stmt.star)
        shape = self.shape(stmt)
        folders = self._call("resolving the folder scope",
                             lambda: reads.resolve_scope(self.conn, stmt))
        q, _rest = reads.build_q(windowed, shape, conds)
        ids: list[str] = []
        folder_of: dict[str, str] = {}
        for sf in folders:
            for i, _ in self._call("finding items (FindItem)",
                                   lambda sf=sf: reads.find_ids(self.conn, sf.folder, q)):
                folder_of[i] = sf.path
                ids.append(i)
        self._shapes.setdefault(windowed.text, shape)
        records, _ = self._fetch(windowed, ids, folder_of)
        return ReadResult(records_frame(stmt, records), complete=True, cursor=None)

    # --- probe -------------------------------------------------------------------------------
    def probe(self, stmt: SelectStatement, cursor: str | None = None) -> str:
        """With a cursor: one SyncFolderItems (MaxChangesReturned=1, IdOnly) per folder from
        the stored states; the stored cursor is not advanced. Without: a full IdOnly pass."""
        if is_directory(stmt):
            return self.directory.probe(stmt)
        data = reads.decode_cursor(cursor, stmt) if cursor else None
        try:
            if data is not None:
                self.conn.set_version(data.get("version"))
                folders = self._scope_folders(stmt, data)
                if folders is None:
                    return _digest("folders-changed", cursor or "")
                parts = []
                for sf in folders:
                    state = (data["folders"].get(sf.id or "") or {}).get("state")
                    try:
                        r = self._call("probing (SyncFolderItems)",
                                       lambda sf=sf, state=state: reads.sync_pass(
                                           self.conn, sf.folder, state, max_changes=1,
                                           pages=1))
                    except reads.CursorExpired:
                        return _digest("expired", cursor or "")
                    parts.append(f"{sf.id}:{'changed' if r.changed or r.deleted else 'same'}")
                    if r.changed or r.deleted:
                        parts.append(r.state or "")
                return _digest(cursor or "", *parts)
            folders = self._call("resolving the folder scope",
                                 lambda: reads.resolve_scope(self.conn, stmt))
            parts = []
            for sf in folders:
                r = self._call("probing (SyncFolderItems)",
                               lambda sf=sf: reads.sync_pass(self.conn, sf.folder, None))
                parts.append(f"{sf.id}:" + ",".join(sorted(f"{k}={v}"
                                                           for k, v in r.changed.items())))
            return _digest(*parts)
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise describe_error(exc, self.settings, "probing") from exc

    # --- apply -------------------------------------------------------------------------------
    def _insert_folder(self, stmt: SelectStatement) -> Folder:
        scope = stmt.scope
        if scope.well_known:
            return reads.root_folder(self.conn, scope.root)
        folders = self._call("resolving the folder scope",
                             lambda: reads.resolve_scope(self.conn, stmt))
        return folders[0].folder

    def _time_zones(self, stmt: SelectStatement, updates: list[Change]
                    ) -> dict[str, dict[str, Any]]:
        """The current time zones of calendar items whose Start/End change without a time
        zone, so that the update keeps them (one GetItem per ReadBatchSize items)."""
        if stmt.item_type.name != "CalendarItem":
            return {}
        keys = [c.key for c in updates if c.key and ({"Start", "End"} & set(c.values))
                and "StartTimeZone" not in c.values]
        if not keys:
            return {}
        calendar = ACCESSORS["CalendarItem"]
        tz_shape = Shape(self.shape(stmt).model, {
            "StartTimeZone": calendar["StartTimeZone"], "EndTimeZone": calendar["EndTimeZone"]},
            [])
        tz_shape.paths = [p for acc in tz_shape.accessors.values()
                          for p in acc.paths(tz_shape.model)]
        out: dict[str, dict[str, Any]] = {}
        for key, item in reads.get_items(self.conn, tz_shape, keys,
                                         self.settings.read_batch_size):
            if item is not None:
                out[key] = {"_start_timezone": item._start_timezone,
                            "_end_timezone": item._end_timezone}
        return out

    def _with_current_members(self, stmt: SelectStatement, updates: list[Change]
                              ) -> list[Change]:
        """Contact group updates of ``Members`` merged with the members the groups have now
        (one GetItem per ReadBatchSize groups), so that a member who stays keeps its display
        name and the contact it points to."""
        if stmt.item_type.name != "ContactGroup":
            return updates
        keys = [c.key for c in updates if c.key and "Members" in c.values]
        if not keys:
            return updates
        model = self.shape(stmt).model
        member_shape = Shape(model, {"Members": ACCESSORS["ContactGroup"]["Members"]}, [])
        member_shape.paths = ACCESSORS["ContactGroup"]["Members"].paths(model)
        current = {key: getattr(item, "members", None) for key, item in reads.get_items(
            self.conn, member_shape, keys, self.settings.read_batch_size) if item is not None}
        out = []
        for ch in updates:
            if ch.key in current and "Members" in ch.values:
                try:
                    merged = merge_members(ch.values["Members"], current[ch.key])
                except ValueError:
                    out.append(ch)  # the write reports the bad value for this record
                    continue
                ch = replace(ch, values={**ch.values, "Members": merged or []})
            out.append(ch)
        return out

    # --- lookup and stamps ---------------------------------------------------------------
    def _scope_ids(self, stmt: SelectStatement) -> list[reads.ScopeFolder]:
        """The scope's folders with their real ids (GetFolder for a well-known folder)."""
        return self._call("resolving the folder scope",
                          lambda: reads.resolve_scope(self.conn, stmt, check_root=True))

    def lookup(self, stmt: SelectStatement, keys: Sequence[str]) -> pd.DataFrame:
        """GetItem of ``keys`` in batches of ReadBatchSize; an item counts when it is of the
        item type and in one of the scope's folders (a deleted item is gone or in Deleted
        Items). WHERE and TOP do not apply. Directory keys are SMTP addresses."""
        if is_directory(stmt):
            return self.directory.lookup(stmt, keys)
        try:
            folders = self._scope_ids(stmt) if keys else []
            parents = {sf.id or "": sf.path for sf in folders}
            base = self.shape(stmt)
            parent_path = FieldPath(field=base.model.get_field_by_fieldname("parent_folder_id"))
            shape = Shape(base.model, base.accessors, [*base.paths, parent_path])
            records, _gone = self._fetch(stmt, list(keys), {}, where=False, shape=shape,
                                         parents=parents) if keys else ([], [])
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated precisely
            raise describe_error(exc, self.settings, "looking items up (GetItem)") from exc
        return records_frame(stmt, records)

    def find_stamps(self, stmt: SelectStatement, stamps: Sequence[str]) -> dict[str, str]:
        """FindItem per folder with a restriction on the stamp property (``FIND_BATCH``
        stamps per request, OR-ed), returning the property with each id."""
        found: dict[str, str] = {}
        try:
            folders = self._scope_ids(stmt) if stamps else []
            model = self.shape(stmt).model
            attr = register_extended(model, STAMP)
            if stmt.item_type.name == "Note":  # responses are parsed as Message
                from exchangelib.items import Message

                register_extended(Message, STAMP)
            paths = {FieldPath(field=model.get_field_by_fieldname(attr)),
                     FieldPath(field=model.get_field_by_fieldname("item_class"))}
            wanted = list(stamps)
            for sf in folders:
                for i in range(0, len(wanted), FIND_BATCH):
                    chunk = wanted[i:i + FIND_BATCH]
                    q = Q(**{attr: chunk[0]})
                    for stamp in chunk[1:]:
                        q = q | Q(**{attr: stamp})
                    rows = self._call("finding stamped items (FindItem)",
                                      lambda sf=sf, q=q: reads.find_with(
                                          self.conn, sf.folder, q, paths))
                    for item in rows:
                        value = getattr(item, attr, None)
                        if value in chunk and reads.wanted(stmt, item):
                            found.setdefault(str(value), item.id)
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated precisely
            raise describe_error(exc, self.settings, "finding stamped items") from exc
        return found

    def apply(self, stmt: SelectStatement, changes: Sequence[Change], *,
              created: CreatedCallback | None = None) -> list[Outcome]:
        """Inserts into the scope's first folder, then updates, then deletes."""
        shape = self.shape(stmt)
        batch = self.settings.batch_size
        by_ref: dict[str, Outcome] = {}
        inserts = [c for c in changes if c.op == "insert"]
        updates = [c for c in changes if c.op == "update"]
        deletes = [c for c in changes if c.op == "delete"]
        bad = [c for c in changes if c.op not in ("insert", "update", "delete")]
        for c in bad:
            by_ref[c.ref] = Outcome(c.ref, False, c.key, None, f"unknown operation {c.op!r}")
        for c in updates + deletes:
            if not c.key:
                by_ref[c.ref] = Outcome(c.ref, False, None, None, f"{c.op} needs a key")
        updates = [c for c in updates if c.key]
        deletes = [c for c in deletes if c.key]
        failed: list[BaseException] = []

        def report(made: Sequence[Outcome]) -> None:
            try:
                created(made)  # type: ignore[misc]
            except BaseException as exc:
                failed.append(exc)
                raise

        try:
            if inserts:
                folder = self._insert_folder(stmt)
                for o in writes.create(self.conn, shape, stmt.item_type, folder, inserts,
                                       batch, report if created else None):
                    by_ref[o.ref] = o
            if updates:
                updates = self._with_current_members(stmt, updates)
                preset = self._time_zones(stmt, updates)
                for o in writes.update(self.conn, shape, updates, batch, preset):
                    by_ref[o.ref] = o
            if deletes:
                for o in writes.delete(self.conn, deletes, batch):
                    by_ref[o.ref] = o
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001
            if failed and exc is failed[0]:
                raise  # the caller's own exception, not a server error
            raise describe_error(exc, self.settings, "writing") from exc
        return [by_ref[c.ref] for c in changes]


def reads_matches(stmt: SelectStatement, values: dict[str, Any]) -> bool:
    """WHERE evaluated on canonical values."""
    return statement_matches(stmt, values)


def _coerce(value: Any, kind: str) -> Any:
    if kind == "date" and isinstance(value, dt.datetime):
        return value.date()
    if kind == "datetime" and isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if kind == "datetime" and hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if kind == "datetime" and isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
