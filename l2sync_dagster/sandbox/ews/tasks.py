"""Recurring tasks as Exchange keeps them: a recurring task is the current occurrence; when it
is completed (or, for a task that does not regenerate, when its dates or recurrence start
change) Exchange keeps that occurrence as a one-off task of its own and moves the recurring
task on to the next occurrence, one fewer in a numbered series. A regenerating task's next
occurrence counts from the day it was completed. The task's ChangeCount (its version) starts
at 1 and counts these steps (kept in the stored task; clients cannot set it).
"""

import calendar
import copy
import datetime as dt

from lxml import etree

from l2sync_dagster.sandbox.ews.fields import FieldError, insert_ordered, local
from l2sync_dagster.sandbox.ews.occurrences import recurrence_dates
from l2sync_dagster.sandbox.ews.soap import t
from l2sync_dagster.sandbox.ews.store import Item, Store, iso, now

_REGENERATION = {"DailyRegeneration": "days", "WeeklyRegeneration": "weeks",
                 "MonthlyRegeneration": "months", "YearlyRegeneration": "years"}
_DATES = ("StartDate", "DueDate")


def _range_start(recurrence: etree._Element) -> dt.date | None:
    text = next((el.text for el in recurrence.iter(t("StartDate")) if el.text), None)
    try:
        return dt.date.fromisoformat(text[:10]) if text else None
    except ValueError:
        return None


def _date(item_el: etree._Element, name: str) -> dt.date | None:
    text = item_el.findtext(t(name))
    try:
        return dt.date.fromisoformat(text[:10]) if text else None
    except ValueError:
        return None


def _set_date(item: Item, name: str, day: dt.date, order: dict[str, list[str]]) -> None:
    el = item.element.find(t(name))
    if el is None:
        el = etree.Element(t(name))
        insert_ordered(item, el, order)
    el.text = iso(dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC))


def _after(day: dt.date, unit: str, n: int) -> dt.date:
    """``day`` plus ``n`` days/weeks/months/years (the day of month clamped)."""
    if unit in ("days", "weeks"):
        return day + dt.timedelta(**{unit: n})
    months = n * (12 if unit == "years" else 1) + day.month - 1
    year, month = day.year + months // 12, months % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _regeneration(recurrence: etree._Element) -> tuple[str, int] | None:
    pattern = next((c for c in recurrence if local(c) in _REGENERATION), None)
    if pattern is None:
        return None
    return _REGENERATION[local(pattern)], int(pattern.findtext(t("Interval")) or 1)


def created(item: Item, order: dict[str, list[str]]) -> None:
    """A new recurring task is due on its first occurrence (unless it says otherwise)."""
    recurrence = item.element.find(t("Recurrence"))
    if item.tag != "Task" or recurrence is None or item.element.find(t("DueDate")) is not None:
        return
    first = _range_start(recurrence)
    if first is not None:
        _set_date(item, "DueDate", first, order)


def updated(store: Store, before: etree._Element, after: Item,
            order: dict[str, list[str]]) -> Item | None:
    """After an UpdateItem of a recurring task (``before``: its element before, ``after``: the
    task as updated, not yet stored): the one-off task Exchange splits off, or None."""
    recurrence = before.find(t("Recurrence"))
    if after.tag != "Task" or recurrence is None:
        return None
    regenerating = _regeneration(recurrence)
    completed = after.element.findtext(t("Status")) == "Completed" and \
        before.findtext(t("Status")) != "Completed"
    new_recurrence = after.element.find(t("Recurrence"))
    moved = regenerating is None and (
        any(_date(before, n) != _date(after.element, n) for n in _DATES) or
        (new_recurrence is not None and _range_start(new_recurrence) != _range_start(recurrence)))
    if not (completed or moved) or new_recurrence is None:
        return None
    current = _date(before, "DueDate") or _range_start(recurrence) or now().date()
    if regenerating is not None:
        unit, interval = regenerating
        following: dt.date | None = _after(now().date(), unit, interval)
    else:
        try:
            following = next((d for d in recurrence_dates(recurrence, current)
                              if d > current), None)
        except FieldError:
            following = None
    one_off = copy.deepcopy(after.element)
    one_off.remove(one_off.find(t("Recurrence")))
    for name in ("Status", "PercentComplete"):  # the series goes on where it was
        old, new = before.find(t(name)), after.element.find(t(name))
        if new is not None:
            after.element.remove(new)
        if old is not None:
            insert_ordered(after, copy.deepcopy(old), order)
    number = new_recurrence.find(f"{t('NumberedRecurrence')}/{t('NumberOfOccurrences')}")
    if number is not None and number.text:
        number.text = str(max(int(number.text) - 1, 0))
    if following is None or (number is not None and number.text == "0"):
        after.element.remove(new_recurrence)
    else:
        _set_date(after, "DueDate", following, order)
    count = after.element.find(t("ChangeCount"))
    if count is None:
        count = etree.Element(t("ChangeCount"))
        count.text = "1"
        insert_ordered(after, count, order)
    count.text = str(int(count.text or "1") + 1)
    old_count = one_off.find(t("ChangeCount"))
    if old_count is not None:
        one_off.remove(old_count)
    return store.add_item(after.mailbox, after.folder_id, one_off)
