"""FindItem / FindFolder helpers: restrictions, sort order, paged and calendar views."""

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from lxml import etree

from l2sync_dagster.sandbox.ews.fields import Path, local
from l2sync_dagster.sandbox.ews.soap import t

#: a getter of a property path's value for one object (a list for a multi-valued property
#: such as Categories)
Getter = Callable[[Path], str | list[str] | None]
R = TypeVar("R")


def _constant(el: etree._Element) -> tuple[Path | None, str | None]:
    """Second operand of a comparison: another path or a constant."""
    holder = el.find(t("FieldURIOrConstant"))
    if holder is None or not len(holder):
        return None, None
    c = holder[0]
    if local(c) == "Constant":
        return None, c.get("Value")
    return Path.parse(c), None


def compare(a: str, b: str) -> int:
    """Compare two property values as numbers, times, or case-insensitive text."""
    x, y = sort_value(a), sort_value(b)
    if x[0] != y[0]:  # different kinds: compare as text
        x, y = (2, a.lower()), (2, b.lower())
    return (x > y) - (x < y)


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _as_time(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


_OPS: dict[str, Callable[[int], bool]] = {
    "IsEqualTo": lambda c: c == 0, "IsNotEqualTo": lambda c: c != 0,
    "IsGreaterThan": lambda c: c > 0, "IsGreaterThanOrEqualTo": lambda c: c >= 0,
    "IsLessThan": lambda c: c < 0, "IsLessThanOrEqualTo": lambda c: c <= 0,
}


_BOOLEAN_DIGITS = {"1": "true", "0": "false"}


def _same_boolean_form(a: str, b: str) -> tuple[str, str]:
    """xs:boolean allows 1/0 as well as true/false (exchangelib sends 1/0): compare them alike."""
    words = ("true", "false")
    if a in words and b in _BOOLEAN_DIGITS:
        return a, _BOOLEAN_DIGITS[b]
    if b in words and a in _BOOLEAN_DIGITS:
        return _BOOLEAN_DIGITS[a], b
    return a, b


def matches(expr: etree._Element, get: Getter) -> bool:
    """Evaluate one search expression (``t:IsEqualTo``, ``t:And`` ...) against an object."""
    kind = local(expr)
    if kind == "And":
        return all(matches(e, get) for e in expr)
    if kind == "Or":
        return any(matches(e, get) for e in expr)
    if kind == "Not":
        return not matches(expr[0], get)
    path = Path.parse(expr[0])
    value = get(path)
    if kind == "Exists":
        return bool(value) if isinstance(value, list) else value is not None
    if isinstance(value, list):
        # a multi-valued property matches when one of its values does (Categories)
        return any(_leaf(kind, expr, v, get) for v in value)
    return _leaf(kind, expr, value, get)


def _leaf(kind: str, expr: etree._Element, value: str | None, get: Getter) -> bool:
    """A comparison or Contains on one value."""
    if kind == "Contains":
        constant = expr.find(t("Constant"))
        needle = (constant.get("Value") if constant is not None else "") or ""
        if value is None:
            return False
        mode = expr.get("ContainmentMode", "Substring")
        loose = "Ignore" in expr.get("ContainmentComparison", "Exact")
        hay, needle = (value.lower(), needle.lower()) if loose else (value, needle)
        if mode == "FullString":
            return hay == needle
        if mode == "Prefixed":
            return hay.startswith(needle)
        return needle in hay
    if kind in _OPS:
        other_path, constant = _constant(expr)
        other = get(other_path) if other_path is not None else constant
        if isinstance(other, list):
            other = "".join(other)
        if value is None or other is None:
            return kind == "IsNotEqualTo" and (value is None) != (other is None)
        return _OPS[kind](compare(*_same_boolean_form(value, other)))
    raise ValueError(f"unsupported restriction {kind}")


def sort_key(order_el: etree._Element | None) -> list[tuple[Path, bool]]:
    """``[(path, descending)]`` from ``m:SortOrder``."""
    if order_el is None:
        return []
    return [(Path.parse(fo[0]), fo.get("Order") == "Descending") for fo in order_el]


@dataclass
class Page:
    """A paged view: offset, max entries, and whether it counts from the end."""

    offset: int = 0
    max_entries: int | None = None
    from_end: bool = False

    @classmethod
    def parse(cls, el: etree._Element | None) -> "Page":
        """From ``m:IndexedPageItemView`` / ``m:IndexedPageFolderView`` (None: everything)."""
        if el is None:
            return cls()
        maxe = el.get("MaxEntriesReturned")
        return cls(int(el.get("Offset", "0")), int(maxe) if maxe else None,
                   el.get("BasePoint") == "End")

    def apply(self, rows: list[R], limit: int) -> tuple[list[R], int, bool]:
        """``(page, next offset, includes last)``; at most ``limit`` rows (EWSFindCountLimit)."""
        count = min(self.max_entries or limit, limit)
        if self.from_end:
            end = max(len(rows) - self.offset, 0)
            start = max(end - count, 0)
            page = rows[start:end]
            return page, self.offset + len(page), start == 0
        page = rows[self.offset:self.offset + count]
        nxt = self.offset + len(page)
        return page, nxt, nxt >= len(rows)


def sort_value(text: str) -> tuple[int, object]:
    """A sort key that orders numbers, times and text the way :func:`compare` does."""
    if _NUMBER.fullmatch(text.strip()):
        return 0, float(text)
    try:
        return 1, _as_time(text)
    except ValueError:
        return 2, text.lower()


def sort_rows(rows: list[R], keys: list[tuple[Path, bool]],
              getter: Callable[[R, Path], str | None]) -> list[R]:
    """Sort by the ``m:SortOrder`` keys (stable, last key first). As on Exchange an empty
    value is the smallest: first in ascending order, last in descending order."""
    for path, desc in reversed(keys):
        values = [(getter(r, path), r) for r in rows]
        present = [(sort_value(v), r) for v, r in values if v is not None]
        missing = [r for v, r in values if v is None]
        present.sort(key=lambda pair: pair[0], reverse=desc)
        ordered = [r for _, r in present]
        rows = ordered + missing if desc else missing + ordered
    return rows
