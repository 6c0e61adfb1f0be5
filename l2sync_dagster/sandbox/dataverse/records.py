"""Request bodies checked against a table, and rows rendered as Dataverse answers them.

Writes: only columns of the table (400 ``0x80060888`` otherwise), JSON types matching the
column (400), option values of the option set (400 ``0x8004431A``), string lengths (400
``0x80044331``), no read-only columns (400 ``0x80040203``), lookups only through
``<nav>@odata.bind``.

Reads: ``@odata.etag`` plus the selected columns; with ``Prefer:
odata.include-annotations=...`` also ``<col>@OData.Community.Display.V1.FormattedValue`` (option
labels, lookup names, money, numbers, dates, Yes/No) and, for lookups,
``@Microsoft.Dynamics.CRM.lookuplogicalname`` / ``associatednavigationproperty``.
"""

import datetime as dt
import fnmatch
import re
from collections.abc import Callable
from typing import Any

from l2sync_dagster.sandbox.dataverse.errors import (
    DataverseError,
    no_property,
    not_found,
    odata_error,
)
from l2sync_dagster.sandbox.dataverse.metadata import (
    DEFAULT_STATUS,
    TABLES,
    Column,
    Table,
    is_guid,
    type_problem,
)
from l2sync_dagster.sandbox.dataverse.query import Expand

Row = dict[str, Any]
FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOGICALNAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
NAVPROP = "Microsoft.Dynamics.CRM.associatednavigationproperty"

#: resolves a bind reference: "$1" (a Content-ID in a change set) -> "accounts(<guid>)"
ContentIds = Callable[[str], str | None]


def parse_prefer(headers: Any) -> dict[str, str]:
    """``Prefer`` preferences: name (lower-case) -> value ("" when it has none)."""
    out: dict[str, str] = {}
    raw = headers.get("prefer") or ""
    for item in re.findall(r'(?:[^,"]|"[^"]*")+', raw):
        name, _, value = item.strip().partition("=")
        if name:
            out[name.strip().lower()] = value.strip().strip('"')
    return out


def wanted_annotations(prefer: dict[str, str]) -> list[str]:
    """The annotation patterns of ``odata.include-annotations``."""
    value = prefer.get("odata.include-annotations", "")
    return [p.strip() for p in value.split(",") if p.strip()]


def _wants(patterns: list[str], term: str) -> bool:
    return any(fnmatch.fnmatchcase(term, p) for p in patterns)


# -- writes ---------------------------------------------------------------------------------

def parse_body(table: Table, body: Any, *, creating: bool, key: str | None,
               lookup: Callable[[Table, str], Row | None],
               content_ids: ContentIds | None = None) -> Row:
    """Column values to write from a JSON body; raises :class:`DataverseError` (400/404)."""
    if not isinstance(body, dict):
        raise odata_error("The request body must be a JSON object.")
    values: Row = {}
    for name, value in body.items():
        if name.startswith("@odata."):
            continue
        if name.endswith("@odata.bind"):
            nav = name[: -len("@odata.bind")]
            column = table.lookup_by_nav(nav)
            if column is None:
                raise odata_error(f"An undeclared property '{nav}' which only has property "
                                  "annotations in the payload but no property value was found "
                                  "in the payload.")
            values[column.name] = _bind(column, value, lookup, content_ids)
            continue
        if "@" in name:
            continue  # instance annotations are ignored
        column = table.column(name)
        if column is None:
            raise no_property(name, table.logical)
        if column.kind == "lookup":
            raise odata_error("CRM do not support direct update of Entity Reference "
                              f"properties, Use Navigation properties instead. ('{name}')")
        if column.kind == "key":
            if not is_guid(value):
                raise odata_error(f"Cannot convert the literal '{value}' to the expected type "
                                  "'Edm.Guid'.")
            if key is not None and value.lower() != key.lower():
                raise DataverseError("InvalidArgument", f"The value of '{name}' in the body "
                                     "does not match the key in the URL.")
            values[name] = value.lower()
            continue
        if not column.writable:
            raise DataverseError("InvalidArgument", f"The attribute '{name}' of entity "
                                 f"'{table.logical}' is read-only (IsValidForCreate and "
                                 "IsValidForUpdate are false).")
        values[name] = _convert(table, column, value)
    if "statecode" in values and "statuscode" not in values and values["statecode"] is not None:
        values["statuscode"] = DEFAULT_STATUS[values["statecode"]]
    return values


def _bind(column: Column, value: Any, lookup: Callable[[Table, str], Row | None],
          content_ids: ContentIds | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise odata_error(f"Cannot convert the literal '{value}' to an entity reference.")
    ref = value
    if ref.startswith("$") and content_ids is not None:
        ref = content_ids(ref) or ref
    m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\(([0-9a-fA-F-]{36})\)$", ref)
    if not m or m.group(1) not in TABLES or not is_guid(m.group(2)):
        raise odata_error(f"The URI '{value}' is not valid for an entity reference.")
    target = TABLES[m.group(1)]
    if target.logical != column.target:
        raise odata_error(f"The entity set '{target.entity_set}' does not match the navigation "
                          f"property '{column.nav}' (it points to {column.target}).")
    key = m.group(2).lower()
    if lookup(target, key) is None:
        raise not_found(target.logical, key)
    return key


def _convert(table: Table, column: Column, value: Any) -> Any:
    """``value`` as stored in column ``column``, or a 400."""
    if value is None:
        if column.kind in ("state", "status"):
            raise DataverseError("InvalidArgument", f"'{column.name}' cannot be null.")
        return None
    edm = column.edm

    def bad() -> DataverseError:
        return odata_error(f"Cannot convert the literal '{value}' to the expected type "
                           f"'{edm}'.")
    if edm == "Edm.String":
        if not isinstance(value, str):
            raise bad()
        if column.max_length and len(value) > column.max_length:
            raise DataverseError("StringLengthTooLong", "A validation error occurred. The "
                                 f"length of the '{column.name}' attribute of the "
                                 f"'{table.logical}' entity exceeded the maximum allowed length "
                                 f"of '{column.max_length}'.")
        return value
    if edm in ("Edm.Int32", "Edm.Int64"):
        if not isinstance(value, int) or isinstance(value, bool) or (
                edm == "Edm.Int32" and not -2**31 <= value < 2**31):
            raise bad()
        if column.options and value not in column.options:
            raise DataverseError("PicklistValueOutOfRange", "A validation error occurred. The "
                                 f"value {value} of '{column.name}' on record of type "
                                 f"'{table.logical}' is outside the valid range. Accepted "
                                 f"Values: {','.join(map(str, column.options))}")
        return value
    if edm == "Edm.Decimal":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise bad()
        return float(value)
    if edm == "Edm.Boolean":
        if not isinstance(value, bool):
            raise bad()
        return value
    if edm == "Edm.Date":
        if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise bad()
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            raise bad() from None
    if edm == "Edm.DateTimeOffset":
        if not isinstance(value, str):
            raise bad()
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise bad() from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    raise bad()


# -- reads ----------------------------------------------------------------------------------

def etag(row: Row) -> str:
    """The row's weak ETag."""
    return f'W/"{row["versionnumber"]}"'


def render(table: Table, row: Row, select: list[str] | None, annotations: list[str],
           expand: list[Expand], lookup: Callable[[Table, str], Row | None]) -> Row:
    """One row as Dataverse answers it."""
    out: Row = {"@odata.etag": etag(row)}
    names = [c.name for c in table.columns] if select is None else list(select)
    if table.key not in names:
        names.append(table.key)
    formatted = _wants(annotations, FORMATTED)
    for name in names:
        column = table.column(name)
        assert column is not None
        value = row.get(name)
        if column.kind == "lookup" and value is not None:
            if formatted:
                target = lookup(_table(column.target), value)
                label = target.get(_table(column.target).primary_name) if target else None
                if label is not None:
                    out[f"{name}@{FORMATTED}"] = label
            if _wants(annotations, NAVPROP):
                out[f"{name}@{NAVPROP}"] = column.nav
            if _wants(annotations, LOGICALNAME):
                out[f"{name}@{LOGICALNAME}"] = column.target
        elif formatted and value is not None:
            text = format_value(column, value)
            if text is not None:
                out[f"{name}@{FORMATTED}"] = text
        out[name] = value
    for ex in expand:
        key = row.get(ex.column.name)
        target = lookup(ex.target, key) if key else None
        out[ex.nav] = render(ex.target, target, ex.select, annotations, [], lookup) \
            if target else None
    return out


def _table(logical: str) -> Table:
    return next(t for t in TABLES.values() if t.logical == logical)


def format_value(column: Column, value: Any) -> str | None:
    """The formatted value Dataverse adds for ``value`` (en-US user settings)."""
    if column.options:
        return column.options.get(value)
    if column.edm == "Edm.Boolean":
        return "Yes" if value else "No"
    if column.kind == "money":
        return f"${value:,.2f}"
    if column.edm in ("Edm.Int32", "Edm.Int64"):
        return f"{value:,}"
    if column.edm == "Edm.Decimal":
        return f"{value:,.2f}"
    if column.edm == "Edm.Date":
        d = dt.date.fromisoformat(value)
        return f"{d.month}/{d.day}/{d.year}"
    if column.edm == "Edm.DateTimeOffset":
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        hour = t.hour % 12 or 12
        return f"{t.month}/{t.day}/{t.year} {hour}:{t.minute:02d} {'AM' if t.hour < 12 else 'PM'}"
    return None


def check_rendered(table: Table, body: Row, expand: list[Expand] | None = None) -> list[str]:
    """Problems of a rendered row against the table's types (an empty list when valid)."""
    problems = []
    navs = {ex.nav: ex for ex in expand or []}
    for name, value in body.items():
        if "@" in name:
            continue
        if name in navs:
            if value is not None:
                problems += check_rendered(navs[name].target, value)
            continue
        column = table.column(name)
        if column is None:
            problems.append(f"{table.logical}: unknown property {name}")
            continue
        problem = type_problem(column, value)
        if problem:
            problems.append(f"{table.logical}.{problem}")
    if "@odata.etag" not in body:
        problems.append(f"{table.logical}: no @odata.etag")
    return problems
