"""Occurrences of a recurring calendar item, as Exchange records their exceptions on the
master: ``OccurrenceItemId`` (``RecurringMasterId`` + 1-based ``InstanceIndex``) names an
occurrence; deleting one adds a ``DeletedOccurrences/DeletedOccurrence`` (its original start),
changing its Start/End adds a ``ModifiedOccurrences/Occurrence`` (a new ItemId, Start, End,
OriginalStart). Both are read-only elements of the master (in schema order), dropped when
the series' Recurrence, Start or End changes. The pattern is expanded with the Graph
sandbox's expander (daily, weekly, absolute monthly/yearly; relative patterns: first only).
"""

import base64
import copy
import datetime as dt
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lxml import etree

from l2sync_dagster.sandbox.ews.fields import FieldError, field_text, item_zone, local, uid_of
from l2sync_dagster.sandbox.ews.soap import T, sub, t
from l2sync_dagster.sandbox.ews.store import Item, iso
from l2sync_dagster.sandbox.graph.recurrence import occurrence_dates

EXCEPTION_ELEMENTS = ("ModifiedOccurrences", "DeletedOccurrences")
#: series fields whose change drops the exceptions (as Outlook warns)
SERIES_FIELDS = frozenset({"Recurrence", "Start", "End"})
#: fields of a master its occurrences do not carry
_SERIES_ONLY = frozenset({"Recurrence", "FirstOccurrence", "LastOccurrence",
                          "ModifiedOccurrences", "DeletedOccurrences"})
_PATTERNS = {"DailyRecurrence": "daily", "WeeklyRecurrence": "weekly",
             "AbsoluteMonthlyRecurrence": "absoluteMonthly",
             "AbsoluteYearlyRecurrence": "absoluteYearly",
             "RelativeMonthlyRecurrence": "relativeMonthly",
             "RelativeYearlyRecurrence": "relativeYearly"}
_RANGES = {"NoEndRecurrence": "noEnd", "EndDateRecurrence": "endDate",
           "NumberedRecurrence": "numbered"}
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
#: how far a series without end is expanded when looking for an occurrence
_HORIZON_YEARS = 30


def _parse(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _pattern(recurrence: etree._Element) -> dict[str, Any]:
    """An EWS ``Recurrence`` element as Graph's patternedRecurrence dict."""
    pattern_el = next((c for c in recurrence if local(c) in _PATTERNS), None)
    range_el = next((c for c in recurrence if local(c) in _RANGES), None)
    if pattern_el is None or range_el is None:
        raise FieldError("ErrorCalendarInvalidRecurrence", "The recurrence is not supported.")
    month = pattern_el.findtext(t("Month"))
    pattern = {"type": _PATTERNS[local(pattern_el)],
               "interval": int(pattern_el.findtext(t("Interval")) or 1),
               "daysOfWeek": [d.lower() for d in (pattern_el.findtext(t("DaysOfWeek"))
                                                  or "").split()],
               "dayOfMonth": int(pattern_el.findtext(t("DayOfMonth")) or 0),
               "month": _MONTHS.index(month) + 1 if month in _MONTHS else 0}
    rng = {"type": _RANGES[local(range_el)],
           "startDate": (range_el.findtext(t("StartDate")) or "")[:10],
           "endDate": (range_el.findtext(t("EndDate")) or "")[:10] or None,
           "numberOfOccurrences": int(range_el.findtext(t("NumberOfOccurrences")) or 0)}
    return {"pattern": pattern, "range": rng}


@dataclass
class _Series:
    pattern: dict[str, Any]
    start: dt.datetime  # the master's (first occurrence's) start and end, UTC
    end: dt.datetime
    tz: dt.tzinfo

    def at(self, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
        """(start, end) in UTC of the occurrence on ``day`` (the master's local time)."""
        local_time = self.start.astimezone(self.tz).time()
        begin = dt.datetime.combine(day, local_time, tzinfo=self.tz).astimezone(dt.UTC)
        return begin, begin + (self.end - self.start)

    def dates(self, until: dt.date) -> Iterator[dt.date]:
        """The occurrence dates up to ``until``."""
        return iter(occurrence_dates(self.pattern, until))

    @property
    def bounded(self) -> bool:
        """Whether the series ends (numbered or end date)."""
        return self.pattern["range"]["type"] != "noEnd"


def _series(master: Item) -> _Series:
    recurrence = master.element.find(t("Recurrence"))
    start_text, end_text = field_text(master, "Start"), field_text(master, "End")
    if recurrence is None or not start_text or not end_text:
        raise FieldError("ErrorCalendarCannotUseIdForOccurrenceId",
                         "The RecurringMasterId does not name a recurring master.")
    start, end = _parse(start_text), _parse(end_text)
    pattern = _pattern(recurrence)
    if not pattern["range"]["startDate"]:
        pattern["range"]["startDate"] = start.date().isoformat()
    tz = dt.UTC if field_text(master, "IsAllDayEvent") == "true" else item_zone(master)
    return _Series(pattern, start, end, tz)


def recurrence_dates(recurrence: etree._Element, first: dt.date) -> Iterator[dt.date]:
    """The dates of a ``t:Recurrence`` without times (a task's), ``first`` standing in for a
    range without StartDate; a series without end is followed for the usual horizon."""
    pattern = _pattern(recurrence)
    if not pattern["range"]["startDate"]:
        pattern["range"]["startDate"] = first.isoformat()
    return iter(occurrence_dates(pattern, dt.date(first.year + _HORIZON_YEARS, 12, 31)))


def _horizon(series: _Series) -> dt.date:
    return dt.date(series.start.year + _HORIZON_YEARS, 12, 31)


def occurrence(master: Item, index: int) -> tuple[dt.datetime, dt.datetime]:
    """(original start, original end) in UTC of occurrence ``index`` (1-based)."""
    series = _series(master)
    if index < 1:
        raise FieldError("ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange",
                         "Occurrence index is out of recurrence range.")
    day = next(itertools.islice(series.dates(_horizon(series)), index - 1, None), None)
    if day is None:
        raise FieldError("ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange",
                         "Occurrence index is out of recurrence range.")
    return series.at(day)


# -- occurrences as items: ids, CalendarView expansion, FirstOccurrence / LastOccurrence ----

def occurrence_id(master: Item, index: int) -> str:
    """The ItemId of occurrence ``index`` of ``master`` (the same whenever it is asked for,
    also once the occurrence is an exception)."""
    _, _, mailbox, number = base64.b64decode(master.id).decode().split(":")
    return base64.b64encode(f"AAMk:O:{mailbox}:{number}.{index}".encode()).decode()


def parse_occurrence_id(object_id: str) -> tuple[str, int] | None:
    """``(master id, index)`` of an occurrence's ItemId; None for any other id."""
    try:
        kind_, _, mailbox, rest = base64.b64decode(object_id, validate=True).decode().split(":")
        if kind_ != "AAMk" or _ != "O":
            return None
        number, index = rest.split(".")
        master = base64.b64encode(f"AAMk:I:{mailbox}:{number}".encode()).decode()
        return master, int(index)
    except ValueError:
        return None


def _instance(master: Item, index: int, original: tuple[dt.datetime, dt.datetime],
              changed: etree._Element | None) -> Item:
    """Occurrence ``index`` as an item of its own: the master's fields without the series
    ones, its own ItemId, times, OriginalStart and CalendarItemType."""
    element = etree.Element(master.element.tag, nsmap={"t": T})
    for child in master.element:
        if local(child) not in _SERIES_ONLY:
            element.append(copy.deepcopy(child))
    start, end = original
    if changed is not None:
        start = _parse(changed.findtext(t("Start")) or iso(start))
        end = _parse(changed.findtext(t("End")) or iso(end))
    for name, value in (("Start", start), ("End", end), ("OriginalStart", original[0]),
                        ("RecurrenceId", original[0])):
        el = element.find(t(name))
        if el is None:
            el = sub(element, t(name))
        el.text = iso(value)
    uid = element.find(t("UID"))
    if uid is None:
        sub(element, t("UID"), uid_of(master))
    item = Item(occurrence_id(master, index), master.mailbox, master.folder_id, element,
                master.created, master.modified, master.version, master.seq,
                master.created_seq)
    item.occurrence = "Exception" if changed is not None else "Occurrence"
    item.master_id = master.id
    return item


def instance(master: Item, index: int) -> Item:
    """Occurrence ``index`` of ``master`` as an item (FieldError when deleted or out of the
    series)."""
    original = occurrence(master, index)
    text = iso(original[0])
    if text in _deleted_starts(master):
        raise FieldError("ErrorCalendarOccurrenceIsDeletedFromRecurrence",
                         "Occurrence was deleted from the recurrence.")
    return _instance(master, index, original, _modified(master, text))


def _instances(master: Item, until: dt.date) -> Iterator[Item]:
    """The occurrences (not deleted) up to ``until``, in series order."""
    series = _series(master)
    deleted = _deleted_starts(master)
    for index, day in enumerate(series.dates(until), start=1):
        original = series.at(day)
        text = iso(original[0])
        if text not in deleted:
            yield _instance(master, index, original, _modified(master, text))


def expand(master: Item, start: dt.datetime, end: dt.datetime) -> list[Item]:
    """The occurrences of ``master`` a CalendarView from ``start`` to ``end`` shows: those
    starting before ``end`` and ending at or after ``start`` (Exchange also shows one that
    ends exactly at the view's start)."""
    out = []
    for occ in _instances(master, end.date() + dt.timedelta(days=2)):
        s, e = _parse(field_text(occ, "Start") or ""), _parse(field_text(occ, "End") or "")
        if s < end and e >= start:
            out.append(occ)
    return out


def first_and_last(master: Item) -> list[etree._Element]:
    """``t:FirstOccurrence`` and (for a series that ends) ``t:LastOccurrence`` of a master."""
    series = _series(master)
    first = last = None
    for occ in _instances(master, _horizon(series)):
        first = first or occ
        last = occ
        if not series.bounded:
            break
    out = []
    for name, occ in (("FirstOccurrence", first), ("LastOccurrence", last)):
        if occ is None or (name == "LastOccurrence" and not series.bounded):
            continue
        el = etree.Element(t(name))
        sub(el, t("ItemId"), Id=occ.id, ChangeKey=occ.change_key)
        for part in ("Start", "End", "OriginalStart"):
            sub(el, t(part), field_text(occ, part))
        out.append(el)
    return out


def _holder(master: Item, name: str) -> etree._Element:
    el = master.element.find(t(name))
    if el is None:  # responses put it in schema order
        el = sub(master.element, t(name))
    return el


def _deleted_starts(master: Item) -> set[str]:
    el = master.element.find(t("DeletedOccurrences"))
    return {d.findtext(t("Start")) or "" for d in el} if el is not None else set()


def _modified(master: Item, original: str) -> etree._Element | None:
    el = master.element.find(t("ModifiedOccurrences"))
    if el is None:
        return None
    return next((o for o in el if o.findtext(t("OriginalStart")) == original), None)


def delete_occurrence(master: Item, index: int) -> None:
    """Delete occurrence ``index`` (recorded as a DeletedOccurrence of the master)."""
    original, _ = occurrence(master, index)
    text = iso(original)
    if text in _deleted_starts(master):
        raise FieldError("ErrorCalendarOccurrenceIsDeletedFromRecurrence",
                         "Occurrence was deleted from the recurrence.")
    changed = _modified(master, text)
    if changed is not None:
        parent = changed.getparent()
        parent.remove(changed)
        if not len(parent):
            master.element.remove(parent)
    deleted = sub(_holder(master, "DeletedOccurrences"), t("DeletedOccurrence"))
    sub(deleted, t("Start"), text)
    _sort(master.element.find(t("DeletedOccurrences")), "Start")


def modify_occurrence(master: Item, index: int, start: dt.datetime | None,
                      end: dt.datetime | None) -> str:
    """Move occurrence ``index`` to [start, end) (a ModifiedOccurrence); returns its ItemId."""
    original, original_end = occurrence(master, index)
    text = iso(original)
    if text in _deleted_starts(master):
        raise FieldError("ErrorCalendarOccurrenceIsDeletedFromRecurrence",
                         "Occurrence was deleted from the recurrence.")
    changed = _modified(master, text)
    if changed is None:
        changed = sub(_holder(master, "ModifiedOccurrences"), t("Occurrence"))
        sub(changed, t("ItemId"), Id=occurrence_id(master, index), ChangeKey="AQAAAA==")
        sub(changed, t("Start"), iso(original))
        sub(changed, t("End"), iso(original_end))
        sub(changed, t("OriginalStart"), text)
    new_start = start or _parse(changed.findtext(t("Start")) or text)
    new_end = end or _parse(changed.findtext(t("End")) or iso(original_end))
    if new_end < new_start:
        raise FieldError("ErrorCalendarEndDateIsEarlierThanStartDate",
                         "The end date occurs before the start date.")
    changed.find(t("Start")).text = iso(new_start.astimezone(dt.UTC))
    changed.find(t("End")).text = iso(new_end.astimezone(dt.UTC))
    _sort(master.element.find(t("ModifiedOccurrences")), "OriginalStart")
    return str(changed.find(t("ItemId")).get("Id"))


def drop_exceptions(master: Item) -> None:
    """A new pattern or series time: the exceptions go."""
    for name in EXCEPTION_ELEMENTS:
        el = master.element.find(t(name))
        if el is not None:
            master.element.remove(el)


def _sort(holder: etree._Element | None, by: str) -> None:
    if holder is None:
        return
    entries = sorted(holder, key=lambda e: e.findtext(t(by)) or "")
    for e in entries:
        holder.remove(e)
        holder.append(e)
