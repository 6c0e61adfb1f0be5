"""Read an OData v4 ``$metadata`` document (CSDL XML) into what a provider needs.

For each entity set: its entity type's properties with their field types, the key, which
properties the service computes (``Org.OData.Core.V1.Computed``, ``Core.V1.Permissions`` =
Read, ``Core.V1.Immutable`` counts as writable on create), and the single-valued navigation
properties with the foreign-key property each one binds (``ReferentialConstraint``).

Annotations count inline (``<Property><Annotation .../></Property>``) and out of line
(``<Annotations Target="Namespace.Type/Property">``, as SAP CAP and others write them), with
the vocabulary named by its namespace or by an alias (``Core.Computed`` once
``<edmx:Include Namespace="Org.OData.Core.V1" Alias="Core"/>`` is declared).
"""

from dataclasses import dataclass, field

from lxml import etree

EDM_TYPES = {
    "Edm.String": "string", "Edm.Int16": "integer", "Edm.Int32": "integer",
    "Edm.Int64": "integer", "Edm.Byte": "integer", "Edm.SByte": "integer",
    "Edm.Double": "float", "Edm.Single": "float", "Edm.Decimal": "decimal",
    "Edm.Boolean": "boolean", "Edm.DateTimeOffset": "datetime", "Edm.Date": "date",
    "Edm.Guid": "guid", "Edm.TimeOfDay": "string", "Edm.Duration": "string",
    "Edm.Binary": "string",
}


class MetadataError(ValueError):
    """The ``$metadata`` document cannot be read or lacks what is needed."""


@dataclass
class Property:
    """One structural property. ``ftype`` is the engine type, or ``guid``."""

    name: str
    edm: str
    ftype: str
    nullable: bool = True
    computed: bool = False


@dataclass
class Navigation:
    """A single-valued navigation property; ``fk`` is the property holding its key."""

    name: str
    target_type: str
    fk: str | None


@dataclass
class EntityType:
    """An entity type with its base types' properties folded in."""

    name: str
    key: list[str]
    properties: dict[str, Property] = field(default_factory=dict)
    navigations: dict[str, Navigation] = field(default_factory=dict)


@dataclass
class Metadata:
    """Entity sets (name -> qualified type name) and entity types (qualified name -> type)."""

    entity_sets: dict[str, str]
    types: dict[str, EntityType]

    def entity_set(self, name: str) -> tuple[str, EntityType]:
        """(exact set name, entity type) of an entity set, matched case-insensitively."""
        exact = name if name in self.entity_sets else next(
            (s for s in self.entity_sets if s.lower() == name.lower()), None)
        if exact is None:
            sets = ", ".join(sorted(self.entity_sets)[:30])
            raise MetadataError(f"entity set {name!r} not found in $metadata (entity sets: "
                                f"{sets})")
        return exact, self.types[self.entity_sets[exact]]

    def set_of_type(self, qualified: str) -> str | None:
        """The entity set whose type is ``qualified`` (or whose type's short name matches)."""
        short = qualified.rsplit(".", 1)[-1]
        for s, t in self.entity_sets.items():
            if t == qualified:
                return s
        for s, t in self.entity_sets.items():
            if t.rsplit(".", 1)[-1] == short:
                return s
        return None


def _local(tag: object) -> str:
    return str(tag).rsplit("}", 1)[-1]


CORE = "Org.OData.Core.V1"


def _term(raw: str, aliases: dict[str, str]) -> str:
    """A term's qualified name, its alias (``Core.Computed``) resolved."""
    head, _, tail = raw.partition("#")[0].rpartition(".")
    return f"{aliases.get(head, head)}.{tail}" if head else raw


def _annotated(anns: list[etree._Element], term: str, aliases: dict[str, str]
               ) -> etree._Element | None:
    for ann in anns:
        if _local(ann.tag) == "Annotation" and _term(ann.get("Term", ""), aliases) == term:
            return ann
    return None


def _is_computed(anns: list[etree._Element], aliases: dict[str, str]) -> bool:
    ann = _annotated(anns, f"{CORE}.Computed", aliases)
    if ann is not None and ann.get("Bool", "true").lower() == "true":
        return True
    perm = _annotated(anns, f"{CORE}.Permissions", aliases)
    if perm is not None:
        text = (perm.get("EnumMember") or "") + "".join(perm.itertext())
        if text.strip().endswith("Read") and "ReadWrite" not in text:
            return True
    return False


def parse_metadata(xml: bytes) -> Metadata:
    """Parse a CSDL document; raises MetadataError when it is not one."""
    try:
        root = etree.fromstring(xml, parser=etree.XMLParser(resolve_entities=False,
                                                             no_network=True))
    except etree.XMLSyntaxError as exc:
        raise MetadataError(f"$metadata is not XML: {exc}") from None
    raw_types: dict[str, tuple[etree._Element, str]] = {}
    entity_sets: dict[str, str] = {}
    aliases: dict[str, str] = {}
    #: out-of-line annotations by target ("Namespace.Type/Property", alias unresolved)
    external: dict[str, list[etree._Element]] = {}
    for inc in root.iter():
        if _local(inc.tag) == "Include" and inc.get("Alias"):
            aliases[inc.get("Alias")] = inc.get("Namespace", "")
    for schema in root.iter():
        if _local(schema.tag) != "Schema":
            continue
        ns = schema.get("Namespace", "")
        if schema.get("Alias"):
            aliases[schema.get("Alias")] = ns
        for el in schema:
            tag = _local(el.tag)
            if tag == "Annotations" and el.get("Target"):
                external.setdefault(el.get("Target"), []).extend(el)
            elif tag == "EntityType":
                raw_types[f"{ns}.{el.get('Name')}"] = (el, ns)
            elif tag == "EntityContainer":
                for es in el:
                    if _local(es.tag) == "EntitySet":
                        entity_sets[es.get("Name")] = es.get("EntityType", "")

    def qualify(name: str) -> str:
        head, _, tail = name.rpartition(".")
        return f"{aliases.get(head, head)}.{tail}" if head else name

    entity_sets = {k: qualify(v) for k, v in entity_sets.items()}
    out_of_line: dict[str, list[etree._Element]] = {}
    for target, anns in external.items():
        head, sep, prop = target.partition("/")
        out_of_line.setdefault(f"{qualify(head)}{sep}{prop}", []).extend(anns)
    types: dict[str, EntityType] = {}

    def build(qname: str, depth: int = 0) -> EntityType:
        if qname in types:
            return types[qname]
        if qname not in raw_types or depth > 20:
            raise MetadataError(f"entity type {qname} is not defined in $metadata")
        el, _ = raw_types[qname]
        base = el.get("BaseType")
        et = EntityType(qname, [])
        if base:
            parent = build(qualify(base), depth + 1)
            et.key = list(parent.key)
            et.properties.update(parent.properties)
            et.navigations.update(parent.navigations)
        for child in el:
            tag = _local(child.tag)
            if tag == "Key":
                et.key = [ref.get("Name") for ref in child if _local(ref.tag) == "PropertyRef"]
            elif tag == "Property":
                edm = child.get("Type", "Edm.String")
                anns = list(child) + out_of_line.get(f"{qname}/{child.get('Name')}", [])
                et.properties[child.get("Name")] = Property(
                    child.get("Name"), edm, EDM_TYPES.get(edm, "json"),
                    child.get("Nullable", "true").lower() != "false",
                    _is_computed(anns, aliases))
            elif tag == "NavigationProperty":
                ntype = child.get("Type", "")
                if ntype.startswith("Collection("):
                    continue
                fk = None
                for rc in child:
                    if _local(rc.tag) == "ReferentialConstraint":
                        fk = rc.get("Property")
                et.navigations[child.get("Name")] = Navigation(child.get("Name"),
                                                               qualify(ntype), fk)
        types[qname] = et
        return et

    for qname in list(raw_types):
        build(qname)
    if not entity_sets:
        raise MetadataError("$metadata defines no entity sets")
    return Metadata(entity_sets, types)
