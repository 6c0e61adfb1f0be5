"""The sql provider and the state store on MariaDB (Debian's server, time zone -05:00): one clock
for watermarks, TIMESTAMP in UTC, errors by error code, batched updates, records over 64 KiB;
and the drivers' extras (no server needed)."""

import datetime as dt
import json
import uuid
from collections.abc import Iterator

import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import MARIADB_PASSWORD_ENV
from mariadb_server import MariaDbServer

from l2sync_dagster.engine.plan import PendingInsert
from l2sync_dagster.providers.base import Change, ProviderError, Query
from l2sync_dagster.providers.sql import SqlProvider
from l2sync_dagster.spec.connection_string import ConnectionStringError
from l2sync_dagster.state.store import StateStore

pytestmark = pytest.mark.mariadb


@pytest.fixture
def database(mariadb: MariaDbServer, mariadb_password_env: str) -> Iterator[str]:
    """A fresh database; yields its name."""
    name = f"m_{uuid.uuid4().hex[:10]}"
    admin = mariadb.admin()
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    yield name
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE {name}")
    admin.close()


@pytest.fixture
def app(mariadb: MariaDbServer, database: str) -> Iterator[sa.Engine]:
    """Another application's engine: its sessions keep the server's time zone (-05:00)."""
    engine = sa.create_engine(mariadb.url_with_password(database))
    yield engine
    engine.dispose()


def _provider(mariadb: MariaDbServer, database: str, extra: str = "") -> SqlProvider:
    url = mariadb.url.rsplit("/", 1)[0] + f"/{database}"
    return SqlProvider.from_connection_string(
        f"URL={url};Password=env:{MARIADB_PASSWORD_ENV}{extra}")


def _server_now(app: sa.Engine) -> dt.datetime:
    with app.connect() as conn:
        return conn.exec_driver_sql("SELECT NOW()").scalar_one()


# --- one clock -------------------------------------------------------------------------------
def test_an_application_edit_after_our_write_is_not_skipped_by_the_watermark(
    mariadb: MariaDbServer, database: str, app: sa.Engine
) -> None:
    with app.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100), "
            "updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP "
            "ON UPDATE CURRENT_TIMESTAMP)")
        conn.exec_driver_sql("INSERT INTO orders (name) VALUES ('one'), ('two')")
    p = _provider(mariadb, database)
    q = Query("orders", key="id", modified="updated_at")
    first = p.read(q)
    assert len(first.frame) == 2
    (done,) = p.apply(q, [Change("update", "r1", key="1", values={"name": "ours"})])
    assert done.ok
    second = p.read(q, cursor=first.cursor)  # our write is read back: the watermark moves
    assert second.frame.loc["1", "name"] == "ours"
    with app.begin() as conn:  # the application's edit, stamped by ON UPDATE in its zone
        conn.exec_driver_sql("UPDATE orders SET name = 'theirs' WHERE id = 2")
    third = p.read(q, cursor=second.cursor)
    assert "2" in third.frame.index, "the application's edit was skipped by the watermark"
    assert third.frame.loc["2", "name"] == "theirs"
    # our stamps are the server's wall clock, as the application's are
    with app.connect() as conn:
        ours = conn.exec_driver_sql("SELECT updated_at FROM orders WHERE id = 1").scalar_one()
    assert abs(ours - _server_now(app)) < dt.timedelta(minutes=1)
    p.close()


def test_inserts_are_stamped_by_the_database_clock(
    mariadb: MariaDbServer, database: str, app: sa.Engine
) -> None:
    with app.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, body TEXT, "
            "local_at DATETIME(6), instant_at TIMESTAMP(6) NULL)")
    p = _provider(mariadb, database)
    for column in ("local_at", "instant_at"):
        q = Query("notes", key="id", modified=column)
        (done,) = p.apply(q, [Change("insert", "r", values={"body": column})])
        assert done.ok
    with app.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT body, local_at, instant_at, NOW(6), UTC_TIMESTAMP(6) FROM notes").all()
    by_body = {r[0]: r for r in rows}
    server_local, server_utc = rows[0][3], rows[0][4]
    # DATETIME: the wall clock an application's session writes (the server's -05:00)
    assert abs(by_body["local_at"][1] - server_local) < dt.timedelta(minutes=1)
    # TIMESTAMP: an instant; the application's session shows it in -05:00 too
    assert abs(by_body["instant_at"][2] - server_local) < dt.timedelta(minutes=1)
    assert server_utc - server_local == dt.timedelta(hours=5)
    # and the provider reads the instant as UTC
    frame = p.read(Query("notes", key="id", modified="instant_at")).frame
    instant = frame["_modified"].dropna().iloc[0].to_pydatetime()
    assert abs(instant - server_utc.replace(tzinfo=dt.UTC)) < dt.timedelta(minutes=1)
    p.close()


def test_timestamp_values_are_read_and_written_as_utc(
    mariadb: MariaDbServer, database: str, app: sa.Engine
) -> None:
    with app.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE events (id INT PRIMARY KEY, at TIMESTAMP NULL, title VARCHAR(50))")
        conn.exec_driver_sql("SET time_zone = '+02:00'")
        conn.exec_driver_sql("INSERT INTO events VALUES (1, '2024-06-01 14:00:00', 'noon')")
    p = _provider(mariadb, database)
    q = Query("events", key="id")
    frame = p.read(q).frame
    # 14:00 at +02:00
    assert pd.Timestamp(frame.loc["1", "at"]) == pd.Timestamp("2024-06-01 12:00", tz="UTC")
    written = dt.datetime(2024, 6, 2, 8, 30, tzinfo=dt.UTC)
    (done,) = p.apply(q, [Change("insert", "r", key="2", values={"at": written,
                                                                   "title": "x"})])
    assert done.ok
    with app.connect() as conn:
        conn.exec_driver_sql("SET time_zone = '+00:00'")
        stored = conn.exec_driver_sql("SELECT at FROM events WHERE id = 2").scalar_one()
    assert stored == dt.datetime(2024, 6, 2, 8, 30)
    p.close()


# --- types -----------------------------------------------------------------------------------
def test_boolean_json_and_long_text(mariadb: MariaDbServer, database: str,
                                    app: sa.Engine) -> None:
    with app.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE t (id INT PRIMARY KEY, flag BOOLEAN, n TINYINT, data JSON, "
            "body LONGTEXT)")
    p = _provider(mariadb, database)
    q = Query("t", key="id")
    types = {f.name: f.type for f in p.describe(q).fields}
    assert types == {"id": "integer", "flag": "boolean", "n": "integer", "data": "json",
                     "body": "string"}
    long_text = "ä" * 100_000
    out = p.apply(q, [
        Change("insert", "a", key="1", values={"flag": "true", "n": "3", "data": '{"k": 1}',
                                               "body": long_text}),
        Change("insert", "b", key="2", values={"flag": "false", "data": None}),
    ])
    assert all(o.ok for o in out), out
    frame = p.read(q).frame
    assert frame.loc["1", "flag"] is True or bool(frame.loc["1", "flag"]) is True
    assert not bool(frame.loc["2", "flag"])
    assert frame.loc["1", "data"] == {"k": 1} and frame.loc["1", "body"] == long_text
    with app.connect() as conn:
        assert conn.exec_driver_sql("SELECT flag FROM t ORDER BY id").scalars().all() == [1, 0]
    p.close()


# --- batched updates -------------------------------------------------------------------------
def _updates(app: sa.Engine) -> int:
    with app.connect() as conn:
        rows = conn.exec_driver_sql(
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('Com_update', 'Com_update_multi')").all()
    return sum(int(r[1]) for r in rows)


def test_updates_are_batched(mariadb: MariaDbServer, database: str, app: sa.Engine) -> None:
    with app.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50), qty DECIMAL(10,2), "
            "modified DATETIME(6))")
        conn.exec_driver_sql(
            "INSERT INTO items (id, name) SELECT seq, CONCAT('n', seq) FROM seq_1_to_600")
    p = _provider(mariadb, database)
    q = Query("items", key="id", modified="modified")
    changes = [Change("update", f"r{i}", key=str(i),
                      values={"name": f"new {i}", "qty": None if i % 3 == 0 else i / 4})
               for i in range(1, 601)]
    before = _updates(app)
    assert all(o.ok for o in p.apply(q, changes))
    assert _updates(app) - before <= 3, "one UPDATE statement per row"
    with app.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, name, qty, modified FROM items").all()
    assert len(rows) == 600
    assert all(r[1] == f"new {r[0]}" and r[3] for r in rows)
    assert all((r[2] is None) if r[0] % 3 == 0 else float(r[2]) == r[0] / 4 for r in rows)
    # a bad value fails its record alone (the batch is retried record by record)
    bad = [Change("update", "ok", key="1", values={"name": "fine"}),
           Change("update", "bad", key="2", values={"name": "x" * 60})]
    ok, failed = p.apply(q, bad)
    assert ok.ok and not failed.ok and "too long" in (failed.error or "").lower()
    p.close()


# --- errors ----------------------------------------------------------------------------------
def test_unknown_database_is_not_a_network_problem(mariadb: MariaDbServer,
                                                   mariadb_password_env: str) -> None:
    p = _provider(mariadb, "l2sync_nope")
    with pytest.raises(ProviderError, match="database 'l2sync_nope' does not exist") as info:
        p.verify(Query())
    assert not info.value.transient and "check the host" not in str(info.value)
    p.close()


def test_missing_grant_is_not_a_wrong_password(mariadb: MariaDbServer,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    password = "Pw-" + uuid.uuid4().hex
    user = f"ng_{uuid.uuid4().hex[:8]}"
    admin = mariadb.admin()
    with admin.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
    monkeypatch.setenv("L2SYNC_NG_PW", password)
    url = mariadb.url.replace("sync@", f"{user}@")
    try:
        p = SqlProvider.from_connection_string(f"URL={url};Password=env:L2SYNC_NG_PW")
        with pytest.raises(ProviderError) as info:
            p.verify(Query())
        message = str(info.value)
        assert f"user {user!r} may not use database 'l2sync_test'" in message
        assert "authentication failed" not in message and not info.value.transient
        assert password not in message
        p.close()
        monkeypatch.setenv("L2SYNC_NG_PW", "wrong-" + password)
        p = SqlProvider.from_connection_string(f"URL={url};Password=env:L2SYNC_NG_PW")
        with pytest.raises(ProviderError, match="authentication failed") as info:
            p.verify(Query())
        assert password not in str(info.value) and not info.value.transient
        p.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP USER '{user}'@'127.0.0.1'")
        admin.close()


def test_closed_port_is_transient(mariadb: MariaDbServer, mariadb_password_env: str) -> None:
    url = mariadb.url.replace(f":{mariadb.port}/", ":1/")
    p = SqlProvider.from_connection_string(f"URL={url};Password=env:{MARIADB_PASSWORD_ENV}")
    with pytest.raises(ProviderError, match="cannot reach the database at 127.0.0.1:1") as info:
        p.verify(Query())
    assert info.value.transient and mariadb.password not in str(info.value)
    p.close()


def test_mysql_url_without_driver_uses_pymysql(mariadb: MariaDbServer, database: str) -> None:
    url = f"mysql://sync@127.0.0.1:{mariadb.port}/{database}"
    p = SqlProvider.from_connection_string(f"URL={url};Password=env:{MARIADB_PASSWORD_ENV}")
    assert p.url.drivername == "mysql+pymysql"
    assert "connected" in p.verify(Query())
    p.close()


# --- state store -----------------------------------------------------------------------------
def test_state_store_on_mariadb_keeps_records_over_64_kib(mariadb: MariaDbServer,
                                                          database: str) -> None:
    store = StateStore(mariadb.url_with_password(database))
    big = {"note": "ü" * 70_000, "n": 1}
    store.journal_inserts("c", "run-1", [PendingInsert("p1", "right", "k1", None, 7, big)])
    (pending,) = store.pending_inserts("c")
    assert pending.values == big
    store.start_run("c", "run-1")
    store.start_run("c", "run-2")
    runs = store.runs("c")
    # microseconds kept: two runs in the same second are still in order
    assert [r["run_id"] for r in runs] == ["run-2", "run-1"]
    assert runs[0]["started_at"].microsecond or runs[1]["started_at"].microsecond
    store.close()


def test_state_store_widens_text_columns_of_an_older_store(mariadb: MariaDbServer,
                                                           database: str) -> None:
    engine = sa.create_engine(mariadb.url_with_password(database))
    with engine.begin() as conn:  # what an older version created: TEXT (64 KiB)
        conn.exec_driver_sql(
            "CREATE TABLE l2sync_pending (connection VARCHAR(200) NOT NULL, pair_id VARCHAR(64) "
            "NOT NULL, side VARCHAR(8) NOT NULL, source_key TEXT NOT NULL, target_key TEXT, "
            "expected_hash BIGINT, run_id VARCHAR(64), values_json TEXT, "
            "PRIMARY KEY (connection, pair_id, side))")
    store = StateStore(engine=engine)
    big = {"note": "x" * 200_000}
    store.journal_inserts("c", "run-1", [PendingInsert("p1", "left", "k1", None, 1, big)])
    assert store.pending_inserts("c")[0].values == big
    store.close()


def test_state_store_errors_do_not_echo_the_records(mariadb: MariaDbServer,
                                                    database: str) -> None:
    store = StateStore(mariadb.url_with_password(database))
    secret_ish = "VALUE-" + uuid.uuid4().hex
    too_long_pair = "p" * 100  # pair_id is VARCHAR(64): strict mode refuses it
    with pytest.raises(sa.exc.DBAPIError) as info:
        store.journal_inserts("c", "run-1", [
            PendingInsert(too_long_pair, "left", "k1", None, 1, {"v": secret_ish})])
    assert secret_ish not in str(info.value)
    store.close()


# --- drivers (no server) ---------------------------------------------------------------------
@pytest.mark.parametrize(("url", "extra"), [
    ("mssql://u@db.example.com/crm", "mssql"),
    ("oracle://u@db.example.com/crm", "oracle"),
    ("mysql+mysqldb://u@db.example.com/crm", "mysql"),
])
def test_a_missing_driver_names_the_extra(url: str, extra: str) -> None:
    with pytest.raises(ConnectionStringError) as info:
        SqlProvider.from_connection_string(f"URL={url}")
    assert f"pip install 'l2sync-dagster[{extra}]'" in str(info.value)
    with pytest.raises(ImportError, match=rf"l2sync-dagster\[{extra}\]"):
        StateStore(url)


def test_cursor_survives_json(mariadb: MariaDbServer, database: str, app: sa.Engine) -> None:
    """A DATETIME(6) watermark keeps its microseconds (no row re-read forever, none lost)."""
    with app.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE w (id INT PRIMARY KEY, m DATETIME(6))")
        conn.exec_driver_sql("INSERT INTO w VALUES (1, '2024-01-01 10:00:00.250000'), "
                             "(2, '2024-01-01 10:00:00.500000')")
    p = _provider(mariadb, database)
    q = Query("w", key="id", modified="m")
    cursor = p.read(q).cursor
    assert json.loads(cursor)["watermark"] == "2024-01-01T10:00:00.500000+00:00"
    assert list(p.read(q, cursor=cursor).frame.index) == ["2"]
    p.close()
