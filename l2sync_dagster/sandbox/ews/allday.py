"""All-day events as Exchange stores them: a start that is not midnight moves back to the
midnight before it, an end that is not midnight forward to the midnight after it, midnight
being that of the event's StartTimeZone / EndTimeZone."""

import datetime as dt
from zoneinfo import ZoneInfo

from lxml import etree

from l2sync_dagster.sandbox.ews.fields import item_zone
from l2sync_dagster.sandbox.ews.soap import t
from l2sync_dagster.sandbox.ews.store import Item, iso
from l2sync_dagster.sandbox.graph.common import WINDOWS_ZONES


def _end_zone(item: Item) -> dt.tzinfo:
    el = item.element.find(t("EndTimeZone"))
    name = el.get("Id") if el is not None else None
    if not name:
        return item_zone(item)
    try:
        return ZoneInfo(WINDOWS_ZONES.get(name, name))
    except (KeyError, ValueError):
        return item_zone(item)


def _parse(el: etree._Element) -> dt.datetime | None:
    try:
        value = dt.datetime.fromisoformat((el.text or "").strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def round_all_day(item: Item) -> None:
    """Round Start down and End up to midnight when the calendar item is an all-day event."""
    if item.tag != "CalendarItem" or item.element.findtext(t("IsAllDayEvent")) != "true":
        return
    for name, zone, up in (("Start", item_zone(item), False), ("End", _end_zone(item), True)):
        el = item.element.find(t(name))
        value = _parse(el) if el is not None else None
        if value is None:
            continue
        local = value.astimezone(zone)
        midnight = dt.datetime.combine(local.date(), dt.time(0), tzinfo=zone)
        if up and local != midnight:
            midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(0),
                                           tzinfo=zone)
        el.text = iso(midnight.astimezone(dt.UTC))
