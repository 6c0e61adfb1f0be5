"""The ``sql`` provider prepares a batch of changes column by column (``_prepare_batch``): the
same outcomes, keys, rows (values, their types, the order of the columns), stamps and groups of
columns as preparing each change alone (``_prepare``), and the same exception when that raises;
for mixed values on SQLite, PostgreSQL and MariaDB tables."""

import datetime as dt
import types
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from conftest import MARIADB_PASSWORD_ENV, PG_PASSWORD_ENV
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from l2sync_dagster.providers import sql_write
from l2sync_dagster.providers.base import Change, Outcome, Query
from l2sync_dagster.providers.sql import SqlProvider
from l2sync_dagster.providers.sql_describe import Entity
from l2sync_dagster.providers.sql_write import (
    _columns_of,
    _group_by_columns,
    _Prepared,
    _values_of,
)

NOW = dt.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=dt.UTC)


class _FrozenDatetime(dt.datetime):
    """``datetime`` whose ``now`` is :data:`NOW`: SQLite's stamps are the client's clock, read
    once per change; both paths must see the same clock to compare their rows."""

    @classmethod
    def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
        return NOW if tz is not None else NOW.replace(tzinfo=None)


def _tables(kind: str, schema: str | None) -> list[sa.Table]:
    md = sa.MetaData()
    twice = "char_length(name) * 2" if kind == "mariadb" else "id * 2"
    items = sa.Table(
        "items", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100)),
        sa.Column("amount", sa.Numeric(10, 2)),
        sa.Column("price", sa.Double),
        sa.Column("count", sa.BigInteger),
        sa.Column("active", sa.Boolean),
        sa.Column("born", sa.Date),
        sa.Column("modified", sa.DateTime),
        sa.Column("seen_at", sa.DateTime(timezone=True)),
        sa.Column("data", sa.JSON),
        sa.Column("token", sa.Uuid),
        sa.Column("twice", sa.Integer, sa.Computed(twice, persisted=True)),
        schema=schema,
    )
    coded = sa.Table(
        "coded", md,
        sa.Column("code", sa.String(40), primary_key=True),
        sa.Column("n", sa.Integer),
        sa.Column("label", sa.Text),
        sa.Column("stamp", sa.DateTime(timezone=True)),
        sa.Column("day", sa.Date),
        schema=schema,
    )
    return [items, coded]


QUERIES = [Query("items", modified="modified"), Query("items"),
           Query("coded", key="code", modified="stamp"), Query("coded", key="code")]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres),
                        pytest.param("mariadb", marks=pytest.mark.mariadb)])
def entities(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[tuple[SqlProvider, list[Entity]]]:
    """A provider on a fresh database of each kind, with the entities of :data:`QUERIES`."""
    monkeypatch.setattr(sql_write, "dt", types.SimpleNamespace(datetime=_FrozenDatetime,
                                                               UTC=dt.UTC))
    kind = request.param
    schema = None
    if kind == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'test.db'}")
        cs = f"URL=sqlite:///{tmp_path / 'test.db'}"
        drop = None
    elif kind == "postgresql":
        server = request.getfixturevalue("postgres")
        request.getfixturevalue("pg_password_env")
        engine = sa.create_engine(sa.make_url(server.url).set(password=server.password))
        schema = f"p_{uuid.uuid4().hex[:10]}"
        drop = f"DROP SCHEMA {schema} CASCADE"
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        cs = f"URL={server.url};Password=env:{PG_PASSWORD_ENV};Schema={schema}"
    else:
        maria = request.getfixturevalue("mariadb")
        request.getfixturevalue("mariadb_password_env")
        engine = sa.create_engine(maria.url_with_password())
        schema = f"p_{uuid.uuid4().hex[:10]}"
        drop = f"DROP DATABASE {schema}"
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {schema}")
        cs = f"URL={maria.url};Password=env:{MARIADB_PASSWORD_ENV};Schema={schema}"
    for table in _tables(kind, schema):
        table.create(engine)
    provider = SqlProvider.from_connection_string(cs)
    try:
        yield provider, [provider._entity(q) for q in QUERIES]
    finally:
        provider.engine.dispose()
        if drop:
            with engine.begin() as conn:
                conn.exec_driver_sql(drop)
        engine.dispose()


# names other than a table's columns: other spellings, unknown names, the other table's
ODD_NAMES = ["NAME", "Born", "ID", "Code", "nmae", "zzz", "code", "id"]

offsets = st.builds(dt.timezone, st.timedeltas(min_value=dt.timedelta(hours=-23),
                                               max_value=dt.timedelta(hours=23)))
#: values of one Python type each
KINDS = [
    st.integers(min_value=-(2**70), max_value=2**70) | st.none(),
    st.floats() | st.none(),
    st.decimals(places=3, allow_nan=False) | st.none(),
    st.booleans() | st.none(),
    st.text(max_size=6) | st.none(),
    st.from_regex(r"\s?[+-]?\d{1,3}(\.\d{1,2})?\s?", fullmatch=True),
    st.dates() | st.none(),
    st.datetimes() | st.none(),
    st.datetimes(timezones=st.just(dt.UTC)) | st.none(),
    st.datetimes(timezones=st.just(ZoneInfo("UTC")) | st.just(dt.UTC)).map(
        lambda d: d.replace(fold=1)) | st.datetimes(timezones=st.just(ZoneInfo("UTC"))),
    st.datetimes(timezones=offsets),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2) | st.none(),
    st.uuids() | st.none(),
]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-3, max_value=3),
    st.floats(),
    st.decimals(places=3, allow_nan=False),
    st.decimals(),
    st.text(max_size=6),
    # text that the typed columns parse (numbers, booleans, times...)
    st.from_regex(r"\s?[+-]?\d{1,3}(\.\d{1,2})?\s?", fullmatch=True),
    st.sampled_from(["12", " 7 ", "1.5", "-0", "true", "No", "2024-02-29", "2024-02-29T10:00:00Z",
                     "2024-02-29 10:00:00+02:00", '{"a": [1, null]}', "[1, 2]", "null",
                     "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "tab\there", "back\\slash"]),
    st.from_regex(r"\s?[+-]?\d{1,3}(\.\d{1,2})?\s?", fullmatch=True),
    st.dates().map(dt.date.isoformat),
    st.datetimes(timezones=st.none() | st.just(dt.UTC) | offsets).map(dt.datetime.isoformat),
    st.datetimes(),
    st.datetimes(timezones=st.just(dt.UTC)),
    st.datetimes(timezones=offsets),
    st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2000, 1, 3)).map(
        lambda d: d.replace(hour=0, minute=0, second=0, microsecond=0)),
    st.dates(),
    st.dictionaries(st.text(max_size=3), st.integers() | st.text(max_size=3), max_size=2),
    st.lists(st.integers() | st.none(), max_size=3),
    st.uuids(),
    st.builds(dt.time),
    st.just(b"bytes"),
)
KEYS = st.one_of(st.none(), st.integers(min_value=-3, max_value=9).map(str),
                 st.integers(min_value=0, max_value=9).map(str),
                 st.sampled_from([" 3 ", "abc", "1.0", "", "7", "1e3"]), st.text(max_size=3))
OPS = st.sampled_from(["insert"] * 4 + ["update"] * 3 + ["delete", "upsert"])


def _exact(value: Any) -> Any:
    """A value compared with its type (1, 1.0, True and Decimal(1) are equal in Python)."""
    return type(value), repr(value)


def _view(p: "_Prepared | Outcome") -> Any:
    if isinstance(p, Outcome):
        return "outcome", p
    return (p.pos, id(p.change), _exact(p.key),
            [(name, _exact(value)) for name, value in p.row.items()])


def _groups(prepared: list[Any]) -> list[Any]:
    run = [p for p in prepared if isinstance(p, _Prepared)]
    return [(cols, [p.pos for p in group]) for cols, group in _group_by_columns(run).items()]


def assert_batch_is_per_change(provider: SqlProvider, ent: Entity, changes: list[Change],
                               batch: list[int]) -> None:
    """``_prepare_batch`` gives what ``_prepare`` gives for every change of ``batch``."""
    try:
        want = [provider._prepare(ent, changes[i], i) for i in batch]
    except Exception as exc:  # noqa: BLE001 - the batch must raise the very same
        if currently_in_test_context():
            event(f"the per-change path raises {type(exc).__name__}")
        with pytest.raises(type(exc)) as raised:
            provider._prepare_batch(ent, changes, batch)
        assert str(raised.value) == str(exc)
        return
    # the column-wise path binds the values the per-change path binds: it raises only when
    # that does (and then the batch is prepared change by change)
    got = provider._prepare_columns(ent, changes, batch)
    assert [_view(p) for p in got] == [_view(p) for p in want]
    assert [_view(p) for p in provider._prepare_batch(ent, changes, batch)] == [
        _view(p) for p in want]
    for p in got:
        if isinstance(p, _Prepared) and p.cols is not None:
            assert p.cols == _columns_of(p.row)
    assert _groups(got) == _groups(want)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_batch_prepared_rows_are_the_per_change_rows(entities, data: st.DataObject) -> None:
    provider, ents = entities
    ent = data.draw(st.sampled_from(ents), label="entity")
    # a few sets of names, shared by many changes (a batch is prepared per set of names),
    # mostly of the table's columns (then every change of the set takes the column-wise path)
    own = st.lists(st.sampled_from(list(ent.columns)), unique=True, max_size=6)
    templates = data.draw(st.lists(own, min_size=1, max_size=3), label="templates")
    for names in templates:  # now and then a name that is no column (or a read-only one)
        odd = data.draw(st.sampled_from([None] * 12 + ODD_NAMES), label="odd name")
        if odd is not None and odd not in names:
            names.insert(data.draw(st.integers(min_value=0, max_value=len(names))), odd)
    # each column of a set of names of one kind of value (a bulk load), or of any kinds
    kinds = {(t, name): data.draw(st.sampled_from([VALUES, *KINDS]), label=f"kind of {name}")
             for t, names in enumerate(templates) for name in names}
    changes = []
    for n in range(data.draw(st.integers(min_value=1, max_value=25), label="size")):
        t = data.draw(st.integers(min_value=0, max_value=len(templates) - 1))
        values = {name: data.draw(kinds[t, name]) for name in templates[t]}
        changes.append(Change(data.draw(OPS), f"r{n}", key=data.draw(KEYS), values=values))
    start = data.draw(st.integers(min_value=0, max_value=len(changes) - 1), label="start")
    assert_batch_is_per_change(provider, ent, changes, list(range(start, len(changes))))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_bulk_load_columns_take_the_fast_path_with_the_same_rows(entities, data) -> None:
    """Columns of one type each (a bulk load): most values are kept as they are, and the
    rows are still those of ``_prepare``."""
    provider, ents = entities
    ent = ents[0]
    per_column = {
        "id": st.integers(min_value=1, max_value=10**12),
        "name": st.text(max_size=8) | st.none(),
        "amount": st.decimals(places=2, min_value=-1000, max_value=1000) | st.integers(),
        "price": st.floats(),
        "count": st.integers(),
        "active": st.booleans(),
        "born": st.dates(),
        "modified": st.datetimes() | st.datetimes(timezones=st.just(dt.UTC) | st.just(
            ZoneInfo("UTC"))),
        "seen_at": st.datetimes(timezones=st.just(dt.UTC) | offsets),
        "data": st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    }
    names = data.draw(st.lists(st.sampled_from(list(per_column)), unique=True, min_size=1))
    changes = [
        Change("insert", f"r{n}", key=data.draw(KEYS),
               values={name: data.draw(per_column[name]) for name in names})
        for n in range(data.draw(st.integers(min_value=1, max_value=30)))
    ]
    assert_batch_is_per_change(provider, ent, changes, list(range(len(changes))))


def test_errors_and_marker_values_come_from_the_per_change_path(entities) -> None:
    provider, ents = entities
    ent = ents[0]
    changes = [
        Change("insert", "a", key="1", values={"name": "x", "nmae": "typo"}),
        Change("insert", "b", key="2", values={"name": "y", "twice": 4}),
        Change("update", "c", key="abc", values={"name": "z"}),
        Change("update", "d", key=None, values={"name": "z"}),
        Change("upsert", "e", key="3", values={}),
        Change("insert", "f", key="4", values={"name": "ok"}),
        Change("update", "g", key="5", values={"id": 5}),
        Change("insert", "h", key=None, values={"id": None, "name": "generated"}),
        # a value that is the stamp's marker itself groups as a stamp, as it always did
        Change("insert", "i", key="6", values={"modified": sql_write.DB_NOW}),
        Change("delete", "j", key="7"),
    ]
    assert_batch_is_per_change(provider, ent, changes, list(range(len(changes))))
    got = provider._prepare_batch(ent, changes, list(range(len(changes))))
    assert isinstance(got[0], Outcome) and "did you mean name" in (got[0].error or "")
    assert isinstance(got[1], Outcome) and "read-only" in (got[1].error or "")
    assert isinstance(got[6], _Prepared) and "id" not in got[6].row


def test_a_value_that_cannot_be_bound_raises_as_before(entities) -> None:
    provider, ents = entities
    far = dt.datetime.max.replace(tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    changes = [Change("insert", f"r{n}", key=str(n), values={"modified": far if n == 3 else NOW})
               for n in range(6)]
    with pytest.raises(OverflowError):
        provider._prepare(ents[0], changes[3], 3)
    assert_batch_is_per_change(provider, ents[0], changes, list(range(6)))


@given(rows=st.lists(st.dictionaries(st.sampled_from("abcd"), st.integers(), min_size=4),
                     max_size=5),
       cols=st.lists(st.sampled_from("abcd"), unique=True, max_size=4),
       tail=st.lists(st.integers(), max_size=2).map(tuple))
def test_values_of_a_group(rows: list[dict], cols: list[str], tail: tuple) -> None:
    group = [_Prepared(i, Change("insert", str(i)), None, row) for i, row in enumerate(rows)]
    assert _values_of(group, cols, tail) == [(*(p.row[c] for c in cols), *tail) for p in group]


def test_decimal_keys_and_values(entities) -> None:
    """Numeric values bound by the fast path keep their type: Decimal and int as given."""
    provider, ents = entities
    changes = [Change("insert", f"r{n}", key=str(n), values={"amount": v})
               for n, v in enumerate([Decimal("1.25"), 3, None, Decimal("-0.5")])]
    got = provider._prepare_batch(ents[0], changes, [0, 1, 2, 3])
    assert [type(p.row["amount"]) for p in got if isinstance(p, _Prepared)] == [
        Decimal, int, type(None), Decimal]
    assert_batch_is_per_change(provider, ents[0], changes, [0, 1, 2, 3])
