"""Translate a connection's query into OData v4 system query options.

Two forms are accepted:

- a select statement, ``SELECT TOP 5 name, telephone1 FROM accounts WHERE statecode = 0
  ORDER BY name``, translated to ``$select``, ``$filter``, ``$top`` and ``$orderby``;
- raw query options, ``$select=name,telephone1&$filter=statecode eq 0``.

Every value of a select statement becomes an OData literal built here (strings with doubled
quotes, GUIDs, dates and numbers checked for their form), so a value can never change the
structure of the filter. Field names must be plain identifiers and, when the entity's fields are
known, one of them. Errors are :class:`QueryError` with a message that says what to change.
"""

import datetime as dt
import difflib
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, unquote

from l2sync_dagster.providers.select_tokens import Token, TokenCursor, tokenize

#: characters left as they are in an encoded query option value; a space is always ``%20``
_SAFE = "'(),:$*@/"
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")
_RAW_OPTIONS = ("$select", "$filter", "$top", "$orderby", "$expand", "$skip", "$count", "$search")
_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:[./][A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<bracket>\[[^\]]+\])
  | (?P<quoted>"(?:[^"]|"")+")
  | (?P<op><>|!=|<=|>=|=|<|>)
  | (?P<punct>[(),*])
    """,
    re.VERBOSE,
)
_KEYWORDS = frozenset({
    "select", "top", "from", "where", "order", "by", "asc", "desc", "and", "or", "not", "is",
    "null", "like", "in", "true", "false", "between", "limit", "distinct",
})
_OPS = {"=": "eq", "<>": "ne", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
MAX_TOP = 1_000_000


class QueryError(ValueError):
    """The query cannot be translated; the message says what to change (one line, long
    names and values in it cut)."""

    def __init__(self, message: str) -> None:
        from l2sync_dagster.spec.errors import shorten

        super().__init__(shorten(message))


#: parentheses and NOTs a WHERE clause may nest (deeper is refused, not a RecursionError)
MAX_NESTING = 64


@dataclass(frozen=True)
class ODataQuery:
    """Query options for one entity set. ``filter`` is an OData expression, not URL-encoded."""

    entity_set: str | None = None
    select: tuple[str, ...] = ()
    filter: str | None = None
    top: int | None = None
    orderby: tuple[str, ...] = ()
    expand: str | None = None
    extra: tuple[tuple[str, str], ...] = ()

    def options(self) -> list[tuple[str, str]]:
        """The options in a stable order, values not encoded."""
        out: list[tuple[str, str]] = []
        if self.select:
            out.append(("$select", ",".join(self.select)))
        if self.filter:
            out.append(("$filter", self.filter))
        if self.orderby:
            out.append(("$orderby", ",".join(self.orderby)))
        if self.top is not None:
            out.append(("$top", str(self.top)))
        if self.expand:
            out.append(("$expand", self.expand))
        out.extend(self.extra)
        return out

    def query_string(self) -> str:
        """The options URL-encoded (spaces as ``%20``, never ``+``)."""
        return encode_options(self.options())

    def and_filter(self, expr: str | None) -> "ODataQuery":
        """This query with ``expr`` AND-ed to its filter."""
        if not expr:
            return self
        new = f"({self.filter}) and ({expr})" if self.filter else expr
        return replace(self, filter=new)


def encode_options(options: Sequence[tuple[str, str]]) -> str:
    """``$a=v&$b=w`` with every value percent-encoded; a space is ``%20``, ``+`` is ``%2B``."""
    return "&".join(f"{quote(k, safe='$')}={quote(v, safe=_SAFE)}" for k, v in options)


# --- literals --------------------------------------------------------------------------------
def string_literal(value: str) -> str:
    """An OData string literal: single quotes, a quote inside doubled."""
    if "\x00" in value:
        raise QueryError("a text value contains a NUL character")
    return "'" + value.replace("'", "''") + "'"


def literal(value: Any, ftype: str | None = None) -> str:
    """An OData literal for a Python value, in the form the field's type needs.

    ``ftype`` is the field type (``string``, ``integer``, ``guid``, ``datetime``...); None when
    unknown (a string is then quoted, a number written as a number).
    """
    if value is None:
        return "null"
    if ftype == "guid":
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            raise QueryError(f"{value!r} is not a GUID") from None
    if isinstance(value, bool) or ftype == "boolean":
        if isinstance(value, bool):
            return "true" if value else "false"
        low = str(value).strip().lower()
        if low in ("true", "1"):
            return "true"
        if low in ("false", "0"):
            return "false"
        raise QueryError(f"{value!r} is not true or false")
    if ftype == "datetime" or isinstance(value, dt.datetime):
        return _datetime_literal(value)
    if ftype == "date" or isinstance(value, dt.date):
        try:
            d = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
        except ValueError:
            raise QueryError(f"{value!r} is not a date (YYYY-MM-DD)") from None
        return d.isoformat()
    if ftype in ("integer", "float", "decimal") or (
        ftype is None and isinstance(value, int | float | Decimal)
    ):
        return _number_literal(value, ftype)
    return string_literal(str(value))


def _number_literal(value: Any, ftype: str | None) -> str:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise QueryError(f"{value!r} is not a finite number")
    try:
        num = Decimal(str(value).strip())
    except InvalidOperation:
        raise QueryError(f"{value!r} is not a number") from None
    if not num.is_finite():
        raise QueryError(f"{value!r} is not a finite number")
    if ftype == "integer":
        if num != num.to_integral_value():
            raise QueryError(f"{value!r} is not a whole number")
        return str(int(num))
    text = format(num, "f")
    return text


def _datetime_literal(value: Any) -> str:
    if isinstance(value, dt.datetime):
        ts = value
    else:
        text = str(value).strip()
        try:
            ts = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise QueryError(
                f"{value!r} is not a date and time (write it like 2024-05-01T08:00:00Z)"
            ) from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    ts = ts.astimezone(dt.UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{ts.microsecond:06d}".rstrip("0") if ts.microsecond else ""
    ) + "Z"


def check_identifier(name: str) -> str:
    """``name`` when it is a plain OData identifier (or a ``nav/prop`` path), else an error."""
    if not _IDENT_RE.match(name):
        raise QueryError(f"{name!r} is not a valid field name")
    return name


# --- fields ----------------------------------------------------------------------------------
@dataclass
class FieldResolver:
    """Turns the names a user writes into the names the service knows.

    ``types`` maps a field's service name to its field type; ``aliases`` maps other accepted
    names (e.g. a Dataverse lookup ``parentcustomerid``) to the service name
    (``_parentcustomerid_value``). An empty ``types`` accepts any valid identifier.
    """

    types: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    filterable: Callable[[str], bool] | None = None

    def resolve(self, name: str, role: str = "field") -> str:
        """The service name of ``name`` (case-insensitive match), or a QueryError."""
        if name.startswith("[") or name.startswith('"'):
            name = name[1:-1]
        if not self.types:
            return check_identifier(name)
        low = name.lower()
        for candidate in (name, self.aliases.get(name), self.aliases.get(low)):
            if candidate and candidate in self.types:
                return candidate
        for known in self.types:
            if known.lower() == low:
                return known
        for alias, target in self.aliases.items():
            if alias.lower() == low:
                return target
        choices = list(self.types) + list(self.aliases)
        close = difflib.get_close_matches(low, [c.lower() for c in choices], n=3, cutoff=0.6)
        by_low = {c.lower(): c for c in choices}
        hint = f"; did you mean {', '.join(by_low[c] for c in close)}?" if close else ""
        raise QueryError(f"unknown {role} {name!r}{hint}")

    def type_of(self, name: str) -> str | None:
        """The field type of a resolved name (None when unknown)."""
        return self.types.get(name)


# --- select statements -----------------------------------------------------------------------
def _unmatched(text: str, pos: int) -> QueryError:
    snippet = text[pos:pos + 15]
    if text[pos] == "'":
        return QueryError(f"unclosed text value starting at {snippet!r}")
    return QueryError(f"unexpected character {text[pos]!r} at position {pos} (near {snippet!r})")


def _tokenize(text: str) -> list[Token]:
    return tokenize(text, _TOKEN_RE, _unmatched)


class _Parser(TokenCursor):
    def __init__(self, text: str, resolver: FieldResolver) -> None:
        super().__init__(_tokenize(text),
                         lambda what: QueryError(f"the query ends where {what} was expected"))
        self.r = resolver
        self.depth = 0

    def is_kw(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "ident" and tok.low in words

    def expect_kw(self, word: str) -> None:
        tok = self.next(word.upper())
        if tok.kind != "ident" or tok.low != word:
            raise QueryError(f"expected {word.upper()} but found {tok.text!r}")

    def expect(self, text: str) -> None:
        tok = self.next(repr(text))
        if tok.text != text:
            raise QueryError(f"expected {text!r} but found {tok.text!r}")

    def name(self, role: str) -> str:
        tok = self.next(f"a {role} name")
        if tok.kind == "ident" and tok.low in _KEYWORDS:
            raise QueryError(f"expected a {role} name but found the keyword {tok.text.upper()}")
        if tok.kind not in ("ident", "bracket", "quoted"):
            raise QueryError(f"expected a {role} name but found {tok.text!r}")
        raw = tok.text
        if tok.kind == "quoted":
            raw = raw[1:-1].replace('""', '"')
        elif tok.kind == "bracket":
            raw = raw[1:-1]
        if "." in raw and tok.kind == "ident":
            raise QueryError(f"{raw!r}: a dotted name cannot be used in a query; use the "
                             "field's own name")
        return raw

    def integer(self, what: str) -> int:
        tok = self.next(what)
        if tok.kind != "number" or not tok.text.isdigit():
            raise QueryError(f"{what} must be a whole number, not {tok.text!r}")
        n = int(tok.text)
        if n < 0 or n > MAX_TOP:
            raise QueryError(f"{what} must be between 0 and {MAX_TOP}")
        return n

    # statement
    def statement(self) -> ODataQuery:
        self.expect_kw("select")
        if self.is_kw("distinct"):
            raise QueryError("SELECT DISTINCT is not supported by OData queries")
        top = None
        if self.is_kw("top"):
            self.i += 1
            if self.peek() is not None and self.peek().text == "(":  # type: ignore[union-attr]
                self.i += 1
                top = self.integer("TOP")
                self.expect(")")
            else:
                top = self.integer("TOP")
        select: list[str] = []
        if self.peek() is not None and self.peek().text == "*":  # type: ignore[union-attr]
            self.i += 1
        else:
            while True:
                select.append(self.r.resolve(self.name("field"), "field"))
                if self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                    self.i += 1
                    continue
                break
        self.expect_kw("from")
        entity = check_identifier(self.name("entity set"))
        flt = None
        if self.is_kw("where"):
            self.i += 1
            flt = self.or_expr()
        orderby: list[str] = []
        if self.is_kw("order"):
            self.i += 1
            self.expect_kw("by")
            while True:
                fname = self.r.resolve(self.name("field"), "ORDER BY field")
                direction = ""
                if self.is_kw("asc", "desc"):
                    direction = " " + self.next("ASC/DESC").low
                orderby.append(fname + direction)
                if self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                    self.i += 1
                    continue
                break
        if self.is_kw("limit"):
            self.i += 1
            if top is not None:
                raise QueryError("use either TOP or LIMIT, not both")
            top = self.integer("LIMIT")
        tok = self.peek()
        if tok is not None:
            raise QueryError(f"unexpected {tok.text!r} at position {tok.pos}; the statement "
                             "must end after ORDER BY / LIMIT")
        return ODataQuery(entity_set=entity, select=tuple(dict.fromkeys(select)), filter=flt,
                          top=top, orderby=tuple(orderby))

    # expressions
    def or_expr(self) -> str:
        parts = [self.and_expr()]
        while self.is_kw("or"):
            self.i += 1
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else " or ".join(parts)

    def and_expr(self) -> str:
        parts = [self.not_expr()]
        while self.is_kw("and"):
            self.i += 1
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else " and ".join(parts)

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise QueryError(f"the WHERE clause nests more than {MAX_NESTING} parentheses or "
                             "NOTs; simplify it")

    def not_expr(self) -> str:
        if self.is_kw("not"):
            self.i += 1
            self.nested()
            inner = self.not_expr()
            self.depth -= 1
            return f"not ({inner})"
        return self.primary()

    def primary(self) -> str:
        tok = self.peek()
        if tok is None:
            raise QueryError("the WHERE clause ends where a condition was expected")
        if tok.text == "(":
            self.i += 1
            self.nested()
            inner = self.or_expr()
            self.expect(")")
            self.depth -= 1
            return f"({inner})"
        return self.comparison()

    def value(self, ftype: str | None) -> str:
        tok = self.next("a value")
        if tok.kind == "string":
            return literal(tok.text[1:-1].replace("''", "'"), ftype or "string")
        if tok.kind == "number":
            if ftype in (None, "string"):
                return literal(tok.text, "string") if ftype == "string" else \
                    _number_literal(tok.text, None)
            return literal(tok.text, ftype)
        if tok.kind == "ident" and tok.low in ("true", "false"):
            return literal(tok.low == "true", "boolean" if ftype in (None, "boolean") else ftype)
        if tok.kind == "ident" and tok.low == "null":
            raise QueryError("compare with NULL using IS NULL / IS NOT NULL")
        raise QueryError(f"expected a value ('text', a number, TRUE or FALSE) but found "
                         f"{tok.text!r}; comparing two fields is not supported")

    def comparison(self) -> str:
        fname = self.r.resolve(self.name("field"), "WHERE field")
        ftype = self.r.type_of(fname)
        tok = self.next("an operator")
        if tok.kind == "op":
            return f"{fname} {_OPS[tok.text]} {self.value(ftype)}"
        low = tok.low if tok.kind == "ident" else ""
        negate = False
        if low == "not":
            negate = True
            tok = self.next("LIKE, IN or BETWEEN")
            low = tok.low if tok.kind == "ident" else ""
        if low == "is" and not negate:
            if self.is_kw("not"):
                self.i += 1
                self.expect_kw("null")
                return f"{fname} ne null"
            self.expect_kw("null")
            return f"{fname} eq null"
        if low == "like":
            expr = self.like(fname)
        elif low == "in":
            self.expect("(")
            values = [self.value(ftype)]
            while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                self.i += 1
                values.append(self.value(ftype))
            self.expect(")")
            expr = "(" + " or ".join(f"{fname} eq {v}" for v in values) + ")"
        elif low == "between":
            lo = self.value(ftype)
            self.expect_kw("and")
            hi = self.value(ftype)
            expr = f"({fname} ge {lo} and {fname} le {hi})"
        else:
            raise QueryError(f"expected an operator (=, <>, <, <=, >, >=, IS, LIKE, IN, "
                             f"BETWEEN) after {fname} but found {tok.text!r}")
        return f"not ({expr})" if negate else expr

    def like(self, fname: str) -> str:
        tok = self.next("a LIKE pattern")
        if tok.kind != "string":
            raise QueryError("LIKE needs a text pattern in single quotes")
        pattern = tok.text[1:-1].replace("''", "'")
        if "_" in pattern or "[" in pattern:
            raise QueryError("LIKE patterns support only % at the start and/or end")
        inner = pattern.strip("%")
        if "%" in inner:
            raise QueryError("LIKE patterns support only % at the start and/or end")
        lit = string_literal(inner)
        starts, ends = pattern.startswith("%"), pattern.endswith("%") and len(pattern) > 1
        if starts and ends:
            return f"contains({fname},{lit})"
        if ends:
            return f"startswith({fname},{lit})"
        if starts:
            return f"endswith({fname},{lit})"
        return f"{fname} eq {lit}"


def is_select_statement(text: str) -> bool:
    """True when ``text`` starts with SELECT."""
    return bool(re.match(r"^\s*select\b", text, re.IGNORECASE))


def parse_select(text: str, resolver: FieldResolver | None = None) -> ODataQuery:
    """Translate a select statement; unknown fields (when known) and bad syntax are errors."""
    return _Parser(text, resolver or FieldResolver()).statement()


def parse_raw_options(text: str, resolver: FieldResolver | None = None) -> ODataQuery:
    """Parse ``$select=...&$filter=...``. ``$select`` and ``$orderby`` names are checked;
    a ``$filter`` is the user's own OData expression and is passed on as written (decoded
    once: ``%20`` and ``%27`` become a space and a quote; ``+`` stays a plus)."""
    resolver = resolver or FieldResolver()
    seen: dict[str, str] = {}
    for part in text.strip().lstrip("?").split("&"):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        key = unquote(key.strip())
        if not eq:
            raise QueryError(f"query option {key!r} has no value (write $name=value)")
        low = key.lower()
        if low not in _RAW_OPTIONS:
            raise QueryError(f"unsupported query option {key!r}; supported: "
                             + ", ".join(_RAW_OPTIONS))
        if low in seen:
            raise QueryError(f"query option {key} is given twice")
        seen[low] = unquote(value.strip())
    select = tuple(resolver.resolve(n.strip(), "$select field")
                   for n in seen.get("$select", "").split(",") if n.strip())
    orderby: list[str] = []
    for item in seen.get("$orderby", "").split(","):
        if not item.strip():
            continue
        bits = item.split()
        if len(bits) > 2 or (len(bits) == 2 and bits[1].lower() not in ("asc", "desc")):
            raise QueryError(f"$orderby item {item.strip()!r} must be 'field' or 'field asc|desc'")
        name = resolver.resolve(bits[0], "$orderby field")
        orderby.append(name + (f" {bits[1].lower()}" if len(bits) == 2 else ""))
    top = None
    if "$top" in seen:
        if not seen["$top"].isdigit():
            raise QueryError(f"$top must be a whole number, not {seen['$top']!r}")
        top = int(seen["$top"])
    flt = seen.get("$filter") or None
    if flt is not None:
        _check_balanced(flt)
    extra = tuple((k, v) for k, v in seen.items()
                  if k in ("$skip", "$count", "$search"))
    return ODataQuery(select=select, filter=flt, top=top, orderby=tuple(orderby),
                      expand=seen.get("$expand") or None, extra=extra)


def _check_balanced(expr: str) -> None:
    """Reject a raw filter whose quotes or parentheses do not balance (a likely typo)."""
    depth = 0
    in_str = False
    i = 0
    while i < len(expr):
        c = expr[i]
        if in_str:
            if c == "'":
                if i + 1 < len(expr) and expr[i + 1] == "'":
                    i += 1
                else:
                    in_str = False
        elif c == "'":
            in_str = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                raise QueryError("$filter has a ')' without '('")
        i += 1
    if in_str:
        raise QueryError("$filter has an unclosed text value (a quote in a value is written '')")
    if depth:
        raise QueryError("$filter has a '(' without ')'")


def translate(text: str | None, resolver: FieldResolver | None = None) -> ODataQuery:
    """A select statement, raw options, an entity set name or nothing, as an ODataQuery."""
    text = (text or "").strip()
    if not text:
        return ODataQuery()
    if is_select_statement(text):
        return parse_select(text, resolver)
    if text.startswith("$") or text.startswith("?$"):
        return parse_raw_options(text, resolver)
    if _IDENT_RE.match(text):
        return ODataQuery(entity_set=text)
    raise QueryError("the query must be a SELECT statement, OData query options "
                     "($select=...&$filter=...) or an entity set name")


#: raw query options that make a read return only part of the entity set
_FILTERING_OPTIONS = ("$filter", "$search")
_LIMITING_OPTIONS = ("$top", "$skip")
MAX_RESTRICTION = 80


def read_scope(text: str | None) -> tuple[str, str | None]:
    """(scope, restriction) of a query: ``"limited"`` when ``TOP``/``LIMIT``/``$top``/``$skip``
    caps what a read returns (with or without a filter), ``"filtered"`` for ``WHERE``,
    ``$filter`` or ``$search``, else ``"all"``. The restriction is the clause(s) as written,
    cut to about 80 characters. A query that does not parse is ``"all"`` here: it is refused
    by :func:`translate` anyway."""
    text = (text or "").strip()
    clauses: list[str] = []
    limited = filtered = False
    if is_select_statement(text):
        try:
            toks = _tokenize(text)
        except QueryError:
            return "all", None
        for n, tok in enumerate(toks):
            if tok.kind != "ident":
                continue
            if tok.low in ("top", "limit") and n + 1 < len(toks):
                end = n + 1
                if toks[end].text == "(" and end + 2 < len(toks):
                    end += 2
                clauses.append(text[tok.pos:toks[end].pos + len(toks[end].text)])
                limited = True
            elif tok.low == "where":
                stop = next((t.pos for t in toks[n + 1:] if t.kind == "ident" and
                             t.low in ("order", "limit")), len(text))
                clauses.append(text[tok.pos:stop].strip())
                filtered = True
    elif text.startswith("$") or text.startswith("?$"):
        for part in text.lstrip("?").split("&"):
            key = unquote(part.partition("=")[0].strip()).lower()
            if key in _LIMITING_OPTIONS:
                limited = True
            elif key in _FILTERING_OPTIONS:
                filtered = True
            else:
                continue
            clauses.append(part.strip())
    if not clauses:
        return "all", None
    joined = " ".join(clauses) if is_select_statement(text) else "&".join(clauses)
    if len(joined) > MAX_RESTRICTION:
        joined = joined[:MAX_RESTRICTION - 3].rstrip() + "..."
    return ("limited" if limited else "filtered" if filtered else "all"), joined
