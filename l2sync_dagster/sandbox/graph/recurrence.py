"""Occurrence dates of a recurrence in Graph's ``patternedRecurrence`` shape (the EWS sandbox
converts its ``Recurrence`` elements to it): daily, weekly, absoluteMonthly, absoluteYearly;
relative patterns yield only their first occurrence (a documented limit of the sandboxes)."""

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def occurrence_dates(recurrence: dict[str, Any], until: date) -> Iterable[date]:
    """The dates of a patterned recurrence (daily, weekly, absoluteMonthly, absoluteYearly)."""
    pattern, rng = recurrence["pattern"], recurrence["range"]
    start = date.fromisoformat(rng["startDate"])
    end = until
    if rng["type"] == "endDate" and rng.get("endDate"):
        end = min(end, date.fromisoformat(rng["endDate"]))
    limit = rng.get("numberOfOccurrences") if rng["type"] == "numbered" else None
    interval = max(int(pattern.get("interval") or 1), 1)
    kind = pattern["type"]
    count = 0
    day = start
    while day <= end and (limit is None or count < limit):
        hit = False
        if kind == "daily":
            hit = (day - start).days % interval == 0
        elif kind == "weekly":
            days = pattern.get("daysOfWeek") or [_WEEKDAYS[start.weekday()]]
            week = ((day - start).days + start.weekday()) // 7
            hit = _WEEKDAYS[day.weekday()] in days and week % interval == 0
        elif kind == "absoluteMonthly":
            months = (day.year - start.year) * 12 + day.month - start.month
            hit = day.day == (pattern.get("dayOfMonth") or start.day) and months % interval == 0
        elif kind == "absoluteYearly":
            hit = day.month == (pattern.get("month") or start.month) and \
                day.day == (pattern.get("dayOfMonth") or start.day)
        else:  # relative patterns: only the first occurrence (documented limit)
            hit = day == start
            if hit:
                limit = 1
        if hit:
            count += 1
            yield day
        day += timedelta(days=1)
