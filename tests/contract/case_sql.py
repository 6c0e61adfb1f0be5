"""Contract cases for the ``sql`` provider: a SQLite file and the session's PostgreSQL and
MariaDB servers.

The entity is a table ``towns`` with a database-generated integer key ``id``, text columns
``name`` and ``city`` and a ``updated_at`` time (the query's ``modified``). ``user`` edits it
through its own SQLAlchemy connection, as another application would, and stamps
``updated_at`` like that application's trigger would; on MariaDB the server stamps it
(``ON UPDATE CURRENT_TIMESTAMP``, in the server's time zone, -05:00).
"""

import datetime as dt
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from harness import CaseFactory, SideCase

PG_PASSWORD_ENV = "CONTRACT_PG_PASSWORD"
MARIADB_PASSWORD_ENV = "CONTRACT_MARIADB_PASSWORD"


def _table(schema: str | None, server_stamps: bool = False) -> sa.Table:
    stamp = (sa.Column("updated_at", sa.DateTime, nullable=False, server_default=sa.text(
        "CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP")) if server_stamps
        else sa.Column("updated_at", sa.DateTime))
    return sa.Table(
        "towns", sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200)),
        sa.Column("city", sa.String(200)),
        stamp,
        schema=schema,
    )


class SqlUser:
    """Edits the table through a separate engine (not the provider under test)."""

    def __init__(self, engine: sa.Engine, table: sa.Table, server_stamps: bool = False) -> None:
        self.engine = engine
        self.table = table
        #: the database stamps ``updated_at`` itself (ON UPDATE CURRENT_TIMESTAMP)
        self.server_stamps = server_stamps

    def _stamp(self) -> dict[str, object]:
        return {} if self.server_stamps else {"updated_at": self._now()}

    @staticmethod
    def _now() -> dt.datetime:
        return dt.datetime.now(dt.UTC).replace(tzinfo=None)

    def create(self, name: str, city: str) -> str:
        """Insert a row; the database makes the key."""
        with self.engine.begin() as conn:
            result = conn.execute(self.table.insert().values(
                name=name, city=city, **self._stamp()))
            return str(result.inserted_primary_key[0])

    def update(self, key: str, *, name: str | None = None, city: str | None = None) -> None:
        """Change the given fields and the modified time."""
        values: dict[str, object] = self._stamp()
        if name is not None:
            values["name"] = name
        if city is not None:
            values["city"] = city
        with self.engine.begin() as conn:
            conn.execute(self.table.update().where(self.table.c.id == int(key)).values(values))

    def delete(self, key: str) -> None:
        """Delete the row."""
        with self.engine.begin() as conn:
            conn.execute(self.table.delete().where(self.table.c.id == int(key)))

    def records(self) -> dict[str, tuple[str | None, str | None]]:
        """Every row of the table."""
        t = self.table
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.id, t.c.name, t.c.city)).all()
        return {str(r.id): (r.name, r.city) for r in rows}


def _case(case_id: str, engine: sa.Engine, connection_string: str, schema: str | None,
          env: dict[str, str], server_stamps: bool = False) -> SideCase:
    table = _table(schema, server_stamps)
    table.create(engine)
    name = f"{schema}.towns" if schema else "towns"
    columns = "id, name, city, updated_at"
    return SideCase(
        id=case_id,
        provider="sql",
        connection_string=connection_string,
        query="towns",
        filtered_query=f"SELECT {columns} FROM {name} WHERE city = 'in'",
        limited_query=f"SELECT {columns} FROM {name} ORDER BY id LIMIT 2",
        name_field="name",
        city_field="city",
        user=SqlUser(engine, table, server_stamps),
        key="id",
        modified="updated_at",
        env=env,
    )


def sqlite_case(request: pytest.FixtureRequest, tmp_path: Path) -> SideCase:
    """A SQLite file in ``tmp_path``."""
    path = tmp_path / f"towns-{uuid.uuid4().hex[:8]}.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    request.addfinalizer(engine.dispose)
    return _case("sql-sqlite", engine, f"URL=sqlite:///{path}", None, {})


def postgres_case(request: pytest.FixtureRequest, tmp_path: Path) -> SideCase:
    """A fresh schema in the session's PostgreSQL server; the password through env:."""
    server = request.getfixturevalue("postgres")
    engine = sa.create_engine(sa.make_url(server.url).set(password=server.password))
    schema = f"c_{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()

    request.addfinalizer(drop)
    return _case("sql-postgres", engine,
                 f"URL={server.url};Password=env:{PG_PASSWORD_ENV};Schema={schema}", schema,
                 {PG_PASSWORD_ENV: server.password})


def mariadb_case(request: pytest.FixtureRequest, tmp_path: Path) -> SideCase:
    """A fresh database (MariaDB's schema) in the session's MariaDB server; the password
    through env:."""
    server = request.getfixturevalue("mariadb")
    engine = sa.create_engine(server.url_with_password())
    schema = f"c_{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {schema}")

    def drop() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {schema}")
        engine.dispose()

    request.addfinalizer(drop)
    return _case("sql-mariadb", engine,
                 f"URL={server.url};Password=env:{MARIADB_PASSWORD_ENV};Schema={schema}",
                 schema, {MARIADB_PASSWORD_ENV: server.password}, server_stamps=True)


CASES: dict[str, CaseFactory] = {"sql-sqlite": sqlite_case, "sql-postgres": postgres_case,
                                 "sql-mariadb": mariadb_case}
