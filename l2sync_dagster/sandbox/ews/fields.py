"""Item fields: property paths (FieldURI, IndexedFieldURI, ExtendedFieldURI), response shapes,
writing items out in schema order, and applying SetItemField / DeleteItemField.

Writable fields are kept as the XML the client sent; the names come from the schema (the
part of ``contacts:GivenName`` after the colon is the element name). Read-only fields are
refused with ``ErrorInvalidPropertySet`` as Exchange does.
"""

import copy
import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from lxml import etree

from l2sync_dagster.sandbox.ews.soap import T, sub, t
from l2sync_dagster.sandbox.ews.store import ITEM_CLASSES, Folder, Item, iso
from l2sync_dagster.sandbox.graph.common import WINDOWS_ZONES

#: item element -> schema complexType
ITEM_TYPES: dict[str, str] = {
    "Item": "ItemType", "Message": "MessageType", "CalendarItem": "CalendarItemType",
    "Contact": "ContactItemType", "DistributionList": "DistributionListType",
    "Task": "TaskType", "PostItem": "PostItemType",
}
FOLDER_TYPES: dict[str, str] = {
    "Folder": "FolderType", "CalendarFolder": "CalendarFolderType",
    "ContactsFolder": "ContactsFolderType", "TasksFolder": "TasksFolderType",
}

#: fields the server maintains: a client may not set them (ErrorInvalidPropertySet)
READ_ONLY: frozenset[str] = frozenset({
    "ItemId", "ParentFolderId", "DateTimeCreated", "LastModifiedTime", "Size", "HasAttachments",
    "CompleteName", "EffectiveRights", "LastModifiedName", "ConversationId", "DisplayTo",
    "DisplayCc", "DateTimeReceived", "IsRecurring", "CalendarItemType", "InstanceKey",
    "WebClientReadFormQueryString", "WebClientEditFormQueryString", "StoreEntryId",
    "ModifiedOccurrences", "DeletedOccurrences", "FirstOccurrence", "LastOccurrence",
    "ChangeCount", "OriginalStart", "RecurrenceId",
})

#: indexed property -> container element
INDEXED_CONTAINERS: dict[str, str] = {
    "contacts:EmailAddress": "EmailAddresses", "contacts:PhoneNumber": "PhoneNumbers",
    "contacts:ImAddress": "ImAddresses", "contacts:PhysicalAddress": "PhysicalAddresses",
}

_EXT_KEYS = ("DistinguishedPropertySetId", "PropertySetId", "PropertyTag", "PropertyName",
             "PropertyId")


class FieldError(Exception):
    """A per-item error with an EWS response code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def local(el: etree._Element) -> str:
    """Local name of an element."""
    return el.tag.rpartition("}")[2]


def ext_key(uri: etree._Element) -> tuple[str, ...]:
    """Identity of an extended property (property set + name/id/tag; type excluded)."""
    return tuple((uri.get(k) or "").lower() for k in _EXT_KEYS)


@dataclass
class Path:
    """One property path from a request."""

    kind: str  # plain | indexed | extended
    name: str = ""  # element name (plain) or container (indexed)
    key: str = ""  # FieldIndex of an indexed path
    member: str = ""  # sub-element of a physical address (Street ...)
    ext: tuple[str, ...] = ()

    @classmethod
    def parse(cls, el: etree._Element) -> "Path":
        """From a ``t:FieldURI`` / ``t:IndexedFieldURI`` / ``t:ExtendedFieldURI`` element."""
        kind = local(el)
        if kind == "ExtendedFieldURI":
            return cls("extended", ext=ext_key(el))
        uri = el.get("FieldURI", "")
        if kind == "IndexedFieldURI":
            parts = uri.split(":")
            base = ":".join(parts[:2])
            container = INDEXED_CONTAINERS.get(base)
            if container is None:
                raise FieldError("ErrorInvalidPropertyRequest",
                                 f"unsupported indexed property {uri}")
            return cls("indexed", container, el.get("FieldIndex", ""),
                       parts[2] if len(parts) > 2 else "")
        return cls("plain", uri.split(":")[-1])


@dataclass
class Shape:
    """Which properties a response carries (ItemShape / FolderShape)."""

    all: bool = False
    names: set[str] = field(default_factory=set)
    extended: list[tuple[str, ...]] = field(default_factory=list)
    #: the requested ExtendedFieldURI elements by identity (answers echo them)
    extended_uris: dict[tuple[str, ...], etree._Element] = field(default_factory=dict)

    @classmethod
    def parse(cls, el: etree._Element | None) -> "Shape":
        """From ``m:ItemShape`` / ``m:FolderShape`` (None: IdOnly)."""
        shape = cls()
        if el is None:
            return shape
        base = el.findtext(t("BaseShape"))
        shape.all = base in ("Default", "AllProperties")
        if el.findtext(t("IncludeMimeContent")) in ("true", "1"):
            shape.names.add("MimeContent")
        props = el.find(t("AdditionalProperties"))
        for p in props if props is not None else ():
            path = Path.parse(p)
            if path.kind == "extended":
                shape.extended.append(path.ext)
                shape.extended_uris[path.ext] = p
            else:
                shape.names.add(path.name)
        return shape


def _id(parent: etree._Element, tag: str, object_id: str, change_key: str) -> None:
    sub(parent, t(tag), Id=object_id, ChangeKey=change_key)


_MANAGED = ("ParentFolderId", "DateTimeReceived", "Size", "DateTimeCreated", "HasAttachments",
            "LastModifiedTime", "ItemClass", "CompleteName", "IsRecurring", "CalendarItemType",
            "ChangeCount", "UID")


def managed_item_fields(item: Item, folder: Folder, shape: "Shape") -> list[etree._Element]:
    """The server-maintained fields of ``item`` that ``shape`` asks for (ItemId always)."""
    holder = etree.Element(t("x"))
    _id(holder, "ItemId", item.id, item.change_key)
    wanted = _MANAGED if shape.all else [n for n in _MANAGED if n in shape.names]
    tag = item.tag
    for name in wanted:
        if name == "ParentFolderId":
            _id(holder, "ParentFolderId", folder.id, folder.change_key)
        elif name in ("DateTimeReceived", "DateTimeCreated"):
            sub(holder, t(name), iso(item.created))
        elif name == "LastModifiedTime":
            sub(holder, t(name), iso(item.modified))
        elif name == "Size":
            sub(holder, t(name), str(item_size(item)))
        elif name == "HasAttachments":
            sub(holder, t(name), "true" if has_attachments(item) else "false")
        elif name == "ItemClass":
            if item.element.find(t("ItemClass")) is None:
                sub(holder, t(name), ITEM_CLASSES.get(tag, "IPM"))
        elif name == "CompleteName" and tag == "Contact":
            _complete_name(holder, item)
        elif name in ("IsRecurring", "CalendarItemType") and tag == "CalendarItem":
            # as Exchange reports them: IsRecurring is true for an occurrence or exception,
            # false for the series master itself and a single item
            master = item.element.find(t("Recurrence")) is not None
            if name == "IsRecurring":
                sub(holder, t(name), "true" if item.occurrence else "false")
            else:
                sub(holder, t(name), item.occurrence or
                    ("RecurringMaster" if master else "Single"))
        elif name == "IsRecurring" and tag == "Task":
            sub(holder, t(name), "true" if item.element.find(t("Recurrence")) is not None
                else "false")
        elif name == "UID" and tag == "CalendarItem":
            if item.element.find(t("UID")) is None:
                sub(holder, t(name), uid_of(item))
        elif name == "ChangeCount" and tag == "Task":
            if item.element.find(t("ChangeCount")) is None:  # see tasks.py
                sub(holder, t(name), "1")
    return list(holder)


def item_zone(item: Item) -> dt.tzinfo:
    """The time zone of the item's StartTimeZone (UTC without one, or for an unknown one)."""
    el = item.element.find(t("StartTimeZone"))
    name = el.get("Id") if el is not None else None
    if not name:
        return dt.UTC
    try:
        return ZoneInfo(WINDOWS_ZONES.get(name, name))
    except (KeyError, ValueError):
        return dt.UTC


def _dates_with_offset(recurrence: etree._Element, tz: dt.tzinfo) -> etree._Element:
    """A Recurrence whose range StartDate/EndDate carry a UTC offset, as Exchange writes them
    (``2016-01-01+01:00``, ``2016-01-01Z``): the offset of ``tz`` on that day."""
    for name in ("StartDate", "EndDate"):
        for el in recurrence.iter(t(name)):
            text = (el.text or "").strip()
            if len(text) != 10:
                continue
            try:
                day = dt.date.fromisoformat(text)
            except ValueError:
                continue
            offset = dt.datetime.combine(day, dt.time(12), tzinfo=tz).utcoffset()
            minutes = int(offset.total_seconds() // 60) if offset else 0
            el.text = text + ("Z" if not minutes else
                              f"{'+' if minutes > 0 else '-'}{abs(minutes) // 60:02d}:"
                              f"{abs(minutes) % 60:02d}")
    return recurrence


def uid_of(item: Item) -> str:
    """The item's UID: the stored one, else one made from its id (stable, like Exchange's
    GOID-based UIDs)."""
    stored = item.element.findtext(t("UID"))
    if stored:
        return stored
    digest = hashlib.sha1(item.id.encode()).hexdigest().upper()
    return "040000008200E00074C5B7101A82E008" + digest + "00000000"


def item_size(item: Item) -> int:
    """The item's Size in bytes as the sandbox counts it."""
    return 64 + len(item.element)


#: PidTagMessageSize: a folder's size in bytes (its items and its subfolders' items)
MESSAGE_SIZE_TAG = 0x0E08


def _tag(uri: etree._Element) -> int | None:
    try:
        return int(uri.get("PropertyTag") or "", 0)
    except ValueError:
        return None


def has_attachments(item: Item) -> bool:
    """HasAttachments as Exchange reports it: the item holds an attachment that is not
    inline."""
    holder = item.element.find(t("Attachments"))
    return holder is not None and any(
        (a.findtext(t("IsInline")) or "false") != "true" for a in holder)


def _complete_name(holder: etree._Element, item: Item) -> None:
    cn = sub(holder, t("CompleteName"))
    given = item.element.findtext(t("GivenName"))
    middle = item.element.findtext(t("MiddleName"))
    last = item.element.findtext(t("Surname"))
    for tag, value in (("FirstName", given), ("MiddleName", middle), ("LastName", last)):
        if value:
            sub(cn, t(tag), value)
    full = " ".join(v for v in (given, middle, last) if v)
    if full:
        sub(cn, t("FullName"), full)


def render_item(item: Item, folder: Folder, shape: Shape, order: dict[str, list[str]],
                extra: Sequence[etree._Element] = ()) -> etree._Element:
    """``item`` as a response element holding the properties ``shape`` asks for, plus the
    ``extra`` elements the operation computed (GetItem: attachments, MimeContent ...). Stored
    attachments are never copied as they are (only GetItem answers them, summarised)."""
    el = etree.Element(t(item.tag))
    type_name = ITEM_TYPES.get(item.tag, "ItemType")
    rank = _rank(type_name, order)
    children = managed_item_fields(item, folder, shape) + list(extra)
    for child in item.element:
        name = local(child)
        if name == "Attachments":
            continue
        if name == "ExtendedProperty":
            uri = child.find(t("ExtendedFieldURI"))
            if uri is not None and ext_key(uri) in shape.extended:
                children.append(copy.deepcopy(child))
        elif (shape.all or name in shape.names) and (not rank or name in rank):
            if name == "Recurrence":
                zone = item_zone(item) if item.tag == "CalendarItem" else dt.UTC
                children.append(_dates_with_offset(copy.deepcopy(child), zone))
            else:
                children.append(copy.deepcopy(child))
    _append_ordered(el, children, rank)
    return el


_RANKS: dict[str, dict[str, int]] = {}


def _rank(type_name: str, order: dict[str, list[str]]) -> dict[str, int]:
    """Element name -> position in the schema sequence of ``type_name`` (cached)."""
    rank = _RANKS.get(type_name)
    if rank is None:
        rank = {n: i for i, n in enumerate(order.get(type_name, []))}
        if rank:
            _RANKS[type_name] = rank
    return rank


def _append_ordered(parent: etree._Element, children: list[etree._Element],
                    rank: dict[str, int]) -> None:
    end = len(rank)
    for child in sorted(children, key=lambda c: rank.get(local(c), end)):
        parent.append(child)


def render_folder(folder: Folder, shape: Shape, total: int, child_count: int,
                  order: dict[str, list[str]], unread: int = 0,
                  parent_key: str | None = None, size: int = 0) -> etree._Element:
    """``folder`` as a response element (``unread``: its items with IsRead false;
    ``parent_key``: the parent's ChangeKey, answered with its id as Exchange does; ``size``:
    the bytes of its items and its subfolders' items, answered for the extended property
    PidTagMessageSize; other extended properties of folders are not kept)."""
    el = etree.Element(t(folder.kind))
    _id(el, "FolderId", folder.id, folder.change_key)
    values: dict[str, str | None] = {
        "FolderClass": folder.folder_class, "DisplayName": folder.display_name,
        "TotalCount": str(total), "ChildFolderCount": str(child_count),
    }
    if folder.kind != "CalendarFolder" and folder.kind != "ContactsFolder":
        values["UnreadCount"] = str(unread)
    wanted = [n for n in ("ParentFolderId", "FolderClass", "DisplayName", "TotalCount",
                          "ChildFolderCount", "DistinguishedFolderId", "UnreadCount")
              if shape.all or n in shape.names]
    for name in wanted:
        if name == "ParentFolderId":
            if folder.parent_id:
                _id(el, "ParentFolderId", folder.parent_id, parent_key or "AQAAAA==")
        elif name == "DistinguishedFolderId":
            if folder.distinguished and shape.names:
                sub(el, t(name), folder.distinguished)
        elif values.get(name) is not None:
            sub(el, t(name), values[name])
    for key in shape.extended:
        uri = shape.extended_uris.get(key)
        if uri is not None and _tag(uri) == MESSAGE_SIZE_TAG:
            prop = sub(el, t("ExtendedProperty"))
            sub(prop, t("ExtendedFieldURI"), **dict(uri.attrib))
            sub(prop, t("Value"), str(size))
    children = list(el)
    for c in children:
        el.remove(c)
    _append_ordered(el, children, _rank(FOLDER_TYPES[folder.kind], order))
    return el


def check_writable(element: etree._Element) -> None:
    """Refuse read-only fields in an item the client sent (CreateItem)."""
    for child in element:
        if local(child) in READ_ONLY:
            raise FieldError("ErrorInvalidPropertySet",
                             f"Set action is invalid for property. ({local(child)})")


#: element names typed xs:boolean: the item properties the sandbox serves, so that it answers
#: true/false (as Exchange does, and as clients parse) even without the schema files; the
#: service adds every other xs:boolean element from the schema when it has it.
BOOLEANS: set[str] = {
    "AllowNewTimeProposal", "HasAttachments", "HasBeenProcessed", "HasPicture",
    "IsAllDayEvent", "IsAssignmentEditable", "IsAssociated", "IsCancelled", "IsComplete",
    "IsDelegated", "IsDeliveryReceiptRequested", "IsDraft", "IsFromMe", "IsMeeting",
    "IsOnlineMeeting", "IsOutOfDate", "IsRead", "IsReadReceiptRequested", "IsRecurring",
    "IsResend", "IsResponseRequested", "IsSubmitted", "IsTeamTask", "IsUnmodified",
    "MeetingRequestWasSent", "ReminderIsSet",
}


def normalise(element: etree._Element) -> etree._Element:
    """Booleans sent as 1/0 are stored as true/false, as Exchange answers them."""
    for el in element.iter():
        if el.text in ("0", "1") and isinstance(el.tag, str) and local(el) in BOOLEANS:
            el.text = "true" if el.text == "1" else "false"
    return element


#: string fields Exchange keeps to 255 characters: a longer Subject is cut there, a longer
#: contact name is refused (ErrorPropertyUpdate), as exchangelib's tests see on Exchange
MAX_LENGTH = 255
TRUNCATED = frozenset({"Subject"})
REFUSED_WHEN_LONG = frozenset({"GivenName", "MiddleName", "Surname"})


def limit_lengths(element: etree._Element) -> etree._Element:
    """Apply Exchange's 255-character limits to ``element`` and its descendants."""
    for el in element.iter():
        if not isinstance(el.tag, str) or el.text is None or len(el.text) <= MAX_LENGTH:
            continue
        name = local(el)
        if name in TRUNCATED:
            el.text = el.text[:MAX_LENGTH]
        elif name in REFUSED_WHEN_LONG:
            raise FieldError("ErrorPropertyUpdate",
                             f"An internal server error occurred. The operation failed. "
                             f"({name} is longer than {MAX_LENGTH} characters)")
    return element


#: a message's sender and recipient fields
RECIPIENT_FIELDS = frozenset({"From", "Sender", "ToRecipients", "CcRecipients",
                              "BccRecipients", "ReplyTo", "ReceivedBy", "ReceivedRepresenting"})


def name_mailboxes(element: etree._Element) -> etree._Element:
    """A message's sender or recipient given by address only gets that address as its Name,
    as Exchange stores a one-off recipient (``element``: an item or one of its fields)."""
    fields_ = [element] if local(element) in RECIPIENT_FIELDS else \
        [c for c in element if local(c) in RECIPIENT_FIELDS]
    for holder in fields_:
        for mb in holder.iter(t("Mailbox")):
            address = mb.findtext(t("EmailAddress"))
            if address and mb.find(t("Name")) is None:
                name = etree.Element(t("Name"))
                name.text = address
                mb.insert(0, name)
    return element


def stored_element(element: etree._Element) -> etree._Element:
    """A clean copy of a client item element, for storing (namespace map normalised, length
    limits applied: FieldError)."""
    out = etree.Element(element.tag, nsmap={"t": T})
    for child in element:
        out.append(copy.deepcopy(child))
    return name_mailboxes(limit_lengths(normalise(out)))


def apply_set(item: Item, change: etree._Element, order: dict[str, list[str]]) -> None:
    """One ``t:SetItemField`` on ``item``."""
    path = Path.parse(change[0])
    carrier = change[1]  # t:Contact / t:Message ... holding the new value
    if len(carrier) != 1:
        raise FieldError("ErrorIncorrectUpdatePropertyCount",
                         "An object within a change description must contain one and only "
                         "one property to modify.")
    value = carrier[0]
    el = item.element
    if path.kind == "plain":
        if path.name in READ_ONLY or path.name == "Attachments":
            raise FieldError("ErrorInvalidPropertySet",
                             f"Set action is invalid for property. ({path.name})")
        if local(value) != path.name:
            raise FieldError("ErrorInvalidPropertyRequest",
                             f"the value element {local(value)} does not match {path.name}")
        old = el.find(t(path.name))
        new = name_mailboxes(limit_lengths(normalise(copy.deepcopy(value))))
        if old is not None:
            el.replace(old, new)
        else:
            insert_ordered(item, new, order)
    elif path.kind == "indexed":
        entry = value.find(t("Entry"))
        if entry is None:
            raise FieldError("ErrorInvalidPropertyRequest", "no Entry in the indexed value")
        container = el.find(t(path.name))
        if container is None:
            container = etree.Element(t(path.name))
            insert_ordered(item, container, order)
        old = next((e for e in container if e.get("Key") == path.key), None)
        if old is None:
            container.append(copy.deepcopy(entry))
        elif path.member:
            member = entry.find(t(path.member))
            cur = old.find(t(path.member))
            if cur is not None:
                old.remove(cur)
            if member is not None:
                old.append(copy.deepcopy(member))
                _sort_address(old)
        else:
            container.replace(old, copy.deepcopy(entry))
    else:
        _remove_extended(el, path.ext)
        insert_ordered(item, normalise(copy.deepcopy(value)), order)


_ADDRESS_ORDER = ("Street", "City", "State", "CountryOrRegion", "PostalCode")


def _sort_address(entry: etree._Element) -> None:
    children = sorted(entry, key=lambda c: _ADDRESS_ORDER.index(local(c))
                      if local(c) in _ADDRESS_ORDER else 9)
    for c in children:
        entry.append(c)


def _remove_extended(el: etree._Element, key: tuple[str, ...]) -> bool:
    removed = False
    for prop in el.findall(t("ExtendedProperty")):
        uri = prop.find(t("ExtendedFieldURI"))
        if uri is not None and ext_key(uri) == key:
            el.remove(prop)
            removed = True
    return removed


def insert_ordered(item: Item, new: etree._Element, order: dict[str, list[str]]) -> None:
    """Add ``new`` to the stored element at its schema position."""
    children = [*item.element, new]
    for c in list(item.element):
        item.element.remove(c)
    _append_ordered(item.element, children, _rank(ITEM_TYPES.get(item.tag, "ItemType"), order))


def apply_delete(item: Item, path_el: etree._Element) -> None:
    """One ``t:DeleteItemField`` on ``item``."""
    path = Path.parse(path_el)
    el = item.element
    if path.kind == "plain":
        if path.name in READ_ONLY or path.name in ("ItemClass", "Attachments"):
            raise FieldError("ErrorInvalidPropertyDelete",
                             f"This property may not be deleted. ({path.name})")
        old = el.find(t(path.name))
        if old is not None:
            el.remove(old)
    elif path.kind == "indexed":
        container = el.find(t(path.name))
        if container is None:
            return
        for entry in [e for e in container if e.get("Key") == path.key]:
            if path.member:
                cur = entry.find(t(path.member))
                if cur is not None:
                    entry.remove(cur)
                if len(entry):
                    continue
            container.remove(entry)
        if not len(container):
            el.remove(container)
    else:
        _remove_extended(el, path.ext)


def field_text(item: Item, name: str) -> str | None:
    """The text of a plain field (managed or stored), for restrictions and sorting."""
    if name in ("LastModifiedTime", "DateTimeCreated", "DateTimeReceived"):
        return iso(item.modified if name == "LastModifiedTime" else item.created)
    if name == "ItemClass":
        return item.element.findtext(t("ItemClass")) or ITEM_CLASSES.get(item.tag, "IPM")
    child = item.element.find(t(name))
    if child is None:
        return None
    return child.text if len(child) == 0 else "".join(child.itertext())


def field_values(item: Item, name: str) -> list[str] | None:
    """The values a restriction compares for a multi-valued field: the strings of an array of
    ``t:String`` (Categories), the addresses of a mailbox field (From, ToRecipients ...);
    None when ``name`` is not one or is not set."""
    child = item.element.find(t(name))
    if child is None or not len(child):
        return None
    if all(local(c) == "String" for c in child):
        return [c.text or "" for c in child]
    addresses = [mb.findtext(t("EmailAddress")) or "" for mb in child.iter(t("Mailbox"))]
    return addresses or None


def extended_text(item: Item, key: tuple[str, ...]) -> str | None:
    """The value of an extended property."""
    for prop in item.element.findall(t("ExtendedProperty")):
        uri = prop.find(t("ExtendedFieldURI"))
        if uri is not None and ext_key(uri) == key:
            return prop.findtext(t("Value"))
    return None
