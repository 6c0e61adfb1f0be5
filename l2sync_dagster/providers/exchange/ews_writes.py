"""Writing through EWS: CreateItem, UpdateItem (only the changed fields, as precise
SetItemField / DeleteItemField elements, ChangeKey checked), DeleteItem, in batches of
``BatchSize``; every per-item error becomes that record's Outcome.

A request that fails as a whole (the connection dropped, throttling beyond MaxRetryWait)
raises a transient ProviderError: whether the server applied it is unknown, and the engine's
insert journal and change detection make the re-run safe.
"""

from collections.abc import Iterator, Sequence
from typing import Any

from exchangelib.errors import (
    ErrorAccessDenied,
    ErrorImpersonateUserDenied,
    ErrorItemNotFound,
    ErrorMailboxStoreUnavailable,
    ErrorNonExistentMailbox,
    ErrorServerBusy,
    ResponseMessageError,
)
from exchangelib.items import (
    ALL_OCCURRENCES,
    AUTO_RESOLVE,
    HARD_DELETE,
    MOVE_TO_DELETED_ITEMS,
    NEVER_OVERWRITE,
    SAVE_ONLY,
    SEND_TO_NONE,
    Item,
)
from exchangelib.services import CreateItem, DeleteItem, UpdateItem

from l2sync_dagster.providers.base import Change, CreatedCallback, Outcome
from l2sync_dagster.providers.exchange.ews_client import EwsConnection, describe_error
from l2sync_dagster.providers.exchange.ews_values import (
    Op,
    Shape,
    ValueError_,
    new_item,
    register_extended,
)
from l2sync_dagster.providers.exchange.fields import ItemType
from l2sync_dagster.providers.exchange.stamps import STAMP, check_stamp

#: per-item errors that concern the whole mailbox: raised, not reported per record
FATAL = (ErrorAccessDenied, ErrorImpersonateUserDenied, ErrorNonExistentMailbox,
         ErrorMailboxStoreUnavailable, ErrorServerBusy)


class _PerItemErrors:
    """Every per-item response error is returned as that item's result, not raised."""

    ERRORS_TO_CATCH_IN_RESPONSE = ResponseMessageError


class OwnCreateItem(_PerItemErrors, CreateItem):
    """CreateItem returning per-item errors."""


class OwnDeleteItem(_PerItemErrors, DeleteItem):
    """DeleteItem returning per-item errors."""


def _check(results: list[Any]) -> list[Any]:
    for r in results:
        if isinstance(r, FATAL):
            raise r
    return results


class PreciseUpdateItem(_PerItemErrors, UpdateItem):
    """UpdateItem whose per-item "field names" are ops yielding exactly the SetItemField /
    DeleteItemField elements of the fields that changed; per-item errors are returned."""

    def _update_elems(self, target: Item, fieldnames: list[Op]) -> Iterator[Any]:
        for op in fieldnames:
            yield from op(self, target)


def _error_text(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc)
    return f"{name}: {text}" if text and text != name else name


def create(conn: EwsConnection, shape: Shape, item_type: ItemType, folder: Any,
           changes: Sequence[Change], batch: int,
           created: CreatedCallback | None = None) -> list[Outcome]:
    """CreateItem for inserts (SavedItemFolderId = ``folder``); a change's ``stamp`` goes
    into the stamp property. ``created`` gets the successful outcomes of each CreateItem
    response before the next request; if it raises, that response's items are deleted
    (HardDelete) and the exception propagates."""
    outcomes: dict[str, Outcome] = {}
    items: list[Item] = []
    refs: list[str] = []
    stamp_attr = register_extended(shape.model, STAMP) if any(c.stamp for c in changes) \
        else None
    for ch in changes:
        try:
            item = new_item(shape, item_type, ch.values, conn.account, folder)
            if ch.stamp and stamp_attr:
                setattr(item, stamp_attr, check_stamp(ch.stamp))
            item.clean(version=conn.account.version)  # a bad value fails its record only
            items.append(item)
            refs.append(ch.ref)
        except (ValueError_, ValueError, TypeError) as exc:
            outcomes[ch.ref] = Outcome(ch.ref, False, None, None, str(exc))
    for i in range(0, len(items), batch):
        chunk, chunk_refs = items[i:i + batch], refs[i:i + batch]
        try:
            svc = OwnCreateItem(account=conn.account, chunk_size=batch)
            results = _check(list(svc.call(items=chunk, folder=folder,
                                           message_disposition=SAVE_ONLY,
                                           send_meeting_invitations=SEND_TO_NONE)))
        except Exception as exc:  # noqa: BLE001 - a whole-request failure
            raise describe_error(exc, conn.settings, "creating items (CreateItem)") from exc
        made: list[Outcome] = []
        for ref, res in zip(chunk_refs, results, strict=True):
            if isinstance(res, Exception):
                outcomes[ref] = Outcome(ref, False, None, None, _error_text(res))
            else:
                item_id, changekey = _id_of(res)
                outcomes[ref] = Outcome(ref, True, item_id, changekey)
                made.append(outcomes[ref])
        if created is not None and made:
            try:
                created(made)
            except BaseException:
                _undo(conn, made, batch)
                raise
    return [outcomes[ch.ref] for ch in changes]


def _undo(conn: EwsConnection, made: Sequence[Outcome], batch: int) -> None:
    """HardDelete items whose creation the caller could not record (best effort: the
    caller's exception is what the run reports)."""
    try:
        svc = OwnDeleteItem(account=conn.account, chunk_size=batch)
        list(svc.call(items=[(o.key, None) for o in made if o.key], delete_type=HARD_DELETE,
                      send_meeting_cancellations=SEND_TO_NONE,
                      affected_task_occurrences=ALL_OCCURRENCES, suppress_read_receipts=True))
    except Exception:  # noqa: BLE001, S110 - the stamp still finds them on recovery
        pass


def _id_of(res: Any) -> tuple[str, str]:
    if isinstance(res, tuple):
        return res[0], res[1]
    return res.id, res.changekey


def update(conn: EwsConnection, shape: Shape, changes: Sequence[Change],
           batch: int, preset: dict[str, dict[str, Any]] | None = None) -> list[Outcome]:
    """UpdateItem with only the changed fields; NeverOverwrite when the expected ChangeKey is
    known (a stale one is that record's error), AutoResolve otherwise. ``preset`` holds
    attributes to set on an update target beforehand (a calendar item's time zones)."""
    outcomes: dict[str, Outcome] = {}
    groups: dict[str, list[tuple[str, Item, list[Op]]]] = {NEVER_OVERWRITE: [],
                                                           AUTO_RESOLVE: []}
    for ch in changes:
        try:
            attrs: dict[str, Any] = {}
            ops: list[Op] = []
            for name, value in ch.values.items():
                acc = shape.accessors.get(name)
                if acc is None or acc.assign is None:
                    raise ValueError_(f"{name} cannot be written")
                a, o = acc.update_ops(shape.model, value)
                attrs.update(a)
                ops += o
            if not ops:
                outcomes[ch.ref] = Outcome(ch.ref, True, ch.key, ch.version)
                continue
            for attr, value in (preset or {}).get(ch.key or "", {}).items():
                attrs.setdefault(attr, value)
            for attr, value in attrs.items():
                if value is not None and not attr.startswith("_"):
                    shape.model.get_field_by_fieldname(attr).clean(
                        value, version=conn.account.version)
            target = shape.model(account=conn.account, id=ch.key, changekey=ch.version,
                                 **attrs)
            mode = NEVER_OVERWRITE if ch.version else AUTO_RESOLVE
            groups[mode].append((ch.ref, target, ops))
        except (ValueError_, ValueError, TypeError) as exc:
            outcomes[ch.ref] = Outcome(ch.ref, False, ch.key, None, str(exc))
    for mode, entries in groups.items():
        for i in range(0, len(entries), batch):
            chunk = entries[i:i + batch]
            try:
                svc = PreciseUpdateItem(account=conn.account, chunk_size=batch)
                results = _check(list(svc.call(
                    items=[(target, ops) for _, target, ops in chunk],
                    conflict_resolution=mode, message_disposition=SAVE_ONLY,
                    send_meeting_invitations_or_cancellations=SEND_TO_NONE,
                    suppress_read_receipts=True)))
            except Exception as exc:  # noqa: BLE001 - a whole-request failure
                raise describe_error(exc, conn.settings, "updating items (UpdateItem)") from exc
            for (ref, target, _), res in zip(chunk, results, strict=True):
                if isinstance(res, Exception):
                    outcomes[ref] = Outcome(ref, False, target.id, None, _error_text(res))
                else:
                    item_id, changekey = _id_of(res)
                    outcomes[ref] = Outcome(ref, True, item_id, changekey)
    return [outcomes[ch.ref] for ch in changes]


def delete(conn: EwsConnection, changes: Sequence[Change], batch: int) -> list[Outcome]:
    """DeleteItem (MoveToDeletedItems); an item already gone counts as deleted."""
    outcomes: list[Outcome] = []
    for i in range(0, len(changes), batch):
        chunk = changes[i:i + batch]
        try:
            svc = OwnDeleteItem(account=conn.account, chunk_size=batch)
            results = _check(list(svc.call(items=[(ch.key, None) for ch in chunk],
                                           delete_type=MOVE_TO_DELETED_ITEMS,
                                           send_meeting_cancellations=SEND_TO_NONE,
                                           affected_task_occurrences=ALL_OCCURRENCES,
                                           suppress_read_receipts=True)))
        except Exception as exc:  # noqa: BLE001 - a whole-request failure
            raise describe_error(exc, conn.settings, "deleting items (DeleteItem)") from exc
        for ch, res in zip(chunk, results, strict=True):
            if isinstance(res, ErrorItemNotFound) or res is True:
                outcomes.append(Outcome(ch.ref, True, ch.key))
            elif isinstance(res, Exception):
                outcomes.append(Outcome(ch.ref, False, ch.key, None, _error_text(res)))
            else:
                outcomes.append(Outcome(ch.ref, True, ch.key))
    return outcomes
