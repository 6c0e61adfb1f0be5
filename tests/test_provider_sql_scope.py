"""The sql provider's integrity contract on SQLite and PostgreSQL: read scope, lookup outside
the query's WHERE/LIMIT, the ``created`` callback before COMMIT, query sides that cannot write,
and bad stored values that reject their record instead of the read."""

import datetime as dt

import pytest
import sqlalchemy as sa
import test_provider_sql
from test_provider_sql import Db, insert

from l2sync_dagster.providers.base import Change, ProviderError, Query
from l2sync_dagster.providers.sql_statement import StatementError, parse_select

db = test_provider_sql.db  # the SQLite + PostgreSQL + MariaDB fixture


def towns(db: Db) -> tuple[sa.Table, str]:
    """A table of four people in two cities; returns it and its name as a SELECT writes it."""
    table = db.create(
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50)),
        sa.Column("city", sa.String(50)),
        sa.Column("updated_at", sa.DateTime),
        name="towns",
    )
    t = dt.datetime(2024, 1, 1, 10)
    insert(db, table,
           {"name": "a", "city": "in", "updated_at": t},
           {"name": "b", "city": "out", "updated_at": t},
           {"name": "c", "city": "in", "updated_at": t},
           {"name": "d", "city": "out", "updated_at": t})
    return table, f"{db.schema}.towns" if db.schema else "towns"


def count(db: Db, table: sa.Table) -> int:
    with db.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


# --- scope ------------------------------------------------------------------------------------
def test_scope_of_tables_and_selects(db: Db) -> None:
    _, name = towns(db)
    p = db.provider()
    cases = {
        "towns": ("all", None),
        f"SELECT id, name, city FROM {name}": ("all", None),
        f"SELECT id, name FROM {name} WHERE city = 'in'": ("filtered", "WHERE city = 'in'"),
        f"SELECT * FROM {name} ORDER BY id LIMIT 2": ("limited", "LIMIT 2"),
        f"SELECT * FROM {name} WHERE city = 'in' LIMIT 1 OFFSET 1":
            ("limited", "WHERE city = 'in' LIMIT 1 OFFSET 1"),
        f"SELECT * FROM (SELECT * FROM {name} WHERE id > 1) AS s": ("filtered", "WHERE id > 1"),
        f"WITH c AS (SELECT * FROM {name} LIMIT 3) SELECT * FROM c": ("limited", "LIMIT 3"),
        f"SELECT * FROM {name} WHERE id IN (SELECT id FROM {name} WHERE city = 'in')":
            ("filtered", f"WHERE id IN (SELECT id FROM {name} WHERE city = 'in')"),
    }
    for text, (scope, restriction) in cases.items():
        desc = p.describe(Query(text, key="id"))
        assert (desc.scope, desc.restriction) == (scope, restriction), text
    p.close()


def test_scope_of_top_and_fetch_first_as_the_user_wrote_them() -> None:
    top = parse_select("SELECT TOP 5 name FROM accounts WHERE statecode = 0", "mssql")
    assert (top.scope, top.restriction) == ("limited", "TOP 5 WHERE statecode = 0")
    fetch = parse_select("SELECT * FROM t ORDER BY id FETCH FIRST 3 ROWS ONLY", "postgresql")
    assert fetch.scope == "limited" and "FETCH FIRST 3 ROWS ONLY" in str(fetch.restriction)
    long = parse_select("SELECT * FROM t WHERE " + " OR ".join(["a = 1"] * 40), "sqlite")
    assert long.scope == "filtered" and len(long.restriction or "") <= 80


# --- lookup -----------------------------------------------------------------------------------
def test_lookup_finds_records_outside_the_filter_and_the_limit(db: Db) -> None:
    _, name = towns(db)
    p = db.provider()
    filtered = Query(f"SELECT id, name, city FROM {name} WHERE city = 'in'", key="id")
    assert sorted(p.read(filtered).frame.index) == ["1", "3"]
    found = p.lookup(filtered, ["2", "3", "99", "not-a-number"])
    assert sorted(found.index) == ["2", "3"]
    assert found.loc["2", "city"] == "out" and list(found.columns) == ["id", "name", "city"]
    limited = Query(f"SELECT id, name FROM {name} ORDER BY id LIMIT 1", key="id")
    assert list(p.read(limited).frame.index) == ["1"]
    assert sorted(p.lookup(limited, ["1", "2", "4"]).index) == ["1", "2", "4"]
    p.close()


def test_incremental_read_lists_only_keys_in_scope(db: Db) -> None:
    table, name = towns(db)
    p = db.provider()
    q = Query(f"SELECT id, name, city, updated_at FROM {name} WHERE city = 'in'", key="id",
              modified="updated_at")
    first = p.read(q)
    with db.engine.begin() as conn:
        conn.execute(table.update().where(table.c.id == 3).values(
            name="c2", updated_at=dt.datetime(2024, 1, 5)))
        conn.execute(table.delete().where(table.c.id == 1))
    later = p.read(q, cursor=first.cursor)
    assert not later.complete and "3" in later.frame.index
    assert later.present_keys is not None and sorted(later.present_keys) == ["3"]
    p.close()


# --- created callback -------------------------------------------------------------------------
def test_created_sees_generated_keys_before_commit(db: Db) -> None:
    table, _ = towns(db)
    p = db.provider()
    seen: list[tuple[list[str | None], int]] = []

    def created(outcomes) -> None:
        # another application cannot see the rows yet: the transaction is still open
        seen.append(([o.key for o in outcomes], count(db, table)))

    out = p.apply(Query("towns"), [
        Change("insert", "r1", values={"name": "e", "city": "in"}),
        Change("update", "u1", key="2", values={"name": "b2"}),
        Change("insert", "r2", values={"name": "f", "city": "out"}),
    ], created=created)
    assert all(o.ok for o in out)
    assert seen == [([out[0].key, out[2].key], 4)]
    assert count(db, table) == 6
    p.close()


def test_created_that_raises_rolls_the_batch_back(db: Db) -> None:
    table, _ = towns(db)
    before = db.rows(table)
    p = db.provider()

    def created(outcomes) -> None:
        raise RuntimeError("the archive is gone")

    with pytest.raises(RuntimeError, match="the archive is gone"):
        p.apply(Query("towns"), [
            Change("update", "u1", key="2", values={"name": "b2"}),
            Change("insert", "r1", values={"name": "e", "city": "in"}),
        ], created=created)
    assert db.rows(table) == before
    # a bad record makes the batch retry row by row: the callback still guards each insert
    with pytest.raises(RuntimeError, match="the archive is gone"):
        p.apply(Query("towns"), [
            Change("insert", "bad", key="1", values={"name": "dup", "city": "x"}),
            Change("insert", "r1", values={"name": "e", "city": "in"}),
        ], created=created)
    assert db.rows(table) == before
    p.close()


# --- query sides cannot write -----------------------------------------------------------------
WRITES = [
    "WITH x AS (SELECT 1) DELETE FROM {t}",
    "WITH x AS (SELECT 1) UPDATE {t} SET name = 'x'",
    "WITH x AS (SELECT 1) INSERT INTO {t} (name) VALUES ('x')",
    "SELECT id FROM {t}; DELETE FROM {t}",
    "SELECT id INTO stolen FROM {t}",
    "SELECT id FROM {t} FOR UPDATE",
    "DELETE FROM {t}",
]


@pytest.mark.parametrize("text", WRITES)
def test_a_query_that_writes_is_refused_and_changes_nothing(db: Db, text: str) -> None:
    table, name = towns(db)
    before = db.rows(table)
    p = db.provider()
    query = Query(text.format(t=name), key="id")
    for call in (p.verify, p.describe, p.read):
        with pytest.raises(ProviderError, match="query") as err:
            call(query)
        assert len(str(err.value)) < 400
    assert db.rows(table) == before
    p.close()


def test_data_modifying_cte_is_refused_by_the_parser() -> None:
    with pytest.raises(StatementError, match="DELETE"):
        parse_select("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "postgresql")


def test_reads_run_in_a_read_only_transaction(db: Db) -> None:
    table, _ = towns(db)
    p = db.provider()
    with p._reading() as conn, pytest.raises(sa.exc.DBAPIError, match="(?i)read.?only"):
        conn.execute(table.delete())
    assert count(db, table) == 4
    # the pooled connection is writable again for apply
    p.read(Query("towns"))
    out = p.apply(Query("towns"), [Change("delete", "d", key="4")])
    assert out[0].ok and count(db, table) == 3
    p.close()


@pytest.mark.postgres
@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_postgres_function_that_writes_is_stopped_by_read_only(db: Db) -> None:
    # SQLite cannot define functions in SQL; test_reads_run_in_a_read_only_transaction covers it
    table, name = towns(db)
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE FUNCTION {db.schema}.wipe() RETURNS int LANGUAGE sql AS "
                             f"$$ DELETE FROM {name}; SELECT 1 $$")
    p = db.provider()
    with pytest.raises(ProviderError, match="read-only transaction"):
        p.describe(Query(f"SELECT id, {db.schema}.wipe() AS w FROM {name}", key="id"))
    assert count(db, table) == 4
    p.close()


@pytest.mark.mariadb
@pytest.mark.parametrize("db", ["mariadb"], indirect=True)
def test_mariadb_function_that_writes_is_stopped_by_read_only(db: Db) -> None:
    table, name = towns(db)
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE FUNCTION {db.schema}.wipe() RETURNS INT MODIFIES SQL DATA "
                             f"BEGIN DELETE FROM {name}; RETURN 1; END")
    p = db.provider()
    with pytest.raises(ProviderError, match="READ ONLY transaction"):
        p.describe(Query(f"SELECT id, {db.schema}.wipe() AS w FROM {name}", key="id"))
    assert count(db, table) == 4
    p.close()


# --- bad stored values (SQLite stores anything anywhere) -----------------------------------
def test_sqlite_bad_values_are_read_as_stored(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "bad.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, born DATE, seen DATETIME, "
                "amount NUMERIC(10, 2), ok BOOLEAN, n INTEGER, name TEXT)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)", [
        (1, "2020-01-02", "2020-01-02 10:00:00", 1.5, 1, 9007199254740993, "fine"),
        (2, "not a date", "yesterday", "lots", "maybe", 1e20, "x"),
    ])
    con.execute("UPDATE t SET name = CAST(X'FF41' AS TEXT) WHERE id = 2")
    con.commit()
    con.close()
    from l2sync_dagster.providers.sql import SqlProvider

    p = SqlProvider.from_connection_string("URL=sqlite:///bad.db", base_dir=tmp_path)
    frame = p.read(Query("t")).frame
    good, bad = frame.loc["1"], frame.loc["2"]
    assert good["born"] == dt.date(2020, 1, 2) and bool(good["ok"]) is True
    assert int(good["n"]) == 9007199254740993
    assert (bad["born"], bad["seen"], bad["amount"], bad["ok"]) == (
        "not a date", "yesterday", "lots", "maybe")
    assert bad["n"] == 1e20 and bad["name"] == b"\xffA"
    p.close()


def test_sqlite_bad_modified_time_does_not_break_probe_or_incremental_read(tmp_path) -> None:
    import sqlite3

    from l2sync_dagster.providers.sql import SqlProvider

    con = sqlite3.connect(tmp_path / "m.db")
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, updated_at DATETIME)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?)",
                    [(1, "a", "2024-01-01 10:00:00"), (2, "b", "yesterday")])
    con.commit()
    con.close()
    p = SqlProvider.from_connection_string("URL=sqlite:///m.db", base_dir=tmp_path)
    q = Query("t", modified="updated_at")
    assert "yesterday" in p.probe(q)
    first = p.read(q)
    assert first.frame.loc["2", "updated_at"] == "yesterday"
    assert sorted(p.read(q, cursor=first.cursor).present_keys) == ["1", "2"]
    p.close()
