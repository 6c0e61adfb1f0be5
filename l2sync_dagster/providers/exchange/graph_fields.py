"""The dotted field names of ``fields.py`` mapped to Microsoft Graph properties.

One :class:`GraphField` per field name the Graph backend supports, per item type: which Graph
properties it reads (``select``), how it turns a Graph entity into the canonical value
(``read``) and how it writes a canonical value into a PATCH/POST body (``write``). Writers of
fields that live inside a list or a complex value (``EmailAddresses.EmailAddress2``,
``PhysicalAddresses.Business.City``, attendees) start from the item's current value, so one
changed part does not wipe the others (``needs_current``).

Fields with no Graph counterpart (``PhoneNumbers.BusinessFax``, ``Mileage``,
``PercentComplete``...) are absent from :data:`GRAPH_FIELDS` and listed, with the reason, in
:data:`GRAPH_UNAVAILABLE`: the provider refuses a select statement that names one (``SELECT *``
leaves them out). Contact groups and notes have no Graph API at all
(:data:`GRAPH_NO_API`). ``FolderPath`` and ``ItemClass`` are filled by the backend itself
(:data:`GRAPH_VIRTUAL`).

Value conventions are those of ``fields.py``. Events are read with
``Prefer: outlook.timezone="UTC"``; an all-day event's ``Start``/``End`` are midnight in its
``StartTimeZone`` converted to UTC (the EWS convention), ``Start.Date``/``End.Date`` its dates.
"""

import copy
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

from l2sync_dagster.providers.exchange.fields import (
    deleted_occurrences_json,
    modified_occurrences_json,
)
from l2sync_dagster.providers.graph.values import (
    format_value,
    from_json_text,
    parse_date,
    parse_datetime,
    parse_value,
    to_json_text,
)

Reader = Callable[[dict[str, Any]], Any]
Writer = Callable[[dict[str, Any], Any, dict[str, Any]], None]


@dataclass(frozen=True)
class GraphField:
    """How one dotted field maps to Graph."""

    select: tuple[str, ...]
    read: Reader
    write: Writer | None = None
    needs_current: bool = False


def _cap(text: Any) -> Any:
    """``notStarted`` -> ``NotStarted`` (Graph enum -> EWS spelling)."""
    if not isinstance(text, str) or not text:
        return None
    return text[0].upper() + text[1:]


def _low(text: Any) -> Any:
    """``NotStarted`` -> ``notStarted`` (EWS spelling -> Graph enum)."""
    if text is None:
        return None
    text = str(text)
    return text[0].lower() + text[1:] if text else None


def simple(prop: str, type_: str = "string") -> GraphField:
    """A top-level scalar property."""
    def read(item: dict[str, Any]) -> Any:
        return parse_value(item.get(prop), type_)

    def write(body: dict[str, Any], value: Any, current: dict[str, Any]) -> None:
        body[prop] = format_value(value, type_)

    return GraphField((prop,), read, write)


def enum(prop: str, special: dict[str, str] | None = None) -> GraphField:
    """An enumeration: Graph's camelCase value <-> the EWS spelling."""
    to_ews = dict(special or {})
    to_graph = {v.lower(): k for k, v in to_ews.items()}

    def read(item: dict[str, Any]) -> Any:
        value = item.get(prop)
        return to_ews.get(value, _cap(value)) if value is not None else None

    def write(body: dict[str, Any], value: Any, current: dict[str, Any]) -> None:
        body[prop] = None if value is None else to_graph.get(str(value).lower(), _low(value))

    return GraphField((prop,), read, write)


def string_list(prop: str) -> GraphField:
    """A list of strings (``categories``, ``children``) as json."""
    def read(item: dict[str, Any]) -> Any:
        return to_json_text(item.get(prop) or None)

    def write(body: dict[str, Any], value: Any, current: dict[str, Any]) -> None:
        body[prop] = [str(v) for v in (from_json_text(value) or [])]

    return GraphField((prop,), read, write)


def _base(body: dict[str, Any], current: dict[str, Any], prop: str, empty: Any) -> Any:
    if prop not in body:
        value = current.get(prop)
        body[prop] = copy.deepcopy(value) if value is not None else empty
    return body[prop]


def list_slot(prop: str, index: int, sub: str | None = None) -> GraphField:
    """Position ``index`` of a list property (``businessPhones[1]``,
    ``emailAddresses[0].address``)."""
    def read(item: dict[str, Any]) -> Any:
        values = item.get(prop) or []
        if index >= len(values):
            return None
        value = values[index]
        if sub is not None:
            value = value.get(sub) if isinstance(value, dict) else None
        return value or None

    def write(body: dict[str, Any], value: Any, current: dict[str, Any]) -> None:
        values = _base(body, current, prop, [])
        text = None if value is None else str(value)
        if text is None:
            if index < len(values):
                values.pop(index)
            return
        entry: Any = {sub: text, "name": text} if sub == "address" else (
            {sub: text} if sub else text)
        if index < len(values):
            if sub and isinstance(values[index], dict):
                values[index] = {**values[index], sub: text}
                if sub == "address":
                    values[index]["name"] = values[index].get("name") or text
            else:
                values[index] = entry
        else:
            values.append(entry)

    return GraphField((prop,), read, write, needs_current=True)


def nested(prop: str, sub: str, type_: str = "string") -> GraphField:
    """A member of a complex property (``businessAddress.city``)."""
    def read(item: dict[str, Any]) -> Any:
        outer = item.get(prop) or {}
        return parse_value(outer.get(sub) or None, type_)

    def write(body: dict[str, Any], value: Any, current: dict[str, Any]) -> None:
        outer = _base(body, current, prop, {})
        outer[sub] = format_value(value, type_)

    return GraphField((prop,), read, write, needs_current=True)


def address(prop: str, sub: str) -> GraphField:
    """``from.emailAddress.address`` style: a recipient's SMTP address."""
    def read(item: dict[str, Any]) -> Any:
        return ((item.get(prop) or {}).get("emailAddress") or {}).get(sub) or None

    def write(body: dict[str, Any], value: Any, current: dict[str, Any]) -> None:
        body[prop] = None if value is None else {"emailAddress": {"address": str(value)}}

    return GraphField((prop,), read, write)


def recipients(prop: str) -> GraphField:
    """A list of recipients as a json list of SMTP addresses."""
    def read(item: dict[str, Any]) -> Any:
        found = [((r or {}).get("emailAddress") or {}).get("address")
                 for r in item.get(prop) or []]
        return to_json_text([a for a in found if a] or None)

    def write(body: dict[str, Any], value: Any, current: dict[str, Any]) -> None:
        body[prop] = [{"emailAddress": {"address": str(a)}}
                      for a in (from_json_text(value) or [])]

    return GraphField((prop,), read, write)


def attendees(kind: str) -> GraphField:
    """Event attendees of one type (required/optional/resource) as SMTP addresses."""
    def read(item: dict[str, Any]) -> Any:
        found = [((a or {}).get("emailAddress") or {}).get("address")
                 for a in item.get("attendees") or [] if (a or {}).get("type") == kind]
        return to_json_text([a for a in found if a] or None)

    def write(body: dict[str, Any], value: Any, current: dict[str, Any]) -> None:
        existing = _base(body, current, "attendees", [])
        kept = [a for a in existing if (a or {}).get("type") != kind]
        kept += [{"emailAddress": {"address": str(a)}, "type": kind}
                 for a in (from_json_text(value) or [])]
        body["attendees"] = kept

    return GraphField(("attendees",), read, write, needs_current=True)


def read_only(props: tuple[str, ...], read: Reader) -> GraphField:
    """A field Graph computes (no writer)."""
    return GraphField(props, read)


def constant(value: Any) -> GraphField:
    """A read-only value that is the same for every item of the type."""
    return GraphField((), lambda item: value)


def body_field(prop: str = "body") -> GraphField:
    """The body as stored (HTML for messages and events)."""
    def read(item: dict[str, Any]) -> Any:
        return (item.get(prop) or {}).get("content") or None

    def write(body: dict[str, Any], value: Any, current: dict[str, Any]) -> None:
        text = "" if value is None else str(value)
        body[prop] = {"contentType": "html", "content": text}

    return GraphField((prop,), read, write)


def text_body_field(prop: str = "body") -> GraphField:
    """The plain-text body (read with ``Prefer: outlook.body-content-type="text"``)."""
    def read(item: dict[str, Any]) -> Any:
        value = item.get("@l2sync.textBody", item.get(prop))
        return (value or {}).get("content") or None

    def write(body: dict[str, Any], value: Any, current: dict[str, Any]) -> None:
        body[prop] = {"contentType": "text", "content": "" if value is None else str(value)}

    return GraphField((prop,), read, write)


def notes_field() -> GraphField:
    """A contact's notes (``personalNotes``, plain text) for Body and Body.Plaintext."""
    return simple("personalNotes")


# --- time zones --------------------------------------------------------------------------

def zone_of(name: str | None) -> dt.tzinfo:
    """A tzinfo for a Windows (``W. Europe Standard Time``) or IANA zone name; UTC otherwise."""
    if not name:
        return dt.UTC
    iana = MS_TIMEZONE_TO_IANA_MAP.get(name, name)
    if iana in {"UTC", "Etc/UTC", "tzone://Microsoft/Utc"}:
        return dt.UTC
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def _dtz_utc(value: Any) -> dt.datetime | None:
    """A dateTimeTimeZone (read with outlook.timezone=UTC, or with its own zone) as UTC."""
    if not isinstance(value, dict) or not value.get("dateTime"):
        return None
    parsed = parse_datetime(str(value["dateTime"]).rstrip("Z"))
    if parsed is None:
        return None
    zone = value.get("timeZone")
    if zone and zone not in {"UTC", "Etc/UTC"}:
        naive = parsed.replace(tzinfo=None)
        return naive.replace(tzinfo=zone_of(zone)).astimezone(dt.UTC)
    return parsed


def _dtz_date(value: Any) -> dt.date | None:
    if not isinstance(value, dict) or not value.get("dateTime"):
        return None
    return dt.date.fromisoformat(str(value["dateTime"])[:10])


def event_zone(item: dict[str, Any]) -> str | None:
    """The event's own time zone: ``originalStartTimeZone``; for an all-day event (a floating
    date, returned in its own zone) the zone of ``start`` when that is not UTC."""
    zone = item.get("originalStartTimeZone")
    if not zone and item.get("isAllDay"):
        given = (item.get("start") or {}).get("timeZone")
        zone = given if given and given not in {"UTC", "Etc/UTC"} else None
    return zone or None


def event_start(item: dict[str, Any], which: str) -> dt.datetime | None:
    """``Start``/``End`` of an event in UTC (all-day: midnight in its start time zone)."""
    value = item.get(which)
    if item.get("isAllDay"):
        day = _dtz_date(value)
        if day is None:
            return None
        zone = zone_of(event_zone(item))
        return dt.datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(dt.UTC)
    return _dtz_utc(value)


def cancelled_occurrences(item: dict[str, Any]) -> str | None:
    """``DeletedOccurrences`` of a series master from ``cancelledOccurrences``
    (``OID.<master id>.<yyyy-mm-dd>``): each date at the series' local start time."""
    entries = item.get("cancelledOccurrences") or []
    start = event_start(item, "start")
    if not entries or start is None:
        return None
    rng = (item.get("recurrence") or {}).get("range") or {}
    zone = zone_of(event_zone(item) if item.get("isAllDay")
                   else rng.get("recurrenceTimeZone") or event_zone(item))
    local_time = start.astimezone(zone).time()
    starts = []
    for entry in entries:
        try:
            day = dt.date.fromisoformat(str(entry).rsplit(".", 1)[-1])
        except ValueError:
            continue
        starts.append(dt.datetime.combine(day, local_time, tzinfo=zone).astimezone(dt.UTC))
    return deleted_occurrences_json(starts)


def exception_occurrences(item: dict[str, Any]) -> str | None:
    """``ModifiedOccurrences`` of a series master from its expanded ``exceptionOccurrences``."""
    return modified_occurrences_json(
        (parse_datetime(e.get("originalStart")), _dtz_utc(e.get("start")),
         _dtz_utc(e.get("end"))) for e in item.get("exceptionOccurrences") or [])


def event_date(item: dict[str, Any], which: str) -> dt.date | None:
    """The calendar date of ``start``/``end`` in the event's start time zone."""
    if item.get("isAllDay"):
        return _dtz_date(item.get(which))
    moment = _dtz_utc(item.get(which))
    if moment is None:
        return None
    return moment.astimezone(zone_of(event_zone(item))).date()


def dtz_body(moment: Any, zone_name: str | None, all_day: bool) -> dict[str, str] | None:
    """A dateTimeTimeZone for writing: local time in the zone (midnight for all-day)."""
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = parse_datetime(moment)
    elif isinstance(moment, dt.date) and not isinstance(moment, dt.datetime):
        moment = dt.datetime(moment.year, moment.month, moment.day, tzinfo=dt.UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    zone = zone_of(zone_name)
    local = moment.astimezone(zone)
    if all_day:
        # a UTC instant that is midnight somewhere: the date in the event's zone
        local = local.replace(hour=0, minute=0, second=0, microsecond=0)
    name = zone_name if zone_name and zone is not dt.UTC else "UTC"
    return {"dateTime": local.replace(tzinfo=None).isoformat(timespec="seconds"),
            "timeZone": name}


def task_date(prop: str) -> GraphField:
    """A To Do date (``dueDateTime``...) as a date."""
    def read(item: dict[str, Any]) -> Any:
        return _dtz_date(item.get(prop))

    def write(body: dict[str, Any], value: Any, current: dict[str, Any]) -> None:
        day = parse_date(value) if value is not None else None
        body[prop] = None if day is None else {"dateTime": f"{day.isoformat()}T00:00:00",
                                               "timeZone": "UTC"}

    return GraphField((prop,), read, write)


# --- recurrence --------------------------------------------------------------------------

_DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_PATTERNS = {"daily": "Daily", "weekly": "Weekly", "absoluteMonthly": "AbsoluteMonthly",
             "relativeMonthly": "RelativeMonthly", "absoluteYearly": "AbsoluteYearly",
             "relativeYearly": "RelativeYearly"}


def recurrence_to_ews(rec: Any) -> str | None:
    """Graph's patternedRecurrence as the json object documented in ``fields.RECURRENCE_DOC``."""
    if not isinstance(rec, dict) or not rec.get("pattern"):
        return None
    pattern, rng = rec.get("pattern") or {}, rec.get("range") or {}
    kind = _PATTERNS.get(pattern.get("type", ""), _cap(pattern.get("type")))
    out: dict[str, Any] = {"Pattern": kind}
    if kind in {"Daily", "Weekly", "AbsoluteMonthly", "RelativeMonthly"}:
        out["Interval"] = int(pattern.get("interval") or 1)
    if kind in {"Weekly", "RelativeMonthly", "RelativeYearly"}:
        out["DaysOfWeek"] = [_cap(d) for d in pattern.get("daysOfWeek") or []]
    if kind in {"AbsoluteMonthly", "AbsoluteYearly"}:
        out["DayOfMonth"] = int(pattern.get("dayOfMonth") or 0)
    if kind in {"AbsoluteYearly", "RelativeYearly"} and pattern.get("month"):
        out["Month"] = _MONTHS[int(pattern["month"]) - 1]
    if kind in {"RelativeMonthly", "RelativeYearly"}:
        out["DayOfWeekIndex"] = _cap(pattern.get("index") or "first")
    out["StartDate"] = rng.get("startDate")
    out["EndDate"] = rng.get("endDate") if rng.get("type") == "endDate" else None
    out["Occurrences"] = (int(rng["numberOfOccurrences"]) if rng.get("type") == "numbered"
                          else None)
    return to_json_text(out)


def recurrence_to_graph(value: Any, zone: str | None) -> dict[str, Any] | None:
    """The documented json object as Graph's patternedRecurrence."""
    data = from_json_text(value)
    if not data:
        return None
    by_ews = {v.lower(): k for k, v in _PATTERNS.items()}
    kind = by_ews.get(str(data.get("Pattern", "")).lower())
    if kind is None:
        raise ValueError(f"unknown recurrence pattern {data.get('Pattern')!r}")
    pattern: dict[str, Any] = {"type": kind, "interval": int(data.get("Interval") or 1)}
    if data.get("DaysOfWeek"):
        pattern["daysOfWeek"] = [str(d).lower() for d in data["DaysOfWeek"]]
        for d in pattern["daysOfWeek"]:
            if d not in _DAYS:
                raise ValueError(f"unknown day of week {d!r}")
    if data.get("DayOfMonth"):
        pattern["dayOfMonth"] = int(data["DayOfMonth"])
    if data.get("Month"):
        pattern["month"] = [m.lower() for m in _MONTHS].index(str(data["Month"]).lower()) + 1
    if data.get("DayOfWeekIndex"):
        pattern["index"] = _low(data["DayOfWeekIndex"])
    rng: dict[str, Any] = {"startDate": str(data.get("StartDate"))[:10],
                           "recurrenceTimeZone": zone or "UTC"}
    if data.get("EndDate"):
        rng.update(type="endDate", endDate=str(data["EndDate"])[:10])
    elif data.get("Occurrences"):
        rng.update(type="numbered", numberOfOccurrences=int(data["Occurrences"]))
    else:
        rng["type"] = "noEnd"
    return {"pattern": pattern, "range": rng}


# --- the catalog -------------------------------------------------------------------------

def _getter(prop: str) -> Reader:
    return lambda item: item.get(prop) or None


_COMMON_DATES = {
    "DateTimeCreated": read_only(("createdDateTime",),
                                 lambda i: parse_datetime(i.get("createdDateTime"))),
    "LastModifiedTime": read_only(("lastModifiedDateTime",),
                                  lambda i: parse_datetime(i.get("lastModifiedDateTime"))),
}
_SENSITIVITY = enum("sensitivity")
_IMPORTANCE = enum("importance")

_PHONE_SLOTS = {"BusinessPhone": ("businessPhones", 0), "BusinessPhone2": ("businessPhones", 1),
                "HomePhone": ("homePhones", 0), "HomePhone2": ("homePhones", 1)}
_ADDRESS_PROPS = {"Business": "businessAddress", "Home": "homeAddress", "Other": "otherAddress"}
_ADDRESS_PARTS = {"Street": "street", "City": "city", "State": "state",
                  "CountryOrRegion": "countryOrRegion", "PostalCode": "postalCode"}
_COMPLETE_NAME = {"Title": "title", "FirstName": "givenName", "MiddleName": "middleName",
                  "LastName": "surname", "Suffix": "generation", "Initials": "initials",
                  "FullName": "displayName", "Nickname": "nickName",
                  "YomiFirstName": "yomiGivenName", "YomiLastName": "yomiSurname"}

CONTACT: dict[str, GraphField] = {
    "GivenName": simple("givenName"),
    "Surname": simple("surname"),
    "MiddleName": simple("middleName"),
    "Initials": simple("initials"),
    "Nickname": simple("nickName"),
    "Generation": simple("generation"),
    "DisplayName": simple("displayName"),
    "FileAs": simple("fileAs"),
    "CompanyName": simple("companyName"),
    "Department": simple("department"),
    "JobTitle": simple("jobTitle"),
    "Manager": simple("manager"),
    "AssistantName": simple("assistantName"),
    "OfficeLocation": simple("officeLocation"),
    "Profession": simple("profession"),
    "SpouseName": simple("spouseName"),
    "BusinessHomePage": simple("businessHomePage"),
    "Birthday": simple("birthday", "date"),
    "Children": string_list("children"),
    "PhoneNumbers.MobilePhone": simple("mobilePhone"),
    **{f"PhoneNumbers.{k}": list_slot(p, i) for k, (p, i) in _PHONE_SLOTS.items()},
    **{f"EmailAddresses.EmailAddress{i + 1}": list_slot("emailAddresses", i, "address")
       for i in range(3)},
    **{f"ImAddresses.ImAddress{i + 1}": list_slot("imAddresses", i) for i in range(3)},
    **{f"PhysicalAddresses.{label}.{part}": nested(prop, sub)
       for label, prop in _ADDRESS_PROPS.items() for part, sub in _ADDRESS_PARTS.items()},
    **{f"CompleteName.{k}": read_only((p,), _getter(p)) for k, p in _COMPLETE_NAME.items()},
    "Body": notes_field(),
    "Body.Plaintext": notes_field(),
    "Categories": string_list("categories"),
    **_COMMON_DATES,
}

_SHOW_AS = {"oof": "OOF", "unknown": "NoData"}

CALENDAR: dict[str, GraphField] = {
    "Subject": simple("subject"),
    "Body": body_field(),
    "Body.Plaintext": text_body_field(),
    "Categories": string_list("categories"),
    "Importance": _IMPORTANCE,
    "Sensitivity": _SENSITIVITY,
    # Start/End/IsAllDayEvent/StartTimeZone are written together by the backend
    "Start": GraphField(("start", "isAllDay", "originalStartTimeZone"),
                        lambda i: event_start(i, "start")),
    "End": GraphField(("end", "isAllDay", "originalStartTimeZone"),
                      lambda i: event_start(i, "end")),
    "Start.Date": read_only(("start", "isAllDay", "originalStartTimeZone"),
                            lambda i: event_date(i, "start")),
    "End.Date": read_only(("end", "isAllDay", "originalStartTimeZone"),
                          lambda i: event_date(i, "end")),
    "IsAllDayEvent": GraphField(("isAllDay",), lambda i: bool(i.get("isAllDay"))),
    "StartTimeZone": GraphField(("originalStartTimeZone", "start", "isAllDay"), event_zone),
    "EndTimeZone": GraphField(("originalEndTimeZone",),
                              lambda i: i.get("originalEndTimeZone") or None),
    "Location": GraphField(("location",),
                           lambda i: (i.get("location") or {}).get("displayName") or None,
                           lambda b, v, c: b.__setitem__(
                               "location", {"displayName": "" if v is None else str(v)})),
    "LegacyFreeBusyStatus": enum("showAs", _SHOW_AS),
    "ReminderIsSet": simple("isReminderOn", "boolean"),
    "ReminderMinutesBeforeStart": simple("reminderMinutesBeforeStart", "integer"),
    "RequiredAttendees": attendees("required"),
    "OptionalAttendees": attendees("optional"),
    "Resources": attendees("resource"),
    # Recurrence is written by the backend too (it needs the start time zone)
    "Recurrence": GraphField(("recurrence",), lambda i: recurrence_to_ews(i.get("recurrence"))),
    "Organizer": read_only(("organizer",), lambda i: ((i.get("organizer") or {})
                                                      .get("emailAddress") or {})
                           .get("address") or None),
    "IsRecurring": read_only(("type",), lambda i: i.get("type") in {"seriesMaster",
                                                                     "occurrence", "exception"}),
    "CalendarItemType": read_only(("type",), lambda i: {
        "singleInstance": "Single", "occurrence": "Occurrence", "exception": "Exception",
        "seriesMaster": "RecurringMaster"}.get(i.get("type") or "", _cap(i.get("type")))),
    "IsCancelled": read_only(("isCancelled",), lambda i: bool(i.get("isCancelled"))),
    # a series master's exceptions: cancelledOccurrences is returned only when selected,
    # exceptionOccurrences only when expanded (the backend asks for both)
    "DeletedOccurrences": read_only(("cancelledOccurrences", "start", "isAllDay",
                                     "originalStartTimeZone", "recurrence"),
                                    cancelled_occurrences),
    "ModifiedOccurrences": read_only(("recurrence",), exception_occurrences),
    "HasAttachments": read_only(("hasAttachments",), lambda i: bool(i.get("hasAttachments"))),
    **_COMMON_DATES,
}

TASK: dict[str, GraphField] = {
    "Subject": simple("title"),
    "Body": body_field(),
    "Body.Plaintext": text_body_field(),
    "Categories": string_list("categories"),
    "Importance": _IMPORTANCE,
    "Status": enum("status"),
    "StartDate": task_date("startDateTime"),
    "DueDate": task_date("dueDateTime"),
    "CompleteDate": task_date("completedDateTime"),
    "ReminderIsSet": simple("isReminderOn", "boolean"),
    "IsComplete": read_only(("status",), lambda i: i.get("status") == "completed"),
    **_COMMON_DATES,
}

MESSAGE: dict[str, GraphField] = {
    "Subject": simple("subject"),
    "Body": body_field(),
    "Body.Plaintext": text_body_field(),
    "Categories": string_list("categories"),
    "Importance": _IMPORTANCE,
    "From": address("from", "address"),
    "ToRecipients": recipients("toRecipients"),
    "CcRecipients": recipients("ccRecipients"),
    "BccRecipients": recipients("bccRecipients"),
    "IsRead": simple("isRead", "boolean"),
    "DateTimeReceived": read_only(("receivedDateTime",),
                                  lambda i: parse_datetime(i.get("receivedDateTime"))),
    "DateTimeSent": read_only(("sentDateTime",),
                              lambda i: parse_datetime(i.get("sentDateTime"))),
    "InternetMessageId": read_only(("internetMessageId",),
                                   lambda i: i.get("internetMessageId") or None),
    "IsDraft": read_only(("isDraft",), lambda i: bool(i.get("isDraft"))),
    "HasAttachments": read_only(("hasAttachments",), lambda i: bool(i.get("hasAttachments"))),
    **_COMMON_DATES,
}

#: item type name -> {dotted field name: GraphField}
GRAPH_FIELDS: dict[str, dict[str, GraphField]] = {
    "Contact": CONTACT,
    "CalendarItem": CALENDAR,
    "Task": TASK,
    "Message": MESSAGE,
}

#: catalog fields the backend fills itself (the folder's path, the item type's class)
GRAPH_VIRTUAL = frozenset({"FolderPath", "ItemClass"})
#: item types Graph has no API for: why
GRAPH_NO_API = {
    "ContactGroup": "Microsoft Graph has no API for Outlook contact groups",
    "Note": "Microsoft Graph has no API for Outlook notes",
}

_NO_PHONE = "a Graph contact has only business, home and mobile phone numbers"
_NO_ITEM_PROPS = "Graph does not expose this item property"
_NOT_ON_TODO = "Microsoft To Do tasks (Graph) have no such property"

#: catalog fields without a Graph binding, per item type: {field: why}. Every catalog field
#: is in GRAPH_FIELDS, GRAPH_VIRTUAL or here (a test checks it).
GRAPH_UNAVAILABLE: dict[str, dict[str, str]] = {
    "Contact": {
        "WeddingAnniversary": "a Graph contact has no wedding anniversary",
        "Companies": "a Graph contact has one companyName only",
        "Mileage": "a Graph contact has no mileage",
        **{f"PhoneNumbers.{p}": _NO_PHONE for p in (
            "AssistantPhone", "BusinessFax", "Callback", "CarPhone", "CompanyMainPhone",
            "HomeFax", "Isdn", "OtherFax", "OtherTelephone", "Pager", "PrimaryPhone",
            "RadioPhone", "Telex", "TtyTddPhone")},
        "Importance": "a Graph contact has no importance",
        "Sensitivity": "a Graph contact has no sensitivity",
        "LastModifiedName": _NO_ITEM_PROPS,
        "HasAttachments": "a Graph contact has no attachments flag",
        "Size": _NO_ITEM_PROPS,
    },
    "CalendarItem": {"LastModifiedName": _NO_ITEM_PROPS, "Size": _NO_ITEM_PROPS},
    "Task": {
        **{f: _NOT_ON_TODO for f in ("PercentComplete", "Owner", "BillingInformation",
                                      "Mileage", "Companies", "TotalWork", "ActualWork",
                                      "Sensitivity")},
        "HasAttachments": "the Graph backend does not read it for To Do tasks",
        "LastModifiedName": _NO_ITEM_PROPS,
        "Size": _NO_ITEM_PROPS,
    },
    "Message": {
        "ConversationTopic": "Graph has no conversation topic (conversationId only)",
        "Sensitivity": "a Graph message has no writable sensitivity",
        "LastModifiedName": _NO_ITEM_PROPS,
        "Size": _NO_ITEM_PROPS,
    },
}

#: EWS extended property type -> Graph extended property type name
EXTENDED_GRAPH_TYPES = {"String": "String", "Integer": "Integer", "Short": "Short",
                        "Long": "Long", "Boolean": "Boolean", "Double": "Double",
                        "Float": "Float", "Currency": "Currency", "SystemTime": "SystemTime",
                        "StringArray": "StringArray", "IntegerArray": "IntegerArray"}


def extended_id(prop: Any) -> str:
    """Graph's id of an extended property (``String {guid} Name CustomerNo``)."""
    kind = EXTENDED_GRAPH_TYPES[prop.ews_type]
    if prop.tag is not None:
        return f"{kind} 0x{prop.tag:04x}"
    if prop.prop_id is not None:
        return f"{kind} {{{prop.property_set}}} Id 0x{prop.prop_id:04x}"
    return f"{kind} {{{prop.property_set}}} Name {prop.name}"


def extended_value_read(prop: Any, raw: Any) -> Any:
    """A Graph extended property value (strings) as the canonical value."""
    if raw is None:
        return None
    if prop.is_array:
        values = raw if isinstance(raw, list) else [raw]
        if prop.ews_type == "IntegerArray":
            values = [int(v) for v in values]
        return to_json_text(values or None)
    if prop.type == "boolean":
        return str(raw).strip().lower() == "true"
    return parse_value(raw, prop.type)


def extended_value_write(prop: Any, value: Any) -> Any:
    """A canonical value as Graph's extended property value (a string, or list of strings)."""
    if value is None:
        return None
    if prop.is_array:
        return [str(v) for v in (from_json_text(value) or [])]
    if prop.type == "boolean":
        return "true" if format_value(value, "boolean") else "false"
    if prop.type == "datetime":
        return format_value(value, "datetime")
    formatted = format_value(value, prop.type)
    return formatted if isinstance(formatted, str) else json.dumps(formatted)
