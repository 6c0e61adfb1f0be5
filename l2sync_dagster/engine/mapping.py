"""Field mapping: which left field pairs with which right field, its type and direction.

An explicit pair (``mapping.fields``) whose target is read-only in a direction that writes it
is refused: quietly making it one-way would overwrite the user's value on the other side. An
auto-mapped field whose target is read-only narrows to the direction that can be written (or
is left out) and says so in :attr:`FieldMapping.notes`.
"""

import difflib
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from l2sync_dagster.contract import MODIFIED, VERSION, EntityDescription, FieldInfo
from l2sync_dagster.spec.errors import cut, cut_list, located, pretty_path

Side = Literal["left", "right"]
FieldDirection = Literal["both", "left_to_right", "right_to_left"]


class MappingError(ValueError):
    """The mapping cannot be resolved against the entities (unknown or read-only field...)."""


#: ``locate(path, message, side, key) -> str``: a message naming its place in the file
Locate = Callable[[str, str, str | None, str | None], str]


def _unlocated(path: str, message: str, side: str | None, key: str | None) -> str:
    subject = pretty_path(path)
    if side and key is not None:
        subject += f" ({side} field '{cut(key)}')"
    return f"{subject}: {message}"


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
    """The resolved mapping of a connection.

    ``notes`` says what the mapping did on its own (an auto-mapped field narrowed to one way or
    left out because its target is read-only); they are not part of :meth:`signature`.
    """

    pairs: tuple[FieldPair, ...]
    notes: tuple[str, ...] = field(default=(), compare=False)

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


def _lookup(desc: EntityDescription, name: str, side: Side, path: str, locate: Locate
            ) -> FieldInfo:
    info = desc.field(name)
    if info is None:
        names = [f.name for f in desc.fields]
        close = difflib.get_close_matches(name, names, n=3) if len(name) < 200 else []
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise MappingError(locate(
            path, f"does not exist on the {side} side{hint} "
            f"(available: {cut_list(names, 12) or 'none'})", side, name))
    return info


def _words(name: str) -> list[str]:
    """``CompleteName.FullName`` -> ``['complete', 'name', 'full', 'name']``."""
    return [w.lower() for w in re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", name)]


def writable_alternatives(desc: EntityDescription, name: str, n: int = 2) -> list[str]:
    """Up to ``n`` writable fields of ``desc`` whose names are close to the read-only ``name``.

    Close: similar spelling, or the same parent and last word (``FullName`` -> ``GivenName``,
    ``CompleteName.FullName`` -> ``CompleteName.GivenName``); the most similar first.
    """
    declared = desc.field(name)
    if declared is not None and declared.alternative:
        return [declared.alternative]
    if len(name) > 200:
        return []
    parent, _, tail = name.rpartition(".")
    parent = parent.lower()
    last = (_words(tail) or [tail.lower()])[-1]
    scored: list[tuple[float, str]] = []
    for f in desc.fields:
        low = f.name.lower()
        if f.read_only or low == name.lower() or (desc.key_generated and low == desc.key.lower()):
            continue
        ratio = difflib.SequenceMatcher(None, name.lower(), low).ratio()
        f_parent, _, f_tail = f.name.rpartition(".")
        same_word = f_parent.lower() == parent and (_words(f_tail) or [f_tail.lower()])[-1] \
            == last
        if ratio >= 0.6 or same_word:
            scored.append((ratio + (1 if same_word else 0), f.name))
    scored.sort(key=lambda item: -item[0])
    return [field_name for _, field_name in scored[:n]]


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


def _read_only_target(
    i: int, ex: "ExplicitPair", side: Side, info: FieldInfo, desc: EntityDescription,
    other: FieldInfo | None, direction: str, locate: Locate,
) -> MappingError:
    """The refusal of pair ``i`` whose ``side`` field is read-only but written."""
    flows = "right_to_left" if side == "right" else "left_to_right"
    why = (f"is read-only on the {side} side, but this pair writes it "
           f"(pair direction {ex.direction}, connection direction {direction})")
    fixes: list[str] = []
    alternatives = writable_alternatives(desc, info.name)
    if alternatives:
        names = " or ".join(f"'{cut(a)}'" for a in alternatives)
        fixes.append(f"map a writable field instead ({names})")
    if direction == "bidirectional" and not (other is not None and other.read_only):
        fixes.append(f"set direction: {flows} on this pair to only read it")
    fixes.append("remove the pair")
    return MappingError(locate(f"mapping.fields.{i}", f"{why}; " + ", or ".join(fixes),
                               side, info.name))


def resolve_mapping(
    *,
    auto: bool,
    explicit: Sequence[ExplicitPair],
    exclude: Iterable[str],
    left: EntityDescription,
    right: EntityDescription,
    direction: str,
    match_on: Sequence[str] = (),
    locate: Locate | None = None,
) -> FieldMapping:
    """Pair the fields of both entities: explicit pairs first, then same names (auto).

    A side that describes no fields (a file not created yet) takes the other side's names.
    An explicit pair whose target is read-only in a direction that writes it is refused with
    the field, the side and the writable alternative; an auto-mapped field with a read-only
    target narrows to the direction that can be written, or is left out, and a note says so.
    ``match_on`` names must be mapped fields. ``locate(path, message, side, key)`` places a
    message in the connection file (``mapping.fields.2``, ``match_on.0``); see
    :func:`resolve_for_spec`.
    """
    locate = locate or _unlocated
    excluded = {e.lower() for e in exclude}
    special = {MODIFIED.lower(), VERSION.lower()}
    pairs: list[FieldPair] = []
    notes: list[str] = []
    used_left: set[str] = set()
    used_right: set[str] = set()
    left_open = not left.fields
    right_open = not right.fields

    for i, ex in enumerate(explicit):
        lf = None if left_open else _lookup(left, ex.left, "left", f"mapping.fields.{i}.left",
                                            locate)
        rf = None if right_open else _lookup(right, ex.right, "right",
                                             f"mapping.fields.{i}.right", locate)
        wants_right = ex.direction in ("both", "left_to_right") and direction != "right_to_left"
        wants_left = ex.direction in ("both", "right_to_left") and direction != "left_to_right"
        if wants_right and rf is not None and rf.read_only:
            raise _read_only_target(i, ex, "right", rf, right, lf, direction, locate)
        if wants_left and lf is not None and lf.read_only:
            raise _read_only_target(i, ex, "left", lf, left, rf, direction, locate)
        eff = _writable_direction(ex.direction, lf, rf, direction)
        if eff is None:
            raise MappingError(locate(
                f"mapping.fields.{i}.direction",
                f"{ex.direction} writes nothing in a {direction} connection; use both or "
                f"{direction}", None, None))
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
        natural = _writable_direction("both", None, None, direction)
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
            if eff != natural:
                notes.append(_narrowed(f.name, lf, rf, eff))
            if eff is None:
                continue
            lname = lf.name if lf else f.name
            rname = rf.name if rf else f.name
            pairs.append(FieldPair(lname, lname, rname, _pair_type(None, lf, rf), eff))
            used_left.add(lname.lower())
            used_right.add(rname.lower())

    if not pairs:
        raise MappingError(locate(
            "mapping", "no fields are mapped; list pairs under mapping.fields or give both "
            "sides fields with the same names (mapping.auto)", None, None))
    mapping = FieldMapping(tuple(pairs), tuple(notes))
    for j, name in enumerate(match_on):
        if mapping.by_name(name) is None:
            raise MappingError(locate(
                f"match_on.{j}", f"'{cut(name)}' is not a mapped field; mapped fields are "
                + cut_list(mapping.names, 12), None, None))
    return mapping


def _narrowed(name: str, left: FieldInfo | None, right: FieldInfo | None,
              eff: FieldDirection | None) -> str:
    sides = [s for s, f in (("left", left), ("right", right)) if f is not None and f.read_only]
    where = " and ".join(sides)
    if eff is None:
        return (f"mapping: auto-mapped field '{cut(name)}' is left out: it is read-only on the "
                f"{where} side")
    return (f"mapping: auto-mapped field '{cut(name)}' is read-only on the {where} side, so it "
            f"only flows {eff}; list it under mapping.fields with that direction to say so, or "
            "under mapping.exclude to leave it out")


def resolve_for_spec(spec: Any, left: EntityDescription, right: EntityDescription
                     ) -> FieldMapping:
    """:func:`resolve_mapping` for a connection file: errors name the file, line, side, field.

    ``spec`` is a :class:`~l2sync_dagster.spec.model.ConnectionSpec`.
    """
    m = spec.mapping
    return resolve_mapping(
        auto=m.auto,
        explicit=[ExplicitPair(f.left, f.right, f.type, f.direction) for f in m.fields],
        exclude=m.exclude, left=left, right=right, direction=spec.direction,
        match_on=spec.match_on,
        locate=lambda path, message, side, key: located(spec, path, message, side=side,
                                                        key=key),
    )
