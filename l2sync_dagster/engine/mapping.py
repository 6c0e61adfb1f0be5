"""Field mapping: which left field pairs with which right field, its type and direction."""

import difflib
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from l2sync_dagster.providers.base import MODIFIED, VERSION, EntityDescription, FieldInfo

Side = Literal["left", "right"]
FieldDirection = Literal["both", "left_to_right", "right_to_left"]


class MappingError(ValueError):
    """The mapping cannot be resolved against the entities (unknown or read-only field...)."""


@dataclass(frozen=True)
class FieldPair:
    """One mapped field. ``name`` is its canonical name (the left field name)."""

    name: str
    left: str
    right: str
    type: str
    direction: FieldDirection = "both"

    def flows_to(self, side: Side) -> bool:
        """True when values of this field are written to ``side``."""
        if side == "right":
            return self.direction in ("both", "left_to_right")
        return self.direction in ("both", "right_to_left")

    def field(self, side: Side) -> str:
        """The field name on ``side``."""
        return self.left if side == "left" else self.right


@dataclass(frozen=True)
class FieldMapping:
    """The resolved mapping of a connection."""

    pairs: tuple[FieldPair, ...]

    @property
    def names(self) -> list[str]:
        """Canonical names in mapping order."""
        return [p.name for p in self.pairs]

    def types(self) -> dict[str, str]:
        """Canonical name -> field type."""
        return {p.name: p.type for p in self.pairs}

    def by_name(self, name: str) -> FieldPair | None:
        """The pair whose left, right or canonical name is ``name`` (case-insensitive)."""
        low = name.lower()
        for p in self.pairs:
            if low in (p.name.lower(), p.left.lower(), p.right.lower()):
                return p
        return None

    def signature(self) -> str:
        """A short fingerprint of names and types; the archive is only valid for it."""
        data = json.dumps([[p.name, p.left, p.right, p.type] for p in self.pairs])
        return hashlib.sha256(data.encode()).hexdigest()[:16]

    def cursor_signature(self, direction: str) -> str:
        """The fingerprint cursors are valid for: the mapping plus which way data flows.

        A side that becomes a source (one-way switched to bidirectional, a field's direction
        changed) must be read in full once: records it had that were never synced are behind
        its old cursor.
        """
        data = json.dumps([self.signature(), direction, [p.direction for p in self.pairs]])
        return hashlib.sha256(data.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ExplicitPair:
    """A pair written in the connection file."""

    left: str
    right: str
    type: str | None = None
    direction: FieldDirection = "both"


def _lookup(desc: EntityDescription, name: str, side: Side) -> FieldInfo:
    info = desc.field(name)
    if info is None:
        names = [f.name for f in desc.fields]
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise MappingError(
            f"mapping: {side} field {name!r} does not exist{hint} "
            f"(available: {', '.join(names) or 'none'})"
        )
    return info


def _pair_type(explicit: str | None, left: FieldInfo | None, right: FieldInfo | None) -> str:
    if explicit:
        return explicit
    typed = [f.type for f in (left, right) if f is not None and f.typed]
    if not typed:
        return "string"
    if len(typed) == 2 and typed[0] != typed[1]:
        pair = set(typed)
        if pair == {"integer", "float"}:
            return "float"
        if pair == {"date", "datetime"}:
            return "datetime"
        if pair == {"decimal", "float"} or pair == {"decimal", "integer"}:
            return "decimal"
        if "string" in pair:
            return "string"
    return typed[0]


def _writable_direction(
    direction: FieldDirection,
    left: FieldInfo | None,
    right: FieldInfo | None,
    conn_direction: str,
) -> FieldDirection | None:
    """Narrow a field direction by the connection direction and read-only fields."""
    to_right = direction in ("both", "left_to_right") and conn_direction != "right_to_left"
    to_left = direction in ("both", "right_to_left") and conn_direction != "left_to_right"
    if right is not None and right.read_only:
        to_right = False
    if left is not None and left.read_only:
        to_left = False
    if to_right and to_left:
        return "both"
    if to_right:
        return "left_to_right"
    if to_left:
        return "right_to_left"
    return None


def resolve_mapping(
    *,
    auto: bool,
    explicit: Sequence[ExplicitPair],
    exclude: Iterable[str],
    left: EntityDescription,
    right: EntityDescription,
    direction: str,
) -> FieldMapping:
    """Pair the fields of both entities: explicit pairs first, then same names (auto).

    A side that describes no fields (a file not created yet) takes the other side's names.
    Read-only target fields are refused for explicit pairs and left out of auto pairs.
    """
    excluded = {e.lower() for e in exclude}
    special = {MODIFIED.lower(), VERSION.lower()}
    pairs: list[FieldPair] = []
    used_left: set[str] = set()
    used_right: set[str] = set()
    left_open = not left.fields
    right_open = not right.fields

    for ex in explicit:
        lf = None if left_open else _lookup(left, ex.left, "left")
        rf = None if right_open else _lookup(right, ex.right, "right")
        eff = _writable_direction(ex.direction, lf, rf, direction)
        wants_right = ex.direction in ("both", "left_to_right") and direction != "right_to_left"
        wants_left = ex.direction in ("both", "right_to_left") and direction != "left_to_right"
        if wants_right and rf is not None and rf.read_only and ex.direction != "both":
            raise MappingError(
                f"mapping: right field {rf.name!r} is read-only and cannot be a target; "
                "map it right_to_left or drop it"
            )
        if wants_left and lf is not None and lf.read_only and ex.direction != "both":
            raise MappingError(
                f"mapping: left field {lf.name!r} is read-only and cannot be a target; "
                "map it left_to_right or drop it"
            )
        if eff is None:
            side, f = ("right", rf) if wants_right else ("left", lf)
            name = f.name if f is not None else "?"
            raise MappingError(
                f"mapping: {side} field {name!r} is read-only and cannot be a target "
                f"of a {direction} connection; remove the pair or change its direction"
            )
        lname = lf.name if lf else ex.left
        rname = rf.name if rf else ex.right
        pairs.append(FieldPair(lname, lname, rname, _pair_type(ex.type, lf, rf), eff))
        used_left.add(lname.lower())
        used_right.add(rname.lower())

    if auto:
        gen_left = left.key.lower() if left.key_generated else None
        gen_right = right.key.lower() if right.key_generated else None
        right_by_low = {f.name.lower(): f for f in right.fields}
        source = left.fields if not left_open else right.fields
        for f in source:
            low = f.name.lower()
            if low in excluded or low in special or low in used_left or low in used_right:
                continue
            if left_open:
                lf, rf = None, f
            elif right_open:
                lf, rf = f, None
            else:
                lf, rf = f, right_by_low.get(low)
                if rf is None:
                    continue
            if (lf is not None and low == gen_left) or (rf is not None and low == gen_right):
                continue
            eff = _writable_direction("both", lf, rf, direction)
            if eff is None:
                continue
            lname = lf.name if lf else f.name
            rname = rf.name if rf else f.name
            pairs.append(FieldPair(lname, lname, rname, _pair_type(None, lf, rf), eff))
            used_left.add(lname.lower())
            used_right.add(rname.lower())

    if not pairs:
        raise MappingError(
            "mapping: no fields are mapped; list pairs under mapping.fields or give both sides "
            "fields with the same names (mapping.auto)"
        )
    return FieldMapping(tuple(pairs))
