"""OData query options as Graph takes them: ``$filter``, ``$select``, ``$orderby``, ``$top``,
``$expand``.

``$filter`` supports what the providers send: ``eq ne gt ge lt le``, ``and``, ``or``, ``not``,
parentheses, ``startswith(path, 'text')``, lambdas ``path/any(x: x/prop eq 'v')``, and
literals (strings, numbers, ``true``/``false``/``null``, unquoted date-times). String
comparisons are case-insensitive (Exchange and SharePoint compare that way). Anything else is a
:class:`QueryError` (a 400 ``BadRequest`` / ``invalidRequest``).
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class QueryError(ValueError):
    """A query option the server does not understand: a 400 answer."""


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>'(?:[^']|'')*')
    | (?P<dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)
    | (?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    | (?P<punct>[(),:/])
    | (?P<word>[A-Za-z_@][A-Za-z0-9_.@#]*)
    )""", re.VERBOSE)

_OPS = {"eq", "ne", "gt", "ge", "lt", "le"}
Predicate = Callable[[dict[str, Any]], bool]


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise QueryError(f"Invalid filter clause: syntax error at position {pos} in "
                             f"'{text}'.")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def parse_datetime(text: str) -> datetime:
    """An ISO date-time (7 fractional digits allowed, no zone = UTC) as aware UTC datetime."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.strip()).replace("Z", "+00:00")
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclass
class _Literal:
    value: Any


@dataclass
class _Path:
    parts: list[str]


def resolve(entity: Any, parts: list[str]) -> Any:
    """The value at a ``/``-separated path (None when missing)."""
    value = entity
    for p in parts:
        if isinstance(value, dict):
            found = value.get(p)
            if found is None and p not in value:  # case-insensitive fallback, like Graph
                found = next((v for k, v in value.items() if k.lower() == p.lower()), None)
            value = found
        else:
            return None
    return value


def _compare(op: str, left: Any, right: Any) -> bool:
    if isinstance(left, dict) and "dateTime" in left:  # dateTimeTimeZone stored in UTC
        left = left["dateTime"]
    if isinstance(left, datetime) or isinstance(right, datetime):
        try:
            left = parse_datetime(left) if isinstance(left, str) else left
            right = parse_datetime(right) if isinstance(right, str) else right
        except ValueError:
            return False
    elif isinstance(left, str) and isinstance(right, str):
        if _looks_like_datetime(left) and _looks_like_datetime(right):
            try:
                left, right = parse_datetime(left), parse_datetime(right)
            except ValueError:
                left, right = left.lower(), right.lower()
        else:
            left, right = left.lower(), right.lower()
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    if left is None or right is None:
        return False
    try:
        if op == "gt":
            return bool(left > right)
        if op == "ge":
            return bool(left >= right)
        if op == "lt":
            return bool(left < right)
        return bool(left <= right)
    except TypeError:
        return False


def _looks_like_datetime(text: str) -> bool:
    return bool(re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}", text))


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.lambda_vars: set[str] = set()

    def peek(self, ahead: int = 0) -> tuple[str, str] | None:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1].lower() != value):
            raise QueryError(f"Invalid filter clause: expected {value or 'more'} in "
                             f"'{self.text}'.")
        self.i += 1
        return tok

    def parse(self) -> Predicate:
        pred = self.or_expr()
        if self.peek() is not None:
            raise QueryError(f"Invalid filter clause: unexpected '{self.peek()[1]}' in "  # type: ignore[index]
                             f"'{self.text}'.")
        return pred

    def or_expr(self) -> Predicate:
        preds = [self.and_expr()]
        while (t := self.peek()) and t[0] == "word" and t[1].lower() == "or":
            self.take()
            preds.append(self.and_expr())
        return preds[0] if len(preds) == 1 else (lambda e: any(p(e) for p in preds))

    def and_expr(self) -> Predicate:
        preds = [self.unary()]
        while (t := self.peek()) and t[0] == "word" and t[1].lower() == "and":
            self.take()
            preds.append(self.unary())
        return preds[0] if len(preds) == 1 else (lambda e: all(p(e) for p in preds))

    def unary(self) -> Predicate:
        t = self.peek()
        if t and t[0] == "word" and t[1].lower() == "not":
            self.take()
            inner = self.unary()
            return lambda e: not inner(e)
        if t and t[1] == "(":
            self.take()
            inner = self.or_expr()
            self.take(")")
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        t = self.peek()
        nxt = self.peek(1)
        if t and t[0] == "word" and nxt and nxt[1] == "(":
            name = t[1].lower()
            if name != "startswith":
                raise QueryError(f"Unsupported or invalid query filter clause specified: "
                                 f"function '{t[1]}' is not supported.")
            self.take()
            self.take("(")
            path = self.operand()
            self.take(",")
            prefix = self.operand()
            self.take(")")
            if not isinstance(path, _Path) or not isinstance(prefix, _Literal) \
                    or not isinstance(prefix.value, str):
                raise QueryError("startswith takes a property and a string literal.")
            parts, text = path.parts, prefix.value.lower()

            def starts(e: dict[str, Any]) -> bool:
                value = resolve(e, parts)
                return isinstance(value, str) and value.lower().startswith(text)
            return starts
        left = self.operand()
        if isinstance(left, _Predicate):
            return left.fn
        op_tok = self.take()
        op = op_tok[1].lower()
        if op not in _OPS:
            raise QueryError(f"Invalid filter clause: unsupported operator '{op_tok[1]}'.")
        right = self.operand()
        if isinstance(right, _Predicate):
            raise QueryError("Invalid filter clause: a comparison needs a value.")
        return _comparison(op, left, right)

    def operand(self) -> "_Literal | _Path | _Predicate":
        kind, value = self.take()
        if kind == "str":
            return _Literal(value[1:-1].replace("''", "'"))
        if kind == "dt":
            return _Literal(parse_datetime(value))
        if kind == "num":
            return _Literal(float(value) if any(c in value for c in ".eE") else int(value))
        if kind == "word":
            low = value.lower()
            if low in ("true", "false"):
                return _Literal(low == "true")
            if low == "null":
                return _Literal(None)
            parts = [value]
            while (t := self.peek()) and t[1] == "/":
                self.take()
                name = self.take()[1]
                if name.lower() in ("any", "all") and (p := self.peek()) and p[1] == "(":
                    return self.lambda_expr(parts, name.lower())
                parts.append(name)
            if parts[0] in self.lambda_vars:
                parts = ["$it", *parts[1:]]
            return _Path(parts)
        raise QueryError(f"Invalid filter clause: unexpected '{value}' in '{self.text}'.")

    def lambda_expr(self, parts: list[str], kind: str) -> "_Predicate":
        self.take("(")
        var = self.take()[1]
        self.take(":")
        self.lambda_vars.add(var)
        inner = self.or_expr()
        self.lambda_vars.discard(var)
        self.take(")")
        outer = list(parts)

        def test(e: dict[str, Any]) -> bool:
            items = resolve(e, outer) or []
            if not isinstance(items, list):
                return False
            results = (inner({"$it": item}) for item in items)
            return any(results) if kind == "any" else all(results)
        return _Predicate(test)


@dataclass
class _Predicate:
    fn: Predicate


def _comparison(op: str, left: Any, right: Any) -> Predicate:
    def value(side: Any, e: dict[str, Any]) -> Any:
        if isinstance(side, _Path):
            if side.parts[0] == "$it":
                return resolve(e.get("$it"), side.parts[1:])
            return resolve(e, side.parts)
        return side.value
    return lambda e: _compare(op, value(left, e), value(right, e))


def parse_filter(text: str) -> Predicate:
    """A predicate over entity dicts; :class:`QueryError` for what Graph would refuse."""
    if not text.strip():
        raise QueryError("Invalid filter clause: empty.")
    return _Parser(text).parse()


def parse_select(text: str | None) -> list[str] | None:
    """``$select=a,b`` -> ``["a", "b"]`` (None when absent)."""
    if text is None:
        return None
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise QueryError("Invalid $select: empty.")
    return names


def parse_orderby(text: str | None) -> list[tuple[list[str], bool]]:
    """``$orderby=a desc,b`` -> ``[(["a"], True), (["b"], False)]``."""
    if not text:
        return []
    out = []
    for clause in text.split(","):
        words = clause.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower()
                                           not in ("asc", "desc")):
            raise QueryError(f"Invalid $orderby clause '{clause.strip()}'.")
        out.append((words[0].split("/"), len(words) == 2 and words[1].lower() == "desc"))
    return out


def sort_key(entity: dict[str, Any], path: list[str]) -> tuple[int, Any]:
    """A key that sorts None first and compares date-times as strings (ISO sorts right)."""
    value = resolve(entity, path)
    if isinstance(value, dict) and "dateTime" in value:
        value = value["dateTime"]
    if value is None:
        return (0, "")
    if isinstance(value, str):
        return (1, value.lower())
    if isinstance(value, bool):
        return (2, int(value))
    if isinstance(value, (int, float)):
        return (2, value)
    return (3, str(value))


def parse_top(text: str | None, maximum: int) -> int | None:
    """``$top`` as int, 1..maximum (Graph answers 400 for values it does not accept)."""
    if text is None:
        return None
    if not text.isdigit() or not 0 < int(text) <= maximum:
        raise QueryError(f"Invalid page size specified: '{text}'. Must be between 1 and "
                         f"{maximum} inclusive.")
    return int(text)


@dataclass
class Expand:
    """One ``$expand`` item: ``name($select=..;$filter=..)``."""

    name: str
    select: list[str] | None = None
    filter: Predicate | None = None


def parse_expand(text: str | None) -> dict[str, Expand]:
    """``fields(select=A,B)``, ``singleValueExtendedProperties($filter=id eq '...')``."""
    if not text:
        return {}
    out: dict[str, Expand] = {}
    depth, start, items = 0, 0, []
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    for item in items:
        item = item.strip()
        name, _, rest = item.partition("(")
        exp = Expand(name.strip())
        if rest:
            if not rest.endswith(")"):
                raise QueryError(f"Invalid $expand '{item}'.")
            for option in _split_options(rest[:-1]):
                key, _, value = option.partition("=")
                key = key.strip().lstrip("$").lower()
                if key == "select":
                    exp.select = parse_select(value)
                elif key == "filter":
                    exp.filter = parse_filter(value)
                else:
                    raise QueryError(f"Unsupported option '{key}' in $expand '{item}'.")
        out[exp.name] = exp
    return out


def _split_options(text: str) -> list[str]:
    """Options inside ``(...)`` of $expand are separated by ``;`` (quotes respected)."""
    out, cur, quoted = [], [], False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        if ch == ";" and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [o for o in out if o.strip()]
