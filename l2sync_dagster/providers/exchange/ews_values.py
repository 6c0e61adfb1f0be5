"""Catalog field names <-> exchangelib item attributes, and value conversion both ways.

Every field of the table in ``fields.py`` has an EWS binding (``ews=``): an exchangelib
attribute or a converter kind of :data:`EWS_KINDS`. From it and the field's type and
read-only flag this module builds an :class:`Accessor` (:data:`ACCESSORS`) that knows (1)
which exchangelib FieldPaths to request, (2) how to turn the attribute into the canonical
value of ``fields.py`` and (3) how to write a canonical value: onto a new item (CreateItem) or
as the exact SetItemField / DeleteItemField elements of an UpdateItem (only that field, one
label of an indexed property, one part of an address). Extended properties are registered on
the exchangelib item classes under a deterministic attribute name.
"""

import copy
import datetime as dt
import email.utils
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from exchangelib import (
    Body,
    CalendarItem,
    Contact,
    DistributionList,
    EWSDate,
    EWSDateTime,
    EWSTimeZone,
    HTMLBody,
    Message,
    Task,
)
from exchangelib.extended_properties import ExtendedProperty as XProp
from exchangelib.fields import (
    MONTHS,
    WEEK_NUMBERS,
    WEEKDAY_NAMES,
    WEEKDAYS,
    FieldPath,
    InvalidField,
)
from exchangelib.items import Item
from exchangelib.properties import Attendee, Fields, Mailbox, Member
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    AbsoluteYearlyPattern,
    DailyPattern,
    EndDatePattern,
    NoEndPattern,
    NumberedPattern,
    Recurrence,
    RelativeMonthlyPattern,
    RelativeYearlyPattern,
    WeeklyPattern,
)
from exchangelib.util import TNS, create_element, get_xml_attr
from lxml import html as lxml_html

from l2sync_dagster.contract import utc
from l2sync_dagster.providers.exchange.fields import (
    BY_BACKEND,
    ITEM_TYPES,
    FieldDef,
    ItemType,
    deleted_occurrences_json,
    modified_occurrences_json,
)
from l2sync_dagster.providers.exchange.select import ExtendedProperty, SelectStatement

NOTE_CLASS = "IPM.StickyNote"


class StickyNote(Message):
    """A message whose ItemClass is written (exchangelib treats ItemClass as read-only; EWS
    lets CreateItem set it, which is how a sticky note is made)."""

    __slots__ = ()


def _writable_item_class() -> Fields:
    out = []
    for f in Message.FIELDS:
        if f.name == "item_class":
            f = copy.copy(f)
            f.is_read_only = False
        out.append(f)
    return Fields(*out)


StickyNote.FIELDS = _writable_item_class()

#: item type name -> exchangelib model
MODELS: dict[str, type[Item]] = {
    "Contact": Contact, "ContactGroup": DistributionList, "CalendarItem": CalendarItem,
    "Task": Task, "Message": Message, "Note": StickyNote,
}


class ValueError_(ValueError):  # noqa: N801 - a ValueError naming the field
    """A canonical value that cannot be written to its field."""


# --- canonical helpers ----------------------------------------------------------------------
def _text(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v)
    return s if s.strip() else None


def _json_list(values: list[Any] | None) -> str | None:
    if not values:
        return None
    return json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))


def _parse_list(value: Any, name: str) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError_(f"{name} needs a JSON list, not {value[:40]!r}") from None
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        raise ValueError_(f"{name} needs a JSON list, not {type(value).__name__}")
    return value or None


def _date(v: Any) -> dt.date | None:
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return dt.date(v.year, v.month, v.day)
    return None


def _ews_date(value: Any, name: str) -> EWSDate | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value[:10])
        except ValueError:
            raise ValueError_(f"{name} needs a date, not {value!r}") from None
    if not isinstance(value, dt.date):
        raise ValueError_(f"{name} needs a date, not {type(value).__name__}")
    return EWSDate(value.year, value.month, value.day)


def _ews_datetime(value: Any, name: str) -> EWSDateTime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError_(f"{name} needs a datetime, not {value!r}") from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        raise ValueError_(f"{name} needs a datetime, not {type(value).__name__}")
    value = utc(value)
    return EWSDateTime(value.year, value.month, value.day, value.hour, value.minute,
                       value.second, value.microsecond, tzinfo=EWSTimeZone("UTC"))


def html_to_text(text: str) -> str:
    """The visible text of an HTML body (block elements end lines)."""
    try:
        doc = lxml_html.fromstring(text)
    except (ValueError, TypeError):
        return text
    for br in doc.iter("br"):
        br.tail = "\n" + (br.tail or "")
    for el in doc.iter("p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"):
        el.tail = "\n" + (el.tail or "")
    out = doc.text_content()
    return re.sub(r"\n{3,}", "\n\n", out).strip()


def _emails(values: list[Any] | None) -> list[str]:
    out = []
    for v in values or ():
        mb = getattr(v, "mailbox", v)
        addr = getattr(mb, "email_address", None) or getattr(mb, "name", None)
        if addr:
            out.append(str(addr))
    return out


def _addresses(value: Any, name: str) -> list[str] | None:
    items = _parse_list(value, name)
    if items is None:
        return None
    out = []
    for v in items:
        if isinstance(v, dict):
            v = v.get("EmailAddress") or v.get("email") or v.get("address")
        if not isinstance(v, str) or "@" not in v:
            raise ValueError_(f"{name} holds SMTP addresses; {v!r} is not one")
        out.append(v.strip())
    return out


def _tz_name(tz: Any) -> str | None:
    if tz is None:
        return None
    return getattr(tz, "ms_id", None) or str(tz)


def _tz(value: Any, name: str) -> EWSTimeZone:
    try:
        return EWSTimeZone.from_ms_id(str(value))
    except Exception:  # noqa: BLE001 - exchangelib raises several kinds
        try:
            return EWSTimeZone(str(value))
        except Exception:  # noqa: BLE001
            raise ValueError_(f"{name}: unknown time zone {value!r} (use a Windows time zone "
                              "id such as 'W. Europe Standard Time' or an IANA name)") from None


# --- recurrence -----------------------------------------------------------------------------
def recurrence_json(rec: Recurrence | None) -> str | None:
    """A Recurrence as the canonical JSON object (see fields.RECURRENCE_DOC)."""
    if rec is None or rec.pattern is None:
        return None
    p, b = rec.pattern, rec.boundary
    out: dict[str, Any] = {"Pattern": type(p).__name__.removesuffix("Pattern")}
    if getattr(p, "interval", None) is not None:
        out["Interval"] = int(p.interval)
    if isinstance(p, WeeklyPattern):
        days = p.weekdays if isinstance(p.weekdays, list | tuple) else [p.weekdays]
        out["DaysOfWeek"] = [WEEKDAY_NAMES[d - 1] if isinstance(d, int) else str(d)
                             for d in days]
    if isinstance(p, RelativeMonthlyPattern | RelativeYearlyPattern):
        out["DaysOfWeek"] = [WEEKDAYS[p.weekday - 1] if isinstance(p.weekday, int)
                             else str(p.weekday)]
        out["DayOfWeekIndex"] = WEEK_NUMBERS[p.week_number - 1] \
            if isinstance(p.week_number, int) else str(p.week_number)
    if isinstance(p, AbsoluteMonthlyPattern | AbsoluteYearlyPattern):
        out["DayOfMonth"] = int(p.day_of_month)
    if isinstance(p, AbsoluteYearlyPattern | RelativeYearlyPattern):
        out["Month"] = MONTHS[p.month - 1] if isinstance(p.month, int) else str(p.month)
    start = getattr(b, "start", None)
    out["StartDate"] = _date(start).isoformat() if _date(start) else None
    end = getattr(b, "end", None) if isinstance(b, EndDatePattern) else None
    out["EndDate"] = _date(end).isoformat() if _date(end) else None
    out["Occurrences"] = int(b.number) if isinstance(b, NumberedPattern) else None
    return json.dumps(out, sort_keys=True, separators=(",", ":"))


_PATTERNS = {"Daily": DailyPattern, "Weekly": WeeklyPattern,
             "AbsoluteMonthly": AbsoluteMonthlyPattern,
             "RelativeMonthly": RelativeMonthlyPattern,
             "AbsoluteYearly": AbsoluteYearlyPattern, "RelativeYearly": RelativeYearlyPattern}


def recurrence_value(value: Any, name: str = "Recurrence") -> Recurrence | None:
    """The inverse of :func:`recurrence_json`."""
    if value is None:
        return None
    data = json.loads(value) if isinstance(value, str) else value
    if not isinstance(data, dict):
        raise ValueError_(f"{name} needs a JSON object")
    kind = _PATTERNS.get(str(data.get("Pattern")))
    if kind is None:
        raise ValueError_(f"{name}: Pattern must be one of {', '.join(_PATTERNS)}")
    kw: dict[str, Any] = {}
    try:
        if any(f.name == "interval" for f in kind.FIELDS) and data.get("Interval") is not None:
            kw["interval"] = int(data["Interval"])
        days = data.get("DaysOfWeek") or []
        if kind is WeeklyPattern:
            kw["weekdays"] = [WEEKDAY_NAMES.index(d) + 1 for d in days]
        if kind in (RelativeMonthlyPattern, RelativeYearlyPattern):
            kw["weekday"] = WEEKDAYS.index(days[0]) + 1
            kw["week_number"] = WEEK_NUMBERS.index(data["DayOfWeekIndex"]) + 1
        if kind in (AbsoluteMonthlyPattern, AbsoluteYearlyPattern):
            kw["day_of_month"] = int(data["DayOfMonth"])
        if kind in (AbsoluteYearlyPattern, RelativeYearlyPattern):
            kw["month"] = MONTHS.index(data["Month"]) + 1
        start = EWSDate.from_date(dt.date.fromisoformat(data["StartDate"]))
        if data.get("EndDate"):
            boundary: Any = EndDatePattern(
                start=start, end=EWSDate.from_date(dt.date.fromisoformat(data["EndDate"])))
        elif data.get("Occurrences"):
            boundary = NumberedPattern(start=start, number=int(data["Occurrences"]))
        else:
            boundary = NoEndPattern(start=start)
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise ValueError_(f"{name}: invalid recurrence {data!r} ({exc})") from None
    return Recurrence(pattern=kind(**kw), boundary=boundary)


# --- accessors ------------------------------------------------------------------------------
Op = Callable[[Any, Item], Iterator[Any]]


@dataclass
class Accessor:
    """How one catalog field is read and written through exchangelib."""

    name: str
    attr: str
    read: Callable[[Item], Any]
    assign: Callable[[Item, Any], None] | None = None
    label: str | None = None
    sub: str | None = None
    extra_attrs: tuple[str, ...] = ()

    @property
    def on_server(self) -> bool:
        """Whether the server can restrict and sort by the attribute (not the body, the
        complete name or the time zones, which exchangelib keeps in private attributes)."""
        return self.attr not in ("body", "complete_name") and not self.attr.startswith("_")

    def paths(self, model: type[Item]) -> list[FieldPath]:
        """FieldPaths to request (GetItem AdditionalProperties)."""
        out = []
        for attr in (self.attr, *self.extra_attrs):
            try:
                f = model.get_field_by_fieldname(attr)
            except InvalidField:
                continue
            if self.label is not None and attr == self.attr:
                subfields = f.value_cls.supported_fields(version=None)
                if self.sub:
                    subfields = [s for s in subfields if s.name == self.sub]
                else:
                    subfields = [s for s in subfields if s.name != "label"]
                out += [FieldPath(field=f, label=self.label, subfield=s) for s in subfields]
            else:
                out.append(FieldPath(field=f))
        return out

    def update_ops(self, model: type[Item], value: Any) -> tuple[dict[str, Any], list[Op]]:
        """Attribute values for the update target and the ops that write this field."""
        if self.assign is None:
            raise ValueError_(f"{self.name} is read-only")
        if self.label is not None:
            return {}, [self._indexed_op(model, value)]
        holder = model()
        self.assign(holder, value)
        attrs = {self.attr: getattr(holder, self.attr)}
        names = [self.attr]
        from exchangelib.services import UpdateItem

        def op(svc: Any, target: Item) -> Iterator[Any]:
            yield from UpdateItem._update_elems(svc, target, names)

        return attrs, [op]

    def _indexed_op(self, model: type[Item], value: Any) -> Op:
        field = model.get_field_by_fieldname(self.attr)
        cls = field.value_cls
        if self.sub:
            subfield = cls.get_field_by_fieldname(self.sub)
        else:
            subfield = cls.value_field(version=None)
        text = _text(value)
        label = self.label

        def op(svc: Any, target: Item) -> Iterator[Any]:
            path = FieldPath(field=field, label=label, subfield=subfield)
            if text is None:
                yield svc._delete_field_elem(field_path=path)
            else:
                yield svc._set_field_elem(target_model=type(target), field_path=path,
                                          value=cls(**{"label": label, subfield.name: text}))

        return op


# --- converters: one per binding kind of the field table (fields.py) ------------------------
# Each takes the FieldDef (its name, type and read-only flag) and the binding's arguments; a
# read-only field gets no ``assign``.

def _attr(f: FieldDef, attr: str) -> Accessor:
    """An exchangelib attribute holding the value as the field's type."""
    if attr == "is_recurring":
        return _part_of_series(f)
    return _typed(f.name, attr, f.type)


def _part_of_series(f: FieldDef) -> Accessor:
    """IsRecurring: true for a series master as well as its occurrences and exceptions (what
    the Graph backend reports). Exchange's own IsRecurring is false on the master, so the
    master is recognised by its CalendarItemType."""
    def read(item: Item) -> Any:
        if getattr(item, "type", None) == "RecurringMaster":
            return True
        value = getattr(item, "is_recurring", None)
        return None if value is None else bool(value)

    return Accessor(f.name, "is_recurring", read, None, extra_attrs=("type",))


def _typed(name: str, attr: str, kind: str) -> Accessor:
    def read(item: Item) -> Any:
        v = getattr(item, attr, None)
        if kind == "string":
            return _text(v)
        if kind == "date":
            return _date(v)
        if kind == "datetime":
            return ews_utc(v)
        if kind == "boolean":
            return None if v is None else bool(v)
        if kind == "integer":
            return None if v is None else int(v)
        if kind == "float":
            return None if v is None else float(v)
        if kind == "json":
            return _json_list(list(v) if v else None)
        return v

    def assign(item: Item, value: Any) -> None:
        if kind == "date":
            value = _ews_date(value, name)
        elif kind == "datetime":
            value = _ews_datetime(value, name)
        elif kind == "json":
            value = _parse_list(value, name)
            if value is not None:
                value = [str(v) for v in value]
        elif kind == "float" and value is not None:
            value = Decimal(str(value))
        elif kind == "string":
            value = _text(value)
        setattr(item, attr, value)

    return Accessor(name, attr, read, assign)


def _indexed(f: FieldDef, attr: str, label: str, sub: str | None, value_attr: str
             ) -> Accessor:
    """One label of an indexed property (a phone number, one part of an address)."""
    def read(item: Item) -> Any:
        for entry in getattr(item, attr, None) or ():
            if entry.label == label:
                return _text(getattr(entry, sub or value_attr, None))
        return None

    def assign(item: Item, value: Any) -> None:
        entries = [e for e in (getattr(item, attr, None) or ()) if e.label != label]
        text = _text(value)
        cls = type(item).get_field_by_fieldname(attr).value_cls
        existing = next((e for e in (getattr(item, attr, None) or ()) if e.label == label), None)
        if sub:
            entry = existing or cls(label=label)
            setattr(entry, sub, text)
            if any(getattr(entry, f.name, None) for f in cls.FIELDS if f.name != "label"):
                entries.append(entry)
        elif text is not None:
            entries.append(cls(**{"label": label, value_attr: text}))
        setattr(item, attr, entries or None)

    return Accessor(f.name, attr, read, assign, label=label, sub=sub)


def _body(f: FieldDef, plain: bool = False) -> Accessor:
    """The body as stored (HTML), or as text (``plain``)."""
    def read(item: Item) -> Any:
        body = getattr(item, "body", None)
        if body is None:
            return None
        text = str(body)
        if plain and isinstance(body, HTMLBody):
            text = html_to_text(text)
        return _text(text)

    def assign(item: Item, value: Any) -> None:
        text = _text(value)
        item.body = None if text is None else (Body(text) if plain else HTMLBody(text))

    return Accessor(f.name, "body", read, assign)


def _text_body(f: FieldDef) -> Accessor:
    return _body(f, plain=True)


def _mailbox(f: FieldDef, attr: str) -> Accessor:
    """One mailbox (the sender, the organizer) as its SMTP address."""
    def read(item: Item) -> Any:
        mb = getattr(item, attr, None)
        return _text(getattr(mb, "email_address", None) or getattr(mb, "name", None))

    def assign(item: Item, value: Any) -> None:
        text = _text(value)
        if text is not None and "@" not in text:
            raise ValueError_(f"{f.name} needs an SMTP address, not {text!r}")
        setattr(item, attr, None if text is None else Mailbox(email_address=text))

    return Accessor(f.name, attr, read, assign)


def _mailboxes(f: FieldDef, attr: str, wrap: str) -> Accessor:
    """Recipients or attendees (``wrap``: ``mailbox`` / ``attendee``) as SMTP addresses."""
    def read(item: Item) -> Any:
        return _json_list(_emails(getattr(item, attr, None)))

    def assign(item: Item, value: Any) -> None:
        addrs = _addresses(value, f.name)
        if addrs is None:
            setattr(item, attr, None)
            return
        if wrap == "attendee":
            objs: list[Any] = [Attendee(mailbox=Mailbox(email_address=a), response_type="Unknown")
                               for a in addrs]
        else:
            objs = [Mailbox(email_address=a) for a in addrs]
        setattr(item, attr, objs)

    return Accessor(f.name, attr, read, assign)


def member_entry(member: Any) -> str | None:
    """A contact group member as ``Name <address>`` (RFC 5322), or the bare address when it
    has no name of its own (or only its address as the name)."""
    mb = getattr(member, "mailbox", member)
    addr = _text(getattr(mb, "email_address", None))
    name = _text(getattr(mb, "name", None))
    if addr is None:
        return name
    if name is None or name.lower() == addr.lower():
        return addr
    return email.utils.formataddr((name, addr))


def parse_members(value: Any, name: str = "Members") -> list[tuple[str | None, str]] | None:
    """``["Anna Berg <anna@x>", "ben@x", {"Name": .., "EmailAddress": ..}]`` -> [(name or
    None, address)]; ValueError_ for an entry that holds no SMTP address."""
    items = _parse_list(value, name)
    if items is None:
        return None
    out: list[tuple[str | None, str]] = []
    for v in items:
        if isinstance(v, dict):
            display = v.get("Name") or v.get("name")
            addr = v.get("EmailAddress") or v.get("email") or v.get("address")
        elif isinstance(v, str):
            display, addr = email.utils.parseaddr(v)
            if not addr and "@" in v:
                display, addr = "", v.strip()
        else:
            display, addr = None, v
        if not isinstance(addr, str) or "@" not in addr or " " in addr.strip():
            raise ValueError_(f"{name} holds SMTP addresses (optionally as 'Name <address>'); "
                              f"{v!r} is not one")
        out.append((_text(display), addr.strip()))
    return out


def merge_members(value: Any, current: list[Any] | None) -> list[Member] | None:
    """The members to write for ``value``: a member already in the group keeps its mailbox
    (display name, mailbox type, the contact it points to) unless the entry names it anew;
    a new member gets the name its entry gives."""
    wanted = parse_members(value)
    if wanted is None:
        return None
    by_addr = {}
    for m in current or ():
        addr = getattr(getattr(m, "mailbox", None), "email_address", None)
        if addr:
            by_addr.setdefault(str(addr).lower(), m)
    out: list[Member] = []
    for display, addr in wanted:
        old = by_addr.get(addr.lower())
        if old is not None:
            kept = copy.deepcopy(old)
            if display is not None:
                kept.mailbox.name = display
            out.append(kept)
        else:
            out.append(Member(mailbox=Mailbox(name=display, email_address=addr)))
    return out


def _members(f: FieldDef) -> Accessor:
    """``Members`` of a contact group: a JSON list of ``Name <address>`` / ``address``."""
    def read(item: Item) -> Any:
        entries = [member_entry(m) for m in getattr(item, "members", None) or ()]
        return _json_list([e for e in entries if e])

    def assign(item: Item, value: Any) -> None:
        if isinstance(value, list) and all(isinstance(v, Member) for v in value):
            item.members = value or None  # merged with the current members by the backend
            return
        item.members = merge_members(value, None)

    return Accessor(f.name, "members", read, assign)


def _complete_name(f: FieldDef, part: str) -> Accessor:
    def read(item: Item) -> Any:
        return _text(getattr(getattr(item, "complete_name", None), part, None))

    return Accessor(f.name, "complete_name", read, None)


def _start_end(f: FieldDef, attr: str) -> Accessor:
    """Start/End of a calendar item: UTC; all-day values (dates in exchangelib) become
    midnight of the item's time zone, End exclusive."""
    tz_attr = f"_{attr}_timezone"

    def read(item: Item) -> Any:
        v = getattr(item, attr, None)
        if v is None:
            return None
        if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
            if attr == "end":
                v = v + dt.timedelta(days=1)
            tz = getattr(item, tz_attr, None) or EWSTimeZone("UTC")
            local = EWSDateTime(v.year, v.month, v.day, tzinfo=tz)
            return ews_utc(local.astimezone(EWSTimeZone("UTC")))
        return ews_utc(v)

    def assign(item: Item, value: Any) -> None:
        setattr(item, attr, _ews_datetime(value, f.name))

    return Accessor(f.name, attr, read, assign, extra_attrs=(tz_attr, "is_all_day"))


def _date_part(f: FieldDef, attr: str) -> Accessor:
    tz_attr = f"_{attr}_timezone"

    def read(item: Item) -> Any:
        v = getattr(item, attr, None)
        if v is None:
            return None
        if isinstance(v, dt.datetime):
            tz = getattr(item, "_start_timezone", None) or EWSTimeZone("UTC")
            return v.astimezone(tz).date()
        return _date(v + dt.timedelta(days=1) if attr == "end" else v)

    return Accessor(f.name, attr, read, None, extra_attrs=(tz_attr, "_start_timezone",
                                                           "is_all_day"))


def _timezone(f: FieldDef, attr: str) -> Accessor:
    def read(item: Item) -> Any:
        return _tz_name(getattr(item, attr, None))

    def assign(item: Item, value: Any) -> None:
        setattr(item, attr, None if _text(value) is None else _tz(value, f.name))

    return Accessor(f.name, attr, read, assign)


def _recurrence(f: FieldDef) -> Accessor:
    def read(item: Item) -> Any:
        return recurrence_json(getattr(item, "recurrence", None))

    def assign(item: Item, value: Any) -> None:
        item.recurrence = recurrence_value(value)

    return Accessor(f.name, "recurrence", read, assign)


def _occurrences(f: FieldDef, attr: str) -> Accessor:
    """``DeletedOccurrences`` / ``ModifiedOccurrences`` of a recurring master (read-only)."""
    def read(item: Item) -> Any:
        values = getattr(item, attr, None) or ()
        if attr == "deleted_occurrences":
            return deleted_occurrences_json(ews_utc(o.start) for o in values)
        return modified_occurrences_json((ews_utc(o.original_start),
                                          ews_utc(o.start), ews_utc(o.end))
                                         for o in values)

    return Accessor(f.name, attr, read, None)


def _attributed(f: FieldDef, attr: str, part: str | None = None) -> Accessor:
    """A persona's attributed property (FindPeople keeps a value per source): the first
    value, or its ``part`` (the number of a phone, one part of a postal address)."""
    def read(item: Any) -> Any:
        for entry in getattr(item, attr, None) or ():
            value = getattr(entry, "value", None)
            text = _text(getattr(value, part, None) if part else value)
            if text is not None:
                return text
        return None

    return Accessor(f.name, attr, read)


def ews_utc(value: Any) -> dt.datetime | None:
    """An exchangelib datetime as an aware UTC datetime; None for anything else."""
    return utc(value) if isinstance(value, dt.datetime) else None


#: binding kind of the field table -> converter (fields.Binding.kind, args)
EWS_KINDS: dict[str, Callable[..., Accessor]] = {
    "attr": _attr, "indexed": _indexed, "body": _body, "text_body": _text_body,
    "mailbox": _mailbox, "mailboxes": _mailboxes, "members": _members,
    "complete_name": _complete_name, "start_end": _start_end, "date_part": _date_part,
    "timezone": _timezone, "recurrence": _recurrence, "occurrences": _occurrences,
    "attributed": _attributed,
}


def _accessors(item_type: ItemType) -> dict[str, Accessor]:
    out = {}
    for name, b in item_type.bound("ews").items():
        if b == BY_BACKEND:
            continue
        f = item_type.require(name)
        acc = EWS_KINDS[b.kind](f, *b.args)
        if f.read_only:
            acc.assign = None
        out[name] = acc
    return out


#: item type name -> {dotted field name: Accessor}, built from the field table
ACCESSORS: dict[str, dict[str, Accessor]] = {
    n: _accessors(t) for n, t in ITEM_TYPES.items() if "ews" not in t.no_api}
#: catalog fields the backend fills itself (FolderPath)
EWS_VIRTUAL = frozenset(n for t in ITEM_TYPES.values()
                        for n, b in t.bound("ews").items() if b == BY_BACKEND)
#: catalog fields exchangelib cannot read or write, per item type: {field: why} (none today)
EWS_UNAVAILABLE: dict[str, dict[str, str]] = {
    n: off for n, t in ITEM_TYPES.items() if (off := t.not_on("ews"))}


def accessor(item_type: ItemType, f: FieldDef) -> Accessor | None:
    """The accessor of a catalog field (None for virtual fields such as FolderPath)."""
    return ACCESSORS[item_type.name].get(f.name)


# --- extended properties --------------------------------------------------------------------
_DISTINGUISHED = {v.lower(): k for k, v in XProp.DISTINGUISHED_SET_NAME_TO_ID_MAP.items()}
_registered: dict[tuple[type[Item], str], type[XProp]] = {}


class _BooleanXProp(XProp):
    """exchangelib writes a Boolean extended property as "1"/"0" but reads back only
    "true"/"false": write the words, read both forms."""

    def to_xml(self, version: Any) -> Any:
        el = create_element("t:Value")
        el.text = "true" if self.value else "false"
        return el

    @classmethod
    def from_xml(cls, elem: Any, account: Any) -> Any:
        text = get_xml_attr(elem, f"{{{TNS}}}Value")
        if text is None:
            return None
        return text.strip().lower() in ("true", "1", "on")


def _xprop_class(ep: ExtendedProperty) -> type[XProp]:
    attrs: dict[str, Any] = {"property_type": ep.ews_type}
    if ep.tag is not None:
        attrs["property_tag"] = ep.tag
    else:
        guid = (ep.property_set or "").lower()
        if guid in _DISTINGUISHED:
            attrs["distinguished_property_set_id"] = _DISTINGUISHED[guid]
        else:
            attrs["property_set_id"] = guid
        if ep.name is not None:
            attrs["property_name"] = ep.name
        else:
            attrs["property_id"] = ep.prop_id
    base = _BooleanXProp if ep.ews_type == "Boolean" else XProp
    return type("L2Ext", (base,), attrs)


def extended_attr(ep: ExtendedProperty) -> str:
    """The deterministic attribute name an extended property is registered under."""
    key = json.dumps([ep.property_set, ep.name, ep.prop_id, ep.tag, ep.ews_type])
    return "l2x_" + hashlib.sha1(key.encode()).hexdigest()[:16]


def register_extended(model: type[Item], ep: ExtendedProperty) -> str:
    """Register ``ep`` on ``model`` (once per process); its attribute name."""
    attr = extended_attr(ep)
    if (model, attr) not in _registered:
        try:
            model.get_field_by_fieldname(attr)
        except InvalidField:
            cls = _xprop_class(ep)
            model.register(attr, cls)
            _registered[(model, attr)] = cls
    return attr


def extended_accessor(model: type[Item], ep: ExtendedProperty) -> Accessor:
    """An accessor for a declared extended property."""
    attr = register_extended(model, ep)

    def read(item: Item) -> Any:
        v = getattr(item, attr, None)
        if v is None:
            return None
        if ep.type == "json":
            return _json_list(list(v))
        if ep.type == "datetime":
            return ews_utc(v)
        if ep.type == "decimal":
            return Decimal(str(v))
        if ep.type == "integer":
            return int(v)
        if ep.type == "float":
            return float(v)
        if ep.type == "boolean":
            return bool(v)
        return _text(v)

    def assign(item: Item, value: Any) -> None:
        if value is not None:
            if ep.type == "json":
                value = _parse_list(value, ep.column)
                if value is not None and ep.ews_type == "IntegerArray":
                    value = [int(v) for v in value]
                elif value is not None:
                    value = [str(v) for v in value]
            elif ep.type == "datetime":
                value = _ews_datetime(value, ep.column)
            elif ep.type == "integer":
                value = int(value)
            elif ep.type == "float":
                value = Decimal(repr(float(value)))  # exchangelib keeps Double as Decimal
            elif ep.type == "decimal":
                value = Decimal(str(value))
            elif ep.type == "boolean":
                value = bool(value)
            else:
                value = _text(value)
        setattr(item, attr, value)

    return Accessor(ep.column, attr, read, assign)


@dataclass
class Shape:
    """The accessors of one select statement and the FieldPaths GetItem must request."""

    model: type[Item]
    accessors: dict[str, Accessor]
    paths: list[FieldPath]


def shape_of(stmt: SelectStatement) -> Shape:
    """Accessors for every column of the statement, and the request paths."""
    model = MODELS[stmt.item_type.name]
    accs: dict[str, Accessor] = {}
    for f in stmt.fields:
        acc = accessor(stmt.item_type, f)
        if acc is not None:
            accs[f.name] = acc
    for ep in stmt.extended:
        accs[ep.column] = extended_accessor(model, ep)
        if model is StickyNote:  # responses are parsed as Message
            register_extended(Message, ep)
    # WHERE and ORDER BY may name fields the select list does not: read them too (the frame
    # still holds only the selected columns)
    for name in [c.field for c in stmt.where] + [stmt.order_by or ""]:
        f = stmt.item_type.field(name) if name and name not in accs else None
        acc = accessor(stmt.item_type, f) if f is not None else None
        if acc is not None:
            accs[f.name] = acc  # type: ignore[union-attr]
    paths: list[FieldPath] = []
    seen: set[str] = set()
    wanted = list(accs.values())
    wanted.append(ACCESSORS[stmt.item_type.name]["LastModifiedTime"])
    if stmt.item_type.name in ("Note", "Message"):
        wanted.append(ACCESSORS[stmt.item_type.name]["ItemClass"])
    for acc in wanted:
        for p in acc.paths(model):
            key = p.path + "|" + (getattr(p.field, "field_uri", "") or "")
            if key not in seen:
                seen.add(key)
                paths.append(p)
    return Shape(model, accs, paths)


def read_values(shape: Shape, item: Item) -> dict[str, Any]:
    """Canonical values of every column for one exchangelib item."""
    return {name: acc.read(item) for name, acc in shape.accessors.items()}


def new_item(shape: Shape, item_type: ItemType, values: dict[str, Any], account: Any,
             folder: Any) -> Item:
    """An unsaved exchangelib item holding ``values`` (ValueError_ naming a bad field)."""
    item = shape.model(account=account, folder=folder)
    if item_type.name == "Note":
        item.item_class = NOTE_CLASS
    for name, value in values.items():
        acc = shape.accessors.get(name)
        if acc is None or acc.assign is None:
            raise ValueError_(f"{name} cannot be written")
        acc.assign(item, value)
    if item_type.name == "CalendarItem":
        _calendar_defaults(item, values)
    if item_type.name in ("Contact", "ContactGroup") and not item.display_name:
        # EWS needs a DisplayName; Outlook composes it the same way
        email = next((e.email for e in (getattr(item, "email_addresses", None) or ())), None)
        parts = [getattr(item, "given_name", None), getattr(item, "middle_name", None),
                 getattr(item, "surname", None)] if item_type.name == "Contact" else []
        item.display_name = " ".join(p for p in parts if p) or item.file_as or \
            getattr(item, "company_name", None) or email or "(no name)"
    return item


def _calendar_defaults(item: CalendarItem, values: dict[str, Any]) -> None:
    """Start/End in the item's own time zone; all-day events as dates."""
    tz = item._start_timezone or EWSTimeZone("UTC")
    if item._start_timezone is None:
        item._start_timezone = tz
    if item._end_timezone is None:
        item._end_timezone = tz
    for attr in ("start", "end"):
        v = getattr(item, attr)
        if isinstance(v, dt.datetime):
            local = v.astimezone(item._start_timezone if attr == "start" else item._end_timezone)
            if item.is_all_day:
                d = local.date() - dt.timedelta(days=1) if attr == "end" else local.date()
                setattr(item, attr, EWSDate(d.year, d.month, d.day))
            else:
                setattr(item, attr, local)
