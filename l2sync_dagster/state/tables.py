"""The state store's tables (SQLAlchemy Core), the schema upgrades of stores an older version
created, and the small helpers every part of the store uses."""

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    literal,
    text,
)
from sqlalchemy.dialects import mssql, mysql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.types import NullType

from l2sync_dagster.postgres_copy import can_copy, copy_rows

STATE_URL_ENV = "L2SYNC_STATE_URL"

#: JSON and free text: MySQL/MariaDB ``TEXT`` holds only 64 KiB (a record's values can be
#: longer), SQL Server's ``TEXT`` is deprecated; elsewhere ``TEXT``/``CLOB`` are unbounded
LongText = (Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
            .with_variant(mssql.NVARCHAR(None), "mssql"))
#: a UTC time; MySQL/MariaDB ``DATETIME`` keeps microseconds only when told to
Stamp = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

metadata = MetaData()

archive_table = Table(
    "l2sync_archive", metadata,
    Column("connection", String(200), primary_key=True),
    Column("pair_id", String(64), primary_key=True),
    Column("left_key", LongText),
    Column("right_key", LongText),
    Column("left_hash", BigInteger),
    Column("right_hash", BigInteger),
    Column("left_dirty", Boolean, nullable=False, default=False),
    Column("right_dirty", Boolean, nullable=False, default=False),
    Column("left_version", LongText),
    Column("right_version", LongText),
    Column("mapping", String(32)),
    Column("values_json", LongText, nullable=False),
    Column("updated_at", Stamp),
    Column("window_at", Stamp),
)
window_table = Table(
    "l2sync_window", metadata,
    Column("connection", String(200), primary_key=True),
    Column("window_start", Stamp, primary_key=True),
    Column("window_end", Stamp, primary_key=True),
    Column("run_id", String(64)),
    Column("status", String(20)),
    Column("synced_at", Stamp),
    Column("counts_json", LongText),
)
cursor_table = Table(
    "l2sync_cursor", metadata,
    Column("connection", String(200), primary_key=True),
    Column("side", String(8), primary_key=True),
    Column("cursor", LongText),
    Column("mapping", String(32)),
    Column("updated_at", Stamp),
)
conflict_table = Table(
    "l2sync_conflict", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("connection", String(200), index=True, nullable=False),
    Column("run_id", String(64)),
    Column("pair_id", String(64)),
    Column("kind", String(40)),
    Column("left_key", LongText),
    Column("right_key", LongText),
    Column("fields_json", LongText),
    Column("base_json", LongText),
    Column("left_json", LongText),
    Column("right_json", LongText),
    Column("resolution", LongText),
    Column("recorded_at", Stamp),
)
run_table = Table(
    "l2sync_run", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("connection", String(200), index=True, nullable=False),
    Column("started_at", Stamp),
    Column("finished_at", Stamp),
    Column("status", String(20)),
    Column("counts_json", LongText),
    Column("message", LongText),
)
lock_table = Table(
    "l2sync_lock", metadata,
    Column("connection", String(200), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("acquired_at", Stamp),
)
pending_table = Table(
    "l2sync_pending", metadata,
    Column("connection", String(200), primary_key=True),
    Column("pair_id", String(64), primary_key=True),
    Column("side", String(8), primary_key=True),
    Column("source_key", LongText, nullable=False),
    Column("target_key", LongText),
    Column("expected_hash", BigInteger),
    Column("run_id", String(64)),
    Column("values_json", LongText),
)
created_table = Table(
    # records the sync created on a side after that side's saved cursor was taken: a change
    # feed need not report the later delete of a record it never reported (EWS sync state)
    "l2sync_created", metadata,
    Column("connection", String(200), primary_key=True),
    Column("side", String(8), primary_key=True),
    Column("key", String(400), primary_key=True),
)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


#: keys in the order the caller built them (the mapping's order): the text is only decoded
_JSON = json.JSONEncoder(default=str, ensure_ascii=False)


def to_json(value: Any) -> str:
    """The stored text of a value (agreed values, journaled values, conflict rows)."""
    return _JSON.encode(value)


def as_aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns naive datetimes; the store writes UTC only."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


#: dialects whose archive is indexed by its key columns, for the keyed loads of runs that
#: follow the changes (without one, every keyed load scans all the connection's pairs: 160 ms
#: for 10,000 keys among 300,000 pairs on PostgreSQL, 480 ms among 1,000,000). SQLite: a btree
#: on (connection, key). PostgreSQL: a hash index per key column, since a btree on a text key
#: refuses keys over 2.7 kB and a hash index stores only the key's hash (``= ANY(array)`` is
#: answered by one bitmap scan of it). MySQL/MariaDB need a prefix length for TEXT, and SQL
#: Server and Oracle cannot index their long text types.
KEY_INDEX_DIALECTS = frozenset({"sqlite", "postgresql"})


def add_key_indexes(engine: Engine) -> None:
    """Index the archive by its left and right keys where the dialect can, on stores made by
    older versions too."""
    from sqlalchemy import exc, inspect, text

    name = engine.dialect.name
    if name not in KEY_INDEX_DIALECTS:
        return
    wanted = {
        (f"ix_l2sync_archive_{side}_key_hash" if name == "postgresql"
         else f"ix_l2sync_archive_{side}_key"):
        (f"USING hash ({side}_key)" if name == "postgresql" else f"(connection, {side}_key)")
        for side in ("left", "right")}

    def have() -> set[str]:
        return {i["name"] for i in inspect(engine).get_indexes(archive_table.name)}

    # looked up first: CREATE INDEX takes a lock that waits for every run writing the archive
    for index in set(wanted) - have():
        try:
            with engine.begin() as conn:
                conn.execute(text(f"CREATE INDEX IF NOT EXISTS {index} ON "
                                  f"{archive_table.name} {wanted[index]}"))
        except exc.DBAPIError:
            if index not in have():  # not a store opened at the same moment by another run
                raise


def add_missing_columns(engine: Engine) -> None:
    """Add columns newer versions introduced to tables an older version created."""
    from sqlalchemy import inspect, text

    name = engine.dialect.name
    have = {c["name"] for c in inspect(engine).get_columns(archive_table.name)}
    if "window_at" not in have:
        kind = {"postgresql": "TIMESTAMP WITH TIME ZONE", "mysql": "DATETIME(6)",
                "mariadb": "DATETIME(6)"}.get(name, "TIMESTAMP")
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {archive_table.name} ADD COLUMN window_at {kind}"))
    have = {c["name"] for c in inspect(engine).get_columns(pending_table.name)}
    if "values_json" not in have:
        kind = "LONGTEXT" if name in ("mysql", "mariadb") else "TEXT"
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {pending_table.name} ADD COLUMN values_json {kind}"))
    if name in ("mysql", "mariadb"):
        widen_mysql_text(engine)


def widen_mysql_text(engine: Engine) -> None:
    """MySQL/MariaDB stores made by older versions have ``TEXT`` (64 KiB) columns: make them
    ``LONGTEXT``, so that a record with long values cannot fail every later run."""
    from sqlalchemy import inspect, text

    insp = inspect(engine)
    for table in metadata.sorted_tables:
        reflected = {c["name"]: c["type"] for c in insp.get_columns(table.name)}
        for col in table.columns:
            if not isinstance(col.type, Text) or col.name not in reflected:
                continue
            if isinstance(reflected[col.name], mysql.LONGTEXT):
                continue
            null = "" if col.nullable else " NOT NULL"
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE {table.name} MODIFY `{col.name}` LONGTEXT{null}"))


def bulk_insert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` into ``table`` inside the open transaction of ``conn``, in bulk: one
    ``COPY`` on PostgreSQL through psycopg 3, one ``executemany`` elsewhere (SQLAlchemy sends
    multi-row statements where the dialect supports them), never one statement per row."""
    if not rows:
        return
    if can_copy(conn):
        names = list(rows[0])
        copy_rows(conn, table, names, ([row[n] for n in names] for row in rows))
        return
    conn.execute(table.insert(), list(rows))


def bulk_insert_rows(conn: Connection, table: Table, names: Sequence[str],
                     rows: Sequence[Sequence[Any]]) -> None:
    """:func:`bulk_insert` of rows given as values in the order of ``names`` (the batches of
    the archive and the journal are built so: no dict per row for COPY to take apart)."""
    if not rows:
        return
    if can_copy(conn):
        copy_rows(conn, table, names, rows)
        return
    conn.execute(table.insert(), [dict(zip(names, row, strict=True)) for row in rows])


def _psycopg(conn: Connection) -> bool:
    """PostgreSQL through psycopg 3, whose untyped text parameter the server types from its
    context (the driver the array texts below were checked with; others take the general
    path)."""
    return conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg"


def pg_text_array(values: Sequence[str]) -> str | None:
    r"""``values`` as one PostgreSQL ``text[]`` input text, ``{"a","b \"c\""}``: every
    element double-quoted, its ``\`` and ``"`` escaped by a backslash, so that commas, braces,
    spaces and ``NULL`` stay text. None when a value holds NUL, which no PostgreSQL text can
    hold (the general path then raises the driver's own error)."""
    joined = "".join(values)
    if "\x00" in joined:
        return None
    if "\\" in joined or '"' in joined:
        values = [v.replace("\\", "\\\\").replace('"', '\\"') for v in values]
    return '{"' + '","'.join(values) + '"}'


def update_many(conn: Connection, table: Table, fixed: dict[str, str], match: Sequence[str],
                column: str, rows: Sequence[Sequence[Any]]) -> bool:
    """On PostgreSQL through psycopg, one ``UPDATE ... FROM unnest(arrays)`` for what an
    executemany of ``UPDATE table SET column = row[-1] WHERE fixed AND match = row[:-1]`` does
    row by row (0.9 s for 5,000 rows). True when done; False when the caller takes the general
    path: on another dialect or driver, for a value that is not text or holds NUL, or for a
    match given twice (the executemany's last row wins, a join's winner is arbitrary)."""
    if not _psycopg(conn) or not rows:
        return False
    width = len(match) + 1
    if any(len(row) != width for row in rows) or len({tuple(row[:-1]) for row in rows}) \
            != len(rows):
        return False
    values = [list(col) for col in zip(*rows, strict=True)]
    if any(type(v) is not str for col in values for v in col):
        return False
    arrays = [pg_text_array(col) for col in values]
    if any(a is None for a in arrays):
        return False
    q = conn.dialect.identifier_preparer.quote
    conds = [f"t.{q(name)} = :f{i}" for i, name in enumerate(fixed)]
    conds += [f"t.{q(name)} = v.v{i}" for i, name in enumerate(match)]
    sql = (f"UPDATE {conn.dialect.identifier_preparer.format_table(table)} AS t "
           f"SET {q(column)} = v.v{width - 1} "
           f"FROM unnest({', '.join(f'CAST(:a{i} AS TEXT[])' for i in range(width))}) "
           f"AS v({', '.join(f'v{i}' for i in range(width))}) WHERE {' AND '.join(conds)}")
    params = {f"a{i}": a for i, a in enumerate(arrays)}
    params.update({f"f{i}": v for i, v in enumerate(fixed.values())})
    conn.execute(text(sql), params)
    return True


def in_keys(conn: Connection, column: Any, values: Sequence[Any]) -> Iterable[Any]:
    """Conditions ``column IN values`` to run one statement each: one ``column = ANY(array)``
    on PostgreSQL (one parameter, whatever the number of values), chunks of 500 elsewhere
    (the databases' limits on bound parameters).

    On PostgreSQL through psycopg the array goes as one text in array input form, cast by the
    server (psycopg dumps a Python list element by element in Python: 2.6 s of a 200,000-row
    load); the parameter has no type of its own, so the server takes it for a ``text[]``
    constant and plans the statement as it plans the list."""
    if not values:
        return
    if conn.dialect.name == "postgresql":
        keys = [str(v) for v in values]
        array = pg_text_array(keys) if _psycopg(conn) else None
        if array is None:
            yield column == any_(literal(keys, ARRAY(Text())))
        else:
            yield column == any_(cast(bindparam(None, array, type_=NullType()), ARRAY(Text())))
        return
    for chunk in chunks(values, 500):
        yield column.in_(chunk)


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
