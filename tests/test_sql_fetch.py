"""``sql_fetch.fetch_columns`` returns exactly what SQLAlchemy's rows hold (values and their
Python types), on SQLite, PostgreSQL and MariaDB, for every column type the sql provider and
the state store read, declared and reflected, with NULLs, coerced and textual columns; and
``key_index`` names keys with the very strings of ``key_str``."""

import datetime as dt
import decimal
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from mariadb_server import MariaDbServer
from postgres_server import PostgresServer

from l2sync_dagster import sql_fetch
from l2sync_dagster.providers.sql_values import key_index, key_strs
from l2sync_dagster.sql_fetch import fetch_columns

ROWS = [
    {"id": 1, "big": 2**40, "name": "Ada ü", "body": "x" * 3000,
     "amount": decimal.Decimal("12.345"), "ratio": 0.25, "flag": True, "day": dt.date(2024, 2, 29),
     "stamp": dt.datetime(2024, 3, 1, 12, 30, 5, 123456),
     "stamp_tz": dt.datetime(2024, 3, 1, 12, 30, 5, tzinfo=dt.UTC),
     "clock": dt.time(7, 8, 9), "doc": {"a": [1, 2], "b": None},
     "blob": b"\x00\xff", "guid": uuid.UUID("12345678-1234-5678-1234-567812345678")},
    {"id": 2, "big": None, "name": None, "body": None, "amount": None, "ratio": None,
     "flag": None, "day": None, "stamp": None, "stamp_tz": None, "clock": None, "doc": None,
     "blob": None, "guid": None},
]


def _table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "fetched", metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("big", sa.BigInteger), sa.Column("name", sa.String(50)),
        sa.Column("body", sa.Text), sa.Column("amount", sa.Numeric(12, 3)),
        sa.Column("ratio", sa.Float), sa.Column("flag", sa.Boolean),
        sa.Column("day", sa.Date), sa.Column("stamp", sa.DateTime),
        sa.Column("stamp_tz", sa.DateTime(timezone=True)), sa.Column("clock", sa.Time),
        sa.Column("doc", sa.JSON), sa.Column("blob", sa.LargeBinary),
        sa.Column("guid", sa.Uuid),
    )


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def engine(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[sa.Engine]:
    """An engine of each dialect with the table ``fetched`` holding :data:`ROWS`."""
    if request.param == "sqlite":
        eng = sa.create_engine(f"sqlite:///{tmp_path / 'fetch.db'}")
    elif request.param == "postgresql":
        pg: PostgresServer = request.getfixturevalue("postgres")
        eng = sa.create_engine(pg.url.replace("sync@", f"sync:{pg.password}@"))
    else:
        maria: MariaDbServer = request.getfixturevalue("mariadb")
        admin = maria.admin()
        with admin.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS fetch_test")
        admin.close()
        eng = sa.create_engine(maria.url_with_password("fetch_test"))
    metadata = sa.MetaData()
    table = _table(metadata)
    metadata.drop_all(eng)
    metadata.create_all(eng)
    with eng.begin() as conn:
        conn.execute(table.insert(), ROWS)
    yield eng
    metadata.drop_all(eng)
    eng.dispose()


def _as_sqlalchemy_returns(conn: sa.Connection, stmt: Any) -> list[list[Any]]:
    result = conn.execute(stmt)
    rows = result.fetchall()
    return [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in result.keys()]


def _same(got: list[list[Any]], want: list[list[Any]]) -> None:
    assert got == want
    assert [[type(v) for v in c] for c in got] == [[type(v) for v in c] for c in want]


def _statements(engine: sa.Engine) -> list[Any]:
    declared = _table(sa.MetaData())
    reflected = sa.Table("fetched", sa.MetaData(), autoload_with=engine)
    sub = sa.select(reflected).where(reflected.c.id > 0).subquery()
    return [
        sa.select(declared).order_by(declared.c.id),
        sa.select(reflected).order_by(reflected.c.id),
        sa.select(reflected.c.id, sa.type_coerce(reflected.c.stamp, sa.types.NullType()),
                  (reflected.c.id + 1).label("next")).order_by(reflected.c.id),
        sa.select(sub.c.id, sub.c.day, sub.c.name).order_by(sub.c.id),
        sa.select(declared.c.id).where(declared.c.id > 99),
        sa.text("SELECT id, name, day FROM fetched ORDER BY id"),
    ]


def test_fetched_columns_equal_sqlalchemys_rows(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        for stmt in _statements(engine):
            _same(fetch_columns(conn, stmt), _as_sqlalchemy_returns(conn, stmt))


def test_the_fast_path_is_what_is_compared(engine: sa.Engine,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Typed SELECTs are read from the cursor (else the test above compares SQLAlchemy with
    itself), and the columns with a processor get it applied."""
    taken: list[list[Any] | None] = []
    real = sql_fetch._processors

    def spy(conn: Any, stmt: Any, result: Any) -> Any:
        procs = real(conn, stmt, result)
        taken.append(procs)
        return procs

    monkeypatch.setattr(sql_fetch, "_processors", spy)
    with engine.connect() as conn:
        for stmt in _statements(engine):
            fetch_columns(conn, stmt)
    assert all(p is not None for p in taken[:5]) and taken[5] is None
    if engine.dialect.name == "sqlite":  # dates and booleans are converted from text there
        assert any(p is not None for p in taken[0])


key_values = st.lists(st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.booleans(), st.none(),
    st.floats(allow_nan=False, allow_infinity=False), st.decimals(allow_nan=False,
                                                                  allow_infinity=False),
    st.text(max_size=5), st.dates(), st.integers(-5, 5).map(np.int64)), max_size=8)


@given(st.one_of(key_values, st.lists(st.integers(-(2**63), 2**63 - 1), max_size=8)))
@settings(max_examples=300, deadline=None)
def test_a_key_listing_names_keys_as_the_read_does(values: list[Any]) -> None:
    """``key_index`` (Arrow's cast for integer keys) gives the very strings of ``key_str``:
    else every archived key would look deleted, or none would."""
    fast = key_index(values, "k")
    slow = pd.Index(key_strs(values), name="k")
    assert fast.equals(slow) and list(fast) == list(slow) and fast.dtype == slow.dtype
