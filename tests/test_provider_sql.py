"""The sql provider against real databases: a SQLite file and the session's PostgreSQL server."""

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import MARIADB_PASSWORD_ENV, PG_PASSWORD_ENV
from mariadb_server import MariaDbServer
from postgres_server import PostgresServer

from l2sync_dagster.providers.base import Change, ProviderError, Query
from l2sync_dagster.providers.sql import SqlProvider
from l2sync_dagster.spec.connection_string import ConnectionStringError

UTC = dt.UTC
T1 = dt.datetime(2024, 1, 1, 10, 0, 0)
T2 = dt.datetime(2024, 1, 2, 10, 0, 0)
T3 = dt.datetime(2024, 1, 3, 10, 0, 0)


@dataclass
class Db:
    """One test database: an admin engine for set-up and checks, and the provider's string."""

    kind: str
    engine: sa.Engine
    connection: str
    base_dir: Path
    schema: str | None = None

    def provider(self, extra: str = "") -> SqlProvider:
        return SqlProvider.from_connection_string(self.connection + extra, base_dir=self.base_dir)

    def create(self, *columns: sa.Column, name: str = "people") -> sa.Table:
        table = sa.Table(name, sa.MetaData(), *columns, schema=self.schema)
        table.create(self.engine)
        return table

    def people(self) -> sa.Table:
        # MariaDB refuses generated columns of an AUTO_INCREMENT column
        twice = "char_length(name) * 2" if self.kind == "mariadb" else "id * 2"
        return self.create(
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(100), nullable=False),
            sa.Column("amount", sa.Numeric(10, 2)),
            sa.Column("price", sa.Double),
            sa.Column("active", sa.Boolean),
            sa.Column("born", sa.Date),
            sa.Column("modified", sa.DateTime),
            sa.Column("data", sa.JSON),
            sa.Column("twice", sa.Integer, sa.Computed(twice, persisted=True)),
        )

    def rows(self, table: sa.Table) -> list[dict]:
        with self.engine.connect() as conn:
            result = conn.execute(sa.select(table).order_by(*table.primary_key.columns))
            return [dict(r._mapping) for r in result]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres),
                        pytest.param("mariadb", marks=pytest.mark.mariadb)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'test.db'}")
        yield Db("sqlite", engine, "URL=sqlite:///test.db", tmp_path)
        engine.dispose()
        return
    if request.param == "mariadb":
        maria: MariaDbServer = request.getfixturevalue("mariadb")
        request.getfixturevalue("mariadb_password_env")
        engine = sa.create_engine(maria.url_with_password())
        schema = f"t_{uuid.uuid4().hex[:10]}"
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {schema}")
        yield Db("mariadb", engine,
                 f"URL={maria.url};Password=env:{MARIADB_PASSWORD_ENV};Schema={schema}",
                 tmp_path, schema)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {schema}")
        engine.dispose()
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    request.getfixturevalue("pg_password_env")
    engine = sa.create_engine(sa.make_url(server.url).set(password=server.password))
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    yield Db(
        "postgresql",
        engine,
        f"URL={server.url};Password=env:{PG_PASSWORD_ENV};Schema={schema}",
        tmp_path,
        schema,
    )
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


@pytest.fixture
def pg_url(postgres: PostgresServer, pg_password_env: str) -> str:
    return f"URL={postgres.url};Password=env:{pg_password_env}"


def insert(db: Db, table: sa.Table, *rows: dict) -> None:
    with db.engine.begin() as conn:
        conn.execute(table.insert(), list(rows))


# --- describe ---------------------------------------------------------------------------------
def test_describe(db: Db) -> None:
    db.people()
    p = db.provider()
    desc = p.describe(Query("people", modified="MODIFIED"))
    assert {f.name: f.type for f in desc.fields} == {
        "id": "integer",
        "name": "string",
        "amount": "decimal",
        "price": "float",
        "active": "boolean",
        "born": "date",
        "modified": "datetime",
        "data": "json",
        "twice": "integer",
    }
    assert all(f.typed for f in desc.fields)
    assert desc.key == "id" and desc.key_generated and desc.writable
    assert desc.modified == "modified"
    assert desc.field("twice").read_only and not desc.field("name").nullable
    assert not desc.field("name").read_only
    with pytest.raises(ProviderError, match="did you mean modified"):
        p.describe(Query("people", modified="modifed"))
    with pytest.raises(ProviderError, match="did you mean name"):
        p.describe(Query("people", key="nam"))
    p.close()


def test_key_without_primary_key(db: Db) -> None:
    db.create(sa.Column("code", sa.String(20)), sa.Column("v", sa.Integer), name="nopk")
    db.create(sa.Column("code", sa.String(20), primary_key=True), name="textpk")
    p = db.provider()
    with pytest.raises(ProviderError, match="set `key:` in the connection"):
        p.describe(Query("nopk"))
    desc = p.describe(Query("nopk", key="code"))
    assert desc.key == "code" and not desc.key_generated
    assert not p.describe(Query("textpk")).key_generated
    p.close()


def test_table_not_found(db: Db) -> None:
    db.people()
    p = db.provider()
    with pytest.raises(ProviderError, match="not found.*did you mean people"):
        p.verify(Query("peeple"))
    with pytest.raises(ProviderError, match="not found"):
        p.describe(Query("peeple"))
    assert "people found" in p.verify(Query("People")).lower()
    p.close()


# --- read -------------------------------------------------------------------------------------
def test_read(db: Db) -> None:
    table = db.people()
    insert(
        db,
        table,
        {
            "id": 1,
            "name": "Ann",
            "amount": Decimal("1.50"),
            "price": 0.5,
            "active": True,
            "born": dt.date(2000, 1, 2),
            "modified": T1,
            "data": {"a": [1, 2]},
        },
        {
            "id": 20,
            "name": "Bob",
            "amount": None,
            "price": None,
            "active": None,
            "born": None,
            "modified": T2,
            "data": None,
        },
    )
    p = db.provider()
    result = p.read(Query("people", modified="modified"))
    frame = result.frame
    assert result.complete and result.present_keys is None
    assert list(frame.index) == ["1", "20"] and frame.index.name == "_key"
    assert list(frame.columns) == [
        "id",
        "name",
        "amount",
        "price",
        "active",
        "born",
        "modified",
        "data",
        "twice",
        "_modified",
    ]
    assert frame.loc["1", "amount"] == Decimal("1.50")
    assert frame.loc["1", "data"] == {"a": [1, 2]} and frame.loc["20", "data"] is None
    assert bool(frame.loc["1", "active"]) and pd.isna(frame.loc["20", "active"])
    assert frame.loc["1", "born"] == dt.date(2000, 1, 2)
    assert frame.loc["20", "twice"] == (6 if db.kind == "mariadb" else 40)
    assert str(frame["_modified"].dt.tz) == "UTC"
    assert frame.loc["1", "_modified"] == pd.Timestamp(T1, tz="UTC")
    assert json.loads(result.cursor) == {"watermark": "2024-01-02T10:00:00+00:00"}
    plain = p.read(Query("people"))
    assert plain.complete and plain.cursor is None and "_modified" not in plain.frame
    p.close()


def test_incremental_read_reveals_deletes(db: Db) -> None:
    table = db.people()
    insert(
        db,
        table,
        {"id": 1, "name": "a", "modified": T1},
        {"id": 2, "name": "b", "modified": T2},
        {"id": 3, "name": "c", "modified": T1},
        {"id": 4, "name": "d", "modified": None},
    )
    p = db.provider()
    q = Query("people", modified="modified")
    first = p.read(q)
    assert first.complete and len(first.frame) == 4
    with db.engine.begin() as conn:
        conn.execute(table.update().where(table.c.id == 3).values(name="c2", modified=T3))
        conn.execute(table.delete().where(table.c.id == 1))
    second = p.read(q, cursor=first.cursor)
    assert not second.complete
    # >= on purpose: row 2 has exactly the watermark and is read again; a row without a
    # modified time (4) is read every time
    assert sorted(second.frame.index) == ["2", "3", "4"]
    assert second.frame.loc["3", "name"] == "c2"
    assert sorted(second.present_keys) == ["2", "3", "4"]
    assert json.loads(second.cursor)["watermark"] == "2024-01-03T10:00:00+00:00"
    third = p.read(q, cursor=second.cursor)
    assert sorted(third.frame.index) == ["3", "4"] and third.cursor == second.cursor
    with db.engine.begin() as conn:
        conn.execute(table.delete())
    empty = p.read(q, cursor=second.cursor)
    assert len(empty.frame) == 0 and empty.cursor == second.cursor and not empty.complete
    assert len(empty.present_keys) == 0
    # a table read without `modified:` is always complete
    assert p.read(Query("people"), cursor=second.cursor).complete
    p.close()


def test_read_window(db: Db) -> None:
    table = db.people()
    insert(
        db, table, {"id": 1, "name": "a", "modified": T1}, {"id": 2, "name": "b", "modified": T2}
    )
    p = db.provider()
    result = p.read(Query("people", modified="modified"), window=(T2.replace(tzinfo=UTC), None))
    # a read limited by a window only holds every record of its window
    assert list(result.frame.index) == ["2"] and result.complete
    p.close()


def test_select_query_is_read_only(db: Db) -> None:
    table = db.people()
    insert(
        db, table, {"id": 1, "name": "a", "modified": T1}, {"id": 2, "name": "b", "modified": T2}
    )
    p = db.provider()
    people = f"{db.schema}.people" if db.schema else "people"
    q = Query(
        f"select id, name, modified from {people} where id > 0 and name like '%'",
        key="id",
        modified="modified",
    )
    desc = p.describe(q)
    assert not desc.writable and desc.key == "id"
    assert {f.name: f.type for f in desc.fields}["id"] == "integer"
    assert list(p.read(q).frame.index) == ["1", "2"]
    incremental = p.read(q, cursor=json.dumps({"watermark": T2.replace(tzinfo=UTC).isoformat()}))
    assert list(incremental.frame.index) == ["2"] and sorted(incremental.present_keys) == ["1", "2"]
    out = p.apply(q, [Change("insert", "r", values={"name": "x"})])
    assert not out[0].ok and "read-only" in out[0].error
    assert "returns 3 columns" in p.verify(q)
    with pytest.raises(ProviderError, match="set `key:`"):
        p.describe(Query("WITH x AS (SELECT 1 AS a) SELECT a FROM x"))
    p.close()


# --- apply ------------------------------------------------------------------------------------
def test_inserts_return_generated_keys_in_order(db: Db) -> None:
    table = db.people()
    p = db.provider(";BatchSize=3")
    q = Query("people", modified="modified")
    names = [f"n{i}" for i in range(7)]
    out = p.apply(q, [Change("insert", f"r{i}", values={"name": n}) for i, n in enumerate(names)])
    assert all(o.ok for o in out) and [o.ref for o in out] == [f"r{i}" for i in range(7)]
    rows = {str(r["id"]): r for r in db.rows(table)}
    assert [rows[o.key]["name"] for o in out] == names
    assert all(r["modified"] is not None for r in rows.values())  # stamped
    p.close()


def test_sqlite_rowid_key_inserts_in_batches(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """`id INTEGER PRIMARY KEY AUTOINCREMENT` as people write it (no NOT NULL): one transaction
    per batch with the generated keys returned in order, never the row-by-row fallback."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE contacts (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                             "name TEXT)")
    p = SqlProvider.from_connection_string("URL=sqlite:///crm.db;BatchSize=4", base_dir=tmp_path)
    caplog.set_level("INFO", logger="l2sync.providers.sql")
    out = p.apply(Query("contacts"), [Change("insert", f"r{i}", values={"name": f"n{i}"})
                                      for i in range(10)])
    assert [o.key for o in out] == [str(i) for i in range(1, 11)]
    assert "record by record" not in caplog.text
    p.close()
    engine.dispose()


def test_insert_with_explicit_key(db: Db) -> None:
    table = db.people()
    coded = db.create(
        sa.Column("code", sa.String(20), primary_key=True), sa.Column("v", sa.Integer), name="coded"
    )
    p = db.provider()
    out = p.apply(Query("people"), [Change("insert", "a", key="100", values={"name": "x"})])
    assert out[0].ok and out[0].key == "100"
    assert db.rows(table)[0]["id"] == 100
    out = p.apply(
        Query("coded"),
        [
            Change("insert", "b", key="A-1", values={"v": 1, "code": "A-1"}),
            Change("insert", "c", key="A-1", values={"v": 2}),
        ],
    )
    assert out[0].ok and out[0].key == "A-1"
    assert not out[1].ok and out[1].error  # duplicate key fails alone
    assert db.rows(coded) == [{"code": "A-1", "v": 1}]
    p.close()


def test_values_are_converted(db: Db) -> None:
    table = db.people()
    p = db.provider()
    aware = dt.datetime(2024, 6, 1, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    values = {
        "name": "Zoë",
        "amount": Decimal("12.34"),
        "price": 0.1 + 0.2,
        "active": False,
        "born": dt.date(1999, 12, 31),
        "modified": aware,
        "data": '{"k": [1, "two"]}',
    }
    out = p.apply(Query("people", modified="modified"), [Change("insert", "a", values=values)])
    assert out[0].ok, out[0]
    row = db.rows(table)[0]
    assert row["amount"] == Decimal("12.34") and row["price"] == 0.1 + 0.2
    assert row["active"] is False and row["born"] == dt.date(1999, 12, 31)
    assert row["modified"] == dt.datetime(2024, 6, 1, 12, 30)  # naive UTC
    assert row["data"] == {"k": [1, "two"]}
    p.close()


def test_update_only_given_columns(db: Db) -> None:
    table = db.people()
    insert(
        db,
        table,
        {"id": 1, "name": "a", "price": 1.5, "modified": T1},
        {"id": 2, "name": "b", "price": 2.5, "modified": T1},
    )
    p = db.provider()
    out = p.apply(
        Query("people", modified="modified"),
        [
            Change("update", "u1", key="1", values={"name": "A"}),
            Change("update", "u2", key="2", values={"price": 3.5, "modified": T2}),
            Change("update", "u3", key="99", values={"name": "nobody"}),
        ],
    )
    assert [(o.ok, o.key) for o in out] == [(True, "1"), (True, "2"), (False, "99")]
    assert out[2].error == "record not found (deleted since it was read?)"
    one, two = db.rows(table)
    assert (one["name"], one["price"]) == ("A", 1.5) and one["modified"] > T2  # stamped now
    assert (two["name"], two["price"], two["modified"]) == ("b", 3.5, T2)
    p.close()


def test_delete(db: Db) -> None:
    table = db.people()
    insert(db, table, {"id": 1, "name": "a"}, {"id": 2, "name": "b"})
    p = db.provider()
    out = p.apply(
        Query("people"), [Change("delete", "d1", key="1"), Change("delete", "d2", key="7")]
    )
    assert all(o.ok for o in out) and [o.key for o in out] == ["1", "7"]
    assert [r["id"] for r in db.rows(table)] == [2]
    p.close()


def test_one_bad_record_fails_alone(db: Db) -> None:
    table = db.people()
    insert(db, table, {"id": 1, "name": "a"})
    p = db.provider()
    out = p.apply(
        Query("people"),
        [
            Change("insert", "good1", values={"name": "x"}),
            Change("insert", "bad", values={"name": None}),
            Change("insert", "good2", values={"name": "y"}),
            Change("update", "bad2", key="1", values={"name": None}),
            Change("update", "bad3", key="1", values={"nope": 1}),
            Change("update", "bad4", key="abc", values={"name": "z"}),
            Change("delete", "good3", key="1"),
        ],
    )
    ok = {o.ref: o.ok for o in out}
    assert ok == {
        "good1": True,
        "bad": False,
        "good2": True,
        "bad2": False,
        "bad3": False,
        "bad4": False,
        "good3": True,
    }
    errors = {o.ref: o.error for o in out}
    assert "null" in errors["bad"].lower() and "null" in errors["bad2"].lower()
    assert "nope" in errors["bad3"] and "integer" in errors["bad4"]
    assert sorted(r["name"] for r in db.rows(table)) == ["x", "y"]
    p.close()


def test_identifiers_are_quoted_and_values_bound(db: Db) -> None:
    name = 'odd "name" t'
    table = db.create(
        sa.Column("my id", sa.String(40), primary_key=True),
        sa.Column("it's", sa.Text),
        sa.Column("50%", sa.Text),
        name=name,
    )
    victim = db.create(sa.Column("id", sa.Integer, primary_key=True), name="x")
    p = db.provider()
    q = Query(name)
    evil = "'; DROP TABLE x; --"
    out = p.apply(
        q,
        [
            Change("insert", "a", key=evil, values={"it's": evil, "50%": "%s %(x)s"}),
            Change("insert", "b", key='k"2', values={"it's": "plain"}),
        ],
    )
    assert all(o.ok for o in out), out
    assert p.apply(q, [Change("update", "u", key='k"2', values={"it's": evil})])[0].ok
    frame = p.read(q).frame
    assert frame.loc[evil, "it's"] == evil and frame.loc['k"2', "it's"] == evil
    assert frame.loc[evil, "50%"] == "%s %(x)s"
    assert sa.inspect(db.engine).has_table("x", schema=db.schema)
    assert db.rows(victim) == []
    assert p.apply(q, [Change("delete", "d", key=evil)])[0].ok
    assert [r["my id"] for r in db.rows(table)] == ['k"2']
    p.close()


@pytest.mark.postgres
def test_schema_qualified_table(postgres: PostgresServer, pg_url: str) -> None:
    engine = sa.create_engine(sa.make_url(postgres.url).set(password=postgres.password))
    with engine.begin() as conn:
        conn.exec_driver_sql('CREATE SCHEMA IF NOT EXISTS "Sales Dept"')
        conn.exec_driver_sql('CREATE TABLE "Sales Dept".orders (id serial PRIMARY KEY, v text)')
    try:
        p = SqlProvider.from_connection_string(pg_url)
        assert p.describe(Query('"Sales Dept".orders')).key_generated
        out = p.apply(Query("Sales Dept.orders"), [Change("insert", "a", values={"v": "x"})])
        assert out[0].ok and out[0].key == "1"
        p.close()
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql('DROP SCHEMA "Sales Dept" CASCADE')
        engine.dispose()


# --- connection strings and secrets -----------------------------------------------------------
def test_connection_string_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConnectionStringError, match="put the password in Password=env:VAR") as e:
        SqlProvider.from_connection_string("URL=postgresql://u:hunter2@localhost/db")
    assert "hunter2" not in str(e.value)
    with pytest.raises(ConnectionStringError, match="never the secret itself") as e:
        SqlProvider.from_connection_string("URL=postgresql://u@localhost/db;Password=hunter2")
    assert "hunter2" not in str(e.value)
    monkeypatch.delenv("L2SYNC_NO_SUCH_VAR", raising=False)
    with pytest.raises(ConnectionStringError, match="L2SYNC_NO_SUCH_VAR"):
        SqlProvider.from_connection_string(
            "URL=postgresql://u@localhost/db;Password=env:L2SYNC_NO_SUCH_VAR"
        )
    with pytest.raises(ConnectionStringError, match="unknown key Database"):
        SqlProvider.from_connection_string("URL=sqlite:///a.db;Database=x")
    with pytest.raises(ConnectionStringError, match="missing required key URL"):
        SqlProvider.from_connection_string("Schema=x")
    with pytest.raises(ConnectionStringError, match="BatchSize"):
        SqlProvider.from_connection_string("URL=sqlite:///a.db;BatchSize=0")
    with pytest.raises(ConnectionStringError, match="not a SQLAlchemy URL"):
        SqlProvider.from_connection_string("URL=not a url")


def test_url_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = SqlProvider.from_connection_string("URL=sqlite:///sub/a.db;BatchSize=5", base_dir=tmp_path)
    assert p.url.database == str(tmp_path / "sub" / "a.db") and p.max_batch_size() == 5
    with pytest.raises(ProviderError, match="a.db does not exist"):
        p.verify(Query("people"))
    assert not (tmp_path / "sub").exists()
    p.close()
    monkeypatch.setenv("L2SYNC_TEST_SECRET", "s3cr3t-value")
    p = SqlProvider.from_connection_string(
        "URL=postgresql://old@db.example.com/crm;User=new;Password=env:L2SYNC_TEST_SECRET"
    )
    assert p.url.username == "new" and p.url.password == "s3cr3t-value"
    assert p.engine.dialect.driver == "psycopg"
    for text in (repr(p), str(p), p.safe_url, repr(p.engine), repr(p.url)):
        assert "s3cr3t-value" not in text
    p.close()


@pytest.mark.postgres
def test_wrong_password_is_not_shown(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "Wrong-" + uuid.uuid4().hex
    monkeypatch.setenv("L2SYNC_WRONG_PW", wrong)
    p = SqlProvider.from_connection_string(f"URL={postgres.url};Password=env:L2SYNC_WRONG_PW")
    with pytest.raises(ProviderError) as info:
        p.verify(Query("people"))
    message = str(info.value)
    assert "authentication failed" in message and not info.value.transient
    assert wrong not in message and wrong not in repr(p)
    assert postgres.password not in message
    p.close()


@pytest.mark.postgres
def test_unreachable_server_is_transient(postgres: PostgresServer, pg_url: str) -> None:
    port = str(postgres.port)
    closed = pg_url.replace(f":{port}/", ":1/")
    p = SqlProvider.from_connection_string(closed)
    with pytest.raises(ProviderError, match="cannot reach the database at 127.0.0.1:1") as info:
        p.verify(Query("people"))
    assert info.value.transient
    assert postgres.password not in str(info.value)
    p.close()


def test_verify(db: Db) -> None:
    db.people()
    p = db.provider()
    assert "people found" in p.verify(Query("people"))
    assert "connected" in p.verify(Query())
    p.close()


def test_read_many_rows_in_one_frame(tmp_path: Path) -> None:
    """200,000 rows read whole, in key order, values intact (speed is bench/'s business)."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'big.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE big (id INTEGER PRIMARY KEY, name TEXT, n INTEGER, x REAL, "
            "modified DATETIME)"
        )
        conn.exec_driver_sql(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 200000) "
            "INSERT INTO big SELECT i, 'name ' || i, i % 7, i * 0.5, "
            "'2024-01-01 00:00:00.000000' FROM s"
        )
    engine.dispose()
    p = SqlProvider.from_connection_string("URL=sqlite:///big.db", base_dir=tmp_path)
    frame = p.read(Query("big", modified="modified")).frame
    assert len(frame) == 200_000 and frame.index[-1] == "200000"
    assert frame.loc["199999", "name"] == "name 199999" and frame["n"].sum() > 0
    p.close()


@pytest.mark.postgres
def test_wrong_database_or_role(postgres: PostgresServer, pg_url: str) -> None:
    p = SqlProvider.from_connection_string(pg_url.replace("/l2sync_test", "/l2sync_nope"))
    with pytest.raises(ProviderError, match="database 'l2sync_nope' does not exist") as info:
        p.verify(Query())
    assert not info.value.transient
    p.close()
    p = SqlProvider.from_connection_string(pg_url + ";User=nobody")
    with pytest.raises(ProviderError, match="authentication failed for user 'nobody'"):
        p.verify(Query())
    p.close()


@pytest.mark.postgres
def test_watermark_uses_the_database_clock_on_postgres(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server whose sessions are in New York: ``timestamp`` columns hold New York wall time
    (``DEFAULT now()``); our own writes must be stamped by that clock too, or the watermark
    runs five hours ahead and skips the application's next edit."""
    role, password = f"tz_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = sa.create_engine(sa.make_url(postgres.url).set(
        username="postgres", password=postgres.superuser_password))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.exec_driver_sql(f"ALTER ROLE {role} SET timezone = 'America/New_York'")
        conn.exec_driver_sql(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
    app = sa.create_engine(sa.make_url(postgres.url).set(username=role, password=password))
    try:
        with app.begin() as conn:
            conn.exec_driver_sql(
                f"CREATE TABLE {role}.orders (id SERIAL PRIMARY KEY, name TEXT, "
                "updated_at TIMESTAMP NOT NULL DEFAULT now())")
            conn.exec_driver_sql(f"INSERT INTO {role}.orders (name) VALUES ('one'), ('two')")
        monkeypatch.setenv("L2SYNC_TZ_PW", password)
        p = SqlProvider.from_connection_string(
            f"URL={postgres.url};User={role};Password=env:L2SYNC_TZ_PW;Schema={role}")
        q = Query("orders", key="id", modified="updated_at")
        first = p.read(q)
        assert p.apply(q, [Change("update", "r", key="1", values={"name": "ours"})])[0].ok
        second = p.read(q, cursor=first.cursor)
        with app.begin() as conn:
            conn.exec_driver_sql(
                f"UPDATE {role}.orders SET name = 'theirs', updated_at = now() WHERE id = 2")
        third = p.read(q, cursor=second.cursor)
        assert "2" in third.frame.index, "the application's edit was skipped by the watermark"
        p.close()
    finally:
        app.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {role} CASCADE")
            conn.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()
