"""Occurrences of a recurring calendar item, as Exchange records their exceptions on the
master: ``OccurrenceItemId`` (``RecurringMasterId`` + 1-based ``InstanceIndex``) names an
occurrence; deleting one adds a ``DeletedOccurrences/DeletedOccurrence`` (its original start),
changing its Start/End adds a ``ModifiedOccurrences/Occurrence`` (a new ItemId, Start, End,
OriginalStart). Both are read-only elements of the master (in schema order), dropped when
the series' Recurrence, Start or End changes. The pattern is expanded with the Graph
sandbox's expander (daily, weekly, absolute monthly/yearly; relative patterns: first only).
"""

import datetime as dt
import itertools
from typing import Any

from lxml import etree

from l2sync_dagster.sandbox.ews.fields import FieldError, field_text, local
from l2sync_dagster.sandbox.ews.soap import sub, t
from l2sync_dagster.sandbox.ews.store import Item, iso
from l2sync_dagster.sandbox.graph.common import WINDOWS_ZONES
from l2sync_dagster.sandbox.graph.recurrence import occurrence_dates

EXCEPTION_ELEMENTS = ("ModifiedOccurrences", "DeletedOccurrences")
#: series fields whose change drops the exceptions (as Outlook warns)
SERIES_FIELDS = frozenset({"Recurrence", "Start", "End"})
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


def _zone(master: Item) -> dt.tzinfo:
    from zoneinfo import ZoneInfo

    el = master.element.find(t("StartTimeZone"))
    name = el.get("Id") if el is not None else None
    if not name:
        return dt.UTC
    try:
        return ZoneInfo(WINDOWS_ZONES.get(name, name))
    except (KeyError, ValueError):
        return dt.UTC


def occurrence(master: Item, index: int) -> tuple[dt.datetime, dt.datetime]:
    """(original start, original end) in UTC of occurrence ``index`` (1-based)."""
    recurrence = master.element.find(t("Recurrence"))
    start_text, end_text = field_text(master, "Start"), field_text(master, "End")
    if recurrence is None or not start_text or not end_text:
        raise FieldError("ErrorCalendarCannotUseIdForOccurrenceId",
                         "The RecurringMasterId does not name a recurring master.")
    if index < 1:
        raise FieldError("ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange",
                         "Occurrence index is out of recurrence range.")
    start, end = _parse(start_text), _parse(end_text)
    pattern = _pattern(recurrence)
    if not pattern["range"]["startDate"]:
        pattern["range"]["startDate"] = start.date().isoformat()
    until = dt.date(start.year + _HORIZON_YEARS, 12, 31)
    day = next(itertools.islice(occurrence_dates(pattern, until), index - 1, None), None)
    if day is None:
        raise FieldError("ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange",
                         "Occurrence index is out of recurrence range.")
    tz = dt.UTC if field_text(master, "IsAllDayEvent") == "true" else _zone(master)
    local_time = start.astimezone(tz).time()
    occ_start = dt.datetime.combine(day, local_time, tzinfo=tz).astimezone(dt.UTC)
    return occ_start, occ_start + (end - start)


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
                      end: dt.datetime | None, new_id: str) -> str:
    """Move occurrence ``index`` to [start, end) (a ModifiedOccurrence); returns its ItemId."""
    original, original_end = occurrence(master, index)
    text = iso(original)
    if text in _deleted_starts(master):
        raise FieldError("ErrorCalendarOccurrenceIsDeletedFromRecurrence",
                         "Occurrence was deleted from the recurrence.")
    changed = _modified(master, text)
    if changed is None:
        changed = sub(_holder(master, "ModifiedOccurrences"), t("Occurrence"))
        sub(changed, t("ItemId"), Id=new_id, ChangeKey="AQAAAA==")
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
