"""Bulk writes of the ``sql`` provider on PostgreSQL: inserts with their keys by one COPY,
updates by COPY into a temporary table and one UPDATE ... FROM; the same outcomes as row by row
(one per change, only the bad records fail, the ``created`` callback before COMMIT, ``modified``
stamped by the database's clock)."""

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
import sqlalchemy as sa
from conftest import PG_PASSWORD_ENV
from postgres_server import PostgresServer

from l2sync_dagster.providers.base import Change, Query
from l2sync_dagster.providers.sql import SqlProvider

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg(postgres: PostgresServer, pg_password_env: str) -> Iterator[tuple[sa.Engine, str]]:
    """An admin engine on a fresh schema holding ``items``, and the provider's string."""
    engine = sa.create_engine(sa.make_url(postgres.url).set(password=postgres.password))
    schema = f"b_{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        conn.exec_driver_sql(
            f"CREATE TABLE {schema}.items (id BIGINT PRIMARY KEY, name TEXT NOT NULL, "
            "amount NUMERIC(10, 2), data JSONB, tags TEXT[], born DATE, "
            "updated_at TIMESTAMP)")
        conn.exec_driver_sql(
            f"CREATE TABLE {schema}.serials (id SERIAL PRIMARY KEY, name TEXT NOT NULL)")
    yield engine, f"URL={postgres.url};Password=env:{PG_PASSWORD_ENV};Schema={schema}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


def _statements(provider: SqlProvider) -> list[str]:
    seen: list[str] = []
    sa.event.listen(provider.engine, "before_cursor_execute",
                    lambda conn, cur, stmt, *a: seen.append(stmt.split()[0].upper()))
    return seen


def _rows(engine: sa.Engine, schema_table: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.exec_driver_sql(
            f"SELECT * FROM {schema_table} ORDER BY id")]


def _schema(cs: str) -> str:
    return cs.rsplit("Schema=", 1)[1]


Q = Query("items", modified="updated_at")


def test_inserts_with_keys_go_in_one_copy_stamped_by_the_database(pg) -> None:
    engine, cs = pg
    p = SqlProvider.from_connection_string(cs)
    seen = _statements(p)
    visible_at_callback: list[int] = []

    def created(outs) -> None:
        with engine.connect() as other:  # another session: nothing committed yet
            visible_at_callback.append(other.exec_driver_sql(
                f"SELECT count(*) FROM {_schema(cs)}.items").scalar_one())
        created_keys.extend(o.key for o in outs)

    created_keys: list[str] = []
    changes = [Change("insert", f"r{i}", key=str(i), values={
        "id": i, "name": f"n{i}", "amount": "1.50", "data": {"a": [i, None]},
        "tags": ["x", "y"], "born": "2024-02-29"}) for i in range(1, 41)]
    with engine.connect() as conn:
        before = conn.exec_driver_sql("SELECT localtimestamp").scalar_one()
    out = p.apply(Q, changes, created=created)
    assert [o.ok for o in out] == [True] * 40 and [o.key for o in out] == [str(i)
                                                                          for i in range(1, 41)]
    assert created_keys == [str(i) for i in range(1, 41)] and visible_at_callback == [0]
    assert "INSERT" not in seen  # one COPY, not an INSERT per row
    rows = _rows(engine, f"{_schema(cs)}.items")
    assert len(rows) == 40
    assert rows[0]["amount"] == Decimal("1.50") and rows[0]["data"] == {"a": [1, None]}
    assert rows[0]["tags"] == ["x", "y"] and rows[0]["born"] == dt.date(2024, 2, 29)
    stamps = {r["updated_at"] for r in rows}
    assert len(stamps) == 1 and before <= stamps.pop()  # one transaction, the database's clock
    p.close()


def test_a_bad_record_in_a_copied_batch_fails_alone(pg) -> None:
    engine, cs = pg
    p = SqlProvider.from_connection_string(cs)
    p.apply(Q, [Change("insert", "old", key="5", values={"id": 5, "name": "old"})])
    changes = [Change("insert", f"r{i}", key=str(i), values={"id": i, "name": f"n{i}"})
               for i in range(1, 11)]
    changes[6] = Change("insert", "bad", key="7", values={"id": 7, "name": None})  # NOT NULL
    out = p.apply(Q, changes)
    failed = {o.ref: o.error for o in out if not o.ok}
    assert set(failed) == {"r5", "bad"}
    assert "duplicate key" in failed["r5"] and "null value" in failed["bad"]
    assert [r["id"] for r in _rows(engine, f"{_schema(cs)}.items")] == [1, 2, 3, 4, 5, 6, 8, 9,
                                                                      10]
    p.close()


def test_updates_in_bulk_through_a_staging_table(pg) -> None:
    engine, cs = pg
    p = SqlProvider.from_connection_string(cs)
    p.apply(Q, [Change("insert", f"r{i}", key=str(i), values={"id": i, "name": f"n{i}"})
                for i in range(1, 231)])
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {_schema(cs)}.items SET updated_at = '2000-01-01'")
    seen = _statements(p)
    changes = [Change("update", f"u{i}", key=str(i), values={"name": f"m{i}", "amount": i})
               for i in range(1, 201)]
    changes.append(Change("update", "gone", key="999", values={"name": "x"}))
    changes.append(Change("update", "bad", key="225", values={"amount": "not a number"}))
    out = p.apply(Q, changes)
    assert [o.ok for o in out] == [True] * 200 + [False, False]
    assert "not found" in out[200].error and "numeric" in out[201].error
    # the batch, its halves down to 16 records, then those one by one: not one per record
    assert seen.count("UPDATE") < 30
    rows = {r["id"]: r for r in _rows(engine, f"{_schema(cs)}.items")}
    assert all(rows[i]["name"] == f"m{i}" and rows[i]["amount"] == i for i in range(1, 201))
    assert rows[225]["name"] == "n225" and rows[225]["updated_at"] == dt.datetime(2000, 1, 1)
    assert all(rows[i]["updated_at"] > dt.datetime(2000, 1, 1) for i in range(1, 201))
    p.close()


def test_generated_keys_come_back_in_order(pg) -> None:
    engine, cs = pg
    p = SqlProvider.from_connection_string(cs)
    out = p.apply(Query("serials"), [Change("insert", f"r{i}", values={"name": f"s{i}"})
                                     for i in range(25)])
    assert all(o.ok for o in out)
    names = {r["id"]: r["name"] for r in _rows(engine, f"{_schema(cs)}.serials")}
    assert [names[int(o.key)] for o in out] == [f"s{i}" for i in range(25)]
    p.close()
