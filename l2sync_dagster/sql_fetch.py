"""Large results read column by column from the DBAPI cursor, with the values SQLAlchemy would
return: its result processor of each column applied to that column, none where it has none.

SQLAlchemy builds a Row object per fetched row; for a million keys that costs three to four
times the fetch itself (2.3 s against 0.6 s from SQLite). The key listings and full reads of
the sql provider and the archive's loads go through here instead."""

from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.engine.cursor import CursorFetchStrategy


def fetch_columns(conn: Connection, stmt: Any) -> list[list[Any]]:
    """Every row of the SELECT ``stmt``, as one list per selected column. A statement whose
    columns SQLAlchemy does not type (textual SQL), or a result it does not read plainly from
    the cursor (buffered, server-side), is fetched through SQLAlchemy's rows."""
    result = conn.execute(stmt)
    width = len(result.keys())
    try:
        procs = _processors(conn, stmt, result)
        if procs is None:
            rows: list[Any] = list(result.fetchall())
        else:
            rows = result.cursor.fetchall()
    finally:
        result.close()
    if not rows:
        return [[] for _ in range(width)]
    columns = [list(c) for c in zip(*rows, strict=True)]
    if procs is None:
        return columns
    return [col if proc is None else list(map(proc, col))
            for col, proc in zip(columns, procs, strict=True)]


def _processors(conn: Connection, stmt: Any,
                result: Any) -> list[Callable[[Any], Any] | None] | None:
    """The result processor of each column as SQLAlchemy chooses it (from the column's type
    and the cursor's type code), or None when the raw cursor may not be read directly."""
    if type(getattr(result, "cursor_strategy", None)) is not CursorFetchStrategy:
        return None
    columns = list(getattr(stmt, "selected_columns", None) or [])
    description = result.cursor.description if result.cursor is not None else None
    if not columns or description is None or len(description) != len(columns):
        return None
    dialect = conn.dialect
    return [col.type.dialect_impl(dialect).result_processor(dialect, desc[1])
            for col, desc in zip(columns, description, strict=True)]
