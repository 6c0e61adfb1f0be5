"""``copy_rows`` converts only the columns with a bind processor (JSON, Boolean on psycopg),
leaves None as NULL, passes the other values untouched, and refuses a row of the wrong width."""

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
import sqlalchemy as sa
from postgres_server import PostgresServer

from l2sync_dagster.postgres_copy import copy_rows

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(postgres: PostgresServer) -> Iterator[sa.Engine]:
    """An engine on the test server (psycopg 3)."""
    eng = sa.create_engine(sa.make_url(postgres.url).set(password=postgres.password))
    yield eng
    eng.dispose()


def _table(name: str) -> sa.Table:
    return sa.Table(
        name, sa.MetaData(), sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("name", sa.Text), sa.Column("flag", sa.Boolean),
        sa.Column("data", sa.JSON), sa.Column("amount", sa.Numeric(10, 2)),
        sa.Column("born", sa.Date), sa.Column("at", sa.DateTime))


ROWS = [
    (1, "a", True, {"x": [1, 2]}, Decimal("1.50"), dt.date(2020, 1, 2),
     dt.datetime(2020, 1, 2, 3, 4, 5, 6)),
    (2, None, False, ["y", None], None, None, None),
    (3, "c", None, None, Decimal("-2.25"), dt.date(1999, 12, 31), dt.datetime(2001, 1, 1)),
    (4, "d", True, "text", Decimal("0"), dt.date(2000, 2, 29), dt.datetime(2000, 2, 29)),
]


def test_copy_rows_same_values_as_insert(engine: sa.Engine) -> None:
    """Rows written by COPY read back as the same rows written by INSERT."""
    name = f"c_{uuid.uuid4().hex[:10]}"
    by_copy, by_insert = _table(name), _table(name + "_i")
    by_copy.metadata.create_all(engine)
    by_insert.metadata.create_all(engine)
    cols = [c.name for c in by_copy.columns]
    try:
        with engine.begin() as conn:
            copy_rows(conn, by_copy, cols, [tuple(r) for r in ROWS])
            conn.execute(sa.insert(by_insert), [dict(zip(cols, r, strict=True)) for r in ROWS])
        with engine.connect() as conn:
            got = conn.execute(sa.select(by_copy).order_by(by_copy.c.id)).all()
            want = conn.execute(sa.select(by_insert).order_by(by_insert.c.id)).all()
            raw = conn.exec_driver_sql(f"SELECT data::text FROM {name} ORDER BY id").all()
        assert got == want
        assert [tuple(r) for r in got] == ROWS
        # None is SQL NULL, never run through the JSON processor (which would store JSON null)
        assert [r[0] for r in raw] == ['{"x": [1, 2]}', '["y", null]', None, '"text"']
    finally:
        by_copy.metadata.drop_all(engine)
        by_insert.metadata.drop_all(engine)


def test_copy_rows_refuses_wrong_width(engine: sa.Engine) -> None:
    """A row with fewer values than columns is refused before anything is sent."""
    table = _table(f"c_{uuid.uuid4().hex[:10]}")
    table.metadata.create_all(engine)
    try:
        with engine.begin() as conn, pytest.raises(ValueError):
            copy_rows(conn, table, ["id", "name"], [(1, "a"), (2,)])
    finally:
        table.metadata.drop_all(engine)
