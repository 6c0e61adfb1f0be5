"""What differs between the databases the ``sql`` provider and the state store talk to.

* **Drivers.** A driver that is not installed is named with the package extra that installs it
  (``pip install 'l2sync-dagster[mysql]'``); ``mysql://`` and ``mariadb://`` without a driver
  use PyMySQL when mysqlclient is not installed, ``mssql://`` pymssql when pyodbc is not.
* **Session time zone.** MySQL and MariaDB convert ``TIMESTAMP`` values from and to the
  session's time zone: every connection sets it to UTC, so that an instant is read and written
  as UTC whatever the server's ``time_zone`` is (PostgreSQL's ``timestamptz`` arrives with its
  offset and needs nothing).
* **The database's clock.** A watermark compares the values of the ``modified`` column, so the
  provider's own writes must be stamped by the clock that stamps everyone else's: the
  database's, in the zone an application's session has (:func:`database_now`).
* **Types** that reflection gets wrong: MySQL/MariaDB ``BOOLEAN`` is ``TINYINT(1)``, MariaDB
  ``JSON`` is ``LONGTEXT`` with a ``json_valid`` check.
* **Errors** classified by the driver's error codes (:func:`classify`), not by their text.
"""

import importlib.util
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

MYSQL_FAMILY = ("mysql", "mariadb")

#: backend -> (extra, the drivers it installs, in the order they are tried)
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mysql": ("mysql", ("pymysql",)),
    "mariadb": ("mysql", ("pymysql",)),
    "mssql": ("mssql", ("pyodbc", "pymssql")),
    "oracle": ("oracle", ("oracledb",)),
}
#: SQLAlchemy driver name -> the module it imports
_DRIVER_MODULES = {
    "mysqldb": "MySQLdb", "pymysql": "pymysql", "mysqlconnector": "mysql.connector",
    "mariadbconnector": "mariadb", "pyodbc": "pyodbc", "pymssql": "pymssql",
    "oracledb": "oracledb", "cx_oracle": "cx_Oracle", "psycopg": "psycopg",
    "psycopg2": "psycopg2", "pg8000": "pg8000",
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def with_installed_driver(url: URL) -> URL:
    """``url`` with a driver that is installed when it names none and SQLAlchemy's default
    is missing (``mysql://`` -> ``mysql+pymysql://`` when only PyMySQL is installed)."""
    backend = url.get_backend_name()
    if "+" in url.drivername or backend not in EXTRAS:
        return url
    default = url.get_dialect().driver
    if _installed(_DRIVER_MODULES.get(default, default)):
        return url
    for driver in EXTRAS[backend][1]:
        if _installed(_DRIVER_MODULES.get(driver, driver)):
            return url.set(drivername=f"{backend}+{driver}")
    return url


def missing_driver_hint(url: URL) -> str | None:
    """What to install when ``url``'s driver is missing; None when it is installed (or the
    backend has no extra)."""
    backend = url.get_backend_name()
    driver = url.get_driver_name()
    module = _DRIVER_MODULES.get(driver, driver)
    if _installed(module):
        return None
    extra = EXTRAS.get(backend)
    if extra is None:
        return f"the {backend} driver {module!r} is not installed (pip install it)"
    name, drivers = extra
    return (f"the {backend} driver {module!r} is not installed: pip install "
            f"'l2sync-dagster[{name}]' (installs {' or '.join(drivers)})")


def set_session_utc(dbapi_conn: Any, _record: Any = None) -> None:
    """On connect (MySQL/MariaDB): the session's time zone is UTC."""
    cur = dbapi_conn.cursor()
    try:
        cur.execute("SET time_zone = '+00:00'")
    finally:
        cur.close()


def prepare_engine(engine: sa.Engine) -> None:
    """Per-connection settings of the dialect (MySQL/MariaDB: session time zone UTC)."""
    if engine.dialect.name in MYSQL_FAMILY:
        sa.event.listen(engine, "connect", set_session_utc)


def database_now(dialect: str, sql_type: Any) -> Any:
    """The SQL for "now" by the database's clock as a value of a column of ``sql_type``, as an
    application's session would write it (its ``DEFAULT CURRENT_TIMESTAMP``), or None where the
    client's clock is the database's (SQLite: a local file) or the column is no timestamp.

    MySQL/MariaDB ``DATETIME`` holds wall-clock time in the zone of the writer's session; this
    provider's sessions are UTC, an application's are in the server's ``time_zone``: the value
    is converted to that zone. A ``TIMESTAMP`` holds an instant (converted from the session's
    UTC)."""
    if not isinstance(sql_type, sa.DateTime) or dialect == "sqlite":
        return None
    aware = bool(getattr(sql_type, "timezone", False))
    if dialect in MYSQL_FAMILY:
        if isinstance(sql_type, sa.TIMESTAMP):
            return sa.literal_column("CURRENT_TIMESTAMP(6)")
        return sa.literal_column("CONVERT_TZ(UTC_TIMESTAMP(6), '+00:00', @@global.time_zone)")
    if dialect == "mssql":
        return sa.literal_column("SYSDATETIMEOFFSET()" if aware else "SYSDATETIME()")
    if dialect == "oracle":
        return sa.literal_column("SYSTIMESTAMP" if aware else "CAST(SYSTIMESTAMP AS TIMESTAMP)")
    return sa.literal_column("CURRENT_TIMESTAMP")


_JSON_CHECK_RE = re.compile(r"json_valid\s*\(\s*`?([^`)]+)`?\s*\)", re.IGNORECASE)


def refine_types(table: sa.Table, conn: sa.Connection) -> None:
    """Correct reflected types: MySQL/MariaDB ``TINYINT(1)`` (``BOOLEAN``) as Boolean, MariaDB
    ``LONGTEXT CHECK (json_valid(c))`` (``JSON``) as JSON."""
    if conn.dialect.name not in MYSQL_FAMILY:
        return
    from sqlalchemy.dialects import mysql

    for col in table.columns:
        if isinstance(col.type, mysql.TINYINT) and getattr(col.type, "display_width", None) == 1:
            col.type = sa.Boolean()
    if not getattr(conn.dialect, "is_mariadb", False):
        return
    # MariaDB's JSON is a column check that reflection does not report
    stmt = sa.text(
        "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS WHERE TABLE_NAME = :t "
        "AND CONSTRAINT_SCHEMA = COALESCE(:s, DATABASE())")
    try:
        checks = conn.execute(stmt, {"t": table.name, "s": table.schema}).scalars().all()
    except sa.exc.SQLAlchemyError:
        checks = []
    for check in checks:
        found = _JSON_CHECK_RE.search(str(check))
        if found and found.group(1) in table.c and isinstance(table.c[found.group(1)].type,
                                                              sa.Text | sa.String):
            table.c[found.group(1)].type = sa.JSON(none_as_null=True)


# --- errors ----------------------------------------------------------------------------------
#: MySQL/MariaDB error numbers
_MYSQL = {
    "auth": {1045, 1698, 1251, 2059},
    "grant": {1044, 1142, 1227},
    "database": {1049},
    "unreachable": {1040, 1053, 1129, 1130, 2002, 2003, 2005, 2006, 2013, 2055},
}
#: PostgreSQL SQLSTATEs (prefix match for classes)
_POSTGRES = {
    "auth": ("28P01", "28000"),
    "grant": ("42501",),
    "database": ("3D000",),
    "unreachable": ("08", "57P03", "53300"),
}
#: SQL Server error numbers
_MSSQL = {"auth": {18456, 18452}, "grant": {916}, "database": {4060},
          "unreachable": {53, 10060, 10061, 20009, 40613}}
#: Oracle error numbers (ORA-)
_ORACLE = {"auth": {1017, 28000, 28001}, "grant": {1045}, "database": {12514, 12505},
           "unreachable": {12541, 12170, 12543, 3113, 3114, 12537}}


def error_code(backend: str, orig: Any) -> int | str | None:
    """The driver's error code of a DBAPI exception: PostgreSQL's SQLSTATE, the error number
    of the others (MySQL ``1049``, SQL Server ``18456``, Oracle ``ORA-01017`` as ``1017``)."""
    if orig is None:
        return None
    if backend == "postgresql":
        for attr in ("sqlstate", "pgcode"):  # psycopg, psycopg2
            value = getattr(orig, attr, None)
            if isinstance(value, str) and value:
                return value
        return None
    errno = getattr(orig, "errno", None)  # mysql-connector
    if isinstance(errno, int):
        return errno
    args = getattr(orig, "args", ())
    if not args:
        return None
    first = args[0]
    if isinstance(first, int) and not isinstance(first, bool):
        return first  # PyMySQL, mysqlclient: (1049, "Unknown database 'x'")
    if isinstance(first, tuple) and first and isinstance(first[0], int):
        return first[0]  # pymssql: ((18456, b"Login failed..."), ...)
    code = getattr(first, "code", None)  # oracledb: an _Error with .code
    if isinstance(code, int):
        return code
    found = re.search(r"\((\d{2,5})\)", " ".join(str(a) for a in args))
    return int(found.group(1)) if found else None  # pyodbc: "[28000] ... (18456)"


def classify(backend: str, exc: BaseException) -> str | None:
    """``"auth"`` (wrong user or password), ``"grant"`` (the user may not use the database),
    ``"database"`` (no such database), ``"unreachable"`` (no server, network, server busy or
    going down: worth retrying) or None (not known) for a database error on connecting."""
    code = error_code(backend, getattr(exc, "orig", None))
    if code is None:
        return None
    if backend in MYSQL_FAMILY:
        table: dict[str, Any] = _MYSQL
    elif backend == "postgresql":
        if not isinstance(code, str):
            return None
        for kind, prefixes in _POSTGRES.items():
            if code.startswith(prefixes):
                return kind
        return None
    elif backend == "mssql":
        table = _MSSQL
    elif backend == "oracle":
        table = _ORACLE
    else:
        return None
    for kind, codes in table.items():
        if code in codes:
            return kind
    return None
