"""The Graph bindings of the field table (``fields.py``) as Microsoft Graph properties.

Every field's ``graph=`` binding names a converter kind of :data:`GRAPH_KINDS` (a bare name is
a top-level property, ``prop``); from it and the field's type and read-only flag this module
builds one :class:`GraphField` per field, per item type (:data:`GRAPH_FIELDS`): which Graph
properties it reads (``select``), how it turns a Graph entity into the canonical value
(``read``) and how it writes a canonical value into a PATCH/POST body (``write``; none for a
read-only field). Writers of fields that live inside a list or a complex value
(``EmailAddresses.EmailAddress2``, ``PhysicalAddresses.Business.City``, attendees) start from
the item's current value, so one changed part does not wipe the others (``needs_current``).

Fields the table marks as not on Graph (``PhoneNumbers.BusinessFax``, ``Mileage``,
``PercentComplete``...) are listed, with the reason, in :data:`GRAPH_UNAVAILABLE`: the
provider refuses a select statement that names one (``SELECT *`` leaves them out). Contact
groups and notes have no Graph API at all (:data:`GRAPH_NO_API`). ``FolderPath`` and
``ItemClass`` are filled by the backend itself (:data:`GRAPH_VIRTUAL`).

Value conventions are those of ``fields.py``. Events are read with
``Prefer: outlook.timezone="UTC"``; an all-day event's ``Start``/``End`` are midnight in its
``StartTimeZone`` converted to UTC (the EWS convention), ``Start.Date``/``End.Date`` its dates.
"""

import copy
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

from l2sync_dagster.contract import utc
from l2sync_dagster.providers.exchange.fields import (
    BY_BACKEND,
    ITEM_TYPES,
    FieldDef,
    ItemType,
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


def simple(f: FieldDef, prop: str) -> GraphField:
    """A top-level scalar property, as the field's type."""
    def read(item: dict[str, Any]) -> Any:
        return parse_value(item.get(prop), f.type)

    def write(body: dict[str, Any], value: Any, current: dict[str, Any]) -> None:
        body[prop] = format_value(value, f.type)

    return GraphField((prop,), read, write)


def enum(f: FieldDef, prop: str, special: dict[str, str] | None = None) -> GraphField:
    """An enumeration: Graph's camelCase value <-> the EWS spelling."""
    to_ews = dict(special or {})
    to_graph = {v.lower(): k for k, v in to_ews.items()}

    def read(item: dict[str, Any]) -> Any:
        value = item.get(prop)
        return to_ews.get(value, _cap(value)) if value is not None else None

    def write(body: dict[str, Any], value: Any, current: dict[str, Any]) -> None:
        body[prop] = None if value is None else to_graph.get(str(value).lower(), _low(value))

    return GraphField((prop,), read, write)


def string_list(f: FieldDef, prop: str) -> GraphField:
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


def list_slot(f: FieldDef, prop: str, index: int, sub: str | None = None) -> GraphField:
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


def nested(f: FieldDef, prop: str, sub: str) -> GraphField:
    """A member of a complex property (``businessAddress.city``)."""
    def read(item: dict[str, Any]) -> Any:
        outer = item.get(prop) or {}
        return parse_value(outer.get(sub) or None, f.type)

    def write(body: dict[str, Any], value: Any, current: dict[str, Any]) -> None:
        outer = _base(body, current, prop, {})
        outer[sub] = format_value(value, f.type)

    return GraphField((prop,), read, write, needs_current=True)


def address(f: FieldDef, prop: str, sub: str) -> GraphField:
    """``from.emailAddress.address`` style: a recipient's SMTP address."""
    def read(item: dict[str, Any]) -> Any:
        return ((item.get(prop) or {}).get("emailAddress") or {}).get(sub) or None

    def write(body: dict[str, Any], value: Any, current: dict[str, Any]) -> None:
        body[prop] = None if value is None else {"emailAddress": {"address": str(value)}}

    return GraphField((prop,), read, write)


def recipients(f: FieldDef, prop: str) -> GraphField:
    """A list of recipients as a json list of SMTP addresses."""
    def read(item: dict[str, Any]) -> Any:
        found = [((r or {}).get("emailAddress") or {}).get("address")
                 for r in item.get(prop) or []]
        return to_json_text([a for a in found if a] or None)

    def write(body: dict[str, Any], value: Any, current: dict[str, Any]) -> None:
        body[prop] = [{"emailAddress": {"address": str(a)}}
                      for a in (from_json_text(value) or [])]

    return GraphField((prop,), read, write)


def attendees(f: FieldDef, kind: str) -> GraphField:
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


def body_field(f: FieldDef, prop: str = "body") -> GraphField:
    """The body as stored (HTML for messages and events)."""
    def read(item: dict[str, Any]) -> Any:
        return (item.get(prop) or {}).get("content") or None

    def write(body: dict[str, Any], value: Any, current: dict[str, Any]) -> None:
        text = "" if value is None else str(value)
        body[prop] = {"contentType": "html", "content": text}

    return GraphField((prop,), read, write)


def text_body_field(f: FieldDef, prop: str = "body") -> GraphField:
    """The plain-text body (read with ``Prefer: outlook.body-content-type="text"``)."""
    def read(item: dict[str, Any]) -> Any:
        value = item.get("@l2sync.textBody", item.get(prop))
        return (value or {}).get("content") or None

    def write(body: dict[str, Any], value: Any, current: dict[str, Any]) -> None:
        body[prop] = {"contentType": "text", "content": "" if value is None else str(value)}

    return GraphField((prop,), read, write)


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
    zone = zone_of(zone_name)
    local = utc(moment).astimezone(zone)
    if all_day:
        # a UTC instant that is midnight somewhere: the date in the event's zone
        local = local.replace(hour=0, minute=0, second=0, microsecond=0)
    name = zone_name if zone_name and zone is not dt.UTC else "UTC"
    return {"dateTime": local.replace(tzinfo=None).isoformat(timespec="seconds"),
            "timeZone": name}


def task_date(f: FieldDef, prop: str) -> GraphField:
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


# --- converters of the field table's Graph bindings ----------------------------------------

def reader(*select: str) -> Callable[[Reader], Callable[..., GraphField]]:
    """A converter for a field Graph computes or the backend writes itself: ``select`` and a
    reader, no writer."""
    def wrap(read: Reader) -> Callable[..., GraphField]:
        return lambda f: GraphField(select, read)
    return wrap


def text(f: FieldDef, prop: str) -> GraphField:
    """A string property read as is (no writer)."""
    return GraphField((prop,), lambda item: item.get(prop) or None)


def flag(f: FieldDef, prop: str) -> GraphField:
    """A boolean property, false when absent (no writer)."""
    return GraphField((prop,), lambda item: bool(item.get(prop)))


def event_time(f: FieldDef, which: str) -> GraphField:
    """``Start``/``End`` (written with the time zones by the backend)."""
    return GraphField((which, "isAllDay", "originalStartTimeZone"),
                      lambda item: event_start(item, which))


def event_day(f: FieldDef, which: str) -> GraphField:
    """``Start.Date``/``End.Date``."""
    return GraphField((which, "isAllDay", "originalStartTimeZone"),
                      lambda item: event_date(item, which))


def location(f: FieldDef) -> GraphField:
    """An event's location by its display name."""
    return GraphField(("location",),
                      lambda i: (i.get("location") or {}).get("displayName") or None,
                      lambda b, v, c: b.__setitem__(
                          "location", {"displayName": "" if v is None else str(v)}))


_ITEM_TYPES = {"singleInstance": "Single", "occurrence": "Occurrence",
               "exception": "Exception", "seriesMaster": "RecurringMaster"}

#: binding kind of the field table -> converter (fields.Binding.kind, args)
GRAPH_KINDS: dict[str, Callable[..., GraphField]] = {
    "prop": simple, "enum": enum, "string_list": string_list, "list_slot": list_slot,
    "nested": nested, "address": address, "recipients": recipients, "attendees": attendees,
    "body": body_field, "text_body": text_body_field, "task_date": task_date, "text": text,
    "flag": flag, "event_time": event_time, "event_date": event_day, "location": location,
    "event_zone": reader("originalStartTimeZone", "start", "isAllDay")(event_zone),
    # Recurrence is written by the backend too (it needs the start time zone)
    "recurrence": reader("recurrence")(lambda i: recurrence_to_ews(i.get("recurrence"))),
    "organizer": reader("organizer")(
        lambda i: ((i.get("organizer") or {}).get("emailAddress") or {}).get("address")
        or None),
    "is_recurring": reader("type")(
        lambda i: i.get("type") in {"seriesMaster", "occurrence", "exception"}),
    "calendar_item_type": reader("type")(
        lambda i: _ITEM_TYPES.get(i.get("type") or "", _cap(i.get("type")))),
    # a series master's exceptions: cancelledOccurrences is returned only when selected,
    # exceptionOccurrences only when expanded (the backend asks for both)
    "cancelled_occurrences": reader("cancelledOccurrences", "start", "isAllDay",
                                    "originalStartTimeZone", "recurrence")(
        cancelled_occurrences),
    "exception_occurrences": reader("recurrence")(exception_occurrences),
    "is_complete": reader("status")(lambda i: i.get("status") == "completed"),
}


def _graph_fields(item_type: ItemType) -> dict[str, GraphField]:
    out = {}
    for name, b in item_type.bound("graph").items():
        if b == BY_BACKEND:
            continue
        f = item_type.require(name)
        spec = GRAPH_KINDS[b.kind](f, *b.args)
        out[name] = replace(spec, write=None) if f.read_only else spec
    return out


#: item type name -> {dotted field name: GraphField}, built from the field table
GRAPH_FIELDS: dict[str, dict[str, GraphField]] = {
    n: _graph_fields(t) for n, t in ITEM_TYPES.items() if "graph" not in t.no_api}
#: catalog fields the backend fills itself (the folder's path, the item type's class)
GRAPH_VIRTUAL = frozenset(n for t in ITEM_TYPES.values()
                          for n, b in t.bound("graph").items() if b == BY_BACKEND)
#: item types Graph has no API for: why
GRAPH_NO_API = {n: t.no_api["graph"] for n, t in ITEM_TYPES.items() if "graph" in t.no_api}
#: catalog fields without a Graph binding, per item type: {field: why}
GRAPH_UNAVAILABLE: dict[str, dict[str, str]] = {
    n: off for n, t in ITEM_TYPES.items() if (off := t.not_on("graph"))}

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
