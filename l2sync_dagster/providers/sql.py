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

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url

from l2sync_dagster.providers.base import (
    Capability,
    EntityDescription,
    ProviderError,
    Query,
)
from l2sync_dagster.providers.options import ProviderOptions, SecretValue, option
from l2sync_dagster.providers.sql_describe import (
    Entity,
    find_table,
    select_entity,
    short,
    table_entity,
)
from l2sync_dagster.providers.sql_dialect import (
    classify,
    missing_driver_hint,
    prepare_engine,
    with_installed_driver,
)
from l2sync_dagster.providers.sql_read import SqlReads
from l2sync_dagster.providers.sql_statement import (
    SelectStatement,
    StatementError,
    is_table_name,
    parse_select,
)
from l2sync_dagster.providers.sql_values import sqlite_on_connect
from l2sync_dagster.providers.sql_write import SqlWrites
from l2sync_dagster.spec.connection_string import ConnectionString, ConnectionStringError

log = logging.getLogger("l2sync.providers.sql")



class SqlOptions(ProviderOptions):
    """The ``sql`` provider's connection-string options."""

    provider: ClassVar[str] = "sql"
    url: str | None = option("URL", "SQLAlchemy URL without the password (`postgresql://` uses "
                             "psycopg 3; relative SQLite paths are relative to the project)",
                             required=True)
    user: str | None = option("User", "database user (instead of the URL's)")
    password: SecretValue | None = option("Password", "the user's password", secret=True)
    schema_name: str | None = option("Schema", "schema of the tables (default: the user's)")
    batch_size: int = option("BatchSize", "rows per write statement batch", 1000, low=1,
                             high=1_000_000)


DEFAULT_BATCH_SIZE: int = SqlOptions.default("BatchSize")
#: keys per ``IN (...)`` list: far below every database's bound-parameter limit
IN_CHUNK = 500

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


class SqlProvider(SqlReads, SqlWrites):
    """Reads and writes one table (or reads one SELECT) of a SQLAlchemy database.

    This class holds the connection (engine, errors, read-only transactions) and the entity
    cache; :mod:`sql_describe` resolves a query to its entity, :mod:`sql_read` reads and
    :mod:`sql_write` writes."""

    name: ClassVar[str] = "sql"
    options: ClassVar[type[ProviderOptions]] = SqlOptions
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {"lookup", "probe", "close"})
    in_chunk: ClassVar[int] = IN_CHUNK

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
        self._entities: dict[Query, Entity] = {}
        self._backend = self.url.get_backend_name()
        if self._backend == "sqlite":
            sa.event.listen(self.engine, "connect", sqlite_on_connect)

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
        opts: SqlOptions = SqlOptions.parse(cs)
        try:
            url = make_url(opts.url)
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
        if opts.user:
            url = url.set(username=opts.user)
        if opts.password is not None and opts.password.reveal():
            url = url.set(password=opts.password.reveal())
        if url.get_backend_name() == "sqlite":
            url = _resolve_sqlite_path(url, base_dir)
        try:
            return cls(url, schema=opts.schema_name, batch_size=opts.batch_size)
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
    def _entity(self, query: Query) -> Entity:
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
                        ent = select_entity(conn, query, statement)
                    else:
                        ent = table_entity(conn, query, text, self.schema,
                                           self.safe_url)
                except ProviderError:
                    raise
                except sa_exc.SQLAlchemyError as exc:
                    raise self._db_error(f"cannot describe {short(text)!r}", exc) from None
            self._entities[query] = ent
        return ent

    def _statement(self, text: str) -> SelectStatement:
        """The query text parsed as one read-only SELECT; ProviderError naming the problem."""
        try:
            return parse_select(text, self._backend)
        except StatementError as exc:
            raise ProviderError(f"`query:` {short(text)!r}: {exc}") from None

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
                schema, name = find_table(conn, text, self.schema, self.safe_url)
            except ProviderError:
                raise
            except sa_exc.SQLAlchemyError as exc:
                raise self._db_error(
                    f"{self.safe_url}: query {short(text)!r} failed", exc) from None
        label = f"{schema}.{name}" if schema else name
        return f"{self.safe_url}: table {label} found"

    def describe(self, query: Query) -> EntityDescription:
        """Reflect the table (or sample the SELECT): fields, types, key, read-only columns, and
        the read scope (a table: "all"; a SELECT: "filtered" by WHERE/HAVING, "limited" by
        LIMIT/TOP/OFFSET/FETCH, with the clause in ``restriction``)."""
        return self._entity(query).description

    def max_batch_size(self) -> int:
        """``BatchSize`` from the connection string (default 1000)."""
        return self.batch_size

    def close(self) -> None:
        """Dispose of the connection pool."""
        self.engine.dispose()


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


