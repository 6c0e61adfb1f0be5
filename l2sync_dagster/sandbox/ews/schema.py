"""Microsoft's EWS schemas (MS-OXWS*): validation of request/response parts, element order.

The schema files stay in ``../shared/ews-schema`` (never copied into the repository); they are
loaded once per process under a lock. Besides validation, the type definitions give the child
order of every item and folder type, so fields set by ``UpdateItem`` land where the schema
wants them.
"""

import threading
from pathlib import Path
from urllib.parse import quote

from lxml import etree

XS = "{http://www.w3.org/2001/XMLSchema}"

_lock = threading.Lock()
_loaded: dict[Path, "EwsSchema"] = {}


class _DropSelfInclude(etree.Resolver):
    """``MS-OXWSCEXT-messages.xsd`` includes itself, which libxml2 rejects: drop that line."""

    def resolve(self, url, pubid, context):  # type: ignore[no-untyped-def]  # noqa: ANN001
        if url and url.endswith("MS-OXWSCEXT-messages.xsd"):
            data = Path(url).read_bytes().replace(
                b'<xs:include schemaLocation="MS-OXWSCEXT-messages.xsd"/>', b"")
            return self.resolve_string(data, context, base_url=url)
        return None


class EwsSchema:
    """The compiled schema plus the element order of each complex type."""

    def __init__(self, folder: Path) -> None:
        parser = etree.XMLParser()
        parser.resolvers.add(_DropSelfInclude())
        self.xsd = etree.XMLSchema(etree.parse(str(folder / "ews-all.xsd"), parser))
        self._validate_lock = threading.Lock()
        self.order = _type_orders(folder)
        self.booleans = _elements_of_type(folder, "xs:boolean")
        self.uris = _elements_of_type(folder, "xs:anyURI")

    def validate(self, element: etree._Element) -> str | None:
        """None when ``element`` is valid, else the first violation ``(line, col, message)``.

        xs:anyURI values are checked the way Exchange's (.NET) validator does: it takes any text
        as a relative URI reference (``a b:c``, ``100%``) but ``##``, where libxml2 wants RFC
        3986 syntax. They are validated percent-escaped (``#`` kept), and left as they were."""
        with self._validate_lock:
            saved = [(el, el.text) for el in element.iter()
                     if isinstance(el.tag, str) and el.text and
                     el.tag.rpartition("}")[2] in self.uris]
            for el, text in saved:
                el.text = quote(text, safe="#")
            try:
                if self.xsd.validate(element):
                    return None
            finally:
                for el, text in saved:
                    el.text = text
            err = self.xsd.error_log[0]
            return f"{err.line}\t{err.column}\t{err.message}"


def load(folder: Path) -> EwsSchema:
    """The schema of ``folder``, compiled once per process."""
    with _lock:
        if folder not in _loaded:
            _loaded[folder] = EwsSchema(folder)
        return _loaded[folder]


def _elements_of_type(folder: Path, type_name: str) -> frozenset[str]:
    """Names of elements of the types schemas typed ``type_name`` (``xs:boolean``: Exchange
    answers them as true/false; ``xs:anyURI``: validated leniently)."""
    names: set[str] = set()
    for path in sorted(folder.glob("*types.xsd")):
        for el in etree.parse(str(path)).getroot().iter(f"{XS}element"):
            if el.get("name") and el.get("type") == type_name:
                names.add(el.get("name"))
    return frozenset(names)


def _type_orders(folder: Path) -> dict[str, list[str]]:
    """complexType name -> names of its child elements in schema order (base types first)."""
    own: dict[str, list[str]] = {}
    bases: dict[str, str] = {}
    groups: dict[str, etree._Element] = {}
    types: dict[str, etree._Element] = {}
    for path in sorted(folder.glob("*.xsd")):
        root = etree.parse(str(path)).getroot()
        for g in root.iterfind(f"{XS}group"):
            if g.get("name"):
                groups[g.get("name")] = g
        for ct in root.iterfind(f"{XS}complexType"):
            if ct.get("name"):
                types[ct.get("name")] = ct

    def names(node: etree._Element) -> list[str]:
        out: list[str] = []
        for child in node:
            tag = child.tag
            if tag == f"{XS}element" and child.get("name"):
                out.append(child.get("name"))
            elif tag == f"{XS}group" and child.get("ref"):
                ref = child.get("ref").split(":")[-1]
                if ref in groups:
                    out += names(groups[ref])
            elif tag in (f"{XS}sequence", f"{XS}choice", f"{XS}all", f"{XS}complexContent",
                         f"{XS}extension", f"{XS}restriction"):
                out += names(child)
        return out

    for name, ct in types.items():
        ext = ct.find(f"{XS}complexContent/{XS}extension")
        if ext is not None:
            bases[name] = ext.get("base", "").split(":")[-1]
        own[name] = names(ct)

    def full(name: str, depth: int = 0) -> list[str]:
        base = bases.get(name)
        head = full(base, depth + 1) if base and base in own and depth < 20 else []
        return head + [n for n in own.get(name, []) if n not in head]

    return {name: full(name) for name in own}
