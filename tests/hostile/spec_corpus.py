"""Hostile inputs for connection files, connection strings and select statements, and a driver
that runs a whole family in one process.

``python spec_corpus.py <family>`` runs every case of the family through ``l2sync``'s ``main``
in-process (output captured, a timer per case), each in a fresh project holding a SQLite target
and a CSV source, and prints one JSON object per case: exit code, output, time, whether the
target changed and whether the secret marker reached the state store. The select family also
calls the Exchange and OData select parsers directly (they need no server).
``test_hostile_spec.py`` asserts on the results.
"""

import contextlib
import io
import json
import os
import signal
import sqlite3
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARKER = "S3CR3T-MARKER"
NAME = "c"
FILE = f"{NAME}.yaml"

SOURCE_CSV = "id,name,email\n1,Ada,ada@example.com\n2,Grace,grace@example.com\n"
TARGET_ROWS = [(1, "Alan", "alan@example.com"), (2, "Edsger", "edsger@example.com")]

LEFT = 'provider: file\n  connection_string: "Path=data/source.csv"\n  key: id'
RIGHT = 'provider: sql\n  connection_string: "URL=sqlite:///data/target.db"\n  query: people\n' \
        '  key: id'
BASE = f"direction: left_to_right\nleft:\n  {LEFT}\nright:\n  {RIGHT}\nmatch_on: [email]\n"


@dataclass(frozen=True)
class Case:
    """One hostile input.

    ``refused``: True when the CLI must exit non-zero, False when it must succeed, None when
    either is acceptable (the other assertions still hold). ``names``: texts the error must
    contain besides the file name; ``line``: the line the error must name.
    """

    id: str
    text: str | bytes = ""
    args: tuple[str, ...] = ("plan", NAME)
    refused: bool | None = True
    names: tuple[str, ...] = ()
    line: int | None = None
    timeout: float = 5.0
    env: dict[str, str] = field(default_factory=dict)
    parser: str | None = None  # "exchange" / "odata": call that select parser directly
    known: str | None = None  # a defect in code another engineer owns (an expected failure)


def conn(left_cs: str = "Path=data/source.csv", right_cs: str = "URL=sqlite:///data/target.db",
         *, query: str = "people", extra: str = "", direction: str = "left_to_right") -> str:
    """A connection file with the given connection strings (YAML double-quoted) and query."""
    def q(text: str) -> str:
        return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar
    return (f"direction: {direction}\n"
            f"left:\n  provider: file\n  connection_string: {q(left_cs)}\n  key: id\n"
            f"right:\n  provider: sql\n  connection_string: {q(right_cs)}\n"
            f"  query: {q(query)}\n  key: id\n"
            f"match_on: [email]\n{extra}")


# --- YAML files ---------------------------------------------------------------------------------

def _laughs(levels: int, width: int = 9) -> str:
    out = 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for i in range(1, levels):
        out += f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]\n"
    return out


def yaml_cases() -> list[Case]:
    """At least 50 hostile connection files."""
    cases = [
        Case("billion_laughs_9", BASE + _laughs(9), line=17),
        Case("billion_laughs_9_first", _laughs(9) + BASE, line=6),
        Case("billion_laughs_in_tags", BASE + "tags:\n" + "".join(
            "  " + ln + "\n" for ln in _laughs(9).splitlines())),
        Case("billion_laughs_wide", BASE + _laughs(4, width=99)),
        Case("laughs_small_but_unknown", BASE + _laughs(2), names=("unknown field",)),
        Case("many_aliases", BASE + "a: &a x\nb: [" + ", ".join(["*a"] * 500) + "]\n",
             names=("aliases",)),
        Case("alias_cycle", BASE + "x: &x [*x]\n", names=("alias",)),
        Case("alias_cycle_mapping", BASE + "x: &x {y: *x}\n"),
        Case("undefined_alias", BASE + "title: *nope\n", names=("YAML",)),
        Case("alias_for_connection_string_is_fine",
             BASE.replace('connection_string: "URL=sqlite:///data/target.db"',
                          'connection_string: &cs "URL=sqlite:///data/target.db"')
             + "description: *cs\n", refused=False),
        Case("merge_key_bomb", BASE + "m0: &m0 {a: 1, b: 2, c: 3}\n" + "".join(
            f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}\n" for i in range(1, 60))),
        Case("large_comment", BASE + "#" + "x" * 2_000_000 + "\n", names=("larger than",)),
        Case("large_title", BASE + 'title: "' + "x" * 1_500_000 + '"\n', names=("larger than",)),
        Case("huge_but_allowed_title", BASE + 'title: "' + "x" * 500_000 + '"\n', refused=False),
        Case("many_lines", BASE + "# c\n" * 300_000, names=("larger than",)),
        Case("nul_raw", BASE + "title: a\x00b\n", line=12, names=("control character",)),
        Case("nul_in_key", BASE + "ti\x00tle: x\n", line=12),
        Case("ctrl_01", BASE.replace("direction: left_to_right", "direction: left\x01_to_right"),
             line=1),
        Case("ctrl_escape", BASE + "title: \x1b[31mred\n", line=12),
        Case("ctrl_del", BASE + "title: a\x7fb\n", refused=None),
        Case("ctrl_backspace_many", BASE + "description: " + "\x08" * 1000 + "\n", line=12),
        Case("nul_escaped_in_query", conn(query="people\x00; DROP TABLE people"),
             names=("right.query", "control character")),
        Case("nul_escaped_in_key", BASE.replace("  key: id\nmatch_on", '  key: "i\\0d"\nmatch_on'),
             names=("right.key", "control character")),
        Case("invalid_utf8", BASE.encode() + b"title: \xff\xfe\n", names=("UTF-8",)),
        Case("utf16_file", BASE.encode("utf-16"), names=("UTF-8",)),
        Case("bom_is_fine", "\ufeff" + BASE, refused=False),
        Case("deep_flow_1000", BASE + "tags: " + "[" * 1000 + "]" * 1000 + "\n"),
        Case("deep_flow_100000", BASE + "tags: " + "[" * 100_000 + "]" * 100_000 + "\n"),
        Case("deep_flow_mapping", BASE + "tags: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n"),
        Case("deep_block", BASE + "tags:\n" + "".join(
            "  " * (i + 1) + f"k{i}:\n" for i in range(60)), names=("nested deeper",)),
        Case("wrong_direction_type", BASE.replace("direction: left_to_right", "direction: 1"),
             line=1, names=("direction",)),
        Case("left_is_text", BASE.replace(f"left:\n  {LEFT}", "left: file"), line=2,
             names=("left",)),
        Case("left_is_list", BASE.replace(f"left:\n  {LEFT}", "left: [1, 2]"), line=2),
        Case("mapping_is_number", BASE + "mapping: 5\n", line=12, names=("mapping",)),
        Case("fields_is_text", BASE + "mapping: {fields: abc}\n", line=12,
             names=("mapping.fields",)),
        Case("field_item_is_text", BASE + "mapping:\n  fields:\n    - name\n", line=14,
             names=("mapping.fields.0",)),
        Case("match_on_mapping", BASE.replace("match_on: [email]", "match_on: {a: 1}"), line=11),
        Case("deletes_maybe", BASE + "deletes: maybe\n", line=12, names=("deletes",)),
        Case("batch_size_negative", BASE + "batch_size: -1\n", line=12, names=("batch_size",)),
        Case("batch_size_text", BASE + "batch_size: '10'\n", line=12, names=("batch_size",)),
        Case("sensor_text", BASE + "sensor: often\n", line=12, names=("sensor",)),
        Case("tags_list", BASE + "tags: [1, 2]\n", line=12, names=("tags",)),
        Case("conflicts_number", BASE + "conflicts: 7\n", line=12, names=("conflicts",)),
        Case("timezone_number", BASE + "timezone: 12345\n", line=12, names=("timezone",)),
        Case("timezone_huge", BASE + "timezone: " + "Europe/" * 50_000 + "\n", line=12,
             names=("more characters",)),
        Case("schedule_list", BASE + "schedule: [1, 2]\n", line=12, names=("schedule",)),
        Case("schedule_huge", BASE + "schedule: '" + "* " * 100_000 + "'\n", line=12),
        Case("direction_huge", BASE.replace("direction: left_to_right",
                                            "direction: " + "x" * 300_000), line=1),
        Case("provider_huge", BASE.replace("provider: file", "provider: " + "p" * 200_000),
             line=3, names=("left.provider", "more characters")),
        Case("key_huge", BASE.replace("  key: id\nright", "  key: " + "k" * 200_000 + "\nright"),
             refused=True),
        Case("unknown_keys_20000", BASE + "".join(f"k{i}: 1\n" for i in range(20_000)),
             names=("20,000 unknown fields", "and 19,997 more"), line=12),
        Case("unknown_keys_nested_5000", BASE.replace(
            f"left:\n  {LEFT}", f"left:\n  {LEFT}\n" + "".join(
                f"  x{i}: 1\n" for i in range(5000)).rstrip("\n")),
            names=("5,000 unknown fields",)),
        Case("key_too_long_for_yaml", BASE + "k" * 300_000 + ": 1\n", line=12,
             names=("YAML",)),
        Case("unknown_key_long", BASE + "k" * 1000 + ": 1\n", line=12,
             names=("unknown field", "more characters")),
        Case("unknown_key_typo", BASE + "mirorr: true\n", line=12, names=("did you mean",)),
        Case("duplicate_top", BASE + "direction: bidirectional\n", line=12,
             names=("given twice",)),
        Case("duplicate_nested", BASE.replace("  key: id\nright", "  key: id\n  key: name\nright"),
             line=6, names=("given twice",)),
        Case("duplicate_in_pair", BASE + "mapping:\n  fields:\n    - {left: a, left: b}\n",
             line=14, names=("given twice",)),
        Case("duplicate_huge_key", BASE + "k" * 1000 + ": 1\n" + "k" * 1000 + ": 2\n",
             names=("given twice", "more characters")),
        Case("two_documents", BASE + "---\n" + BASE, names=("YAML",)),
        Case("empty_file", "", names=("empty",)),
        Case("only_comments", "# nothing\n# here\n", names=("empty",)),
        Case("a_list", "- a\n- b\n", line=1, names=("mapping of fields",)),
        Case("a_scalar", "hello\n", line=1),
        Case("tab_indent", BASE.replace("  provider: file", "\tprovider: file"), names=("YAML",)),
        Case("python_tag", BASE + "title: !!python/object/apply:os.system ['echo hi']\n",
             names=("YAML",)),
        Case("binary_tag", BASE + "title: !!binary aGVsbG8=\n", refused=None),
        Case("timestamp_direction", BASE.replace("direction: left_to_right",
                                                 "direction: 2024-01-01"), line=1),
        Case("complex_key", BASE + "? [a, b]\n: c\n"),
        Case("null_left", BASE.replace(f"left:\n  {LEFT}", "left:"), line=2, names=("left",)),
        Case("unknown_provider", BASE.replace("provider: file", "provider: nosuch"),
             line=3, names=("left.provider", "nosuch")),
        Case("name_field", BASE + "name: other\n", line=12, names=("file name",)),
        Case("lines_field", BASE + "lines: {a: 1}\n", line=12, names=("unknown field 'lines'",)),
        Case("secret_in_yaml_literal",
             BASE.replace("URL=sqlite:///data/target.db",
                          f"URL=sqlite:///data/target.db;Password={MARKER}"),
             line=8, names=("Password",)),
        Case("secret_in_description", BASE + f"description: 'Password={MARKER}'\n",
             refused=False),
        Case("yaml_valid_control", BASE, refused=False),
    ]
    return cases


# --- connection strings -------------------------------------------------------------------------

def cs_cases() -> list[Case]:
    """At least 50 hostile connection strings (left: file, right: SQLite)."""
    sqlite = "URL=sqlite:///data/target.db"
    right_line = 8  # line of right.connection_string in conn()
    left_line = 4
    secret_forms = {
        "password": f"Password={MARKER}",
        "password_lower": f"password={MARKER}",
        "password_upper": f"PASSWORD={MARKER}",
        "password_spaces": f"Password = {MARKER} ",
        "password_double_quoted": f'Password="{MARKER}"',
        "password_single_quoted": f"Password='{MARKER};x'",
        "password_doubled_quote": f'Password="a""{MARKER}"',
        "pwd": f"Pwd={MARKER}",
        "passwd": f"Passwd={MARKER}",
        "client_secret": f"ClientSecret={MARKER}",
        "secret": f"Secret={MARKER}",
        "token": f"Token={MARKER}",
        "api_key": f"ApiKey={MARKER}",
        "access_token": f"AccessToken={MARKER}",
        "db_password": f"DbPassword={MARKER}",
        "account_key": f"AccountKey={MARKER}",
        "password_no_equals": f"Password {MARKER}",
        "password_no_equals_first": f"Password {MARKER};User=sync",
        "password_colon": f"Password: {MARKER}",
    }
    cases = [Case(f"secret_{k}", conn(right_cs=f"{sqlite};{v}"), line=right_line)
             for k, v in secret_forms.items()]
    cases.append(Case("secret_first", conn(right_cs=f"Password {MARKER};{sqlite}"),
                      line=right_line, names=("part 1",)))
    url_forms = {
        "url_pg_userinfo": f"URL=postgresql://sync:{MARKER}@db.example.com/crm",
        "url_pg_query_password": f"URL=postgresql://sync@db.example.com/crm?password={MARKER}",
        "url_pg_query_amp": f"URL=postgresql://sync@db/crm?sslmode=require&password={MARKER}",
        "url_mysql_userinfo": f"URL=mysql+pymysql://root:{MARKER}@localhost/db",
        "url_https_userinfo": f"URL=https://u:{MARKER}@host.example.com/x",
        "url_mssql_odbc": "URL=mssql+pyodbc:///?odbc_connect=DRIVER%3D%7BODBC%7D%3BPWD%3D"
                          + MARKER,
        "url_sig": f"URL=https://acct.blob.core.windows.net/c?sv=1&sig={MARKER}",
        "url_access_token": f"URL=https://h.example.com/x?access_token={MARKER}",
        "url_userinfo_encoded": f"URL=postgresql://sync:{MARKER}%40x@db/crm",
        "url_quoted_value": f'URL="postgresql://sync:{MARKER}@db/crm"',
    }
    cases += [Case(k, conn(right_cs=v), line=right_line, names=("URL", "Password=env:"))
              for k, v in url_forms.items()]
    cases += [
        Case("url_user_only_unreachable", conn(right_cs="URL=postgresql://sync@127.0.0.1:9/crm"),
             names=("c.yaml",)),
        Case("malformed_no_equals", conn(right_cs="sqlite"), line=right_line,
             names=("part 1",)),
        Case("malformed_empty_key", conn(right_cs=f"{sqlite};=x"), line=right_line,
             names=("part 2",)),
        Case("malformed_only_semicolons", conn(right_cs=";;;"), names=("URL",)),
        Case("malformed_empty", conn(right_cs=""), names=("URL",)),
        Case("malformed_unclosed_quote", conn(right_cs=f'URL="{MARKER}'), line=right_line,
             names=("unclosed quote", "URL")),
        Case("malformed_text_after_quote", conn(right_cs=f'URL="a"{MARKER}'), line=right_line),
        Case("malformed_quote_in_key", conn(right_cs=f'{sqlite};"K"=1'), line=right_line),
        Case("duplicate_key", conn(right_cs=f"{sqlite};url=x"), line=right_line,
             names=("given twice",)),
        Case("unknown_key", conn(right_cs=f"{sqlite};Colour=blue"), line=right_line,
             names=("right.connection_string", "Colour")),
        Case("unknown_keys_5000", conn(right_cs=sqlite + "".join(f";K{i}=v" for i in range(5000))),
             names=("unknown key",)),
        Case("cs_unknown_key_huge", conn(right_cs=f"{sqlite};{'K' * 100_000}=v"),
             names=("more characters",)),
        Case("nul_in_path", conn(left_cs="Path=data/source.csv\x00.txt"), line=left_line,
             names=("Path", "NUL")),
        Case("nul_in_url", conn(right_cs="URL=sqlite:///data/target.db\x00x"), line=right_line,
             names=("URL", "NUL")),
        Case("newline_in_value", conn(right_cs='URL="sqlite:///data/t\narget.db"'),
             line=right_line),
        Case("ctrl_in_key", conn(right_cs=f"{sqlite};A\x01B=1"), line=right_line),
        Case("path_huge", conn(left_cs="Path=" + "a" * 100_000 + ".csv"), refused=True),
        Case("path_deep", conn(left_cs="Path=" + "d/" * 5000 + "x.csv"), refused=None),
        Case("path_directory", conn(left_cs="Path=data"), refused=True),
        Case("path_missing_required", conn(left_cs="Format=csv"), line=left_line,
             names=("left.connection_string", "Path")),
        Case("url_huge", conn(right_cs="URL=sqlite:///" + "t" * 100_000 + ".db"), refused=True),
        Case("url_bad_dialect", conn(right_cs="URL=nosuchdialect://h/db"), refused=True),
        Case("url_not_a_url", conn(right_cs="URL=just text"), refused=True),
        Case("url_env_unset", conn(right_cs="URL=env:L2SYNC_HOSTILE_UNSET"), line=right_line,
             names=("right.connection_string", "L2SYNC_HOSTILE_UNSET")),
        Case("password_env_unset", conn(right_cs=f"{sqlite};Password=env:L2SYNC_HOSTILE_UNSET"),
             refused=None),
        Case("password_env_set_to_marker",
             conn(right_cs=f"{sqlite};User=u;Password=env:L2SYNC_HOSTILE_PW"),
             refused=None, env={"L2SYNC_HOSTILE_PW": MARKER}),
        Case("password_env_set_to_marker_run",
             conn(right_cs=f"{sqlite};User=u;Password=env:L2SYNC_HOSTILE_PW"),
             refused=None, env={"L2SYNC_HOSTILE_PW": MARKER}, args=("run", NAME)),
        Case("pg_password_env_run",
             conn(right_cs="URL=postgresql://sync@127.0.0.1:9/crm;Password=env:L2SYNC_HOSTILE_PW"),
             env={"L2SYNC_HOSTILE_PW": MARKER}, args=("run", NAME)),
        Case("password_env_empty_name", conn(right_cs=f"{sqlite};Password=env:"),
             refused=None),
        Case("batchsize_text", conn(right_cs=f"{sqlite};BatchSize=lots"), names=("BatchSize",)),
        Case("batchsize_huge", conn(right_cs=f"{sqlite};BatchSize=" + "9" * 5000),
             refused=None),
        Case("format_unknown", conn(left_cs="Path=data/source.csv;Format=xls" + "x" * 10_000),
             refused=True),
        Case("encoding_unknown", conn(left_cs="Path=data/source.csv;Encoding=nope-42"),
             refused=True),
        Case("unicode_key", conn(right_cs=f"{sqlite};Pässwört=1"), refused=True),
        Case("cs_valid_control", conn(), refused=False, args=("run", NAME)),
    ]
    return cases


# --- select statements --------------------------------------------------------------------------

def select_cases() -> list[Case]:
    """At least 20 hostile select statements: SQL through the CLI, Exchange and OData parsers."""
    sql = [
        ("sql_garbage", "SELEC name FROM people"),
        ("sql_unknown_table", "SELECT name FROM nowhere"),
        ("sql_unknown_column", "SELECT nope FROM people"),
        ("sql_two_statements", "SELECT name FROM people; DROP TABLE people"),
        ("sql_drop", "DROP TABLE people"),
        ("sql_delete", "DELETE FROM people"),
        ("sql_huge_identifier", "SELECT " + "n" * 100_000 + " FROM people"),
        ("sql_huge_where", "SELECT name FROM people WHERE name IN ("
         + ", ".join(f"'{i}'" for i in range(30_000)) + ") AND nope = 1"),
        ("sql_unclosed_quote", "SELECT name FROM people WHERE name = 'x"),
        ("sql_comment_injection", "people WHERE 1=1; --"),
        ("sql_pragma", "PRAGMA writable_schema = 1"),
        ("sql_attach", "ATTACH DATABASE 'x.db' AS x"),
    ]
    cases = [Case(k, conn(query=q, direction="right_to_left"), args=("plan", NAME), line=9,
                  names=("right.query",))
             for k, q in sql]
    exchange = [
        ("ex_or", "SELECT GivenName FROM Contacts WHERE Surname = 'a' OR Surname = 'b'"),
        ("ex_unclosed_quote", "SELECT GivenName FROM Contacts WHERE Surname = 'x"),
        ("ex_unknown_field", "SELECT Bogus FROM Contacts"),
        ("ex_unknown_folder", "SELECT GivenName FROM Nowhere"),
        ("ex_huge_field", "SELECT " + "G" * 100_000 + " FROM Contacts"),
        ("ex_many_fields", "SELECT " + ", ".join(["GivenName"] * 20_000) + " FROM Contacts"),
        ("ex_nul", "SELECT GivenName FROM Contacts WHERE Surname = 'a\x00b'"),
        ("ex_injection", "SELECT GivenName FROM Contacts WHERE Surname = 'x'' OR ''1''=''1'"),
        ("ex_empty", ""),
        ("ex_garbage", ");--"),
        ("ex_top_huge", "SELECT TOP 99999999999999999999999 GivenName FROM Contacts"),
    ]
    cases += [Case(k, q, parser="exchange", refused=None) for k, q in exchange]
    odata = [
        ("od_or_injection", "SELECT name FROM accounts WHERE name = 'x' OR 1 = 1 --"),
        ("od_unknown_field", "SELECT bogus FROM accounts"),
        ("od_quote", "SELECT name FROM accounts WHERE name = 'O''Brien' ) or (1 eq 1"),
        ("od_huge", "SELECT " + "n" * 100_000 + " FROM accounts"),
        ("od_nul", "SELECT name FROM accounts WHERE name = 'a\x00b'"),
        ("od_entity_injection", "SELECT name FROM accounts?$filter=true"),
        ("od_empty", ""),
        ("od_garbage", "((((((((((((((((((((((((((((((((((((((("),
        ("od_deep_parens", "SELECT name FROM accounts WHERE " + "(" * 5000 + "statecode = 0"
         + ")" * 5000),
    ]
    known: dict[str, str] = {}
    cases += [Case(k, q, parser="odata", refused=None, known=known.get(k)) for k, q in odata]
    return cases


FAMILIES = {"yaml": yaml_cases, "connection_string": cs_cases, "select": select_cases}


# --- the driver ---------------------------------------------------------------------------------

class _Timeout(BaseException):
    """Raised by the timer inside a case that runs too long."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Timeout()


def _seed(root: Path) -> None:
    (root / "connections").mkdir()
    (root / "data").mkdir()
    (root / "data" / "source.csv").write_text(SOURCE_CSV)
    db = sqlite3.connect(root / "data" / "target.db")
    db.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, email TEXT)")
    db.executemany("INSERT INTO people VALUES (?, ?, ?)", TARGET_ROWS)
    db.commit()
    db.close()


def _target(root: Path) -> Any:
    db = sqlite3.connect(root / "data" / "target.db")
    try:
        tables = db.execute("SELECT name FROM sqlite_master ORDER BY name").fetchall()
        rows = db.execute("SELECT * FROM people ORDER BY id").fetchall() \
            if ("people",) in tables else None
    finally:
        db.close()
    return [tables, rows, (root / "data" / "source.csv").read_text()]


def _state_text(root: Path) -> str:
    """Every value of every table of the state store, and any other file it wrote."""
    out: list[str] = []
    state = root / ".l2sync"
    if not state.exists():
        return ""
    for path in state.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".db":
            db = sqlite3.connect(path)
            try:
                for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'"):
                    for row in db.execute(f'SELECT * FROM "{table}"'):
                        out.append(repr(row))
            finally:
                db.close()
        out.append(path.read_bytes().decode("latin-1"))
    return "\n".join(out)


def _run_parser(case: Case) -> tuple[int, str, str]:
    if case.parser == "exchange":
        from l2sync_dagster.providers.exchange.select import SelectError, parse_select

        try:
            stmt = parse_select(case.text if isinstance(case.text, str) else "")
        except SelectError as exc:
            return 1, "", str(exc)
        return 0, repr(stmt)[:400], ""
    from l2sync_dagster.providers.odata.select import FieldResolver, QueryError, translate

    resolver = FieldResolver({"accountid": "guid", "name": "string", "statecode": "integer"}, {})
    try:
        query = translate(case.text if isinstance(case.text, str) else "", resolver)
    except QueryError as exc:
        return 1, "", str(exc)
    return 0, repr(query.options())[:400], ""


def run_case(case: Case) -> dict[str, Any]:
    """Run one case in a fresh project; what the test asserts on."""
    from l2sync_dagster import cli

    result: dict[str, Any] = {"id": case.id}
    with tempfile.TemporaryDirectory(prefix="l2sync-hostile-") as tmp:
        root = Path(tmp)
        _seed(root)
        path = root / "connections" / FILE
        if isinstance(case.text, bytes):
            path.write_bytes(case.text)
        else:
            path.write_text(case.text, encoding="utf-8")
        before = _target(root)
        old_env = {k: os.environ.get(k) for k in case.env}
        os.environ.update(case.env)
        os.chdir(root)
        out, err = io.StringIO(), io.StringIO()
        crashed = None
        code = None
        start = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, case.timeout)
        try:
            if case.parser:
                code, o, e = _run_parser(case)
                out.write(o)
                err.write(e)
            else:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    code = cli.main(list(case.args))
        except _Timeout:
            code = None
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException:  # noqa: BLE001 - a crash is what the corpus looks for
            crashed = traceback.format_exc()[-2000:]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            elapsed = time.perf_counter() - start
            os.chdir("/")
            for k, v in old_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        result.update(
            code=code, out=out.getvalue()[-20_000:], err=err.getvalue()[-20_000:],
            out_len=len(out.getvalue()), err_len=len(err.getvalue()),
            max_line=max((len(line) for line in (out.getvalue() + "\n" + err.getvalue())
                          .splitlines()), default=0),
            elapsed=elapsed, timed_out=code is None and crashed is None, crashed=crashed,
            target_same=_target(root) == before,
            secret_in_state=MARKER in _state_text(root),
        )
    return result


def main(family: str) -> None:
    """Run every case of ``family``; one JSON line per case on stdout."""
    os.environ.pop("L2SYNC_STATE_URL", None)
    # a case's timeout is for its input, not for the first case's cold imports (several
    # seconds on a loaded 2-core machine): import what a run needs before any clock starts
    import l2sync_dagster.cli  # noqa: F401
    import l2sync_dagster.providers.registry  # noqa: F401
    import l2sync_dagster.providers.sql  # noqa: F401
    import l2sync_dagster.sync.runner  # noqa: F401

    signal.signal(signal.SIGALRM, _on_alarm)
    real_stdout = sys.stdout
    for case in FAMILIES[family]():
        real_stdout.write(json.dumps(run_case(case)) + "\n")
        real_stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
