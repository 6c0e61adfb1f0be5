"""PostgreSQL ``COPY ... FROM STDIN`` through psycopg 3, for bulk writes: the ``sql``
provider's inserts and updates, and the state store's archive and journal rows.

One COPY streams a whole batch in one statement (the server parses and plans it once, where an
executemany of INSERTs costs a parse and a plan per row). Values are first run through the
column's SQLAlchemy bind processing (the same conversion an INSERT would apply: JSON to psycopg's
``Json``...) and then dumped by psycopg in COPY's text format, which the server parses with the
column's own input function, as it parses a bound parameter. An error (a duplicate key, a value
the column refuses) is raised as SQLAlchemy's ``DBAPIError``, as an INSERT would raise it, so the
caller's fallback (record by record) works the same.
"""

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection


def can_copy(conn: Connection) -> bool:
    """True when ``conn`` is PostgreSQL through psycopg 3 (the driver with ``cursor.copy``)."""
    return conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg"


def copy_rows(conn: Connection, table: Any, names: Sequence[str],
              rows: Iterable[Sequence[Any]]) -> None:
    """``COPY table (names) FROM STDIN`` with ``rows`` (values in the order of ``names``), in
    the connection's transaction. ``table`` is a :class:`sa.Table` (or ``sa.table``) whose
    columns named ``names`` carry the types that convert the values."""
    dialect = conn.dialect
    prep = dialect.identifier_preparer
    procs = [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
    # Only the columns with a bind processor are touched (most have none on psycopg: a
    # per-value comprehension over all of them cost as much as psycopg's own dumping).
    active = [(i, proc) for i, proc in enumerate(procs) if proc is not None]
    width = len(names)
    sql = (f"COPY {prep.format_table(table)} ({', '.join(prep.quote(n) for n in names)}) "
           "FROM STDIN")
    raw = conn.connection.driver_connection
    dbapi = dialect.loaded_dbapi
    try:
        with raw.cursor() as cur, cur.copy(sql) as copy:
            for row in rows:
                if len(row) != width:
                    raise ValueError(f"a row of {len(row)} values for {width} columns")
                if active:
                    row = list(row)
                    for i, proc in active:
                        if row[i] is not None:
                            row[i] = proc(row[i])
                copy.write_row(row)
    except dbapi.Error as exc:
        broken = bool(getattr(raw, "broken", False) or getattr(raw, "closed", False))
        if broken:
            conn.invalidate()
        raise sa_exc.DBAPIError.instance(
            sql, None, exc, dbapi.Error, hide_parameters=True, connection_invalidated=broken,
            dialect=dialect) from exc


def staging_table(conn: Connection, source: sa.Table, columns: dict[str, Any]) -> sa.TableClause:
    """A temporary table with ``columns`` (new name -> a column of ``source``, whose type it
    takes), empty; drop it with :func:`drop_staging` (a rollback drops it too)."""
    name = f"l2sync_stage_{uuid.uuid4().hex[:12]}"
    prep = conn.dialect.identifier_preparer
    select = sa.select(*[col.label(n) for n, col in columns.items()]).select_from(source)
    compiled = select.compile(dialect=conn.dialect)
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {prep.quote(name)} AS {compiled} WITH NO DATA")
    return sa.table(name, *[sa.column(n, col.type) for n, col in columns.items()])


def drop_staging(conn: Connection, stage: sa.TableClause) -> None:
    """Drop a table made by :func:`staging_table`."""
    conn.exec_driver_sql(f"DROP TABLE {conn.dialect.identifier_preparer.format_table(stage)}")
