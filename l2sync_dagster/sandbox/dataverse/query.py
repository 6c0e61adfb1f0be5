"""OData query options as Dataverse reads them: parsing, ``$filter`` evaluation, ordering.

The query string is split on ``&`` and each value decoded with ``+`` as a space (as ASP.NET,
and so Dataverse, decodes query strings): a literal plus must be sent as ``%2B``.

``$filter`` supports ``eq ne gt ge lt le``, ``and or not``, parentheses, ``contains``,
``startswith``, ``endswith``; literals: strings (``'O''Brien'``), integers, decimals,
``true``/``false``, ``null``, GUIDs (bare), dates (``2026-01-31``) and date-times
(``2026-01-31T10:00:00Z``). String comparisons ignore case (Dataverse's SQL collation) and a
comparison with a null column is false (``ne`` too), as in SQL. Anything else is a 400.
"""

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from l2sync_dagster.sandbox.dataverse.errors import no_query_property, odata_error
from l2sync_dagster.sandbox.dataverse.metadata import BY_LOGICAL, Column, Table

Row = dict[str, Any]
Predicate = Callable[[Row], bool]

#: query options a collection GET accepts
LIST_OPTIONS = frozenset({"$select", "$filter", "$orderby", "$top", "$count", "$expand",
                          "$skiptoken", "$deltatoken"})
#: query options a single-record GET accepts
ONE_OPTIONS = frozenset({"$select", "$expand"})


def parse_options(raw_query: str, allowed: frozenset[str]) -> dict[str, str]:
    """The query options of ``raw_query``; unknown or repeated ``$`` options are a 400, other
    parameters are ignored."""
    out: dict[str, str] = {}
    if not raw_query:
        return out
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name, value = unquote_plus(name), unquote_plus(value)
        if not name.startswith("$"):
            continue
        if name not in allowed:
            raise odata_error(f"The query parameter {name} is not supported")
        if name in out:
            raise odata_error(f"Query option '{name}' was specified more than once, but it "
                              "must be specified at most once.")
        out[name] = value
    return out


# -- $select, $orderby, $expand -------------------------------------------------------------

def parse_select(text: str | None, table: Table) -> list[str] | None:
    """The selected property names (None: all); unknown names are a 400."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise odata_error("The $select query option is empty.")
    for n in names:
        if table.column(n) is None:
            raise no_query_property(n, table.logical)
    return names


def parse_orderby(text: str | None, table: Table) -> list[tuple[str, bool]]:
    """``[(property, descending)]``."""
    if not text:
        return []
    out = []
    for item in text.split(","):
        words = item.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise odata_error(f"Syntax error in $orderby '{text}'.")
        column = table.column(words[0])
        if column is None:
            raise no_query_property(words[0], table.logical)
        out.append((words[0], len(words) == 2 and words[1] == "desc"))
    return out


@dataclass
class Expand:
    """One expanded single-valued navigation property."""

    nav: str
    column: Column
    target: Table
    select: list[str] | None = None


def parse_expand(text: str | None, table: Table) -> list[Expand]:
    """``nav`` or ``nav($select=a,b)`` items (single-valued navigation properties only)."""
    if not text:
        return []
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text + ","):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    out = []
    for item in items:
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:\((.*)\))?", item)
        if not m:
            raise odata_error(f"Syntax error in $expand '{text}'.")
        column = table.lookup_by_nav(m.group(1))
        if column is None:
            raise no_query_property(m.group(1), table.logical)
        target = BY_LOGICAL[column.target]
        select = None
        if m.group(2):
            opts = parse_options(m.group(2).replace(";", "&"), frozenset({"$select"}))
            select = parse_select(opts.get("$select"), target)
        out.append(Expand(m.group(1), column, target, select))
    return out


def sort_rows(rows: list[Row], order: list[tuple[str, bool]], table: Table) -> list[Row]:
    """Rows ordered by ``order`` then by primary key (nulls first ascending, as SQL Server)."""
    rows = sorted(rows, key=lambda r: r[table.key])
    for name, desc in reversed(order):
        column = table.column(name)
        assert column is not None
        rows.sort(key=lambda r, c=column: (r.get(c.name) is not None, _comparable(c,
                  r.get(c.name))), reverse=desc)
    return rows


def _comparable(c: Column, value: Any) -> Any:
    if value is None:
        return 0
    if c.edm == "Edm.String":
        return value.casefold()
    if c.edm == "Edm.Guid":
        return value.lower()
    if c.edm == "Edm.DateTimeOffset":
        return _parse_dto(value)
    return value


# -- $filter ----------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDlL]?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_./]*)
  | (?P<punct>[(),])
""", re.VERBOSE)

_OPS = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual",
        "lt": "LessThan", "le": "LessThanOrEqual"}
_FUNCS = {"contains", "startswith", "endswith"}


@dataclass
class _Lit:
    value: Any
    edm: str  # the literal's own type


@dataclass
class _Parser:
    text: str
    table: Table
    tokens: list[tuple[str, str, int]] = field(default_factory=list)
    pos: int = 0

    def __post_init__(self) -> None:
        i = 0
        while i < len(self.text):
            m = _TOKEN.match(self.text, i)
            if not m:
                raise self.error(i)
            if m.lastgroup != "ws":
                self.tokens.append((m.lastgroup or "", m.group(), i))
            i = m.end()

    def error(self, at: int | None = None) -> Exception:
        if at is None:
            at = self.tokens[self.pos][2] if self.pos < len(self.tokens) else len(self.text)
        return odata_error(f"Syntax error at position {at} in '{self.text}'.")

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str | None = None, value: str | None = None) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None or (kind and tok[0] != kind) or (value and tok[1] != value):
            raise self.error()
        self.pos += 1
        return tok

    def parse(self) -> Predicate:
        pred = self.or_expr()
        if self.peek() is not None:
            raise self.error()
        return pred

    def or_expr(self) -> Predicate:
        left = self.and_expr()
        while (tok := self.peek()) and tok[:2] == ("name", "or"):
            self.pos += 1
            right = self.and_expr()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def and_expr(self) -> Predicate:
        left = self.not_expr()
        while (tok := self.peek()) and tok[:2] == ("name", "and"):
            self.pos += 1
            right = self.not_expr()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left

    def not_expr(self) -> Predicate:
        tok = self.peek()
        if tok and tok[:2] == ("name", "not"):
            self.pos += 1
            inner = self.not_expr()
            return lambda r: not inner(r)
        return self.primary()

    def primary(self) -> Predicate:
        tok = self.peek()
        if tok is None:
            raise self.error()
        if tok[1] == "(":
            self.pos += 1
            inner = self.or_expr()
            self.take("punct", ")")
            return inner
        nxt = self.tokens[self.pos + 1] if self.pos + 1 < len(self.tokens) else None
        if tok[0] == "name" and nxt and nxt[1] == "(":
            return self.function()
        left = self.operand()
        op = self.take("name")[1]
        if op not in _OPS:
            if op in ("has", "in", "add", "sub", "mul", "div", "mod"):
                raise odata_error(f"The operator '{op}' is not supported.")
            raise self.error(self.tokens[self.pos - 1][2])
        right = self.operand()
        return self.comparison(op, left, right)

    def operand(self) -> Column | _Lit:
        kind, text, at = self.take()
        if kind == "name":
            if text in ("true", "false"):
                return _Lit(text == "true", "Edm.Boolean")
            if text == "null":
                return _Lit(None, "null")
            column = self.table.column(text)
            if column is None:
                raise no_query_property(text, self.table.logical)
            return column
        if kind == "string":
            return _Lit(text[1:-1].replace("''", "'"), "Edm.String")
        if kind == "guid":
            return _Lit(text.lower(), "Edm.Guid")
        if kind == "date":
            try:
                return _Lit(dt.date.fromisoformat(text).isoformat(), "Edm.Date")
            except ValueError:
                raise odata_error(f"The literal '{text}' is not a valid Edm.Date.") from None
        if kind == "datetime":
            try:
                return _Lit(_parse_dto(text), "Edm.DateTimeOffset")
            except ValueError:
                raise odata_error(f"The literal '{text}' is not a valid "
                                  "Edm.DateTimeOffset.") from None
        if kind == "number":
            body = text.rstrip("mMdDlL")
            if re.fullmatch(r"-?\d+", body) and text[-1:] not in "mMdD":
                return _Lit(int(body), "Edm.Int32" if abs(int(body)) < 2**31 else "Edm.Int64")
            return _Lit(float(body), "Edm.Decimal")
        raise self.error(at)

    def comparison(self, op: str, left: Column | _Lit, right: Column | _Lit) -> Predicate:
        if isinstance(left, _Lit) and isinstance(right, Column):
            left, right = right, left
            op = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}.get(op, op)
        if not isinstance(left, Column) or not isinstance(right, _Lit):
            raise odata_error("Only comparisons of a property with a literal are supported.")
        column, lit = left, right
        if lit.edm == "null":
            if op not in ("eq", "ne"):
                return lambda r: False
            name = column.name
            return (lambda r: r.get(name) is None) if op == "eq" else (
                lambda r: r.get(name) is not None)
        value = _coerce(column, lit, op)
        name = column.name
        cmp = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
               "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b,
               "le": lambda a, b: a <= b}[op]

        def pred(r: Row) -> bool:
            v = r.get(name)
            return v is not None and cmp(_comparable(column, v), value)
        return pred

    def function(self) -> Predicate:
        name = self.take("name")[1]
        if name not in _FUNCS:
            raise odata_error(f"An unknown function with name '{name}' was found. This may "
                              "also be a function import or a key lookup on a navigation "
                              "property, which is not allowed.")
        self.take("punct", "(")
        column = self.operand()
        self.take("punct", ",")
        lit = self.operand()
        self.take("punct", ")")
        if not isinstance(column, Column) or not isinstance(lit, _Lit) \
                or column.edm != "Edm.String" or lit.edm != "Edm.String":
            raise odata_error(f"The function '{name}' needs a string property and a string "
                              "literal.")
        needle = lit.value.casefold()
        test = {"contains": lambda v: needle in v, "startswith": lambda v: v.startswith(needle),
                "endswith": lambda v: v.endswith(needle)}[name]
        col = column.name
        return lambda r: r.get(col) is not None and test(r[col].casefold())


def _coerce(column: Column, lit: _Lit, op: str) -> Any:
    """The literal as a value comparable with the column's values; a type mismatch is a 400."""
    edm, v = column.edm, lit.value
    if edm == "Edm.String" and lit.edm == "Edm.String":
        return v.casefold()
    if edm == "Edm.Guid" and lit.edm == "Edm.Guid":
        return v
    if edm in ("Edm.Int32", "Edm.Int64") and lit.edm in ("Edm.Int32", "Edm.Int64"):
        return v
    if edm == "Edm.Decimal" and lit.edm in ("Edm.Int32", "Edm.Int64", "Edm.Decimal"):
        return float(v)
    if edm == "Edm.Boolean" and lit.edm == "Edm.Boolean":
        return v
    if edm == "Edm.Date" and lit.edm == "Edm.Date":
        return v
    if edm == "Edm.DateTimeOffset" and lit.edm == "Edm.DateTimeOffset":
        return v
    if edm == "Edm.DateTimeOffset" and lit.edm == "Edm.Date":
        return dt.datetime.fromisoformat(v).replace(tzinfo=dt.UTC)
    raise odata_error("A binary operator with incompatible types was detected. Found operand "
                      f"types '{edm}' and '{lit.edm}' for operator kind '{_OPS[op]}'.")


def _parse_dto(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


def parse_filter(text: str | None, table: Table) -> Predicate | None:
    """The ``$filter`` expression as a predicate on stored rows (None: no filter)."""
    if text is None:
        return None
    if not text.strip():
        raise odata_error("The $filter query option is empty.")
    return _Parser(text, table).parse()
