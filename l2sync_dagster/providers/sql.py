"""The ``sql`` provider: any database SQLAlchemy speaks (SQLite, PostgreSQL, SQL Server, ...).

Connection string::

    URL=postgresql://sync@db.example.com/crm;Password=env:CRM_DB_PASSWORD;Schema=sales

The query is a table name (``table`` or ``schema.table``; read and write) or exactly one
``SELECT`` (``WITH`` and ``UNION`` allowed; read-only). A SELECT is parsed (see
:mod:`sql_statement`): anything that could change data is refused before it reaches the
database, and every read runs in a read-only transaction that is rolled back (PostgreSQL and
Oracle ``SET TRANSACTION READ ONLY``, MySQL/MariaDB ``START TRANSACTION READ ONLY``, SQLite
``PRAGMA query_only``), never in autocommit. Identifiers are always quoted by SQLAlchemy and
values always travel as bound parameters. Incremental reads use a watermark on the query's
``modified`` column; the rows this provider writes are stamped there by the database's clock
(in the statement, see :func:`sql_dialect.database_now`), never the client's, so the watermark
cannot run ahead of another application's edits. What differs per database (drivers, session
time zone, reflected types, error codes) is in :mod:`sql_dialect`.

Read scope: a table is ``"all"``; a SELECT with WHERE/HAVING is ``"filtered"``, one with
LIMIT/TOP/OFFSET/FETCH ``"limited"`` (TOP with WHERE too). ``lookup`` finds keys in the
statement without those clauses, so a record that left the filter is still found.

SQLite stores any value in any column: a DATE column may hold ``'not a date'``, a TEXT column
bytes that are not UTF-8. Such values are read as they are stored (never parsed by the driver,
which would abort the whole read) and the engine rejects their records one by one.
"""

import datetime as dt
import difflib
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url

from l2sync_dagster.contract import FALSE_WORDS, TRUE_WORDS
from l2sync_dagster.providers.base import (
    KEY_INDEX,
    MODIFIED,
    Change,
    CreatedCallback,
    EntityDescription,
    FieldInfo,
    Outcome,
    ProviderError,
    Query,
    ReadResult,
    typed_column,
)
from l2sync_dagster.providers.sql_dialect import (
    MYSQL_FAMILY,
    classify,
    database_now,
    missing_driver_hint,
    prepare_engine,
    refine_types,
    with_installed_driver,
)
from l2sync_dagster.providers.sql_statement import (
    SelectStatement,
    StatementError,
    is_table_name,
    parse_select,
)
from l2sync_dagster.spec.connection_string import ConnectionString, ConnectionStringError

log = logging.getLogger("l2sync.providers.sql")

KEYS = ("URL", "User", "Password", "Schema", "BatchSize")
DEFAULT_BATCH_SIZE = 1000
#: keys per ``IN (...)`` list: far below every database's bound-parameter limit
IN_CHUNK = 500
#: rows sampled to guess the field types of a SELECT query
SAMPLE_ROWS = 1000

_INT_RE = re.compile(r"^[+-]?\d+$")
_CONNECT_ARGS = {
    # prepare_threshold=None: psycopg's cached generic plans go stale as tables grow (O(n))
    "psycopg": {"connect_timeout": 10, "prepare_threshold": None},
    "psycopg2": {"connect_timeout": 10},
    "pysqlite": {"timeout": 30},
}


def is_select(text: str) -> bool:
    """True when the query text is a statement (to be checked as one SELECT) rather than a
    table name."""
    return not is_table_name(text)


def field_type(sql_type: sa.types.TypeEngine) -> tuple[str, bool]:
    """The engine's field type of a SQL type, and whether it is known (False: a guess)."""
    if isinstance(sql_type, sa.types.NullType):
        return "string", False
    if isinstance(sql_type, sa.Boolean):
        return "boolean", True
    if isinstance(sql_type, sa.Integer):
        return "integer", True
    if isinstance(sql_type, sa.Float):
        return "float", True
    if isinstance(sql_type, sa.Numeric):
        return "decimal", True
    if isinstance(sql_type, sa.DateTime):
        return "datetime", True
    if isinstance(sql_type, sa.Date):
        return "date", True
    if isinstance(sql_type, sa.JSON | sa.ARRAY):
        return "json", True
    return "string", True


def _python_type(value: Any) -> str:
    """The field type of a Python value a driver returned (for SELECT queries)."""
    if isinstance(value, bool | np.bool_):
        return "boolean"
    if isinstance(value, int | np.integer):
        return "integer"
    if isinstance(value, float | np.floating):
        return "float"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, dict | list):
        return "json"
    return "string"


def key_str(value: Any) -> str:
    """A key value as the string used in the RecordFrame index (integers as ``str(int)``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return str(int(value))
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _unquote(part: str) -> str:
    part = part.strip()
    if len(part) >= 2 and part[0] == part[-1] == '"':
        return part[1:-1].replace('""', '"')
    if len(part) >= 2 and part[0] == "[" and part[-1] == "]":
        return part[1:-1]
    if len(part) >= 2 and part[0] == part[-1] == "`":
        return part[1:-1]
    return part


def _close(name: str, candidates: Sequence[str]) -> str:
    """``; did you mean a, b?`` for names close to ``name`` (case-insensitive), or ''."""
    by_low = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), list(by_low), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(by_low[c] for c in close)}?" if close else ""


@dataclass
class _Entity:
    """A resolved query: the table (or SELECT), its columns, types and description."""

    description: EntityDescription
    columns: dict[str, Any]
    types: dict[str, str]
    key: Any
    table: sa.Table | None = None
    select: str | None = None
    select_source: Any = None
    #: the SELECT without its WHERE/LIMIT (what ``lookup`` searches)
    lookup_source: Any = None
    read_only: set[str] = field(default_factory=set)
    label: str = ""
    #: columns read as stored and converted here (SQLite): name -> field type
    raw: dict[str, str] = field(default_factory=dict)

    def read_columns(self, names: Sequence[str], source: Any = None) -> list[Any]:
        """Column expressions for a SELECT of ``names``; raw columns bypass the driver's
        parsing (a bad stored value must reject its record, not abort the read)."""
        out = []
        for n in names:
            col = self.columns[n] if source is None else source.c[n]
            if n in self.raw:
                col = sa.type_coerce(col, sa.types.NullType()).label(n)
            out.append(col)
        return out

    def column(self, name: str) -> Any:
        """A column by name; exact match first, then case-insensitive."""
        col = self.columns.get(name)
        if col is not None:
            return col
        low = name.lower()
        for n, c in self.columns.items():
            if n.lower() == low:
                return c
        return None


class SqlProvider:
    """Reads and writes one table (or reads one SELECT) of a SQLAlchemy database."""

    name: ClassVar[str] = "sql"

    def __init__(
        self,
        url: URL | str,
        *,
        schema: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        """Open (lazily) the database at ``url``; put the password in the URL object, never
        in a string that might be printed."""
        self.url = with_installed_driver(make_url(url) if isinstance(url, str) else url)
        self.schema = schema or None
        self.batch_size = batch_size
        connect_args = dict(_CONNECT_ARGS.get(self.url.get_driver_name(), {}))
        try:
            self.engine: Engine = sa.create_engine(
                self.url, pool_pre_ping=True, connect_args=connect_args, hide_parameters=True
            )
        except ImportError as exc:
            hint = missing_driver_hint(self.url)
            raise ImportError(hint or str(exc)) from None
        prepare_engine(self.engine)
        self._password = self.url.password
        self._entities: dict[Query, _Entity] = {}
        self._backend = self.url.get_backend_name()
        if self._backend == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_on_connect)

    @property
    def safe_url(self) -> str:
        """The URL with the password masked."""
        return self.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"SqlProvider({self.safe_url!r})"

    __str__ = __repr__

    # --- connection string -------------------------------------------------------------------
    @classmethod
    def from_connection_string(
        cls, text: str | ConnectionString, *, base_dir: Path | None = None
    ) -> "SqlProvider":
        """Parse ``URL=...;User=...;Password=env:VAR;Schema=...;BatchSize=...``.

        A password inside the URL is refused (put it in ``Password=env:VAR``). Relative SQLite
        paths resolve against ``base_dir``.
        """
        cs = text if isinstance(text, ConnectionString) else ConnectionString(text, label="sql")
        cs.check_keys(KEYS, required=("URL",))
        raw = cs.require("URL")
        try:
            url = make_url(raw)
        except (sa_exc.ArgumentError, ValueError):
            raise ConnectionStringError(
                "sql: URL is not a SQLAlchemy URL; expected dialect[+driver]://user@host[:port]"
                "/database or sqlite:///path/to/file.db"
            ) from None
        if url.password is not None:
            raise ConnectionStringError(
                "sql: URL contains a password; put the password in Password=env:VAR "
                "and remove it from the URL"
            )
        user = cs.get("User")
        if user:
            url = url.set(username=user)
        password = cs.secret("Password")
        if password is not None and password.reveal():
            url = url.set(password=password.reveal())
        if url.get_backend_name() == "sqlite":
            url = _resolve_sqlite_path(url, base_dir)
        batch = cs.get("BatchSize")
        batch_size = DEFAULT_BATCH_SIZE
        if batch:
            try:
                batch_size = int(batch)
            except ValueError:
                batch_size = 0
            if batch_size < 1:
                raise ConnectionStringError(
                    f"sql: BatchSize must be a positive whole number, not {batch!r}"
                )
        try:
            return cls(url, schema=cs.get("Schema"), batch_size=batch_size)
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
            raise ConnectionStringError(
                f"sql: cannot use URL {url.render_as_string(hide_password=True)}: "
                f"{_scrub(str(exc), url.password)}"
            ) from None

    # --- errors ------------------------------------------------------------------------------
    def _message(self, exc: BaseException) -> str:
        """The database's own message, one line, without secrets."""
        orig = getattr(exc, "orig", None)
        text = str(orig if orig is not None else exc)
        text = " ".join(part.strip() for part in text.strip().splitlines() if part.strip())
        text = _scrub(text, self._password)
        return text[:500]

    def _connect_error(self, exc: BaseException) -> ProviderError:
        msg = self._message(exc)
        low = msg.lower()
        url = self.url
        where = f"{url.host or 'localhost'}:{url.port or 'default port'}"
        backend = url.get_backend_name()
        if backend == "sqlite":
            return ProviderError(
                f"cannot open SQLite database {url.database!r}: {msg}; check the path in URL= "
                "(its folder must exist)"
            )
        kind = classify(backend, exc)
        if kind == "auth":
            return ProviderError(
                f"authentication failed for user {url.username!r} at {where}: check User= (or "
                f"the user in URL=) and the Password=env:VAR variable ({msg})"
            )
        if kind == "grant":
            return ProviderError(
                f"user {url.username!r} may not use database {url.database!r} at {where}: the "
                "password is right, but the user lacks a grant; ask the database's "
                f"administrator to grant it access (or check the database in URL=) ({msg})"
            )
        if kind == "database":
            return ProviderError(
                f"database {url.database!r} does not exist at {where}: check the database "
                f"name in URL= ({msg})"
            )
        if kind is None and any(
            s in low
            for s in (
                "authentication failed",
                "access denied",
                "login failed",
                "no password supplied",
                "password authentication",
            )
        ) or ("role" in low and "does not exist" in low):
            return ProviderError(
                f"authentication failed for user {url.username!r} at {where}: check User= (or "
                f"the user in URL=) and the Password=env:VAR variable ({msg})"
            )
        if kind is None and "does not exist" in low and "database" in low:
            return ProviderError(
                f"database {url.database!r} does not exist at {where}: check the database "
                f"name in URL= ({msg})"
            )
        return ProviderError(
            f"cannot reach the database at {where} ({self.safe_url}): {msg}; check the host "
            "and port in URL= and that the server is running and accepts connections",
            transient=True,
        )

    def _connect(self) -> Connection:
        db = self.url.database
        if (
            self.url.get_backend_name() == "sqlite"
            and db
            and db != ":memory:"
            and not db.startswith("file:")
            and not Path(db).exists()
        ):
            # connecting would silently create an empty database
            raise ProviderError(
                f"SQLite database {db} does not exist; check the path in URL= (relative paths "
                "are relative to the project folder)"
            )
        try:
            return self.engine.connect()
        except sa_exc.DBAPIError as exc:
            raise self._connect_error(exc) from None

    def _raise_if_unavailable(self, exc: BaseException) -> None:
        """Raise a transient ProviderError when ``exc`` is about the database, not a record
        (connection lost, database locked): retrying the records one by one would not help."""
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            raise self._connect_error(exc) from None
        if isinstance(exc, sa_exc.OperationalError) and "database is locked" in str(exc.orig):
            raise ProviderError(
                f"{self.safe_url}: the database is locked by another writer; try again",
                transient=True,
            ) from None

    def _db_error(self, what: str, exc: BaseException) -> ProviderError:
        transient = isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
        return ProviderError(f"{what}: {self._message(exc)}", transient=transient)

    # --- entity ------------------------------------------------------------------------------
    def _entity(self, query: Query) -> _Entity:
        ent = self._entities.get(query)
        if ent is None:
            text = (query.text or "").strip()
            if not text:
                raise ProviderError(
                    "the sql provider needs a table name or a SELECT statement in `query:`"
                )
            statement = self._statement(text) if is_select(text) else None
            with self._reading() as conn:
                try:
                    if statement is not None:
                        ent = self._select_entity(conn, query, statement)
                    else:
                        ent = self._table_entity(conn, query, text)
                except ProviderError:
                    raise
                except sa_exc.SQLAlchemyError as exc:
                    raise self._db_error(f"cannot describe {_short(text)!r}", exc) from None
            self._entities[query] = ent
        return ent

    def _statement(self, text: str) -> SelectStatement:
        """The query text parsed as one read-only SELECT; ProviderError naming the problem."""
        try:
            return parse_select(text, self._backend)
        except StatementError as exc:
            raise ProviderError(f"`query:` {_short(text)!r}: {exc}") from None

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection in a read-only transaction that is always rolled back.

        Where the dialect has a read-only mode it is switched on before the first query, so
        that even a function with side effects cannot write; elsewhere the rollback undoes what
        a query might have written.
        """
        conn = self._connect()
        try:
            try:
                if self._backend == "sqlite":
                    conn.exec_driver_sql("PRAGMA query_only = ON")
                elif self._backend in ("postgresql", "oracle"):
                    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                elif self._backend in ("mysql", "mariadb"):
                    conn.exec_driver_sql("START TRANSACTION READ ONLY")
            except sa_exc.DBAPIError as exc:
                raise self._connect_error(exc) from None
            yield conn
        finally:
            try:
                conn.rollback()
                if self._backend == "sqlite":
                    conn.exec_driver_sql("PRAGMA query_only = OFF")
                    conn.rollback()
            except sa_exc.SQLAlchemyError:
                conn.invalidate()  # never hand a read-only connection to a writer
            conn.close()

    def _find_table(self, conn: Connection, text: str) -> tuple[str | None, str]:
        """(schema, table) for a table name written as ``table`` or ``schema.table``."""
        insp = sa.inspect(conn)
        candidates: list[tuple[str | None, str]] = [(self.schema, _unquote(text))]
        for i, ch in enumerate(text):
            if ch == ".":
                candidates.append((_unquote(text[:i]), _unquote(text[i + 1 :])))

        def names(schema: str | None) -> list[str]:
            try:
                return list(insp.get_table_names(schema)) + list(insp.get_view_names(schema))
            except sa_exc.SQLAlchemyError:
                return []

        for schema, table in candidates:
            try:
                if table and insp.has_table(table, schema=schema):
                    return schema, table
            except sa_exc.SQLAlchemyError:
                continue
        # PostgreSQL folds unquoted names to lower case, others differ: match case-insensitively
        for schema, table in candidates:
            same = [n for n in names(schema) if n.lower() == table.lower()]
            if len(same) == 1:
                return schema, same[0]
        available = names(self.schema)
        where = f"schema {self.schema!r}" if self.schema else "the default schema"
        listing = ", ".join(sorted(available)[:20]) or "none"
        raise ProviderError(
            f"table {_short(text)!r} not found in {where} of {self.safe_url}"
            f"{_close(_unquote(text), available)} (tables: {listing}); check `query:` "
            "and Schema="
        )

    def _table_entity(self, conn: Connection, query: Query, text: str) -> _Entity:
        schema, name = self._find_table(conn, text)
        table = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=conn)
        refine_types(table, conn)
        for col in table.primary_key.columns:
            # SQLite reflects `id INTEGER PRIMARY KEY` as nullable; SQLAlchemy then refuses the
            # batched INSERT ... RETURNING (no "sentinel"), and every batch fell back to one
            # transaction per row. A primary key is never NULL.
            col.nullable = False
        label = f"{schema}.{name}" if schema else name
        columns = {c.name: c for c in table.columns}
        types: dict[str, str] = {}
        read_only: set[str] = set()
        for col in table.columns:
            types[col.name] = field_type(col.type)[0]
            if isinstance(col.type, sa.JSON):
                col.type.none_as_null = True  # None is SQL NULL, not the JSON text 'null'
            if col.computed is not None or (col.identity is not None and col.identity.always):
                read_only.add(col.name)
        if query.key:
            key = self._named_column(columns, query.key, label, "key")
        else:
            pk = list(table.primary_key.columns)
            if len(pk) != 1:
                what = "a composite primary key" if pk else "no primary key"
                raise ProviderError(
                    f"table {label!r} has {what}; set `key:` in the connection to the column "
                    "that identifies a record"
                )
            key = pk[0]
        generated = _is_generated(table, key, conn.dialect.name)
        fields = []
        for col in table.columns:
            ftype, typed = field_type(col.type)
            fields.append(
                FieldInfo(
                    name=col.name,
                    type=ftype,
                    typed=typed,
                    read_only=col.name in read_only or (col is key and generated),
                    nullable=bool(col.nullable),
                )
            )
        modified = None
        if query.modified:
            modified = self._named_column(columns, query.modified, label, "modified").name
        desc = EntityDescription(tuple(fields), key.name, generated, True, modified, scope="all")
        raw = {}
        if self._backend == "sqlite":
            raw = {c.name: types[c.name] for c in table.columns
                   if isinstance(c.type, _SQLITE_PARSED) and c is not key}
        return _Entity(desc, columns, types, key, table=table, read_only=read_only, label=label,
                       raw=raw)

    def _select_entity(self, conn: Connection, query: Query, statement: SelectStatement
                       ) -> _Entity:
        text = statement.text
        result = conn.execution_options(stream_results=True).execute(sa.text(text))
        try:
            names = list(result.keys())
            sample = result.fetchmany(SAMPLE_ROWS)
        finally:
            result.close()
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ProviderError(
                f"the SELECT query returns the column name {dupes[0]!r} more than once; "
                "give every column a distinct name (AS ...)"
            )
        label = "the SELECT query"
        if not query.key:
            raise ProviderError(
                "a SELECT query has no primary key; set `key:` in the connection to the column "
                "that identifies a record"
            )
        plain = {n: sa.column(n) for n in names}
        key_name = self._named_column(plain, query.key, label, "key").name
        modified = None
        if query.modified:
            modified = self._named_column(plain, query.modified, label, "modified").name
        types: dict[str, str] = {}
        fields = []
        typed_columns = []
        for i, n in enumerate(names):
            values = [row[i] for row in sample if row[i] is not None]
            seen = {_python_type(v) for v in values}
            ftype = seen.pop() if len(seen) == 1 else "string"
            sql_type: Any = None
            if n == modified and ftype in ("datetime", "string"):
                # typed so that the watermark binds (and SQLite text parses) like the column
                aware = any(isinstance(v, dt.datetime) and v.tzinfo for v in values)
                sql_type, ftype = sa.DateTime(timezone=aware), "datetime"
            types[n] = ftype
            fields.append(FieldInfo(n, ftype, typed=bool(values) and not seen, read_only=True))
            typed_columns.append(sa.column(n, sql_type))
        source = sa.text(text).columns(*typed_columns).subquery("l2sync_q")
        everything = sa.text(statement.unrestricted).columns(
            *[sa.column(c.name, c.type) for c in typed_columns]).subquery("l2sync_all")
        columns = {n: source.c[n] for n in names}
        desc = EntityDescription(tuple(fields), key_name, False, False, modified,
                                 scope=statement.scope,  # type: ignore[arg-type]
                                 restriction=statement.restriction)
        raw = {}
        if self._backend == "sqlite":
            raw = {n: types[n] for n, c in zip(names, typed_columns, strict=True)
                   if isinstance(c.type, _SQLITE_PARSED) and n != key_name}
        return _Entity(
            desc,
            columns,
            types,
            columns[key_name],
            select=text,
            select_source=source,
            lookup_source=everything,
            read_only=set(names),
            label=label,
            raw=raw,
        )

    @staticmethod
    def _named_column(columns: dict[str, Any], name: str, label: str, role: str) -> Any:
        col = columns.get(name)
        if col is None:
            same = [c for n, c in columns.items() if n.lower() == name.lower()]
            col = same[0] if len(same) == 1 else None
        if col is None:
            raise ProviderError(
                f"`{role}: {name}`: {label} has no column {name!r}{_close(name, list(columns))} "
                f"(columns: {', '.join(columns)})"
            )
        return col

    # --- provider contract -------------------------------------------------------------------
    def verify(self, query: Query) -> str:
        """Connect and check that the table exists (or that the SELECT runs)."""
        text = (query.text or "").strip()
        statement = self._statement(text) if text and is_select(text) else None
        with self._reading() as conn:
            try:
                if not text:
                    conn.execute(sa.select(sa.literal(1)))
                    return f"connected to {self.safe_url}"
                if statement is not None:
                    result = conn.execution_options(stream_results=True).execute(sa.text(text))
                    count = len(result.keys())
                    result.close()
                    scope = ("" if statement.scope == "all"
                             else f" ({statement.scope}: {statement.restriction})")
                    return (f"{self.safe_url}: the SELECT query runs and returns {count} "
                            f"columns{scope}")
                schema, name = self._find_table(conn, text)
            except ProviderError:
                raise
            except sa_exc.SQLAlchemyError as exc:
                raise self._db_error(
                    f"{self.safe_url}: query {_short(text)!r} failed", exc) from None
        label = f"{schema}.{name}" if schema else name
        return f"{self.safe_url}: table {label} found"

    def describe(self, query: Query) -> EntityDescription:
        """Reflect the table (or sample the SELECT): fields, types, key, read-only columns, and
        the read scope (a table: "all"; a SELECT: "filtered" by WHERE/HAVING, "limited" by
        LIMIT/TOP/OFFSET/FETCH, with the clause in ``restriction``)."""
        return self._entity(query).description

    def read(
        self, query: Query, cursor: str | None = None, window: tuple[Any, Any] | None = None
    ) -> ReadResult:
        """Read the entity in one SELECT; only rows modified since the cursor's watermark when
        ``query.modified`` is set and a cursor is given. ``window`` = (start, end) limits the
        read to ``start <= window_field < end`` (``query.window_field``, else the modified
        column; either bound may be None), in the WHERE clause. A read limited by a window
        only is complete for its window.

        An incremental read's ``present_keys`` are the keys within the query's scope (for a
        SELECT with WHERE/LIMIT: the keys it selects now, not every key of the table)."""
        ent = self._entity(query)
        desc = ent.description
        names = list(ent.columns)
        mod_col = ent.columns[desc.modified] if desc.modified else None
        watermark = _parse_cursor(cursor) if mod_col is not None else None
        win_col = self._window_column(ent, query) if window is not None else None
        conditions = []
        if watermark is not None:
            # rows without a modified time cannot be ordered: read them every time
            since = mod_col >= self._bind(watermark, mod_col, ent)
            conditions.append(sa.or_(since, mod_col.is_(None)))
        incremental = bool(conditions)
        if window is not None:
            start, end = window
            if start is not None:
                conditions.append(win_col >= self._bind(_as_utc(start), win_col, ent))
            if end is not None:
                conditions.append(win_col < self._bind(_as_utc(end), win_col, ent))
        if ent.table is not None or conditions:
            stmt: Any = sa.select(*ent.read_columns(names))
        else:
            stmt = sa.text(ent.select or "")
        if conditions:
            stmt = stmt.where(*conditions)
        present = None
        with self._reading() as conn:
            try:
                result = conn.execute(stmt)
                rows = result.fetchall()
                if incremental:
                    keys = conn.execute(sa.select(ent.key)).scalars().all()
                    present = pd.Index([key_str(k) for k in keys], name=KEY_INDEX)
            except sa_exc.SQLAlchemyError as exc:
                raise self._db_error(f"reading {ent.label} failed", exc) from None
        frame = _build_frame(rows, names, ent.types, desc.key, ent.raw)
        if desc.modified:
            frame[MODIFIED] = _utc_series(frame[desc.modified])
        new_cursor = None
        if desc.modified:
            seen = frame[MODIFIED].dropna()
            if len(seen):
                newest = seen.max().to_pydatetime()
                if watermark is not None and newest < watermark:
                    newest = watermark
                new_cursor = json.dumps({"watermark": newest.isoformat()})
            elif cursor is not None and watermark is not None:
                new_cursor = cursor
        if window is not None:
            new_cursor = cursor
        return ReadResult(frame, complete=not incremental, cursor=new_cursor, present_keys=present)

    def _window_column(self, ent: _Entity, query: Query) -> Any:
        name = query.window_field or ent.description.modified
        if not name:
            raise ProviderError("a read window needs `modified:` or a window field")
        col = ent.column(name)
        if col is None:
            raise ProviderError(
                f"{ent.label} has no column {name!r} to slice windows on"
                f"{_close(name, list(ent.columns))}")
        return col

    def lookup(self, query: Query, keys: Sequence[str]) -> pd.DataFrame:
        """The records among ``keys`` that still exist, as a RecordFrame, whatever the query's
        WHERE, LIMIT/TOP or window: a SELECT's keys are looked up in the statement without
        those clauses (for a single-table SELECT: in the table). Batched in ``IN`` lists."""
        ent = self._entity(query)
        desc = ent.description
        names = list(ent.columns)
        values = []
        for k in keys:
            try:
                values.append(self._key_value(str(k), ent))
            except (ValueError, InvalidOperation):
                continue  # a key this column cannot hold does not exist
        rows: list[Any] = []
        source = ent.lookup_source
        cols = ent.read_columns(names, source)
        key = ent.key if source is None else source.c[desc.key]
        with self._reading() as conn:
            try:
                for chunk in _chunks(values, IN_CHUNK):
                    rows.extend(conn.execute(sa.select(*cols).where(key.in_(chunk))).fetchall())
            except sa_exc.SQLAlchemyError as exc:
                raise self._db_error(f"looking up keys in {ent.label} failed", exc) from None
        frame = _build_frame(rows, names, ent.types, desc.key, ent.raw)
        if desc.modified:
            frame[MODIFIED] = _utc_series(frame[desc.modified])
        return frame

    def probe(self, query: Query, cursor: str | None = None) -> str:
        """``count(*)`` and ``max(modified)`` of the entity in one aggregate query; without a
        modified column, a digest of every row (the only correct fingerprint then)."""
        ent = self._entity(query)
        desc = ent.description
        source: Any = ent.table if ent.table is not None else ent.select_source
        with self._reading() as conn:
            try:
                if desc.modified:
                    mod = ent.columns[desc.modified]
                    if desc.modified in ent.raw:  # as stored: a bad value must not raise here
                        mod = sa.type_coerce(mod, sa.types.NullType())
                    row = conn.execute(sa.select(sa.func.count(), sa.func.max(mod),
                                                 sa.func.min(mod)).select_from(source)).one()
                    return json.dumps({"count": int(row[0]), "max_modified": _to_text(row[1]),
                                       "min_modified": _to_text(row[2])})
                names = list(ent.columns)
                rows = conn.execute(sa.select(*ent.read_columns(names))
                                    .order_by(ent.key)).fetchall()
            except sa_exc.SQLAlchemyError as exc:
                raise self._db_error(f"probing {ent.label} failed", exc) from None
        digest = hashlib.sha256()
        for r in rows:
            digest.update(repr(tuple(r)).encode())
        return json.dumps({"count": len(rows), "rows_sha256": digest.hexdigest()})

    def max_batch_size(self) -> int:
        """``BatchSize`` from the connection string (default 1000)."""
        return self.batch_size

    def close(self) -> None:
        """Dispose of the connection pool."""
        self.engine.dispose()

    # --- writes ------------------------------------------------------------------------------
    def apply(self, query: Query, changes: Sequence[Change], *,
              created: CreatedCallback | None = None) -> list[Outcome]:
        """Write changes in batches of ``max_batch_size()``, one transaction per batch.

        A batch that fails is rolled back and retried one record per transaction, so that
        only the bad records fail. Raises ProviderError only when the database is unreachable.

        ``created`` is called with the outcomes (new keys) of the transaction's successful
        inserts after the database assigned the keys and before COMMIT; if it raises, the
        transaction is rolled back (none of its changes is written) and the exception
        propagates.
        """
        ent = self._entity(query)
        if ent.table is None:
            return [
                Outcome(
                    c.ref,
                    False,
                    key=c.key,
                    error="the SELECT query is read-only; use a table name in `query:` to write",
                )
                for c in changes
            ]
        outcomes: list[Outcome | None] = [None] * len(changes)
        for start in range(0, len(changes), self.batch_size):
            batch = list(range(start, min(start + self.batch_size, len(changes))))
            self._apply_batch(ent, changes, batch, outcomes, created)
        return [
            o
            if o is not None
            else Outcome(changes[i].ref, False, key=changes[i].key, error="not applied")
            for i, o in enumerate(outcomes)
        ]

    def _apply_batch(
        self,
        ent: _Entity,
        changes: Sequence[Change],
        batch: list[int],
        outcomes: list[Outcome | None],
        created: CreatedCallback | None,
    ) -> None:
        prepared: list[_Prepared] = []
        for i in batch:
            p = self._prepare(ent, changes[i], i)
            if isinstance(p, Outcome):
                outcomes[i] = p
            else:
                prepared.append(p)
        if not prepared:
            return
        with self._connect() as conn:
            try:
                with conn.begin():
                    done = self._execute(conn, ent, prepared)
                    _announce(created, changes, done)
                for i, o in done.items():
                    outcomes[i] = o
                return
            except _CallbackFailed as failed:
                raise failed.original from None
            except (sa_exc.SQLAlchemyError, ValueError, TypeError) as exc:
                self._raise_if_unavailable(exc)
                log.info(
                    "%s: batch of %d failed (%s); retrying record by record",
                    ent.label,
                    len(prepared),
                    self._message(exc),
                )
            for p in prepared:
                try:
                    with conn.begin():
                        done = self._execute(conn, ent, [p])
                        _announce(created, changes, done)
                    outcomes[p.pos] = done[p.pos]
                except _CallbackFailed as failed:
                    raise failed.original from None
                except (sa_exc.SQLAlchemyError, ValueError, TypeError) as exc:
                    self._raise_if_unavailable(exc)
                    outcomes[p.pos] = Outcome(
                        p.change.ref, False, key=p.change.key, error=self._message(exc)
                    )

    def _prepare(self, ent: _Entity, change: Change, pos: int) -> "_Prepared | Outcome":
        """Check a change and convert its key and values to database values."""
        key_col = ent.key

        def fail(message: str) -> Outcome:
            return Outcome(change.ref, False, key=change.key, error=message)

        if change.op not in ("insert", "update", "delete"):
            return fail(f"unknown operation {change.op!r}")
        key_value = None
        if change.key is not None:
            try:
                key_value = self._key_value(change.key, ent)
            except (ValueError, TypeError, InvalidOperation):
                return fail(
                    f"key {change.key!r} is not a valid {ent.types[key_col.name]} "
                    f"for column {key_col.name}"
                )
        elif change.op != "insert":
            return fail(f"{change.op} needs the record's key")
        row: dict[str, Any] = {}
        if change.op != "delete":
            for name, value in change.values.items():
                col = ent.column(name)
                if col is None:
                    return fail(
                        f"{ent.label} has no column {name!r}{_close(name, list(ent.columns))}"
                    )
                if col.name in ent.read_only:
                    return fail(f"column {col.name!r} is read-only (computed by the database)")
                row[col.name] = self._bind(value, col, ent)
            if change.op == "insert":
                if key_value is not None:
                    row[key_col.name] = key_value
                elif key_col.name in row and row[key_col.name] is None:
                    del row[key_col.name]  # let the database generate it
            elif key_col.name in row and key_str(row[key_col.name]) == key_str(key_value):
                del row[key_col.name]
            mod = ent.description.modified
            if (
                mod
                and mod not in ent.read_only
                and mod not in row
                and (change.op == "insert" or row)
            ):
                mod_col = ent.columns[mod]
                if database_now(self._backend, mod_col.type) is not None:
                    row[mod] = DB_NOW  # stamped by the database's clock, in the statement
                else:
                    row[mod] = self._bind(dt.datetime.now(dt.UTC), mod_col, ent)
        return _Prepared(pos, change, key_value, row)

    def _execute(
        self, conn: Connection, ent: _Entity, prepared: list["_Prepared"]
    ) -> dict[int, Outcome]:
        """Run prepared changes, grouping consecutive changes of the same kind."""
        done: dict[int, Outcome] = {}
        run: list[_Prepared] = []
        for p in [*prepared, None]:
            if run and (p is None or p.change.op != run[0].change.op):
                op = run[0].change.op
                if op == "insert":
                    done.update(self._insert(conn, ent, run))
                elif op == "update":
                    done.update(self._update(conn, ent, run))
                else:
                    done.update(self._delete(conn, ent, run))
                run = []
            if p is not None:
                run.append(p)
        return done

    def _insert(self, conn: Connection, ent: _Entity, run: list["_Prepared"]) -> dict[int, Outcome]:
        assert ent.table is not None
        table, key_col = ent.table, ent.key
        dialect = conn.dialect
        can_return = bool(
            dialect.insert_executemany_returning
            and dialect.insert_executemany_returning_sort_by_parameter_order
        )
        single_pk = list(table.primary_key.columns) == [key_col]
        out: dict[int, Outcome] = {}
        for cols, group in _group_by_columns(run).items():
            stamped = self._stamped(table, cols)
            cols = tuple(c for c in cols if isinstance(c, str))
            rows = [{c: p.row[c] for c in cols} for p in group]
            stmt = table.insert()
            if stamped:
                stmt = stmt.values(stamped)
            keys: list[Any]
            if key_col.name in cols:
                conn.execute(stmt, rows)
                keys = [row[key_col.name] for row in rows]
            elif can_return:
                stmt = stmt.returning(key_col, sort_by_parameter_order=True)
                keys = list(conn.execute(stmt, rows).scalars())
            else:
                keys = []
                for row in rows:
                    pk = conn.execute(stmt, row).inserted_primary_key
                    keys.append(pk[0] if single_pk and pk else None)
            for p, k in zip(group, keys, strict=True):
                out[p.pos] = Outcome(p.change.ref, True, key=None if k is None else key_str(k))
        return out

    def _update(self, conn: Connection, ent: _Entity, run: list["_Prepared"]) -> dict[int, Outcome]:
        assert ent.table is not None
        table, key_col = ent.table, ent.key
        found = self._existing(conn, ent, [p.key for p in run])
        out: dict[int, Outcome] = {}
        todo = []
        for p in run:
            if key_str(p.key) not in found:
                out[p.pos] = Outcome(
                    p.change.ref,
                    False,
                    key=p.change.key,
                    error="record not found (deleted since it was read?)",
                )
            elif not p.row:
                out[p.pos] = Outcome(p.change.ref, True, key=p.change.key)
            else:
                todo.append(p)
        for cols, group in _group_by_columns(todo).items():
            stamped = self._stamped(table, cols)
            cols = tuple(c for c in cols if isinstance(c, str))
            if self._backend in MYSQL_FAMILY and len(group) > 1:
                self._update_joined(conn, table, key_col, cols, stamped, group)
            else:
                params = {c: f"p{i}" for i, c in enumerate(cols)}
                stmt = (
                    table.update()
                    .where(key_col == sa.bindparam("k"))
                    .values({table.c[c]: sa.bindparam(params[c]) for c in cols})
                )
                if stamped:
                    stmt = stmt.values(stamped)
                rows = [{"k": p.key, **{params[c]: p.row[c] for c in cols}} for p in group]
                conn.execute(stmt, rows)
            for p in group:
                new_key = p.row.get(key_col.name, p.key)
                out[p.pos] = Outcome(p.change.ref, True, key=key_str(new_key))
        return out

    def _stamped(self, table: sa.Table, cols: Sequence[Any]) -> dict[str, Any]:
        """The columns of a group stamped by the database's clock -> their SQL."""
        out = {}
        for c in cols:
            if isinstance(c, tuple):  # (name, DB_NOW) from _group_by_columns
                out[c[0]] = database_now(self._backend, table.c[c[0]].type)
        return out

    @staticmethod
    def _update_joined(conn: Connection, table: sa.Table, key_col: Any, cols: Sequence[str],
                       stamped: dict[str, Any], group: list["_Prepared"]) -> None:
        """MySQL/MariaDB: one ``UPDATE t, (SELECT ... UNION ALL SELECT ...) v SET ... WHERE
        t.key = v.k`` per chunk of rows (their drivers send an executemany of UPDATEs as one
        statement per row)."""
        for chunk in _chunks(group, IN_CHUNK):
            selects = [
                sa.select(sa.literal(p.key, key_col.type).label("k"),
                          *[sa.literal(p.row[c], table.c[c].type).label(f"p{i}")
                            for i, c in enumerate(cols)])
                for p in chunk
            ]
            values = sa.union_all(*selects).subquery("l2sync_v")
            stmt = (
                table.update()
                .where(key_col == values.c.k)
                .values({**{table.c[c]: values.c[f"p{i}"] for i, c in enumerate(cols)},
                         **{table.c[c]: expr for c, expr in stamped.items()}})
            )
            conn.execute(stmt)

    def _delete(self, conn: Connection, ent: _Entity, run: list["_Prepared"]) -> dict[int, Outcome]:
        assert ent.table is not None
        keys = [p.key for p in run]
        for chunk in _chunks(keys, IN_CHUNK):
            conn.execute(ent.table.delete().where(ent.key.in_(chunk)))
        return {p.pos: Outcome(p.change.ref, True, key=p.change.key) for p in run}

    def _existing(self, conn: Connection, ent: _Entity, keys: list[Any]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(keys, IN_CHUNK):
            stmt = sa.select(ent.key).where(ent.key.in_(chunk))
            found.update(key_str(k) for k in conn.execute(stmt).scalars())
        return found

    # --- values ------------------------------------------------------------------------------
    def _key_value(self, key: str, ent: _Entity) -> Any:
        ftype = ent.types[ent.key.name]
        if ftype == "integer":
            return int(key.strip())
        if ftype == "float":
            return float(key)
        if ftype == "decimal":
            return Decimal(key.strip())
        if isinstance(ent.key.type, sa.Uuid) and ent.key.type.as_uuid:
            return uuid.UUID(key)
        return self._bind(key, ent.key, ent)

    def _bind(self, value: Any, col: Any, ent: _Entity) -> Any:
        """A Python value as the database value for ``col`` (naive UTC for columns without
        time zone, parsed JSON for JSON columns, text for text columns...)."""
        if value is None:
            return None
        sql_type = col.type
        ftype = ent.types.get(col.name, "string")
        if isinstance(value, str) and ftype != "string":
            value = _parse_text(value, ftype, sql_type)
        if isinstance(value, dt.datetime):
            if isinstance(sql_type, sa.DateTime):
                if sql_type.timezone:
                    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
                return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
            if isinstance(sql_type, sa.Date) and value.time() == dt.time(0):
                return value.date()
        elif isinstance(value, dt.date) and ftype == "datetime":
            tz = dt.UTC if getattr(sql_type, "timezone", False) else None
            return dt.datetime(value.year, value.month, value.day, tzinfo=tz)
        if (
            ftype == "string"
            and not isinstance(value, str)
            and not isinstance(sql_type, sa.LargeBinary | sa.Uuid | sa.Interval | sa.Time)
        ):
            return _to_text(value)
        if ftype == "float" and isinstance(value, Decimal | int) and not isinstance(value, bool):
            return float(value)
        if ftype == "decimal" and isinstance(value, float):
            return Decimal(repr(value))
        if isinstance(sql_type, sa.Uuid) and isinstance(value, str) and sql_type.as_uuid:
            try:
                return uuid.UUID(value)
            except ValueError:
                return value
        return value


class _DbNow:
    """The value of a ``modified`` column that the statement sets to the database's clock."""

    def __repr__(self) -> str:
        return "DB_NOW"


DB_NOW = _DbNow()


class _CallbackFailed(Exception):
    """The ``created`` callback raised: roll back and re-raise ``original`` (not a record
    error to retry record by record)."""

    def __init__(self, original: Exception) -> None:
        super().__init__(str(original))
        self.original = original


def _announce(created: CreatedCallback | None, changes: Sequence[Change],
              done: dict[int, Outcome]) -> None:
    """Call ``created`` with the successful inserts among ``done`` (inside the transaction)."""
    if created is None:
        return
    inserted = [o for i, o in sorted(done.items()) if o.ok and changes[i].op == "insert"]
    if not inserted:
        return
    try:
        created(inserted)
    except Exception as exc:
        raise _CallbackFailed(exc) from exc


@dataclass
class _Prepared:
    """One change ready for the database: its key and row as database values."""

    pos: int
    change: Change
    key: Any
    row: dict[str, Any]


#: SQLAlchemy types whose SQLite result processing parses the stored value (and raises on
#: a bad one); such columns are read as stored and converted by :func:`_from_raw`
_SQLITE_PARSED = (sa.Date, sa.DateTime, sa.Numeric, sa.Boolean, sa.JSON)


def _sqlite_text(data: bytes) -> str | bytes:
    """SQLite TEXT as str; bytes that are not UTF-8 stay bytes (their record is rejected)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.text_factory = _sqlite_text


def _from_raw(value: Any, ftype: str) -> Any:
    """A value as SQLite stored it, as the field type's Python value; a value that does not
    parse is returned as stored, so that the engine rejects its record with the reason."""
    if value is None:
        return None
    try:
        if ftype == "date" and isinstance(value, str):
            try:
                return dt.date.fromisoformat(value.strip())
            except ValueError:
                stamp = dt.datetime.fromisoformat(value.strip())
                return stamp.date() if stamp.time() == dt.time(0) else value
        if ftype == "datetime" and isinstance(value, str):
            return dt.datetime.fromisoformat(value.strip())
        if ftype == "decimal" and not isinstance(value, bool | bytes):
            number = Decimal(repr(value)) if isinstance(value, float) else Decimal(
                str(value).strip())
            return number if number.is_finite() else value
        if ftype == "boolean" and isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        if ftype == "json" and isinstance(value, str):
            return json.loads(value)
    except (ValueError, InvalidOperation, TypeError):
        return value
    return value


def _short(text: str, limit: int = 60) -> str:
    """``text`` on one line, cut to ``limit`` characters (saying how much was cut)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def _scrub(text: str, secret: str | None) -> str:
    if secret and len(secret) >= 3:
        text = text.replace(secret, "***")
    return text


def _resolve_sqlite_path(url: URL, base_dir: Path | None) -> URL:
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return url
    path = Path(db).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return url.set(database=str(path.resolve()))


def _is_generated(table: sa.Table, col: Any, dialect: str) -> bool:
    """True when the database makes the key's value (identity, serial, autoincrement)."""
    if not isinstance(col.type, sa.Integer):
        return False
    if col.identity is not None:
        return True
    pk = list(table.primary_key.columns)
    if dialect == "sqlite":
        # only ``INTEGER PRIMARY KEY`` is an alias of the rowid
        return len(pk) == 1 and pk[0] is col and type(col.type).__name__ == "INTEGER"
    if col.autoincrement is True:
        return True
    default = col.server_default
    return default is not None and "nextval(" in str(getattr(default, "arg", "")).lower()


def _group_by_columns(run: list[_Prepared]) -> dict[tuple[Any, ...], list[_Prepared]]:
    """Changes grouped by the columns they write; a column stamped by the database's clock
    appears as ``(name, DB_NOW)``."""
    groups: dict[tuple[Any, ...], list[_Prepared]] = {}
    for p in run:
        cols = tuple(sorted((c if v is not DB_NOW else (c, DB_NOW) for c, v in p.row.items()),
                            key=lambda c: c if isinstance(c, str) else c[0]))
        groups.setdefault(cols, []).append(p)
    return groups


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _parse_text(value: str, ftype: str, sql_type: Any) -> Any:
    """A text value for a typed column as the column's Python type; unparseable text is
    returned as is so that the database reports the error for that record."""
    text = value.strip()
    try:
        if ftype == "integer" and _INT_RE.match(text):
            return int(text)
        if ftype == "float":
            return float(text)
        if ftype == "decimal":
            return Decimal(text)
        if ftype == "boolean" and text.lower() in TRUE_WORDS | FALSE_WORDS:
            return text.lower() in TRUE_WORDS
        if ftype == "json":
            return json.loads(text)
        if ftype == "datetime":
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if ftype == "date":
            return dt.date.fromisoformat(text)
    except (ValueError, InvalidOperation):
        pass
    return value


def _as_utc(value: Any) -> dt.datetime:
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def _parse_cursor(cursor: str | None) -> dt.datetime | None:
    """The watermark of a cursor; None (a full read) for no cursor or one this provider did
    not write."""
    if not cursor:
        return None
    try:
        data = json.loads(cursor)
        return _as_utc(dt.datetime.fromisoformat(data["watermark"]))
    except (ValueError, TypeError, KeyError):
        log.warning("ignoring a cursor that is not a sql watermark; reading everything")
        return None


def _build_frame(
    rows: Sequence[Sequence[Any]], names: list[str], types: dict[str, str], key: str,
    raw: dict[str, str] | None = None,
) -> pd.DataFrame:
    """A RecordFrame from fetched rows, built column by column (no per-row Python objects);
    ``raw`` columns hold values as stored and are converted here."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    data: dict[str, Any] = {}
    for name, values in zip(names, columns, strict=True):
        ftype = types.get(name, "string")
        if raw and name in raw:
            values = tuple(_from_raw(v, ftype) for v in values)
        data[name] = _column(values, ftype)
    frame = pd.DataFrame(data, columns=names)
    keys = frame[key]
    if len(frame) and keys.isna().any():
        raise ProviderError(
            f"{int(keys.isna().sum())} rows have no value in the key column "
            f"{key!r}; choose a key column without NULLs"
        )
    if pd.api.types.is_integer_dtype(keys.dtype):
        index = pd.Index(keys.to_numpy(dtype=np.int64).astype(str), name=KEY_INDEX)
    else:
        index = pd.Index([key_str(v) for v in keys.to_numpy(dtype=object)], name=KEY_INDEX)
    if index.has_duplicates:
        dup = index[index.duplicated()][0]
        raise ProviderError(
            f"the key column {key!r} is not unique: {dup!r} appears more than "
            "once; choose a unique key column"
        )
    frame.index = index
    return frame


def _column(values: Sequence[Any], ftype: str) -> Any:
    """One column as a pandas array; strings as pandas' string array when they all are."""
    if ftype == "string":
        try:
            return pd.array(values)
        except (TypeError, ValueError):
            pass
    if ftype == "integer" and not all(
        v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values
    ):
        # a REAL or text in an INTEGER column (SQLite): kept as stored, never cast through
        # float64; the engine converts it exactly or rejects its record
        return np.fromiter(values, dtype=object, count=len(values))
    return typed_column(values, ftype)


def _utc_series(series: pd.Series) -> pd.Series:
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert("UTC")
    return pd.to_datetime(series, utc=True, errors="coerce", format="mixed")
