"""The tables the sandbox holds (accounts, contacts, new_projects) and their CSDL document.

A column has an EDM type, whether it may be written on create/update, an option set (value ->
label) or a lookup target. Lookup columns are read as ``_<name>_value`` and written through
their navigation property (``<nav>@odata.bind``), as Dataverse does.
"""

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

NS = "Microsoft.Dynamics.CRM"


@dataclass(frozen=True)
class Column:
    """One column of a table."""

    name: str  # logical name; for lookups the property name ``_x_value``
    edm: str  # Edm.String, Edm.Int32, ...
    kind: str = "plain"  # plain | key | picklist | state | status | money | lookup | memo
    writable: bool = True
    max_length: int | None = None
    options: dict[int, str] = field(default_factory=dict)
    target: str = ""  # lookup: logical name of the table it points to
    nav: str = ""  # lookup: single-valued navigation property used to bind it
    attribute_type: str = ""  # EntityDefinitions AttributeType


@dataclass(frozen=True)
class Table:
    """One table: logical name, entity set, key, columns, change tracking."""

    logical: str
    entity_set: str
    key: str
    primary_name: str
    columns: tuple[Column, ...]
    change_tracking: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {c.name: c for c in self.columns})

    def column(self, name: str) -> Column | None:
        """The column with property name ``name`` (None if there is none)."""
        return self.by_name.get(name)  # type: ignore[attr-defined]

    def lookup_by_nav(self, nav: str) -> Column | None:
        """The lookup column bound through navigation property ``nav``."""
        return next((c for c in self.columns if c.kind == "lookup" and c.nav == nav), None)


def _s(name: str, n: int, kind: str = "plain") -> Column:
    return Column(name, "Edm.String", kind, max_length=n,
                  attribute_type="Memo" if kind == "memo" else "String")


def _ro(name: str, edm: str, attribute_type: str) -> Column:
    return Column(name, edm, writable=False, attribute_type=attribute_type)


STATE = Column("statecode", "Edm.Int32", "state", options={0: "Active", 1: "Inactive"},
               attribute_type="State")
STATUS = Column("statuscode", "Edm.Int32", "status", options={1: "Active", 2: "Inactive"},
                attribute_type="Status")
#: the status a state implies when only statecode is written
DEFAULT_STATUS = {0: 1, 1: 2}
SYSTEM = (_ro("createdon", "Edm.DateTimeOffset", "DateTime"),
          _ro("modifiedon", "Edm.DateTimeOffset", "DateTime"),
          _ro("versionnumber", "Edm.Int64", "BigInt"))

INDUSTRY = {1: "Accounting", 2: "Agriculture and Non-petrol Natural Resource Extraction",
            3: "Broadcasting Printing and Publishing", 4: "Brokers", 5: "Building Supply Retail",
            6: "Business Services", 7: "Consulting", 8: "Consumer Services",
            9: "Design, Direction and Creative Management", 10: "Distributors, Dispatchers and "
            "Processors", 11: "Doctor's Offices and Clinics", 12: "Durable Manufacturing"}

ACCOUNT = Table("account", "accounts", "accountid", "name", (
    Column("accountid", "Edm.Guid", "key", attribute_type="Uniqueidentifier"),
    _s("name", 160), _s("accountnumber", 20), _s("telephone1", 50), _s("emailaddress1", 100),
    _s("websiteurl", 200), _s("address1_city", 80), _s("address1_country", 80),
    _s("description", 2000, "memo"),
    Column("revenue", "Edm.Decimal", "money", attribute_type="Money"),
    Column("numberofemployees", "Edm.Int32", attribute_type="Integer"),
    Column("creditonhold", "Edm.Boolean", attribute_type="Boolean"),
    Column("industrycode", "Edm.Int32", "picklist", options=INDUSTRY,
           attribute_type="Picklist"),
    STATE, STATUS,
    Column("_primarycontactid_value", "Edm.Guid", "lookup", target="contact",
           nav="primarycontactid", attribute_type="Lookup"),
    *SYSTEM))

CONTACT = Table("contact", "contacts", "contactid", "fullname", (
    Column("contactid", "Edm.Guid", "key", attribute_type="Uniqueidentifier"),
    _s("firstname", 50), _s("lastname", 50), _ro("fullname", "Edm.String", "String"),
    _s("emailaddress1", 100), _s("telephone1", 50), _s("jobtitle", 100),
    Column("birthdate", "Edm.Date", attribute_type="DateTime"),
    Column("gendercode", "Edm.Int32", "picklist", options={1: "Male", 2: "Female"},
           attribute_type="Picklist"),
    Column("donotemail", "Edm.Boolean", attribute_type="Boolean"),
    STATE, STATUS,
    Column("_parentcustomerid_value", "Edm.Guid", "lookup", target="account",
           nav="parentcustomerid_account", attribute_type="Customer"),
    *SYSTEM))

PROJECT = Table("new_project", "new_projects", "new_projectid", "new_name", (
    Column("new_projectid", "Edm.Guid", "key", attribute_type="Uniqueidentifier"),
    _s("new_name", 100),
    Column("new_budget", "Edm.Decimal", "money", attribute_type="Money"),
    Column("new_startdate", "Edm.Date", attribute_type="DateTime"),
    Column("new_status", "Edm.Int32", "picklist",
           options={100000000: "Planned", 100000001: "Running", 100000002: "Done"},
           attribute_type="Picklist"),
    STATE, STATUS,
    Column("_new_accountid_value", "Edm.Guid", "lookup", target="account",
           nav="new_accountid", attribute_type="Lookup"),
    *SYSTEM), change_tracking=False)

TABLES: dict[str, Table] = {t.entity_set: t for t in (ACCOUNT, CONTACT, PROJECT)}
BY_LOGICAL: dict[str, Table] = {t.logical: t for t in TABLES.values()}

#: collection-valued navigation properties (the other side of each lookup): target -> [(name,
#: referencing table)]
REVERSE: dict[str, list[tuple[str, Table]]] = {
    "contact": [("account_primary_contact", ACCOUNT)],
    "account": [("contact_customer_accounts", CONTACT), ("new_account_new_project", PROJECT)],
}


def csdl(annotations: bool = False) -> str:
    """The ``$metadata`` document (CSDL 4.0) of every table; ``annotations`` adds
    ``Org.OData.Core.V1.Computed`` on read-only columns and the change-tracking capability on
    entity sets (as ``$metadata?annotations=true`` does)."""
    out = ['<?xml version="1.0" encoding="utf-8"?>',
           '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
           '<edmx:DataServices>',
           f'<Schema Namespace="{NS}" Alias="mscrm" xmlns="http://docs.oasis-open.org/odata/ns/edm">']
    for t in TABLES.values():
        out.append(f'<EntityType Name="{t.logical}">')
        out.append(f'<Key><PropertyRef Name="{t.key}"/></Key>')
        for c in t.columns:
            attrs = f'Name={quoteattr(c.name)} Type="{c.edm}"'
            if c.max_length:
                attrs += f' MaxLength="{c.max_length}"'
            if c.edm == "Edm.Decimal":
                attrs += ' Scale="Variable"'
            if annotations and not c.writable:
                out.append(f'<Property {attrs}><Annotation Term="Org.OData.Core.V1.Computed" '
                           'Bool="true"/></Property>')
            else:
                out.append(f'<Property {attrs}/>')
        for c in t.columns:
            if c.kind == "lookup":
                target = BY_LOGICAL[c.target]
                out.append(f'<NavigationProperty Name="{c.nav}" Type="mscrm.{c.target}">'
                           f'<ReferentialConstraint Property="{c.name}" '
                           f'ReferencedProperty="{target.key}"/></NavigationProperty>')
        for name, src in REVERSE.get(t.logical, []):
            out.append(f'<NavigationProperty Name="{name}" '
                       f'Type="Collection(mscrm.{src.logical})"/>')
        out.append('</EntityType>')
    out.append('<EntityContainer Name="System">')
    for t in TABLES.values():
        out.append(f'<EntitySet Name="{t.entity_set}" EntityType="mscrm.{t.logical}">')
        for c in t.columns:
            if c.kind == "lookup":
                out.append(f'<NavigationPropertyBinding Path="{c.nav}" '
                           f'Target="{BY_LOGICAL[c.target].entity_set}"/>')
        if annotations:
            supported = str(t.change_tracking).lower()
            out.append('<Annotation Term="Org.OData.Capabilities.V1.ChangeTracking"><Record>'
                       f'<PropertyValue Property="Supported" Bool="{supported}"/>'
                       '</Record></Annotation>')
        out.append('</EntitySet>')
    out += ['</EntityContainer>', '</Schema>', '</edmx:DataServices>', '</edmx:Edmx>']
    return "\n".join(out)


def entity_definition(t: Table) -> dict[str, Any]:
    """``EntityDefinitions(LogicalName='x')``: the table's metadata as Dataverse returns it."""
    return {"LogicalName": t.logical, "SchemaName": t.logical.capitalize(),
            "EntitySetName": t.entity_set, "PrimaryIdAttribute": t.key,
            "PrimaryNameAttribute": t.primary_name, "ChangeTrackingEnabled": t.change_tracking,
            "IsCustomEntity": t.logical.startswith("new_"), "MetadataId": _meta_id(t.logical)}


def attribute_definitions(t: Table) -> list[dict[str, Any]]:
    """``EntityDefinitions(LogicalName='x')/Attributes``: one entry per column."""
    out = []
    for c in t.columns:
        logical = c.name[1:-6] if c.kind == "lookup" else c.name
        out.append({
            "LogicalName": logical, "SchemaName": logical, "AttributeType": c.attribute_type,
            "IsPrimaryId": c.kind == "key", "IsPrimaryName": c.name == t.primary_name,
            "IsValidForCreate": c.writable, "IsValidForUpdate": c.writable and c.kind != "key",
            "IsValidForRead": True, "MaxLength": c.max_length,
            "Targets": [c.target] if c.kind == "lookup" else None,
            "MetadataId": _meta_id(f"{t.logical}.{logical}"),
        })
    return out


def _meta_id(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-dataverse:{name}"))


_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DTO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def is_guid(value: object) -> bool:
    """Whether ``value`` is a GUID string."""
    return isinstance(value, str) and bool(_GUID.match(value))


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_TYPE_CHECKS: dict[str, Any] = {
    "Edm.String": lambda v: isinstance(v, str),
    "Edm.Guid": is_guid,
    "Edm.Int32": lambda v: _is_int(v) and -2**31 <= v < 2**31,
    "Edm.Int64": _is_int,
    "Edm.Decimal": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "Edm.Boolean": lambda v: isinstance(v, bool),
    "Edm.Date": lambda v: isinstance(v, str) and bool(_DATE.match(v)),
    "Edm.DateTimeOffset": lambda v: isinstance(v, str) and bool(_DTO.match(v)),
}


def type_problem(c: Column, value: Any) -> str | None:
    """Why ``value`` (as stored or answered) does not fit column ``c``; None when it does."""
    if value is None:
        return None if c.kind != "key" else "key is null"
    if not _TYPE_CHECKS[c.edm](value):
        return f"{c.name}: {value!r} is not {c.edm}"
    if c.options and value not in c.options:
        return f"{c.name}: {value!r} is not an option"
    if c.max_length and len(value) > c.max_length:
        return f"{c.name}: longer than {c.max_length}"
    return None


def utc_now() -> str:
    """Now as Dataverse writes DateTimeOffset values (UTC, whole seconds, ``Z``)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
