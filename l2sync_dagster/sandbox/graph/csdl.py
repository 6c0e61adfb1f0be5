"""Microsoft's Graph v1.0 CSDL, indexed for checking JSON entities against it.

Only the ``microsoft.graph`` schema is indexed: entity and complex types with their structural
properties (name -> type, nullability), navigation properties, base types, ``OpenType`` and
enum members. :meth:`Csdl.check` returns the problems of one JSON object as a list of strings
(empty = valid): unknown property, wrong JSON type, bad enum member, bad date.
"""

import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lxml import etree

EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
NAMESPACE = "microsoft.graph"

_INT_TYPES = {"Edm.Int16", "Edm.Int32", "Edm.Int64", "Edm.Byte", "Edm.SByte"}
_NUM_TYPES = {"Edm.Double", "Edm.Single", "Edm.Decimal"}
_STR_TYPES = {"Edm.String", "Edm.Guid", "Edm.Binary", "Edm.Duration", "Edm.TimeOfDay"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})?$")


@dataclass
class StructuredType:
    """An entity or complex type: own properties only; ``base`` names the base type."""

    name: str
    kind: str  # "entity" | "complex"
    base: str | None
    open: bool
    abstract: bool
    properties: dict[str, tuple[str, bool]] = field(default_factory=dict)  # name -> (type, null)
    navigation: dict[str, str] = field(default_factory=dict)


def _short(type_name: str) -> str:
    """``graph.contact`` / ``microsoft.graph.contact`` -> ``contact``; Edm types unchanged."""
    for prefix in ("graph.", "microsoft.graph.", "#microsoft.graph."):
        if type_name.startswith(prefix):
            return type_name[len(prefix):]
    return type_name


class Csdl:
    """The indexed schema; build it with :func:`load_csdl` (cached per path)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.types: dict[str, StructuredType] = {}
        self.enums: dict[str, frozenset[str]] = {}
        self.derived: dict[str, set[str]] = {}
        schema_tag = f"{EDM}Schema"
        for _, schema in etree.iterparse(str(path), events=("end",), tag=schema_tag):
            if schema.get("Namespace") == NAMESPACE:
                self._index(schema)
            schema.clear()
        for t in self.types.values():
            if t.base:
                self.derived.setdefault(t.base, set()).add(t.name)

    def _index(self, schema: Any) -> None:
        for el in schema:
            tag = el.tag
            if tag == f"{EDM}EnumType":
                self.enums[el.get("Name")] = frozenset(m.get("Name") for m in el
                                                       if m.tag == f"{EDM}Member")
            elif tag in (f"{EDM}EntityType", f"{EDM}ComplexType"):
                base = el.get("BaseType")
                st = StructuredType(el.get("Name"), "entity" if tag.endswith("EntityType")
                                    else "complex", _short(base) if base else None,
                                    el.get("OpenType") == "true", el.get("Abstract") == "true")
                for p in el:
                    if p.tag == f"{EDM}Property":
                        st.properties[p.get("Name")] = (p.get("Type"),
                                                        p.get("Nullable") != "false")
                    elif p.tag == f"{EDM}NavigationProperty":
                        st.navigation[p.get("Name")] = p.get("Type")
                self.types[st.name] = st

    # ------------------------------------------------------------------ lookups
    def has_type(self, name: str) -> bool:
        """Whether ``name`` (short or qualified) is an entity or complex type."""
        return _short(name) in self.types

    def property_type(self, type_name: str, prop: str) -> str | None:
        """The declared type of ``prop`` on ``type_name`` or a base type (None: unknown)."""
        t: StructuredType | None = self.types.get(_short(type_name))
        while t is not None:
            if prop in t.properties:
                return t.properties[prop][0]
            if prop in t.navigation:
                return t.navigation[prop]
            t = self.types.get(t.base) if t.base else None
        return None

    def all_properties(self, type_name: str) -> dict[str, tuple[str, bool]]:
        """Structural properties including inherited ones."""
        return dict(self._properties(type_name))

    def _properties(self, type_name: str) -> dict[str, tuple[str, bool]]:
        """:meth:`all_properties`, made once per type (the schema does not change after it
        is loaded; every checked object and nested value looked its chain up again before):
        callers must not change it."""
        cache: dict[str, dict[str, tuple[str, bool]]] = self.__dict__.setdefault(
            "_properties_cache", {})
        found = cache.get(type_name)
        if found is None:
            found = cache[type_name] = self._collect_properties(type_name)
        return found

    def _collect_properties(self, type_name: str) -> dict[str, tuple[str, bool]]:
        chain: list[StructuredType] = []
        t: StructuredType | None = self.types.get(_short(type_name))
        while t is not None:
            chain.append(t)
            t = self.types.get(t.base) if t.base else None
        out: dict[str, tuple[str, bool]] = {}
        for t in reversed(chain):
            out.update(t.properties)
        return out

    def navigation(self, type_name: str, prop: str) -> str | None:
        """The target type of navigation property ``prop`` of ``type_name`` (None: none)."""
        return self._navigation(type_name, prop)

    def _navigation(self, type_name: str, prop: str) -> str | None:
        t: StructuredType | None = self.types.get(_short(type_name))
        while t is not None:
            if prop in t.navigation:
                return t.navigation[prop]
            t = self.types.get(t.base) if t.base else None
        return None

    def _is_derived(self, name: str, base: str) -> bool:
        t: StructuredType | None = self.types.get(name)
        while t is not None:
            if t.name == base:
                return True
            t = self.types.get(t.base) if t.base else None
        return False

    # ------------------------------------------------------------------ checking
    def check(self, type_name: str, obj: Any, *, where: str = "", skip_open: bool = False,
              allow_navigation: bool = True) -> list[str]:
        """Problems of the JSON object ``obj`` as an instance of ``type_name`` ([] = valid).

        Instance annotations (keys with ``@``) are allowed; ``@odata.type`` must name the type
        or a derived one. ``skip_open`` leaves an open type's unknown properties unchecked
        (Graph's ``fieldValueSet``); otherwise unknown properties are errors even on open
        types, because the sandbox is strict. Navigation properties (expanded or deep
        inserted) are checked against their target type when ``allow_navigation``.
        """
        name = _short(type_name)
        if not isinstance(obj, dict):
            return [f"{where or name}: expected a JSON object for {name}, got "
                    f"{type(obj).__name__}"]
        declared = obj.get("@odata.type")
        if isinstance(declared, str):
            actual = _short(declared)
            if actual not in self.types or not self._is_derived(actual, name):
                return [f"{where or name}: @odata.type {declared!r} is not {name} "
                        "or derived from it"]
            name = actual
        st = self.types.get(name)
        if st is None:
            return [f"{where or name}: unknown type {name}"]
        props = self._properties(name)
        problems: list[str] = []
        for key, value in obj.items():
            if "@" in key:
                continue
            path = f"{where}.{key}" if where else key
            if key in props:
                if value is None and not props[key][1]:
                    problems.append(f"{path}: null is not allowed (Nullable=false)")
                    continue
                problems += self._check_value(props[key][0], value, path)
                continue
            nav = self._navigation(name, key)
            if nav is not None:
                if not allow_navigation:
                    problems.append(f"{path}: navigation property {key} not allowed here")
                    continue
                target = nav[11:-1] if nav.startswith("Collection(") else nav
                if _short(target) == "fieldValueSet":
                    continue  # open list item fields: checked against the list's columns
                problems += self._check_value(nav, value, path)
                continue
            if skip_open and st.open:
                continue
            problems.append(f"{path}: property {key!r} does not exist on type "
                            f"'microsoft.graph.{name}'")
        return problems

    def _check_value(self, type_name: str, value: Any, path: str) -> list[str]:
        if value is None:
            return []
        if type_name.startswith("Collection("):
            inner = type_name[11:-1]
            if not isinstance(value, list):
                return [f"{path}: expected an array of {_short(inner)}, got "
                        f"{type(value).__name__}"]
            out: list[str] = []
            for i, v in enumerate(value):
                out += self._check_value(inner, v, f"{path}[{i}]")
            return out
        if type_name.startswith("Edm."):
            return self._check_primitive(type_name, value, path)
        short = _short(type_name)
        if short in self.enums:
            if not isinstance(value, str):
                return [f"{path}: expected a {short} enum string, got {type(value).__name__}"]
            members = [m.strip() for m in value.split(",")]
            bad = [m for m in members if m not in self.enums[short]]
            return [f"{path}: {bad[0]!r} is not a member of {short}"] if bad else []
        if short in self.types:
            return self.check(short, value, where=path)
        return [f"{path}: unknown type {type_name}"]

    @staticmethod
    def _check_primitive(type_name: str, value: Any, path: str) -> list[str]:
        ok: bool
        if type_name == "Edm.Boolean":
            ok = isinstance(value, bool)
        elif type_name in _INT_TYPES:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif type_name in _NUM_TYPES:
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)) or \
                value in ("INF", "-INF", "NaN")
        elif type_name == "Edm.DateTimeOffset":
            ok = isinstance(value, str) and bool(_DATETIME.match(value)) and _parses(value)
        elif type_name == "Edm.Date":
            ok = isinstance(value, str) and bool(_DATE.match(value))
        elif type_name in _STR_TYPES:
            ok = isinstance(value, str)
        elif type_name in ("Edm.Stream", "Edm.Untyped"):
            ok = True
        else:
            ok = isinstance(value, str)
        if ok:
            return []
        return [f"{path}: {value!r} is not a valid {type_name}"]


def _parses(text: str) -> bool:
    try:
        datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


_CACHE: dict[Path, Csdl] = {}
_CACHE_LOCK = threading.Lock()


def load_csdl(path: Path) -> Csdl:
    """The indexed CSDL at ``path``, parsed once per process."""
    with _CACHE_LOCK:
        if path not in _CACHE:
            _CACHE[path] = Csdl(path)
        return _CACHE[path]
