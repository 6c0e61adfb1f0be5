"""Hostile input for the sql and file providers, through the ``l2sync`` command line.

Two families, each case a throw-away project (a connection file, a source, an empty target):

- queries: select statements that try to write, lock, smuggle a second statement or break the
  parser. A refused one exits 1 with one short line and leaves source and target unchanged; an
  accepted one (a quote or a comment that only looks dangerous) changes no source data.
- values: one bad value stored in the source (SQLite stores anything anywhere; Parquet has
  uint64). The run exits 3 listing the record's key and the reason, and the other records sync.

Every case asserts: it ends within its timeout, no traceback, a short message. All cases run in
one driver process (``cli_driver.py``) so that the corpus stays fast.
"""

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("cli_driver.py")
CASE_TIMEOUT = 20
PG_ENV = "HOSTILE_PG_PASSWORD"
PEOPLE = [(1, "Ann", "in"), (2, "Bob", "out"), (3, "Cy", "in"), (4, "Di", "out")]


def run_driver(cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Run every case in one ``cli_driver`` process; results by case id."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("L2SYNC_STATE_URL", None)
    proc = subprocess.run([sys.executable, str(DRIVER)], input=json.dumps(cases),
                          capture_output=True, text=True, env=env,
                          timeout=CASE_TIMEOUT * len(cases) + 60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {r["id"]: r for r in json.loads(proc.stdout)}


def connection(left: dict[str, Any], right: dict[str, Any], fields: list[dict[str, str]]
               ) -> str:
    """A one-way connection file (JSON is YAML: no quoting problems with hostile text)."""
    return json.dumps({"direction": "left_to_right", "left": left, "right": right,
                       "mapping": {"auto": False, "fields": fields}}, indent=1)


def target_db(path: Path, columns: str) -> None:
    con = sqlite3.connect(path)
    con.execute(f"CREATE TABLE dst (id INTEGER PRIMARY KEY, src_id INTEGER, {columns})")
    con.commit()
    con.close()


def sqlite_rows(path: Path, table: str) -> list[tuple] | None:
    """Every row of ``table`` (None when the table does not exist)."""
    con = sqlite3.connect(path)
    con.text_factory = bytes
    try:
        return con.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
    except sqlite3.OperationalError:
        return None
    finally:
        con.close()


def assert_clean(result: dict[str, Any]) -> str:
    """Ended in time, no traceback; returns stdout + stderr."""
    text = result["stdout"] + result["stderr"]
    assert result["rc"] not in ("timeout", "crash"), text[-2000:]
    assert result["seconds"] < CASE_TIMEOUT
    assert "Traceback" not in text, text[-3000:]
    return text


def assert_refused(result: dict[str, Any], *words: str) -> None:
    """Exit 1 with one short line on stderr (naming ``words``) and nothing on stdout."""
    assert_clean(result)
    err = result["stderr"].strip()
    assert result["rc"] == 1, (result["rc"], err, result["stdout"][-500:])
    assert "\n" not in err and len(err) < 400, err
    for w in words:
        assert w.lower() in err.lower(), err


# --- queries ----------------------------------------------------------------------------------
#: (id, query, expected: "refused" or "ok", words the message names)
QUERIES: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("cte-delete", "WITH x AS (SELECT 1) DELETE FROM customers", "refused", ("DELETE",)),
    ("cte-delete-returning", "WITH x AS (SELECT 1) DELETE FROM customers RETURNING *",
     "refused", ("DELETE",)),
    ("cte-update", "WITH x AS (SELECT 1) UPDATE customers SET name = 'pwned'", "refused",
     ("UPDATE",)),
    ("cte-update-returning",
     "WITH x AS (SELECT 1) UPDATE customers SET name = 'pwned' RETURNING id, name, city",
     "refused", ("UPDATE",)),
    ("cte-insert", "WITH x AS (SELECT 1) INSERT INTO customers (name) VALUES ('pwned')",
     "refused", ("INSERT",)),
    ("cte-insert-returning", "WITH x AS (SELECT 1) INSERT INTO customers (name, city) "
     "VALUES ('p', 'in') RETURNING id, name, city", "refused", ("INSERT",)),
    ("cte-body-delete", "WITH d AS (DELETE FROM customers RETURNING *) SELECT * FROM d",
     "refused", ("DELETE",)),
    ("two-delete", "SELECT id, name, city FROM customers; DELETE FROM customers", "refused",
     ("2 statements",)),
    ("two-drop", "SELECT * FROM customers; DROP TABLE customers", "refused", ("statements",)),
    ("two-comment-tail", "SELECT * FROM customers;DELETE FROM customers;--", "refused",
     ("statements",)),
    ("two-lowercase", "select * from customers; delete from customers", "refused",
     ("statements",)),
    ("two-parens", "(SELECT * FROM customers); DELETE FROM customers", "refused",
     ("statements",)),
    ("two-where", "SELECT * FROM customers WHERE 1 = 1; UPDATE customers SET name = 'x'",
     "refused", ("statements",)),
    ("two-union", "SELECT * FROM customers UNION ALL SELECT * FROM customers; DELETE FROM "
     "customers", "refused", ("statements",)),
    ("two-block-comment", "SELECT * FROM customers /* ; */ ; DELETE FROM customers",
     "refused", ("statements",)),
    ("tx-delete", "BEGIN; DELETE FROM customers; COMMIT", "refused", ("statements",)),
    ("commit-delete", "COMMIT; DELETE FROM customers", "refused", ("statements",)),
    ("delete", "DELETE FROM customers", "refused", ("DELETE", "not a SELECT")),
    ("delete-returning", "DELETE FROM customers RETURNING *", "refused", ("DELETE",)),
    ("update", "UPDATE customers SET name = 'pwned'", "refused", ("UPDATE",)),
    ("insert", "INSERT INTO customers (name) VALUES ('x')", "refused", ("INSERT",)),
    ("replace", "REPLACE INTO customers (id, name) VALUES (1, 'x')", "refused", ("query",)),
    ("drop", "DROP TABLE customers", "refused", ("DROP",)),
    ("create-as", "CREATE TABLE evil AS SELECT * FROM customers", "refused", ("CREATE",)),
    ("select-into", "SELECT * INTO evil FROM customers", "refused", ("INTO",)),
    ("for-update", "SELECT * FROM customers FOR UPDATE", "refused", ("FOR UPDATE",)),
    ("pragma-writable", "PRAGMA writable_schema = ON", "refused", ("PRAGMA",)),
    ("pragma-query-only-off", "PRAGMA query_only = OFF", "refused", ("PRAGMA",)),
    ("attach", "ATTACH DATABASE 'evil.db' AS evil", "refused", ("query",)),
    ("vacuum-into", "VACUUM INTO 'copy.db'", "refused", ("VACUUM",)),
    ("explain", "EXPLAIN SELECT * FROM customers", "refused", ("EXPLAIN",)),
    ("nested-deep", "SELECT " + "(" * 400 + "1" + ")" * 400 + " AS id", "refused",
     ("nested",)),
    ("huge", "SELECT * FROM customers WHERE " + " OR ".join(["name = 'x'"] * 6000),
     "refused", ("characters long",)),
    ("garbage", "SELECT FROM WHERE ;;; )))", "refused", ("query",)),
    ("no-such-table", "SELECT id, name, city FROM nowhere", "refused", ("nowhere",)),
    ("nul", "SELECT * FROM customers\x00; DELETE FROM customers", "refused", ()),
    ("load-extension", "SELECT id, name, city, load_extension('evil') AS e FROM customers",
     "refused", ()),
    ("long-table-name", "t" * 5000, "refused", ("not found", "more characters")),
    ("table-name-nul", "customers\x00", "refused", ()),
    ("table-name-semicolon", "customers; DROP TABLE customers", "refused", ("statements",)),
    # accepted: they only look dangerous
    ("quote-in-literal", "SELECT id, name, city FROM customers WHERE name <> "
     "'x''; DELETE FROM customers; --'", "ok", ()),
    ("delete-in-comment", "SELECT id, name, city FROM customers -- ; DELETE FROM customers",
     "ok", ()),
    ("delete-in-block-comment", "SELECT id, name, city /* DELETE FROM customers; */ "
     "FROM customers", "ok", ()),
]
#: commands besides `run` for the queries the issue reports
ALSO = {"cte-delete": ("verify", "plan"), "cte-delete-returning": ("verify", "plan"),
        "cte-update": ("verify", "plan"), "cte-insert-returning": ("verify", "plan"),
        "two-delete": ("verify", "plan")}

# PostgreSQL: the same attacks against a server, and writes no parser can see
PG_QUERIES: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("pg-cte-delete", "WITH x AS (SELECT 1) DELETE FROM {s}.customers RETURNING *", "refused",
     ("DELETE",)),
    ("pg-cte-update", "WITH x AS (SELECT 1) UPDATE {s}.customers SET name = 'p' RETURNING *",
     "refused", ("UPDATE",)),
    ("pg-cte-insert", "WITH x AS (SELECT 1) INSERT INTO {s}.customers (name) VALUES ('p') "
     "RETURNING *", "refused", ("INSERT",)),
    ("pg-cte-body-delete", "WITH d AS (DELETE FROM {s}.customers RETURNING *) SELECT * FROM d",
     "refused", ("DELETE",)),
    ("pg-two", "SELECT * FROM {s}.customers; DELETE FROM {s}.customers", "refused",
     ("statements",)),
    ("pg-into", "SELECT * INTO {s}.evil FROM {s}.customers", "refused", ("INTO",)),
    ("pg-for-update", "SELECT * FROM {s}.customers FOR UPDATE", "refused", ("FOR UPDATE",)),
    ("pg-for-share", "SELECT * FROM {s}.customers FOR SHARE", "refused", ("FOR",)),
    ("pg-function-writes", "SELECT id, name, city, {s}.wipe() AS w FROM {s}.customers",
     "refused", ("read-only transaction",)),
    ("pg-nextval", "SELECT id, name, city, nextval('{s}.seq') AS n FROM {s}.customers",
     "refused", ("read-only transaction",)),
    ("pg-dollar-quote", "SELECT id, name, city FROM {s}.customers WHERE name <> "
     "$$'; DELETE FROM {s}.customers; --$$", "ok", ()),
]


def sqlite_source(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT)")
    con.executemany("INSERT INTO customers VALUES (?, ?, ?)", PEOPLE)
    con.commit()
    con.close()


FIELDS = [{"left": "id", "right": "src_id", "type": "integer"},
          {"left": "name", "right": "name", "type": "string"},
          {"left": "city", "right": "city", "type": "string"}]


def query_project(root: Path, left: dict[str, Any]) -> Path:
    (root / "connections").mkdir(parents=True)
    target_db(root / "dst.db", "name TEXT, city TEXT")
    right = {"provider": "sql", "connection_string": "URL=sqlite:///dst.db", "query": "dst"}
    (root / "connections" / "c.yaml").write_text(connection(left, right, FIELDS))
    return root


@pytest.fixture(scope="module")
def query_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cases = []
    roots = {}
    for cid, text, _, _ in QUERIES:
        root = tmp_path_factory.mktemp(f"q-{cid}")
        sqlite_source(root / "src.db")
        query_project(root, {"provider": "sql", "connection_string": "URL=sqlite:///src.db",
                             "query": text, "key": "id"})
        roots[cid] = root
        for cmd in ("run", *ALSO.get(cid, ())):
            cases.append({"id": f"{cid}:{cmd}", "cwd": str(root), "argv": [cmd, "c"],
                          "timeout": CASE_TIMEOUT})
    return {"roots": roots, "results": run_driver(cases)}


@pytest.mark.parametrize("cid,text,expected,words", QUERIES, ids=[q[0] for q in QUERIES])
def test_hostile_query(query_results: dict[str, Any], cid: str, text: str, expected: str,
                       words: tuple[str, ...]) -> None:
    root = query_results["roots"][cid]
    commands = ("run", *ALSO.get(cid, ()))
    for cmd in commands:
        result = query_results["results"][f"{cid}:{cmd}"]
        if expected == "refused":
            assert_refused(result, *words)
        else:
            assert_clean(result)
            assert result["rc"] == 0, result["stderr"]
    assert sqlite_rows(root / "src.db", "customers") == [
        (i, n.encode(), c.encode()) for i, n, c in PEOPLE]
    assert sqlite_rows(root / "src.db", "evil") is None
    assert not (root / "evil.db").exists() and not (root / "copy.db").exists()
    synced = sqlite_rows(root / "dst.db", "dst")
    if expected == "refused":
        assert synced == []
    else:
        assert synced and len(synced) == 4


@pytest.fixture(scope="module")
def pg_results(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> dict[str, Any]:
    server = request.getfixturevalue("postgres")
    admin = sa.create_engine(sa.make_url(server.url).set(password=server.password))
    cases, schemas = [], {}
    for cid, text, _, _ in PG_QUERIES:
        schema = f"h_{uuid.uuid4().hex[:10]}"
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
            conn.exec_driver_sql(f"CREATE TABLE {schema}.customers (id serial PRIMARY KEY, "
                                 "name text, city text)")
            conn.exec_driver_sql(f"CREATE SEQUENCE {schema}.seq")
            conn.exec_driver_sql(f"CREATE FUNCTION {schema}.wipe() RETURNS int LANGUAGE sql "
                                 f"AS $$ DELETE FROM {schema}.customers; SELECT 1 $$")
            for _, name, city in PEOPLE:
                conn.execute(sa.text(f"INSERT INTO {schema}.customers (name, city) "
                                     "VALUES (:n, :c)"), {"n": name, "c": city})
        root = tmp_path_factory.mktemp(f"pg-{cid}")
        query_project(root, {"provider": "sql", "query": text.format(s=schema), "key": "id",
                             "connection_string":
                                 f"URL={server.url};Password=env:{PG_ENV};Schema={schema}"})
        schemas[cid] = (schema, root)
        for cmd in ("run", "verify", "plan"):
            cases.append({"id": f"{cid}:{cmd}", "cwd": str(root), "argv": [cmd, "c"],
                          "env": {PG_ENV: server.password}, "timeout": CASE_TIMEOUT})
    results = run_driver(cases)
    yield {"admin": admin, "schemas": schemas, "results": results,
           "password": server.password}
    with admin.begin() as conn:
        for schema, _ in schemas.values():
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("cid,text,expected,words", PG_QUERIES, ids=[q[0] for q in PG_QUERIES])
def test_hostile_query_postgres(pg_results: dict[str, Any], cid: str, text: str,
                                expected: str, words: tuple[str, ...]) -> None:
    schema, root = pg_results["schemas"][cid]
    for cmd in ("run", "verify", "plan"):
        result = pg_results["results"][f"{cid}:{cmd}"]
        assert pg_results["password"] not in result["stdout"] + result["stderr"]
        if expected == "refused":
            assert_refused(result, *words)
        else:
            assert_clean(result)
            assert result["rc"] == 0, result["stderr"]
    with pg_results["admin"].connect() as conn:
        rows = conn.execute(sa.text(f"SELECT id, name, city FROM {schema}.customers "
                                    "ORDER BY id")).all()
        evil = conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": f"{schema}.evil"}).scalar()
    assert [tuple(r) for r in rows] == PEOPLE and evil is None
    assert len(sqlite_rows(root / "dst.db", "dst") or []) == (0 if expected == "refused" else 4)


# --- values -----------------------------------------------------------------------------------
SQL_COLUMNS = {"name": ("TEXT", "string", "'ok'"), "n": ("INTEGER", "integer", "7"),
               "born": ("DATE", "date", "'2020-01-02'"),
               "seen": ("DATETIME", "datetime", "'2020-01-02 10:00:00'"),
               "amount": ("NUMERIC(10, 2)", "decimal", "1.5"),
               "flag": ("BOOLEAN", "boolean", "1"), "data": ("JSON", "json", "'{\"a\": 1}'")}
#: (id, column, SQL expression stored in the bad record, words of the reason)
SQL_VALUES: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("date-text", "born", "'not a date'", ("born", "not a date")),
    ("date-feb-30", "born", "'2024-02-30'", ("born",)),
    ("date-month-13", "born", "'2024-13-01'", ("born",)),
    ("date-with-time", "born", "'2024-01-01 10:30:00'", ("born", "time of day")),
    ("date-number", "born", "20240101", ("born",)),
    ("datetime-yesterday", "seen", "'yesterday'", ("seen", "yesterday")),
    ("datetime-hour-25", "seen", "'2024-01-01 25:00:00'", ("seen",)),
    ("datetime-bad-offset", "seen", "'2024-01-01T10:00:00+25:00'", ("seen",)),
    ("text-invalid-utf8", "name", "CAST(X'FFFE41' AS TEXT)", ("name", "UTF-8")),
    ("text-truncated-utf8", "name", "CAST(X'41C3' AS TEXT)", ("name", "UTF-8")),
    ("text-lone-continuation", "name", "CAST(X'80' AS TEXT)", ("name", "UTF-8")),
    ("int-real-1e20", "n", "1e20", ("n", "64-bit")),
    ("int-minus-1e19", "n", "-1e19", ("n", "64-bit")),
    ("int-text-beyond-int64", "n", "'9223372036854775808'", ("n", "64-bit")),
    ("int-text-word", "n", "'twelve'", ("n", "twelve")),
    ("int-fraction", "n", "1.5", ("n", "1.5")),
    ("decimal-word", "amount", "'lots'", ("amount", "lots")),
    ("decimal-nan", "amount", "'NaN'", ("amount",)),
    ("bool-word", "flag", "'maybe'", ("flag", "maybe")),
    ("bool-two", "flag", "2", ("flag",)),
    ("json-broken", "data", "'{not json'", ("data",)),
]
#: (id, arrow column, its values (the third is bad), field type, words of the reason)
FILE_VALUES: list[tuple[str, pa.Array, str, tuple[str, ...]]] = [
    ("parquet-uint64-max", pa.array([1, 2, 2**64 - 1, 4], pa.uint64()), "integer",
     ("n", "64-bit")),
    ("parquet-uint64-2-63", pa.array([1, 2, 2**63, 4], pa.uint64()), "integer",
     ("n", "64-bit")),
    ("parquet-text-in-integer", pa.array(["1", "2", "x", "4"]), "integer", ("n", "'x'")),
    ("parquet-float-in-integer", pa.array([1.0, 2.0, 1e300, 4.0]), "integer",
     ("n", "64-bit")),
]
CSV_VALUES: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("csv-int-beyond-int64", "9223372036854775808", "integer", ("n", "64-bit")),
    ("csv-int-exponent", "1e20", "integer", ("n", "64-bit")),
    ("csv-date", "not a date", "date", ("n", "not a date")),
]
EXACT = 9007199254740993  # 2**53 + 1: float64 turns it into ...992


def value_project(root: Path, column: str, expression: str) -> Path:
    """SQLite source with three good records and a bad one (key 3); an empty typed target."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "connections").mkdir()
    cols = ", ".join(f"{c} {t[0]}" for c, t in SQL_COLUMNS.items())
    con = sqlite3.connect(root / "src.db")
    con.execute(f"CREATE TABLE src (id INTEGER PRIMARY KEY, {cols})")
    for key in (1, 2, 3, 4):
        values = ", ".join(expression if key == 3 and c == column else t[2]
                           for c, t in SQL_COLUMNS.items())
        con.execute(f"INSERT INTO src VALUES ({key}, {values})")
    con.execute(f"UPDATE src SET n = {EXACT} WHERE id = 1" if column != "n" else "SELECT 1")
    con.commit()
    con.close()
    target_db(root / "dst.db", cols)
    fields = [{"left": "id", "right": "src_id", "type": "integer"}] + [
        {"left": c, "right": c, "type": t[1]} for c, t in SQL_COLUMNS.items()]
    (root / "connections" / "c.yaml").write_text(connection(
        {"provider": "sql", "connection_string": "URL=sqlite:///src.db", "query": "src"},
        {"provider": "sql", "connection_string": "URL=sqlite:///dst.db", "query": "dst"},
        fields))
    return root


def file_project(root: Path, name: str, ftype: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "connections").mkdir()
    target_db(root / "dst.db", f"n {'DATE' if ftype == 'date' else 'INTEGER'}, label TEXT")
    fields = [{"left": "id", "right": "src_id", "type": "integer"},
              {"left": "n", "right": "n", "type": ftype},
              {"left": "label", "right": "label", "type": "string"}]
    (root / "connections" / "c.yaml").write_text(connection(
        {"provider": "file", "connection_string": f"Path={name}", "key": "id"},
        {"provider": "sql", "connection_string": "URL=sqlite:///dst.db", "query": "dst"},
        fields))
    return root


@pytest.fixture(scope="module")
def value_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("values")
    roots = {}
    for cid, column, expression, _ in SQL_VALUES:
        roots[cid] = value_project(base / cid, column, expression)
    for cid, array, ftype, _ in FILE_VALUES:
        root = roots[cid] = file_project(base / cid, "src.parquet", ftype)
        pq.write_table(pa.table({"id": pa.array([1, 2, 3, 4], pa.int64()), "n": array,
                                 "label": pa.array(["a", "b", "c", "d"])}),
                       root / "src.parquet")
    for cid, bad, ftype, _ in CSV_VALUES:
        root = roots[cid] = file_project(base / cid, "src.csv", ftype)
        good = str(EXACT) if ftype == "integer" else "2020-01-02"
        (root / "src.csv").write_text(
            f"id,n,label\n1,{good},a\n2,{good},b\n3,{bad},c\n4,{good},d\n")
    cases = [{"id": cid, "cwd": str(root), "argv": ["run", "c"], "timeout": CASE_TIMEOUT}
             for cid, root in roots.items()]
    return {"roots": roots, "results": run_driver(cases)}


ALL_VALUES = [(c[0], c[-1]) for c in (*SQL_VALUES, *FILE_VALUES, *CSV_VALUES)]


@pytest.mark.parametrize("cid,words", ALL_VALUES, ids=[c[0] for c in ALL_VALUES])
def test_bad_value_rejects_its_record_only(value_results: dict[str, Any], cid: str,
                                           words: tuple[str, ...]) -> None:
    result = value_results["results"][cid]
    text = assert_clean(result)
    assert result["rc"] == 3, text[-2000:]
    rejected = [line for line in result["stdout"].splitlines() if "│ left │ 3 " in line]
    assert len(rejected) == 1, result["stdout"]
    for w in words:
        assert w.lower() in rejected[0].lower(), rejected[0]
    assert "1 rejected records" in result["stderr"] and len(result["stderr"]) < 300
    synced = sqlite_rows(value_results["roots"][cid] / "dst.db", "dst")
    assert sorted(r[1] for r in synced or []) == [1, 2, 4]


def test_integers_stay_exact(value_results: dict[str, Any]) -> None:
    for cid in ("date-text", "csv-int-exponent"):
        rows = sqlite_rows(value_results["roots"][cid] / "dst.db", "dst") or []
        con = sqlite3.connect(value_results["roots"][cid] / "dst.db")
        got = dict(con.execute("SELECT src_id, n FROM dst").fetchall())
        con.close()
        assert rows and got[1] == EXACT, (cid, got)
