"""GetItem, FindItem, CreateItem, UpdateItem, DeleteItem, MoveItem: one response message per
item, so one failing item does not fail the others."""

import copy
import datetime as dt

from lxml import etree

from l2sync_dagster.sandbox.ews import allday, aqs, attachments, content, occurrences, tasks
from l2sync_dagster.sandbox.ews.call import Call, EwsError, message, response
from l2sync_dagster.sandbox.ews.fields import (
    ITEM_TYPES,
    FieldError,
    Path,
    Shape,
    apply_delete,
    apply_set,
    check_writable,
    extended_text,
    field_text,
    field_values,
    local,
    name_mailboxes,
    normalise,
    render_item,
    stored_element,
)
from l2sync_dagster.sandbox.ews.soap import m, sub, t
from l2sync_dagster.sandbox.ews.store import Folder, Item
from l2sync_dagster.sandbox.ews.views import Page, matches, sort_key, sort_rows

#: where CreateItem puts an item without SavedItemFolderId
DEFAULT_FOLDER = {"Contact": "contacts", "DistributionList": "contacts",
                  "CalendarItem": "calendar", "Task": "tasks", "Message": "drafts",
                  "PostItem": "inbox", "Item": "drafts"}


def item_value(item: Item, path: Path) -> str | None:
    """A property's value for restrictions and sorting."""
    if path.kind == "extended":
        return extended_text(item, path.ext)
    if path.kind == "indexed":
        container = item.element.find(t(path.name))
        if container is None:
            return None
        entry = next((e for e in container if e.get("Key") == path.key), None)
        if entry is None:
            return None
        return entry.findtext(t(path.member)) if path.member else entry.text
    return field_text(item, path.name)


def match_value(item: Item, path: Path) -> str | list[str] | None:
    """A property's value for restrictions: every value of a multi-valued one."""
    if path.kind == "plain":
        values = field_values(item, path.name)
        if values is not None:
            return values
    return item_value(item, path)


def _render(call: Call, item: Item, shape: Shape) -> etree._Element:
    return render_item(item, call.store.folders[item.folder_id], shape, call.order)


def _details(item: Item, shape: Shape) -> list[etree._Element]:
    """What GetItem answers beyond the stored fields: attachment summaries, TextBody, a
    MimeContent, a series' FirstOccurrence/LastOccurrence (FindItem returns none of these)."""
    out = []
    if item.tag == "CalendarItem" and item.occurrence is None and \
            item.element.find(t("Recurrence")) is not None and \
            (shape.all or {"FirstOccurrence", "LastOccurrence"} & shape.names):
        try:
            out += [el for el in occurrences.first_and_last(item)
                    if shape.all or local(el) in shape.names]
        except FieldError:
            pass  # a pattern the sandbox cannot expand: no occurrence information
    if shape.all or "Attachments" in shape.names:
        found = attachments.summaries(item)
        if found is not None:
            out.append(found)
    if "TextBody" in shape.names:
        text = content.text_body(item)
        if text is not None:
            out.append(text)
    if "MimeContent" in shape.names and item.element.find(t("MimeContent")) is None:
        out.append(content.mime_content(item))
    return out


def target(call: Call, ref: etree._Element) -> tuple[Item, int | None]:
    """The item an id names: ``(item, None)``, or ``(master, index)`` for an occurrence
    (``t:OccurrenceItemId``, or the ItemId of an occurrence); ``t:RecurringMasterItemId``
    names the master of the occurrence it holds."""
    kind = local(ref)
    if kind == "OccurrenceItemId":
        return _master(call, ref)
    if kind == "RecurringMasterItemId":
        held = ref.get("OccurrenceId", "")
        parsed = occurrences.parse_occurrence_id(held)
        master = call.item(etree.Element(t("ItemId"), Id=parsed[0] if parsed else held))
        return master, None
    if kind != "ItemId":
        raise EwsError("ErrorInvalidIdMalformed", f"{kind} is not supported here")
    parsed = occurrences.parse_occurrence_id(ref.get("Id", ""))
    if parsed is None:
        return call.item(ref), None
    master = call.item(etree.Element(t("ItemId"), Id=parsed[0]))
    return master, parsed[1]


def _items_holder(msg: etree._Element) -> etree._Element:
    return sub(msg, m("Items"))


def get_item(call: Call, req: etree._Element) -> etree._Element:
    """GetItem of many ids."""
    shape = Shape.parse(req.find(m("ItemShape")))
    root, msgs = response("GetItem")
    for ref in req.find(m("ItemIds")):
        try:
            item, index = target(call, ref)
            if index is not None:
                item = occurrences.instance(item, index)
        except (EwsError, FieldError) as err:
            _items_holder(message(msgs, "GetItem", EwsError(err.code, err.message)))
            continue
        rendered = render_item(item, call.store.folders[item.folder_id], shape, call.order,
                               _details(item, shape))
        _items_holder(message(msgs, "GetItem")).append(rendered)
    return root


def find_item(call: Call, req: etree._Element) -> etree._Element:
    """FindItem: restriction or AQS QueryString, sort order, IndexedPageItemView or
    CalendarView, capped at the find count limit (EWSFindCountLimit)."""
    shape = Shape.parse(req.find(m("ItemShape")))
    restriction = req.find(m("Restriction"))
    keys = sort_key(req.find(m("SortOrder")))
    calendar = req.find(m("CalendarView"))
    text = (req.findtext(m("QueryString")) or "").strip()
    query = aqs.parse(text) if text else None
    page = Page.parse(req.find(m("IndexedPageItemView")))
    if calendar is not None:
        maxe = calendar.get("MaxEntriesReturned")
        page = Page(0, int(maxe) if maxe else None)
    root, msgs = response("FindItem")
    for ref in req.find(m("ParentFolderIds")):
        try:
            folder = call.folder(ref)
        except EwsError as err:
            message(msgs, "FindItem", err)
            continue
        rows = call.store.folder_items(folder.id)
        if calendar is not None and (restriction is not None or keys):
            message(msgs, "FindItem", EwsError(
                "ErrorInvalidOperation", "Restrictions and sort order may not be specified "
                                         "for a CalendarView."))
            continue
        if restriction is not None and len(restriction):
            expr = restriction[0]
            rows = [i for i in rows if matches(expr, lambda p, i=i: match_value(i, p))]
        if query is not None:
            rows = [i for i in rows if query(i)]
        if calendar is not None:
            try:
                rows = _calendar_view(rows, calendar)
            except EwsError as err:
                message(msgs, "FindItem", err)
                continue
            keys = [(Path("plain", "Start"), False)]
        if keys:
            rows = sort_rows(rows, keys, item_value)
        chosen, nxt, last = page.apply(rows, call.service.find_limit)
        msg = message(msgs, "FindItem")
        rf = sub(msg, m("RootFolder"), TotalItemsInView=str(len(rows)),
                 IncludesLastItemInRange="true" if last else "false")
        if calendar is None:
            rf.set("IndexedPagingOffset", str(nxt))
        holder = sub(rf, t("Items"))
        for item in chosen:
            holder.append(_render(call, item, shape))
    return root


def _calendar_view(rows: list[Item], view: etree._Element) -> list[Item]:
    """What a CalendarView shows: single items and the occurrences of series (expanded, each
    with its own ItemId) that start before its EndDate and end at or after its StartDate (so,
    as on Exchange, an item ending exactly at the StartDate is shown)."""
    start = _time(view.get("StartDate", ""))
    end = _time(view.get("EndDate", ""))
    if end < start:
        raise EwsError("ErrorCalendarEndDateIsEarlierThanStartDate",
                       "The EndDate value is earlier than the StartDate value.")
    out: list[Item] = []
    for item in rows:
        if item.tag == "CalendarItem" and item.element.find(t("Recurrence")) is not None:
            try:
                out += occurrences.expand(item, start, end)
                continue
            except FieldError:
                pass  # a pattern the sandbox cannot expand: shown as the master
        s, e = field_text(item, "Start"), field_text(item, "End")
        if s is not None and e is not None and _time(s) < end and _time(e) >= start:
            out.append(item)
    return out


def _time(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _target_folder(call: Call, req: etree._Element, tag: str,
                   cache: dict[str, Folder]) -> Folder:
    saved = req.find(m("SavedItemFolderId"))
    if saved is not None:
        if "saved" not in cache:
            cache["saved"] = call.folder(saved[0])
        return cache["saved"]
    name = DEFAULT_FOLDER.get(tag, "drafts")
    if name not in cache:
        folder = call.store.distinguished(call.open(call.acting), name)
        if folder is None:
            raise EwsError("ErrorFolderNotFound", "The specified folder could not be found.")
        cache[name] = folder
    return cache[name]


def create_item(call: Call, req: etree._Element) -> etree._Element:
    """CreateItem of many items; SendOnly keeps nothing, SendAndSaveCopy saves to Sent Items."""
    root, msgs = response("CreateItem")
    disposition = req.get("MessageDisposition", "SaveOnly")
    cache: dict[str, Folder] = {}
    for spec in req.find(m("Items")):
        tag = local(spec)
        try:
            if tag not in ITEM_TYPES:
                raise EwsError("ErrorInvalidItemForOperationCreateItem",
                               f"{tag} cannot be created by the sandbox")
            check_writable(spec)
            attachments.check(list(spec.findall(f"{t('Attachments')}/*")))
            if tag == "Message" and disposition in ("SendOnly", "SendAndSaveCopy"):
                if disposition == "SendOnly":
                    _items_holder(message(msgs, "CreateItem"))
                    continue
                sent = call.store.distinguished(call.open(call.acting), "sentitems")
                if sent is None:
                    raise EwsError("ErrorFolderNotFound", "The mailbox has no Sent Items.")
                folder = sent
            else:
                folder = _target_folder(call, req, tag, cache)
            element = stored_element(spec)
        except (EwsError, FieldError) as err:
            _items_holder(message(msgs, "CreateItem", EwsError(err.code, err.message)))
            continue
        files = attachments.take(element)
        item = call.store.add_item(folder.mailbox, folder.id, element)
        allday.round_all_day(item)
        content.fill_from_mime(item, call.order)
        tasks.created(item, call.order)
        added = attachments.add(call.store, item, files, call.order) if files else []
        out = sub(_items_holder(message(msgs, "CreateItem")), t(tag))
        sub(out, t("ItemId"), Id=item.id, ChangeKey=item.change_key)
        if added:
            holder = sub(out, t("Attachments"))
            for att in added:
                attachments.created(holder, att)
    return root


def update_item(call: Call, req: etree._Element) -> etree._Element:
    """UpdateItem: per item, all updates or none; ChangeKey checked under NeverOverwrite."""
    root, msgs = response("UpdateItem")
    resolution = req.get("ConflictResolution", "AutoResolve")
    for change in req.find(m("ItemChanges")):
        try:
            ref = change[0]
            item, index = target(call, ref)
            if index is not None:
                _update_occurrence(call, item, index, change, msgs)
                continue
            key = ref.get("ChangeKey")
            if resolution == "NeverOverwrite" and key and key != item.change_key:
                raise EwsError("ErrorIrresolvableConflict",
                               "The send or update operation could not be performed because "
                               "the change key passed in the request does not match the "
                               "current change key for the item.")
            work = copy.copy(item)
            work.element = copy.deepcopy(item.element)
            only_read_flag = True
            for upd in change.find(t("Updates")):
                kind = local(upd)
                if kind == "SetItemField":
                    if local(upd[1]) != item.tag and local(upd[1]) != "Item":
                        raise EwsError("ErrorInvalidPropertyRequest",
                                       f"{local(upd[1])} does not match the item type "
                                       f"{item.tag}")
                    apply_set(work, upd, call.order)
                elif kind == "DeleteItemField":
                    apply_delete(work, upd[0])
                else:  # AppendToItemField
                    raise EwsError("ErrorInvalidPropertyAppend",
                                   "The property does not support appending.")
                only_read_flag = only_read_flag and upd[0].get("FieldURI") == "message:IsRead"
        except (EwsError, FieldError) as err:
            msg = message(msgs, "UpdateItem", EwsError(err.code, err.message))
            _items_holder(msg)
            continue
        if item.tag == "CalendarItem" and any(
                Path.parse(u[0]).name in occurrences.SERIES_FIELDS
                for u in change.find(t("Updates"))):
            occurrences.drop_exceptions(work)
        allday.round_all_day(work)
        one_off = tasks.updated(call.store, item.element, work, call.order)
        item.element = work.element
        call.store.touch(item, read_flag_only=only_read_flag)
        answered = one_off or item  # Exchange answers the task it split off
        msg = message(msgs, "UpdateItem")
        out = sub(_items_holder(msg), t(answered.tag))
        sub(out, t("ItemId"), Id=answered.id, ChangeKey=answered.change_key)
        sub(msg, m("ConflictResults")).append(_count(0))
    return root


_OCCURRENCE_ZONES = frozenset({"StartTimeZone", "EndTimeZone", "MeetingTimeZone"})


def _update_occurrence(call: Call, master: Item, index: int, change: etree._Element,
                       msgs: etree._Element) -> None:
    """UpdateItem of one occurrence: its Start and End become an exception of the series.
    The sandbox keeps no other field of an occurrence: setting one to the value it has, or
    deleting one it lacks, is accepted (exchangelib sends every field on ``save()``), any
    other change is refused."""
    current = occurrences.instance(master, index).element
    values: dict[str, dt.datetime] = {}
    for upd in change.find(t("Updates")):
        path = Path.parse(upd[0])
        if local(upd) == "SetItemField" and path.name in _OCCURRENCE_ZONES:
            continue  # the times are stored in UTC; the zones stay the series'
        if local(upd) == "SetItemField" and path.name in ("Start", "End"):
            text = upd[1][0].text or ""
            values[path.name] = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            continue
        if path.kind == "plain" and _unchanged(current, upd, path.name):
            continue
        raise EwsError("ErrorInvalidPropertySet", f"The sandbox changes only Start and End "
                                                  f"of an occurrence, not {path.name}.")
    work = copy.copy(master)
    work.element = copy.deepcopy(master.element)
    occ_id = occurrences.modify_occurrence(work, index, values.get("Start"), values.get("End"))
    master.element = work.element
    call.store.touch(master)
    msg = message(msgs, "UpdateItem")
    out = sub(_items_holder(msg), t("CalendarItem"))
    sub(out, t("ItemId"), Id=occ_id, ChangeKey=master.change_key)
    sub(msg, m("ConflictResults")).append(_count(0))


def _unchanged(current: etree._Element, upd: etree._Element, name: str) -> bool:
    """Whether a SetItemField/DeleteItemField leaves field ``name`` of ``current`` as it is."""
    old = current.find(t(name))
    if local(upd) == "DeleteItemField":
        return old is None
    if local(upd) != "SetItemField" or old is None or not len(upd[1]):
        return False
    new = upd[1][0]

    def shape(el: etree._Element) -> list[tuple[str, dict[str, str], str]]:
        return [(local(e), dict(e.attrib), (e.text or "").strip()) for e in el.iter()
                if isinstance(e.tag, str)]

    return shape(old) == shape(name_mailboxes(normalise(copy.deepcopy(new))))


def _count(n: int) -> etree._Element:
    el = etree.Element(t("Count"))
    el.text = str(n)
    return el


def _master(call: Call, ref: etree._Element) -> tuple[Item, int]:
    """The series master and instance index of a ``t:OccurrenceItemId``."""
    master = call.item(etree.Element(t("ItemId"), Id=ref.get("RecurringMasterId", "")))
    if master.tag != "CalendarItem":
        raise EwsError("ErrorCalendarCannotUseIdForRecurringMasterId",
                       "The RecurringMasterId is not a calendar item.")
    try:
        return master, int(ref.get("InstanceIndex", ""))
    except ValueError as exc:
        raise EwsError("ErrorInvalidIdMalformed", "InstanceIndex is malformed.") from exc


def delete_item(call: Call, req: etree._Element) -> etree._Element:
    """DeleteItem: HardDelete removes, MoveToDeletedItems and SoftDelete move; an
    ``OccurrenceItemId`` deletes one occurrence of a series (recorded on its master)."""
    root, msgs = response("DeleteItem")
    # MoveToDeletedItems moves to Deleted Items, SoftDelete to Recoverable Items\Deletions
    # (out of the client's sight, as on Exchange), HardDelete removes
    move_to = {"MoveToDeletedItems": "deleteditems",
               "SoftDelete": "recoverableitemsdeletions"}.get(req.get("DeleteType", ""))
    for ref in req.find(m("ItemIds")):
        try:
            item, index = target(call, ref)
            if index is not None:
                occurrences.delete_occurrence(item, index)
                call.store.touch(item)
                message(msgs, "DeleteItem")
                continue
        except (EwsError, FieldError) as err:
            message(msgs, "DeleteItem", EwsError(err.code, err.message))
            continue
        trash = call.store.distinguished(item.mailbox, move_to) if move_to else None
        if trash is not None and item.folder_id != trash.id:
            call.store.move_item(item, trash.id)
        else:
            call.store.remove_item(item)
        message(msgs, "DeleteItem")
    return root


def move_item(call: Call, req: etree._Element) -> etree._Element:
    """MoveItem to another folder: the moved item has a new ItemId, which the response
    carries (an item already in the target folder keeps its id)."""
    root, msgs = response("MoveItem")
    try:
        target = call.folder(req.find(m("ToFolderId"))[0])
    except EwsError as err:
        for _ in req.find(m("ItemIds")):
            _items_holder(message(msgs, "MoveItem", err))
        return root
    for ref in req.find(m("ItemIds")):
        try:
            item = call.item(ref)
        except EwsError as err:
            _items_holder(message(msgs, "MoveItem", err))
            continue
        if item.folder_id != target.id:
            call.store.move_item(item, target.id)
        out = sub(_items_holder(message(msgs, "MoveItem")), t(item.tag))
        sub(out, t("ItemId"), Id=item.id, ChangeKey=item.change_key)
    return root


def copy_item(call: Call, req: etree._Element) -> etree._Element:
    """CopyItem: a new item (its own ItemId, its attachments new AttachmentIds) in the target
    folder; the response carries the new ids."""
    root, msgs = response("CopyItem")
    try:
        to = call.folder(req.find(m("ToFolderId"))[0])
    except EwsError as err:
        for _ in req.find(m("ItemIds")):
            _items_holder(message(msgs, "CopyItem", err))
        return root
    for ref in req.find(m("ItemIds")):
        try:
            item = call.item(ref)
        except EwsError as err:
            _items_holder(message(msgs, "CopyItem", err))
            continue
        made = call.store.copy_item(item, to.id)
        attachments.renew_ids(call.store, made)
        out = sub(_items_holder(message(msgs, "CopyItem")), t(made.tag))
        sub(out, t("ItemId"), Id=made.id, ChangeKey=made.change_key)
    return root
