"""The catalog of Exchange item types and their flattened, dotted field names.

Shared by both backends of the ``exchange`` provider: the EWS backend maps every name to an
exchangelib attribute (``ews_values.py``), the Graph backend maps the same names to Graph
properties. Names follow the EWS schema (``GivenName``, ``EmailAddresses.EmailAddress1``,
``PhysicalAddresses.Business.City``); look-ups are case-insensitive.

Interface (stable; the Graph backend relies on it):

- :data:`ITEM_TYPES`: item type name -> :class:`ItemType` (``Contact``, ``ContactGroup``,
  ``CalendarItem``, ``Task``, ``Message``, ``Note``).
- :func:`item_type` (by name or alias, close matches on error),
  :meth:`ItemType.field` / :meth:`ItemType.require` (a :class:`FieldDef` by dotted name),
  :meth:`ItemType.default_fields` (what ``SELECT *`` reads).
- :class:`FieldDef`: ``name`` (canonical dotted name), ``type`` (canonical engine type:
  string, integer, float, decimal, boolean, date, datetime, json), ``read_only``,
  ``default`` (part of ``SELECT *``), ``filterable`` (usable in WHERE / ORDER BY / windows),
  ``choices`` (allowed values of an enumeration, case as the server writes them).
- :data:`SHAREPOINT_NAMES`: item type -> {SharePoint column name: dotted name} used by
  ``NamingScheme=SharePoint`` (Layer2 compatibility: the Layer2 Exchange provider can name
  contact fields the way a SharePoint contacts list does, so auto-mapping pairs them).

Value conventions (both backends must produce and accept exactly these, so that a value
written reads back identically and a second run writes nothing):

- multi-valued fields (``Categories``, attendees, ``Members``, ``Children``...) are ``json``
  lists of strings in server order; an empty list is null.
- attendees and recipients are lists of SMTP addresses; ``Members`` of a contact group lists
  each member as ``Name <address>`` (RFC 5322; the bare address when the member has no name of
  its own). Writing bare addresses keeps the names (and the contact each member points to) of
  the members already in the group; ``Name <address>`` names a member.
- ``DisplayName`` of a contact or group is writable (Exchange requires one: an insert without
  it gets ``GivenName MiddleName Surname``, else ``FileAs``, ``CompanyName`` or the first
  e-mail address, as Outlook composes it); the ``CompleteName.*`` parts are read-only.
- ``Recurrence`` is a ``json`` object (see :data:`RECURRENCE_DOC`); the exceptions of a
  series are read-only fields of its master: ``DeletedOccurrences`` (the original starts of
  deleted occurrences) and ``ModifiedOccurrences`` (original start, start and end of each
  changed occurrence), see :data:`DELETED_OCCURRENCES_DOC`, :data:`MODIFIED_OCCURRENCES_DOC`.
- datetimes are timezone-aware UTC; ``Birthday``/``WeddingAnniversary`` and task dates
  (``StartDate``, ``DueDate``) are ``date``; an all-day event's ``Start``/``End`` are
  midnight in its ``StartTimeZone`` converted to UTC, and ``Start.Date``/``End.Date`` give the
  calendar dates (``End.Date`` exclusive, as Exchange stores it).
- ``Body`` is the HTML body (as stored); ``Body.Plaintext`` is the text body. Writing
  ``Body.Plaintext`` stores a text body; do not map both for writing.
"""

import datetime as dt
import difflib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: the canonical types a field can have (same as providers.base.FIELD_TYPES)
TYPES = ("string", "integer", "float", "decimal", "boolean", "date", "datetime", "json")

RECURRENCE_DOC = (
    'Recurrence (json object): {"Pattern": "Daily|Weekly|AbsoluteMonthly|RelativeMonthly|'
    'AbsoluteYearly|RelativeYearly", "Interval": n, "DaysOfWeek": ["Monday", ...], '
    '"DayOfMonth": n, "Month": "January", "DayOfWeekIndex": "First|Second|Third|Fourth|Last", '
    '"StartDate": "YYYY-MM-DD", "EndDate": "YYYY-MM-DD"|null, "Occurrences": n|null}; '
    "keys that do not apply to the pattern are omitted"
)

DELETED_OCCURRENCES_DOC = (
    "the original starts (UTC, ISO 8601) of the occurrences deleted from a recurring series, "
    'in order: ["2026-01-19T08:00:00Z", ...]; null when none (read-only)'
)
MODIFIED_OCCURRENCES_DOC = (
    'the occurrences of a recurring series that were changed, in order of their original '
    'start: [{"OriginalStart": "...Z", "Start": "...Z", "End": "...Z"}, ...]; null when none '
    "(read-only)"
)


def _utc_text(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deleted_occurrences_json(starts: Iterable[dt.datetime | None]) -> str | None:
    """The canonical ``DeletedOccurrences`` value of both backends."""
    values = sorted({_utc_text(s) for s in starts if s is not None})
    return json.dumps(values, separators=(",", ":")) if values else None


def modified_occurrences_json(
        entries: Iterable[tuple[dt.datetime | None, dt.datetime | None, dt.datetime | None]]
) -> str | None:
    """The canonical ``ModifiedOccurrences`` value of both backends from (original start,
    start, end) triples."""
    values = sorted(({"OriginalStart": _utc_text(o), "Start": _utc_text(s) if s else None,
                      "End": _utc_text(e) if e else None}
                     for o, s, e in entries if o is not None),
                    key=lambda v: v["OriginalStart"])
    return json.dumps(values, separators=(",", ":")) if values else None


class CatalogError(ValueError):
    """An unknown item type or field; the message lists the close matches."""


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` candidates close to ``name`` (case-insensitive; prefix/suffix hits first)."""
    by_low: dict[str, str] = {}
    for c in candidates:
        by_low.setdefault(c.lower(), c)
    low = name.lower()
    out = [by_low[c] for c in difflib.get_close_matches(low, list(by_low), n=n, cutoff=0.6)]
    if len(out) < n and low:
        last = low.rsplit(".", 1)[-1]
        for c_low, c in by_low.items():
            if c not in out and (c_low.endswith("." + last) or c_low == last):
                out.append(c)
            if len(out) >= n:
                break
    return out


def suggestion(name: str, candidates: Iterable[str]) -> str:
    """``; did you mean a, b?`` or ``''``."""
    found = close_matches(name, candidates)
    return f"; did you mean {', '.join(found)}?" if found else ""


@dataclass(frozen=True)
class FieldDef:
    """One field of an item type (a dotted name with its canonical type)."""

    name: str
    type: str = "string"
    read_only: bool = False
    default: bool = True
    filterable: bool = True
    choices: tuple[str, ...] = ()
    doc: str = ""


@dataclass(frozen=True)
class ItemType:
    """An Exchange item type: its folder class, default folder and fields."""

    name: str
    item_class: str
    folder_class: str
    default_folder: str
    fields: tuple[FieldDef, ...]
    aliases: tuple[str, ...] = ()
    _index: dict[str, FieldDef] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for f in self.fields:
            self._index[f.name.lower()] = f

    def field(self, name: str) -> FieldDef | None:
        """The field with this dotted name (case-insensitive), or None."""
        return self._index.get(name.strip().lower())

    def require(self, name: str) -> FieldDef:
        """The field with this name; CatalogError listing close matches when there is none."""
        found = self.field(name)
        if found is None:
            raise CatalogError(
                f"unknown field {name!r} for {self.name} items"
                + suggestion(name, self.names())
            )
        return found

    def names(self) -> list[str]:
        """Every field name of the type."""
        return [f.name for f in self.fields]

    def default_fields(self) -> tuple[FieldDef, ...]:
        """The fields ``SELECT *`` reads."""
        return tuple(f for f in self.fields if f.default)


def _f(name: str, type_: str = "string", **kw: object) -> FieldDef:
    return FieldDef(name, type_, **kw)  # type: ignore[arg-type]


def _ro(name: str, type_: str = "string", **kw: object) -> FieldDef:
    return FieldDef(name, type_, read_only=True, **kw)  # type: ignore[arg-type]


IMPORTANCE = ("Low", "Normal", "High")
SENSITIVITY = ("Normal", "Personal", "Private", "Confidential")

#: fields every item type has
COMMON: tuple[FieldDef, ...] = (
    _f("Subject"),
    _f("Body", doc="the body as stored (HTML when the item has an HTML body)"),
    _f("Body.Plaintext", filterable=False, doc="the text body; writing stores a text body"),
    _f("Categories", "json", doc="list of category names"),
    _f("Importance", choices=IMPORTANCE),
    _f("Sensitivity", choices=SENSITIVITY),
    _ro("ItemClass", default=False),
    _ro("DateTimeCreated", "datetime"),
    _ro("LastModifiedTime", "datetime"),
    _ro("LastModifiedName", default=False),
    _ro("HasAttachments", "boolean", default=False),
    _ro("Size", "integer", default=False),
    _ro("FolderPath", default=False, filterable=False,
        doc="path of the folder holding the item, relative to the scope's root"),
)

PHONE_LABELS = (
    "AssistantPhone", "BusinessFax", "BusinessPhone", "BusinessPhone2", "Callback", "CarPhone",
    "CompanyMainPhone", "HomeFax", "HomePhone", "HomePhone2", "Isdn", "MobilePhone",
    "OtherFax", "OtherTelephone", "Pager", "PrimaryPhone", "RadioPhone", "Telex",
    "TtyTddPhone",
)
ADDRESS_LABELS = ("Business", "Home", "Other")
ADDRESS_PARTS = ("Street", "City", "State", "CountryOrRegion", "PostalCode")
COMPLETE_NAME_PARTS = (
    "Title", "FirstName", "MiddleName", "LastName", "Suffix", "Initials", "FullName",
    "Nickname", "YomiFirstName", "YomiLastName",
)
_DEFAULT_PHONES = {"BusinessPhone", "HomePhone", "MobilePhone", "BusinessFax"}
#: the writable contact fields Exchange derives each read-only CompleteName part from
COMPLETE_NAME_SOURCES = {
    "FirstName": "GivenName", "MiddleName": "MiddleName", "LastName": "Surname",
    "Suffix": "Generation", "Initials": "Initials", "FullName": "GivenName, Surname",
    "Nickname": "Nickname",
}

CONTACT_FIELDS: tuple[FieldDef, ...] = (
    _f("GivenName"),
    _f("Surname"),
    _f("MiddleName"),
    _f("Initials", default=False),
    _f("Nickname", default=False),
    _f("Generation", default=False),
    _f("DisplayName"),
    _f("FileAs"),
    _f("CompanyName"),
    _f("Department"),
    _f("JobTitle"),
    _f("Manager", default=False),
    _f("AssistantName", default=False),
    _f("OfficeLocation", default=False),
    _f("Profession", default=False),
    _f("SpouseName", default=False),
    _f("BusinessHomePage"),
    _f("Birthday", "date"),
    _f("WeddingAnniversary", "date", default=False),
    _f("Children", "json", default=False, filterable=False),
    _f("Companies", "json", default=False, filterable=False),
    _f("Mileage", default=False),
    *(_f(f"EmailAddresses.EmailAddress{i}") for i in (1, 2, 3)),
    *(_f(f"ImAddresses.ImAddress{i}", default=False) for i in (1, 2, 3)),
    *(_f(f"PhoneNumbers.{p}", default=p in _DEFAULT_PHONES) for p in PHONE_LABELS),
    *(
        _f(f"PhysicalAddresses.{label}.{part}", default=label == "Business", filterable=False)
        for label in ADDRESS_LABELS
        for part in ADDRESS_PARTS
    ),
    *(_ro(f"CompleteName.{p}", default=False, filterable=False) for p in COMPLETE_NAME_PARTS),
)

CONTACT_GROUP_FIELDS: tuple[FieldDef, ...] = (
    _f("DisplayName"),
    _f("FileAs", default=False),
    _f("Members", "json", filterable=False,
       doc="list of members as 'Name <address>' (or the bare address)"),
)

CALENDAR_FIELDS: tuple[FieldDef, ...] = (
    _f("Start", "datetime"),
    _f("End", "datetime"),
    _ro("Start.Date", "date", default=False, filterable=False,
        doc="the start's calendar date in StartTimeZone (all-day events)"),
    _ro("End.Date", "date", default=False, filterable=False,
        doc="the end's calendar date in StartTimeZone (exclusive for all-day events)"),
    _f("IsAllDayEvent", "boolean"),
    _f("StartTimeZone", doc="Windows time zone id, e.g. W. Europe Standard Time"),
    _f("EndTimeZone", default=False),
    _f("Location"),
    _f("LegacyFreeBusyStatus", choices=("Free", "Tentative", "Busy", "OOF",
                                         "WorkingElsewhere", "NoData")),
    _f("ReminderIsSet", "boolean", default=False),
    _f("ReminderMinutesBeforeStart", "integer", default=False),
    _f("RequiredAttendees", "json", filterable=False, doc="list of SMTP addresses"),
    _f("OptionalAttendees", "json", filterable=False, doc="list of SMTP addresses"),
    _f("Resources", "json", default=False, filterable=False),
    _f("Recurrence", "json", filterable=False, doc=RECURRENCE_DOC),
    _ro("Organizer", default=False),
    _ro("IsRecurring", "boolean", default=False),
    _ro("CalendarItemType", default=False),
    _ro("IsCancelled", "boolean", default=False),
    _ro("DeletedOccurrences", "json", filterable=False, doc=DELETED_OCCURRENCES_DOC),
    _ro("ModifiedOccurrences", "json", filterable=False, doc=MODIFIED_OCCURRENCES_DOC),
)

TASK_STATUS = ("NotStarted", "InProgress", "Completed", "WaitingOnOthers", "Deferred")

TASK_FIELDS: tuple[FieldDef, ...] = (
    _f("StartDate", "date"),
    _f("DueDate", "date"),
    _ro("CompleteDate", "datetime", default=False),
    _f("Status", choices=TASK_STATUS),
    _f("PercentComplete", "float"),
    _f("ReminderIsSet", "boolean", default=False),
    _ro("Owner", default=False),
    _f("BillingInformation", default=False),
    _f("Mileage", default=False),
    _f("Companies", "json", default=False, filterable=False),
    _f("TotalWork", "integer", default=False),
    _f("ActualWork", "integer", default=False),
    _ro("IsComplete", "boolean", default=False),
)

MESSAGE_FIELDS: tuple[FieldDef, ...] = (
    _f("From", doc="sender SMTP address"),
    _f("ToRecipients", "json", filterable=False, doc="list of SMTP addresses"),
    _f("CcRecipients", "json", filterable=False),
    _f("BccRecipients", "json", default=False, filterable=False),
    _f("IsRead", "boolean"),
    _ro("DateTimeReceived", "datetime"),
    _ro("DateTimeSent", "datetime"),
    _ro("InternetMessageId", default=False),
    _ro("ConversationTopic", default=False),
    _ro("IsDraft", "boolean", default=False),
)


def _with_common(own: Sequence[FieldDef], *, drop: Iterable[str] = ()) -> tuple[FieldDef, ...]:
    dropped = {d.lower() for d in drop}
    common = tuple(f for f in COMMON if f.name.lower() not in dropped)
    return (*own, *common)


#: every item type by name
ITEM_TYPES: dict[str, ItemType] = {
    t.name: t
    for t in (
        ItemType("Contact", "IPM.Contact", "IPF.Contact", "contacts",
                 _with_common(CONTACT_FIELDS, drop=("Subject",)), ("Contacts",)),
        ItemType("ContactGroup", "IPM.DistList", "IPF.Contact", "contacts",
                 _with_common(CONTACT_GROUP_FIELDS, drop=("Subject",)),
                 ("ContactGroups", "DistributionList", "DistList")),
        ItemType("CalendarItem", "IPM.Appointment", "IPF.Appointment", "calendar",
                 _with_common(CALENDAR_FIELDS), ("Calendar", "Event", "Events", "Appointment")),
        ItemType("Task", "IPM.Task", "IPF.Task", "tasks", _with_common(TASK_FIELDS), ("Tasks",)),
        ItemType("Message", "IPM.Note", "IPF.Note", "inbox", _with_common(MESSAGE_FIELDS),
                 ("Messages", "Mail", "Email")),
        ItemType("Note", "IPM.StickyNote", "IPF.StickyNote", "notes", _with_common(()),
                 ("Notes", "StickyNote")),
    )
}


def item_type(name: str) -> ItemType:
    """The item type by name or alias (case-insensitive); CatalogError with close matches."""
    low = name.strip().lower()
    for t in ITEM_TYPES.values():
        if t.name.lower() == low or low in (a.lower() for a in t.aliases):
            return t
    names = [t.name for t in ITEM_TYPES.values()]
    raise CatalogError(f"unknown item type {name!r}; item types are {', '.join(names)}"
                       + suggestion(name, names))


#: NamingScheme=SharePoint: SharePoint contacts-list column names for contact fields
SHAREPOINT_NAMES: dict[str, dict[str, str]] = {
    "Contact": {
        "Title": "Surname",
        "FirstName": "GivenName",
        "FullName": "DisplayName",
        "Email": "EmailAddresses.EmailAddress1",
        "Company": "CompanyName",
        "JobTitle": "JobTitle",
        "WorkPhone": "PhoneNumbers.BusinessPhone",
        "HomePhone": "PhoneNumbers.HomePhone",
        "CellPhone": "PhoneNumbers.MobilePhone",
        "WorkFax": "PhoneNumbers.BusinessFax",
        "WorkAddress": "PhysicalAddresses.Business.Street",
        "WorkCity": "PhysicalAddresses.Business.City",
        "WorkState": "PhysicalAddresses.Business.State",
        "WorkZip": "PhysicalAddresses.Business.PostalCode",
        "WorkCountry": "PhysicalAddresses.Business.CountryOrRegion",
        "WebPage": "BusinessHomePage",
        "Comments": "Body.Plaintext",
    },
    "CalendarItem": {
        "Title": "Subject",
        "EventDate": "Start",
        "EndDate": "End",
        "Location": "Location",
        "Description": "Body.Plaintext",
        "fAllDayEvent": "IsAllDayEvent",
        "Category": "Categories",
    },
    "Task": {
        "Title": "Subject",
        "StartDate": "StartDate",
        "DueDate": "DueDate",
        "Status": "Status",
        "PercentComplete": "PercentComplete",
        "Body": "Body.Plaintext",
        "Priority": "Importance",
    },
}
