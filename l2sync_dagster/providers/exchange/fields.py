"""The field table of the Exchange item types: every field declared once, with its binding on
each backend.

Shared by both backends of the ``exchange`` provider. Names follow the EWS schema
(``GivenName``, ``EmailAddresses.EmailAddress1``, ``PhysicalAddresses.Business.City``);
look-ups are case-insensitive. Each :class:`FieldDef` says what the field is (name, type,
read-only, part of ``SELECT *``, filterable, choices) and how each backend holds it: ``ews=``
an exchangelib attribute or a converter of ``ews_values.EWS_KINDS``, ``graph=`` a Graph
property or a converter of ``graph_fields.GRAPH_KINDS``, or :class:`NotOnBackend` with the
reason (:data:`BY_BACKEND`: the backend fills it itself). The converters take the type and
the read-only flag from the field, never from the binding; the backends build their
accessors from this table at import time (an unknown converter kind fails the import), and
``tests/test_exchange_field_table.py`` checks that every field is bound or marked.

Interface (stable; both backends rely on it):

- :data:`ITEM_TYPES`: item type name -> :class:`ItemType` (``Contact``, ``ContactGroup``,
  ``CalendarItem``, ``Task``, ``Message``, ``Note``, ``DirectoryUser``); ``ItemType.no_api``
  names a backend without an API for the type (Graph: contact groups, notes),
  ``ItemType.read_only`` why a type is never written (``DirectoryUser``).
- :func:`item_type` (by name or alias, close matches on error),
  :meth:`ItemType.field` / :meth:`ItemType.require` (a :class:`FieldDef` by dotted name),
  :meth:`ItemType.default_fields` (what ``SELECT *`` reads), :meth:`ItemType.bound` /
  :meth:`ItemType.not_on` (the fields a backend holds / lacks).
- :class:`FieldDef`: ``name`` (canonical dotted name), ``type`` (canonical engine type:
  string, integer, float, decimal, boolean, date, datetime, json), ``read_only``,
  ``default`` (part of ``SELECT *``), ``filterable`` (usable in WHERE / ORDER BY / windows),
  ``choices`` (allowed values of an enumeration, case as the server writes them), ``ews`` /
  ``graph`` (the bindings).
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
from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from typing import Any

from l2sync_dagster.contract import utc

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
    return utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


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
class Binding:
    """How one backend holds a field: a converter ``kind`` of that backend's module
    (``ews_values.EWS_KINDS``, ``graph_fields.GRAPH_KINDS``) and the arguments it takes.

    A binding never repeats the field's type or read-only flag: the converter gets the
    :class:`FieldDef` and reads both from it (a read-only field gets no writer).
    """

    kind: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class NotOnBackend:
    """A field this backend has no counterpart for, and why (the provider refuses a select
    statement naming it; ``SELECT *`` leaves it out)."""

    reason: str


#: the backend fills the field itself (the folder's path; Graph's item class)
BY_BACKEND = Binding("by_backend")
#: the two backends a field is bound on
BACKENDS = ("ews", "graph")

Bound = Binding | NotOnBackend


def ews(kind: str, *args: Any) -> Binding:
    """An EWS binding: a converter of ``ews_values.EWS_KINDS`` and its arguments."""
    return Binding(kind, args)


def graph(kind: str, *args: Any) -> Binding:
    """A Graph binding: a converter of ``graph_fields.GRAPH_KINDS`` and its arguments."""
    return Binding(kind, args)


def _binding(value: Bound | str | None, default_kind: str) -> Bound | None:
    # a bare name is the common case: an exchangelib attribute / a top-level Graph property
    return Binding(default_kind, (value,)) if isinstance(value, str) else value


@dataclass(frozen=True)
class FieldDef:
    """One field of an item type: its dotted name, canonical type and flags, and how each
    backend holds it (``ews`` / ``graph``: a :class:`Binding` or :class:`NotOnBackend`)."""

    name: str
    type: str = "string"
    read_only: bool = False
    default: bool = True
    filterable: bool = True
    choices: tuple[str, ...] = ()
    doc: str = ""
    ews: Bound | None = dc_field(default=None, compare=False, repr=False)
    graph: Bound | None = dc_field(default=None, compare=False, repr=False)

    def binding(self, backend: str) -> Bound | None:
        """The field's binding on ``backend`` (``ews`` or ``graph``)."""
        return self.ews if backend == "ews" else self.graph


@dataclass(frozen=True)
class ItemType:
    """An Exchange item type: its folder class, default folder and fields. ``no_api`` names
    the backends that have no API for the type at all, and why (its fields have no binding
    there); ``read_only`` says why a type is never written (the directory)."""

    name: str
    item_class: str
    folder_class: str
    default_folder: str
    fields: tuple[FieldDef, ...]
    aliases: tuple[str, ...] = ()
    no_api: dict[str, str] = dc_field(default_factory=dict, compare=False)
    #: why items of this type cannot be written ("" = they can)
    read_only: str = ""
    _index: dict[str, FieldDef] = dc_field(default_factory=dict, compare=False, repr=False)

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

    def bound(self, backend: str) -> dict[str, Binding]:
        """{field name: binding} of the fields ``backend`` holds (none without an API)."""
        if backend in self.no_api:
            return {}
        return {f.name: b for f in self.fields if isinstance(b := f.binding(backend), Binding)}

    def not_on(self, backend: str) -> dict[str, str]:
        """{field name: why} of the fields ``backend`` has no counterpart for."""
        if backend in self.no_api:
            return {}
        return {f.name: b.reason for f in self.fields
                if isinstance(b := f.binding(backend), NotOnBackend)}


def _f(name: str, type_: str = "string", *, ews: Bound | str | None = None,
       graph: Bound | str | None = None, **kw: Any) -> FieldDef:
    return FieldDef(name, type_, ews=_binding(ews, "attr"), graph=_binding(graph, "prop"), **kw)


def _ro(name: str, type_: str = "string", **kw: Any) -> FieldDef:
    return _f(name, type_, read_only=True, **kw)


IMPORTANCE = ("Low", "Normal", "High")
SENSITIVITY = ("Normal", "Personal", "Private", "Confidential")

_NO_ITEM_PROPS = NotOnBackend("Graph does not expose this item property")
_NOT_ON_TODO = NotOnBackend("Microsoft To Do tasks (Graph) have no such property")
_NO_PHONE = NotOnBackend("a Graph contact has only business, home and mobile phone numbers")

#: fields every item type has (the Graph bindings of some differ per item type: see
#: :data:`ITEM_TYPES`)
COMMON: tuple[FieldDef, ...] = (
    _f("Subject", ews="subject", graph="subject"),
    _f("Body", ews=ews("body"), graph=graph("body"),
       doc="the body as stored (HTML when the item has an HTML body)"),
    _f("Body.Plaintext", filterable=False, ews=ews("text_body"), graph=graph("text_body"),
       doc="the text body; writing stores a text body"),
    _f("Categories", "json", ews="categories", graph=graph("string_list", "categories"),
       doc="list of category names"),
    _f("Importance", choices=IMPORTANCE, ews="importance", graph=graph("enum", "importance")),
    _f("Sensitivity", choices=SENSITIVITY, ews="sensitivity",
       graph=graph("enum", "sensitivity")),
    _ro("ItemClass", default=False, ews="item_class", graph=BY_BACKEND),
    _ro("DateTimeCreated", "datetime", ews="datetime_created", graph="createdDateTime"),
    _ro("LastModifiedTime", "datetime", ews="last_modified_time", graph="lastModifiedDateTime"),
    _ro("LastModifiedName", default=False, ews="last_modified_name", graph=_NO_ITEM_PROPS),
    _ro("HasAttachments", "boolean", default=False, ews="has_attachments",
        graph=graph("flag", "hasAttachments")),
    _ro("Size", "integer", default=False, ews="size", graph=_NO_ITEM_PROPS),
    _ro("FolderPath", default=False, filterable=False, ews=BY_BACKEND, graph=BY_BACKEND,
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

#: the phones a Graph contact has: the property (a list slot for the numbered ones)
_GRAPH_PHONES: dict[str, Bound] = {
    "MobilePhone": graph("prop", "mobilePhone"),
    "BusinessPhone": graph("list_slot", "businessPhones", 0),
    "BusinessPhone2": graph("list_slot", "businessPhones", 1),
    "HomePhone": graph("list_slot", "homePhones", 0),
    "HomePhone2": graph("list_slot", "homePhones", 1),
}
#: address part -> (exchangelib attribute, Graph property)
_ADDRESS_ATTRS = {"Street": ("street", "street"), "City": ("city", "city"),
                  "State": ("state", "state"),
                  "CountryOrRegion": ("country", "countryOrRegion"),
                  "PostalCode": ("zipcode", "postalCode")}
#: CompleteName part -> (exchangelib attribute, Graph property)
_COMPLETE_NAME_ATTRS = {
    "Title": ("title", "title"), "FirstName": ("first_name", "givenName"),
    "MiddleName": ("middle_name", "middleName"), "LastName": ("last_name", "surname"),
    "Suffix": ("suffix", "generation"), "Initials": ("initials", "initials"),
    "FullName": ("full_name", "displayName"), "Nickname": ("nickname", "nickName"),
    "YomiFirstName": ("yomi_first_name", "yomiGivenName"),
    "YomiLastName": ("yomi_last_name", "yomiSurname"),
}

CONTACT_FIELDS: tuple[FieldDef, ...] = (
    _f("GivenName", ews="given_name", graph="givenName"),
    _f("Surname", ews="surname", graph="surname"),
    _f("MiddleName", ews="middle_name", graph="middleName"),
    _f("Initials", default=False, ews="initials", graph="initials"),
    _f("Nickname", default=False, ews="nickname", graph="nickName"),
    _f("Generation", default=False, ews="generation", graph="generation"),
    _f("DisplayName", ews="display_name", graph="displayName"),
    _f("FileAs", ews="file_as", graph="fileAs"),
    _f("CompanyName", ews="company_name", graph="companyName"),
    _f("Department", ews="department", graph="department"),
    _f("JobTitle", ews="job_title", graph="jobTitle"),
    _f("Manager", default=False, ews="manager", graph="manager"),
    _f("AssistantName", default=False, ews="assistant_name", graph="assistantName"),
    _f("OfficeLocation", default=False, ews="office", graph="officeLocation"),
    _f("Profession", default=False, ews="profession", graph="profession"),
    _f("SpouseName", default=False, ews="spouse_name", graph="spouseName"),
    _f("BusinessHomePage", ews="business_homepage", graph="businessHomePage"),
    _f("Birthday", "date", ews="birthday", graph="birthday"),
    _f("WeddingAnniversary", "date", default=False, ews="wedding_anniversary",
       graph=NotOnBackend("a Graph contact has no wedding anniversary")),
    _f("Children", "json", default=False, filterable=False, ews="children",
       graph=graph("string_list", "children")),
    _f("Companies", "json", default=False, filterable=False, ews="companies",
       graph=NotOnBackend("a Graph contact has one companyName only")),
    _f("Mileage", default=False, ews="mileage",
       graph=NotOnBackend("a Graph contact has no mileage")),
    *(_f(f"EmailAddresses.EmailAddress{i}",
         ews=ews("indexed", "email_addresses", f"EmailAddress{i}", None, "email"),
         graph=graph("list_slot", "emailAddresses", i - 1, "address")) for i in (1, 2, 3)),
    *(_f(f"ImAddresses.ImAddress{i}", default=False,
         ews=ews("indexed", "im_addresses", f"ImAddress{i}", None, "im_address"),
         graph=graph("list_slot", "imAddresses", i - 1)) for i in (1, 2, 3)),
    *(_f(f"PhoneNumbers.{p}", default=p in _DEFAULT_PHONES,
         ews=ews("indexed", "phone_numbers", p, None, "phone_number"),
         graph=_GRAPH_PHONES.get(p, _NO_PHONE)) for p in PHONE_LABELS),
    *(
        _f(f"PhysicalAddresses.{label}.{part}", default=label == "Business", filterable=False,
           ews=ews("indexed", "physical_addresses", label, attr, attr),
           graph=graph("nested", f"{label.lower()}Address", prop))
        for label in ADDRESS_LABELS
        for part, (attr, prop) in _ADDRESS_ATTRS.items()
    ),
    *(_ro(f"CompleteName.{p}", default=False, filterable=False,
          ews=ews("complete_name", attr), graph=graph("text", prop))
      for p, (attr, prop) in _COMPLETE_NAME_ATTRS.items()),
)

CONTACT_GROUP_FIELDS: tuple[FieldDef, ...] = (
    _f("DisplayName", ews="display_name"),
    _f("FileAs", default=False, ews="file_as"),
    _f("Members", "json", filterable=False, ews=ews("members"),
       doc="list of members as 'Name <address>' (or the bare address)"),
)

CALENDAR_FIELDS: tuple[FieldDef, ...] = (
    # Graph: Start/End/IsAllDayEvent/the time zones/Recurrence depend on each other and are
    # written together by the backend (graph_backend.EVENT_TIME_FIELDS)
    _f("Start", "datetime", ews=ews("start_end", "start"), graph=graph("event_time", "start")),
    _f("End", "datetime", ews=ews("start_end", "end"), graph=graph("event_time", "end")),
    _ro("Start.Date", "date", default=False, filterable=False,
        ews=ews("date_part", "start"), graph=graph("event_date", "start"),
        doc="the start's calendar date in StartTimeZone (all-day events)"),
    _ro("End.Date", "date", default=False, filterable=False,
        ews=ews("date_part", "end"), graph=graph("event_date", "end"),
        doc="the end's calendar date in StartTimeZone (exclusive for all-day events)"),
    _f("IsAllDayEvent", "boolean", ews="is_all_day", graph=graph("flag", "isAllDay")),
    _f("StartTimeZone", ews=ews("timezone", "_start_timezone"), graph=graph("event_zone"),
       doc="Windows time zone id, e.g. W. Europe Standard Time"),
    _f("EndTimeZone", default=False, ews=ews("timezone", "_end_timezone"),
       graph=graph("text", "originalEndTimeZone")),
    _f("Location", ews="location", graph=graph("location")),
    _f("LegacyFreeBusyStatus", choices=("Free", "Tentative", "Busy", "OOF",
                                         "WorkingElsewhere", "NoData"),
       ews="legacy_free_busy_status",
       graph=graph("enum", "showAs", {"oof": "OOF", "unknown": "NoData"})),
    _f("ReminderIsSet", "boolean", default=False, ews="reminder_is_set", graph="isReminderOn"),
    _f("ReminderMinutesBeforeStart", "integer", default=False,
       ews="reminder_minutes_before_start", graph="reminderMinutesBeforeStart"),
    _f("RequiredAttendees", "json", filterable=False, doc="list of SMTP addresses",
       ews=ews("mailboxes", "required_attendees", "attendee"),
       graph=graph("attendees", "required")),
    _f("OptionalAttendees", "json", filterable=False, doc="list of SMTP addresses",
       ews=ews("mailboxes", "optional_attendees", "attendee"),
       graph=graph("attendees", "optional")),
    _f("Resources", "json", default=False, filterable=False,
       ews=ews("mailboxes", "resources", "attendee"), graph=graph("attendees", "resource")),
    _f("Recurrence", "json", filterable=False, doc=RECURRENCE_DOC,
       ews=ews("recurrence"), graph=graph("recurrence")),
    _ro("Organizer", default=False, ews=ews("mailbox", "organizer"), graph=graph("organizer")),
    _ro("IsRecurring", "boolean", default=False, ews="is_recurring",
        graph=graph("is_recurring")),
    _ro("CalendarItemType", default=False, ews="type", graph=graph("calendar_item_type")),
    _ro("IsCancelled", "boolean", default=False, ews="is_cancelled",
        graph=graph("flag", "isCancelled")),
    _ro("DeletedOccurrences", "json", filterable=False, doc=DELETED_OCCURRENCES_DOC,
        ews=ews("occurrences", "deleted_occurrences"), graph=graph("cancelled_occurrences")),
    _ro("ModifiedOccurrences", "json", filterable=False, doc=MODIFIED_OCCURRENCES_DOC,
        ews=ews("occurrences", "modified_occurrences"), graph=graph("exception_occurrences")),
)

TASK_STATUS = ("NotStarted", "InProgress", "Completed", "WaitingOnOthers", "Deferred")

TASK_FIELDS: tuple[FieldDef, ...] = (
    _f("StartDate", "date", ews="start_date", graph=graph("task_date", "startDateTime")),
    _f("DueDate", "date", ews="due_date", graph=graph("task_date", "dueDateTime")),
    _ro("CompleteDate", "datetime", default=False, ews="complete_date",
        graph=graph("task_date", "completedDateTime")),
    _f("Status", choices=TASK_STATUS, ews="status", graph=graph("enum", "status")),
    _f("PercentComplete", "float", ews="percent_complete", graph=_NOT_ON_TODO),
    _f("ReminderIsSet", "boolean", default=False, ews="reminder_is_set", graph="isReminderOn"),
    _ro("Owner", default=False, ews="owner", graph=_NOT_ON_TODO),
    _f("BillingInformation", default=False, ews="billing_information", graph=_NOT_ON_TODO),
    _f("Mileage", default=False, ews="mileage", graph=_NOT_ON_TODO),
    _f("Companies", "json", default=False, filterable=False, ews="companies",
       graph=_NOT_ON_TODO),
    _f("TotalWork", "integer", default=False, ews="total_work", graph=_NOT_ON_TODO),
    _f("ActualWork", "integer", default=False, ews="actual_work", graph=_NOT_ON_TODO),
    _ro("IsComplete", "boolean", default=False, ews="is_complete", graph=graph("is_complete")),
)

MESSAGE_FIELDS: tuple[FieldDef, ...] = (
    _f("From", doc="sender SMTP address", ews=ews("mailbox", "author"),
       graph=graph("address", "from", "address")),
    _f("ToRecipients", "json", filterable=False, doc="list of SMTP addresses",
       ews=ews("mailboxes", "to_recipients", "mailbox"),
       graph=graph("recipients", "toRecipients")),
    _f("CcRecipients", "json", filterable=False,
       ews=ews("mailboxes", "cc_recipients", "mailbox"),
       graph=graph("recipients", "ccRecipients")),
    _f("BccRecipients", "json", default=False, filterable=False,
       ews=ews("mailboxes", "bcc_recipients", "mailbox"),
       graph=graph("recipients", "bccRecipients")),
    _f("IsRead", "boolean", ews="is_read", graph="isRead"),
    _ro("DateTimeReceived", "datetime", ews="datetime_received", graph="receivedDateTime"),
    _ro("DateTimeSent", "datetime", ews="datetime_sent", graph="sentDateTime"),
    _ro("InternetMessageId", default=False, ews="message_id",
        graph=graph("text", "internetMessageId")),
    _ro("ConversationTopic", default=False, ews="conversation_topic",
        graph=NotOnBackend("Graph has no conversation topic (conversationId only)")),
    _ro("IsDraft", "boolean", default=False, ews="is_draft", graph=graph("flag", "isDraft")),
)


#: the people of the organisation (Graph ``/users``; on EWS the persons of the global address
#: list through FindPeople, see ``ews_directory.py``): the contact fields a directory user has,
#: under the contact's names, all read-only (the directory is a source only). EWS personas keep
#: the profile values per source as attributed lists (``attributed``: the first value, or one
#: part of a phone number / postal address)
DIRECTORY_FIELDS: tuple[FieldDef, ...] = (
    _ro("GivenName", ews="given_name", graph="givenName"),
    _ro("Surname", ews="surname", graph="surname"),
    _ro("DisplayName", ews="display_name", graph="displayName"),
    _ro("EmailAddresses.EmailAddress1", ews=ews("mailbox", "email_address"), graph="mail"),
    _ro("CompanyName", ews="company_name", graph="companyName"),
    _ro("Department", ews=ews("attributed", "departments"), graph="department"),
    _ro("JobTitle", ews="title", graph="jobTitle"),
    _ro("OfficeLocation", ews=ews("attributed", "office_locations"), graph="officeLocation"),
    _ro("PhoneNumbers.BusinessPhone", ews=ews("attributed", "business_phone_numbers", "number"),
        graph=graph("list_slot", "businessPhones", 0)),
    _ro("PhoneNumbers.MobilePhone", ews=ews("attributed", "mobile_phones", "number"),
        graph="mobilePhone"),
    *(_ro(f"PhysicalAddresses.Business.{part}", filterable=False,
          ews=ews("attributed", "business_addresses", attr), graph=prop)
      for part, attr, prop in (("Street", "street", "streetAddress"), ("City", "city", "city"),
                               ("State", "state", "state"),
                               ("PostalCode", "postal_code", "postalCode"),
                               ("CountryOrRegion", "country", "country"))),
)


def _with_common(own: Sequence[FieldDef], *, drop: Iterable[str] = (),
                 graph: dict[str, Bound] | None = None) -> tuple[FieldDef, ...]:
    """The item type's own fields and the common ones; ``graph`` rebinds common fields on
    Graph for this item type."""
    dropped = {d.lower() for d in drop}
    rebound = graph or {}
    common = tuple(replace(f, graph=rebound[f.name]) if f.name in rebound else f
                   for f in COMMON if f.name.lower() not in dropped)
    return (*own, *common)


def _no_api(fields: tuple[FieldDef, ...], backend: str) -> tuple[FieldDef, ...]:
    """The fields of an item type ``backend`` has no API for: no binding there."""
    return tuple(replace(f, **{backend: None}) for f in fields)


_CONTACT_NOTES = graph("prop", "personalNotes")

#: every item type by name
ITEM_TYPES: dict[str, ItemType] = {
    t.name: t
    for t in (
        ItemType("Contact", "IPM.Contact", "IPF.Contact", "contacts",
                 _with_common(CONTACT_FIELDS, drop=("Subject",), graph={
                     "Body": _CONTACT_NOTES, "Body.Plaintext": _CONTACT_NOTES,
                     "Importance": NotOnBackend("a Graph contact has no importance"),
                     "Sensitivity": NotOnBackend("a Graph contact has no sensitivity"),
                     "HasAttachments": NotOnBackend("a Graph contact has no attachments flag"),
                 }), ("Contacts",)),
        ItemType("ContactGroup", "IPM.DistList", "IPF.Contact", "contacts",
                 _no_api(_with_common(CONTACT_GROUP_FIELDS, drop=("Subject",)), "graph"),
                 ("ContactGroups", "DistributionList", "DistList"),
                 no_api={"graph": "Microsoft Graph has no API for Outlook contact groups"}),
        ItemType("CalendarItem", "IPM.Appointment", "IPF.Appointment", "calendar",
                 _with_common(CALENDAR_FIELDS), ("Calendar", "Event", "Events", "Appointment")),
        ItemType("Task", "IPM.Task", "IPF.Task", "tasks",
                 _with_common(TASK_FIELDS, graph={
                     "Subject": graph("prop", "title"), "Sensitivity": _NOT_ON_TODO,
                     "HasAttachments": NotOnBackend(
                         "the Graph backend does not read it for To Do tasks"),
                 }), ("Tasks",)),
        ItemType("Message", "IPM.Note", "IPF.Note", "inbox",
                 _with_common(MESSAGE_FIELDS, graph={
                     "Sensitivity": NotOnBackend("a Graph message has no writable sensitivity"),
                 }), ("Messages", "Mail", "Email")),
        ItemType("Note", "IPM.StickyNote", "IPF.StickyNote", "notes",
                 _no_api(_with_common(()), "graph"),
                 ("Notes", "StickyNote"),
                 no_api={"graph": "Microsoft Graph has no API for Outlook notes"}),
        ItemType("DirectoryUser", "", "", "directory", DIRECTORY_FIELDS,
                 ("Directory", "User", "Users"),
                 read_only="the directory (FROM Directory) is read-only: it can be the "
                           "source of a one-way connection, never its target"),
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
