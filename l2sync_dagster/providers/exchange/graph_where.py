"""The WHERE, ORDER BY and TOP parts of a select statement, applied by the Graph backend to
what Graph returned (delta queries take no ``$filter`` on Outlook items; the calendar window is
pushed down separately as the calendarView range).

The evaluation itself is :func:`~l2sync_dagster.providers.exchange.select.condition_holds`
and :func:`~l2sync_dagster.providers.exchange.select.order_records`, the same code the EWS
backend uses, so that one connection selects the same records whatever the backend.
"""

from typing import Any

from l2sync_dagster.providers.exchange.backend import Record
from l2sync_dagster.providers.exchange.graph_fields import GraphField
from l2sync_dagster.providers.exchange.select import (
    SelectStatement,
    condition_holds,
    order_records,
)


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
        if not condition_holds(cond, value):
            return False
    return True


def top(stmt: SelectStatement, records: list[Record]) -> list[Record]:
    """ORDER BY and TOP n of a complete read (nulls last)."""
    return order_records(stmt, records, lambda r, col: r.values.get(col))
