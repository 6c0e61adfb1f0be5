"""The SELECT statement of a ``sql`` query side, parsed (sqlglot), never pattern-matched.

A query side is either a table name or exactly one SELECT (``WITH`` allowed, UNION allowed).
Anything that could change data is refused before it reaches the database: a second
statement, a data-modifying CTE (``WITH x AS (SELECT 1) DELETE ...``, ``WITH d AS (DELETE ...
RETURNING *) SELECT ...``), ``SELECT ... INTO``, row locks (``FOR UPDATE``), DDL, PRAGMA and
the like. The provider still runs every query-side read in a read-only transaction that is
rolled back, so a function with side effects that a parser cannot see is stopped too.

The parse also tells how much of the entity the query can return (``scope``) and gives the
statement without its restrictions, which ``lookup`` uses to find records that left the
filter or fell outside the limit.
"""

import logging
import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

# sqlglot warns through logging when it falls back to an opaque Command; we refuse those
logging.getLogger("sqlglot").setLevel(logging.ERROR)

#: SQLAlchemy backend name -> sqlglot dialect (unknown backends use sqlglot's generic SQL)
DIALECTS = {
    "sqlite": "sqlite",
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "mssql": "tsql",
    "oracle": "oracle",
    "duckdb": "duckdb",
}

#: longest query text parsed (longer ones are refused: parsing time grows with the length)
MAX_QUERY_CHARS = 50_000
#: how much of a restriction clause is echoed in messages
RESTRICTION_CHARS = 80

# a query that starts with one of these words (or "(") is a statement, anything else a table
# name (table names may hold spaces and quotes: `odd "name" t` is a table)
_STATEMENT_WORDS = frozenset("""
    select with values table insert update delete merge replace upsert create drop alter
    truncate pragma attach detach vacuum reindex analyze explain grant revoke copy set reset
    begin start commit rollback savepoint release call exec execute do declare lock show use
    load unload import export refresh kill listen notify prepare deallocate discard comment
    """.split())
_FIRST_WORD_RE = re.compile(r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*(\(|[A-Za-z_]+)", re.DOTALL)

# statements and clauses that write, lock, or change the session; refused anywhere in the tree
_FORBIDDEN: tuple[type[exp.Expr], ...] = (
    exp.DML, exp.DDL, exp.Command, exp.Into, exp.Lock, exp.Pragma, exp.Set,
    exp.Transaction, exp.Commit, exp.Rollback, exp.Use, exp.LoadData, exp.Grant, exp.Revoke,
    exp.Analyze, exp.Attach, exp.Detach, exp.Cache, exp.Uncache, exp.Refresh, exp.Kill,
    exp.Export, exp.TruncateTable, exp.Declare, exp.Execute, exp.Describe, exp.Drop,
    exp.Alter,
)


class StatementError(ValueError):
    """The query is not one read-only SELECT; the message says what was found."""


@dataclass(frozen=True)
class SelectStatement:
    """A parsed, checked SELECT: its scope, the restricting clause, and the unrestricted form."""

    text: str
    scope: str
    restriction: str | None
    #: the statement without WHERE/HAVING/LIMIT/TOP/OFFSET/FETCH/ORDER (for lookups)
    unrestricted: str


def is_table_name(text: str) -> bool:
    """True when ``text`` names a table (``t``, ``schema.t``, quoted parts) rather than being
    a statement: it does not start with a statement keyword or "(" and holds no ";"."""
    if ";" in text:
        return False
    first = _FIRST_WORD_RE.match(text)
    if first is None:
        return not text.lstrip().startswith(("--", "/*"))
    word = first.group(1)
    return word != "(" and word.lower() not in _STATEMENT_WORDS


def dialect_of(backend: str) -> str | None:
    """The sqlglot dialect for a SQLAlchemy backend name."""
    return DIALECTS.get(backend)


def _short(text: str, limit: int = RESTRICTION_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kind(node: exp.Expr) -> str:
    """A statement's kind for messages (DELETE, UPDATE, CREATE TABLE...)."""
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    if isinstance(node, exp.Create | exp.Drop):
        return f"{type(node).__name__.upper()} {str(node.args.get('kind') or '').upper()}".strip()
    if isinstance(node, exp.Into):
        return "SELECT ... INTO"
    if isinstance(node, exp.Lock):
        return "FOR UPDATE/FOR SHARE (row locks)"
    return type(node).__name__.upper()


def _a(word: str) -> str:
    return f"an {word}" if word[:1].upper() in "AEIOU" else f"a {word}"


def _parse_problem(exc: SqlglotError) -> str:
    """The parser's first complaint as one short phrase with its place."""
    errors = getattr(exc, "errors", None) or []
    if errors and isinstance(errors[0], dict):
        first = errors[0]
        what = str(first.get("description") or "syntax error").split(". Line")[0]
        if " but got <Token" in what:
            what = what.split(" but got <Token")[0]
        what = re.sub(r"<class '[\w.]*\.(\w+)'>", lambda m: m.group(1).upper(), what)
        near = str(first.get("highlight") or "").strip()
        place = f"line {first.get('line')}, column {first.get('col')}"
        return _short(f"{what} at {place}" + (f" near {near!r}" if near else ""), 120)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return _short(text, 120)


def parse_select(text: str, backend: str) -> SelectStatement:
    """Parse ``text`` as the query side's SELECT for ``backend``; raise StatementError when it
    is not exactly one statement that only reads."""
    if len(text) > MAX_QUERY_CHARS:
        raise StatementError(
            f"the query is {len(text):,} characters long; at most {MAX_QUERY_CHARS:,} are "
            "accepted (create a view and put its name in `query:`)"
        )
    try:
        return _parse_select(text, backend)
    except RecursionError:
        raise StatementError(
            "the query is nested too deeply to be checked; simplify it or create a view and "
            "put its name in `query:`"
        ) from None


def _parse_select(text: str, backend: str) -> SelectStatement:
    dialect = dialect_of(backend)
    try:
        parsed = [p for p in sqlglot.parse(text, read=dialect)
                  if p is not None and not isinstance(p, exp.Semicolon)]
    except SqlglotError as exc:
        raise StatementError(
            f"cannot parse the query as one {dialect or 'SQL'} SELECT ({_parse_problem(exc)}); "
            "for SQL the parser cannot read, create a view and put its name in `query:`"
        ) from None
    if not parsed:
        raise StatementError("the query is empty; write a table name or one SELECT")
    if len(parsed) > 1:
        kinds = ", ".join(_kind(p) for p in parsed[:4])
        raise StatementError(
            f"the query holds {len(parsed)} statements ({kinds}); a query side is exactly one "
            "SELECT (remove the ';' and what follows)"
        )
    root = parsed[0]
    for node in root.walk():
        if isinstance(node, _FORBIDDEN):
            what = (f"is {_a(_kind(node))} statement, not a SELECT" if node is root
                    else f"contains {_kind(node)}")
            raise StatementError(
                f"the query {what}; a query side only reads: write one SELECT without INTO, "
                "row locks or data-changing statements"
            )
    body = root
    while isinstance(body, exp.Subquery):
        body = body.this
    if not isinstance(body, exp.Select | exp.SetOperation):
        raise StatementError(
            f"the query is {_a(_kind(body))} statement, not a SELECT; a query side is a table "
            "name or one SELECT"
        )
    scope, restriction = _scope(body, dialect)
    # a statement without restrictions is looked up as written (no regenerated SQL)
    unrestricted = text if scope == "all" else _unrestricted(root, dialect)
    return SelectStatement(text, scope, restriction, unrestricted)


_LIMITS = ("limit", "offset", "fetch")
_FILTERS = ("where", "having", "qualify")


def _row_sources(body: exp.Expr) -> list[exp.Expr]:
    """The SELECTs whose rows become the query's rows: the body, the arms of a UNION, FROM
    subqueries and CTE bodies (a restriction in any of them restricts the read)."""
    out: list[exp.Expr] = []
    todo = [body]
    while todo:
        node = todo.pop()
        while isinstance(node, exp.Subquery):
            node = node.this
        out.append(node)
        if isinstance(node, exp.SetOperation):
            todo.extend([node.left, node.right])
        with_ = node.args.get("with_") or node.args.get("with")
        if with_ is not None:
            todo.extend(cte.this for cte in with_.expressions)
        if isinstance(node, exp.Select):
            source = node.args.get("from_") or node.args.get("from")
            if source is not None and isinstance(source.this, exp.Subquery):
                todo.append(source.this)
    return out


def _scope(body: exp.Expr, dialect: str | None) -> tuple[str, str | None]:
    tops: list[str] = []
    limits: list[str] = []
    filters: list[str] = []
    for node in _row_sources(body):
        for name in _LIMITS:
            clause = node.args.get(name)
            if clause is None:
                continue
            if name == "limit" and dialect == "tsql" and isinstance(clause, exp.Limit):
                tops.append(f"TOP {clause.expression.sql(dialect=dialect)}")
            else:
                limits.append(clause.sql(dialect=dialect))
        for name in _FILTERS:
            clause = node.args.get(name)
            if clause is not None:
                filters.append(clause.sql(dialect=dialect))
        if node.find(exp.TableSample) is not None:
            limits.append("TABLESAMPLE")
    if tops or limits:
        # in the order the clauses are written: TOP n ... WHERE ... LIMIT n
        return "limited", _short(" ".join(tops + filters + limits))
    if filters:
        return "filtered", _short(" ".join(filters))
    return "all", None


def _unrestricted(root: exp.Expr, dialect: str | None) -> str:
    """The statement without the restrictions of its row sources."""
    copy = root.copy()
    body = copy
    while isinstance(body, exp.Subquery):
        body = body.this
    for node in _row_sources(body):
        for name in (*_LIMITS, *_FILTERS, "order"):
            if node.args.get(name) is not None:
                node.set(name, None)
        for sample in list(node.find_all(exp.TableSample)):
            sample.pop()
    return copy.sql(dialect=dialect)
