"""The WHERE, ORDER BY and TOP parts of a select statement, applied by the Graph backend to
what Graph returned (delta queries take no ``$filter`` on Outlook items; the calendar window is
pushed down separately as the calendarView range).
"""

import datetime as dt
from typing import Any

from l2sync_dagster.providers.exchange.backend import Record
from l2sync_dagster.providers.exchange.graph_fields import GraphField
from l2sync_dagster.providers.exchange.select import Condition, SelectStatement


def matches(stmt: SelectStatement, mapping: dict[str, GraphField], item: dict[str, Any],
            values: dict[str, Any]) -> bool:
    """Whether an item satisfies every WHERE condition (evaluated on canonical values)."""
    for cond in stmt.where:
        if cond.field in values:
            value = values[cond.field]
        elif cond.field in mapping:
            value = mapping[cond.field].read(item)
        else:
            ext = stmt.extended_by_column(cond.field)
            value = values.get(ext.column) if ext else None
        if not compare(value, cond):
            return False
    return True


def top(stmt: SelectStatement, records: list[Record]) -> list[Record]:
    """ORDER BY and TOP n of a complete read (nulls last)."""
    field = stmt.order_by
    if field:
        present = [r for r in records if r.values.get(field) is not None]
        absent = [r for r in records if r.values.get(field) is None]
        present.sort(key=lambda r: r.values[field], reverse=stmt.descending)
        records = present + absent
    if stmt.top is not None:
        records = records[:stmt.top]
    return records


def compare(value: Any, cond: Condition) -> bool:
    """Evaluate one WHERE condition on a canonical value (client side)."""
    op, target = cond.op.upper(), cond.value
    if op == "IS NULL":
        return value is None
    if op == "IS NOT NULL":
        return value is not None
    if value is None:
        return False
    if isinstance(value, dt.datetime) and isinstance(target, dt.date) \
            and not isinstance(target, dt.datetime):
        target = dt.datetime(target.year, target.month, target.day, tzinfo=dt.UTC)
    if isinstance(value, dt.datetime) and isinstance(target, dt.datetime) \
            and target.tzinfo is None:
        target = target.replace(tzinfo=dt.UTC)
    if isinstance(value, str) and isinstance(target, str):
        value, target = value.lower(), target.lower()
    try:
        if op == "=":
            return value == target
        if op in {"<>", "!="}:
            return value != target
        if op == "<":
            return value < target
        if op == "<=":
            return value <= target
        if op == ">":
            return value > target
        if op == ">=":
            return value >= target
        if op == "CONTAINS":
            return str(target).lower() in str(value).lower()
        if op == "STARTSWITH":
            return str(value).lower().startswith(str(target).lower())
        if op == "IN":
            options = [t.lower() if isinstance(t, str) else t for t in (target or ())]
            return value in options
    except TypeError:
        return False
    return False
