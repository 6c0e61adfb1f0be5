"""What a ``sql`` query side is: its table (reflected) or SELECT (sampled), its columns, field
types, key and read-only columns (:class:`Entity`), and how values are bound to its columns.

The provider (:mod:`sql`) caches one :class:`Entity` per query; reads (:mod:`sql_read`) and
writes (:mod:`sql_write`) work from it.
"""

import datetime as dt
import difflib
import uuid
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from l2sync_dagster.providers.base import EntityDescription, FieldInfo, ProviderError, Query
from l2sync_dagster.providers.sql_dialect import refine_types
from l2sync_dagster.providers.sql_statement import SelectStatement
from l2sync_dagster.providers.sql_values import parse_text, to_text

_UTC_ZONE = zoneinfo.ZoneInfo("UTC")

#: rows sampled to guess the field types of a SELECT query
SAMPLE_ROWS = 1000


def field_type(sql_type: sa.types.TypeEngine) -> tuple[str, bool]:
    """The engine's field type of a SQL type, and whether it is known (False: a guess)."""
    if isinstance(sql_type, sa.types.NullType):
        return "string", False
    if isinstance(sql_type, sa.Boolean):
        return "boolean", True
    if isinstance(sql_type, sa.Integer):
        return "integer", True
    if isinstance(sql_type, sa.Float):
        return "float", True
    if isinstance(sql_type, sa.Numeric):
        return "decimal", True
    if isinstance(sql_type, sa.DateTime):
        return "datetime", True
    if isinstance(sql_type, sa.Date):
        return "date", True
    if isinstance(sql_type, sa.JSON | sa.ARRAY):
        return "json", True
    return "string", True


def python_type(value: Any) -> str:
    """The field type of a Python value a driver returned (for SELECT queries)."""
    if isinstance(value, bool | np.bool_):
        return "boolean"
    if isinstance(value, int | np.integer):
        return "integer"
    if isinstance(value, float | np.floating):
        return "float"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, dict | list):
        return "json"
    return "string"



def unquote(part: str) -> str:
    part = part.strip()
    if len(part) >= 2 and part[0] == part[-1] == '"':
        return part[1:-1].replace('""', '"')
    if len(part) >= 2 and part[0] == "[" and part[-1] == "]":
        return part[1:-1]
    if len(part) >= 2 and part[0] == part[-1] == "`":
        return part[1:-1]
    return part


def close_names(name: str, candidates: Sequence[str]) -> str:
    """``; did you mean a, b?`` for names close to ``name`` (case-insensitive), or ''."""
    by_low = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), list(by_low), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(by_low[c] for c in close)}?" if close else ""


@dataclass
class Entity:
    """A resolved query: the table (or SELECT), its columns, types and description."""

    description: EntityDescription
    columns: dict[str, Any]
    types: dict[str, str]
    key: Any
    table: sa.Table | None = None
    select: str | None = None
    select_source: Any = None
    #: the SELECT without its WHERE/LIMIT (what ``lookup`` searches)
    lookup_source: Any = None
    read_only: set[str] = field(default_factory=set)
    label: str = ""
    #: columns read as stored and converted here (SQLite): name -> field type
    raw: dict[str, str] = field(default_factory=dict)

    def read_columns(self, names: Sequence[str], source: Any = None) -> list[Any]:
        """Column expressions for a SELECT of ``names``; raw columns bypass the driver's
        parsing (a bad stored value must reject its record, not abort the read)."""
        out = []
        for n in names:
            col = self.columns[n] if source is None else source.c[n]
            if n in self.raw:
                col = sa.type_coerce(col, sa.types.NullType()).label(n)
            out.append(col)
        return out

    def column(self, name: str) -> Any:
        """A column by name; exact match first, then case-insensitive."""
        col = self.columns.get(name)
        if col is not None:
            return col
        low = name.lower()
        for n, c in self.columns.items():
            if n.lower() == low:
                return c
        return None

    def key_value(self, key: str) -> Any:
        """A key (as the RecordFrame writes it) as the key column's database value."""
        ftype = self.types[self.key.name]
        if ftype == "integer":
            return int(key.strip())
        if ftype == "float":
            return float(key)
        if ftype == "decimal":
            return Decimal(key.strip())
        if isinstance(self.key.type, sa.Uuid) and self.key.type.as_uuid:
            return uuid.UUID(key)
        return self.bind(key, self.key)

    def bind_many(self, values: Sequence[Any], col: Any) -> list[Any]:
        """``[self.bind(v, col) for v in values]``, without the call for the values that
        :meth:`bind` returns unchanged (a bulk load binds every value of every column)."""
        keep, aware = self._kept(col)
        kinds = set(map(type, values))
        if kinds <= keep:
            return list(values)
        bind = self.bind
        if aware is None or dt.datetime not in kinds:
            return [v if type(v) in keep else bind(v, col) for v in values]
        if aware:  # a column with time zone keeps aware datetimes
            return [v if type(v) in keep or (type(v) is dt.datetime and v.tzinfo)
                    else bind(v, col) for v in values]
        # a column without keeps naive datetimes, and UTC ones lose their zone: astimezone to
        # their own zone is the datetime itself, from zoneinfo's UTC the same time, fold 0
        return [
            v if type(v) in keep or (type(v) is dt.datetime and not v.tzinfo)
            else v.replace(tzinfo=None) if type(v) is dt.datetime and v.tzinfo is dt.UTC
            else v.replace(tzinfo=None, fold=0) if type(v) is dt.datetime and v.tzinfo is _UTC_ZONE
            else bind(v, col)
            for v in values
        ]

    def _kept(self, col: Any) -> tuple[frozenset[type], bool | None]:
        """The exact types whose values :meth:`bind` returns unchanged for ``col`` (None
        always), and for a ``DateTime`` column the awareness of the ``datetime`` values it
        keeps (None: the rule does not apply)."""
        ftype = self.types.get(col.name, "string")
        sql_type = col.type
        keep: set[type] = {type(None)}
        if ftype == "string" and not isinstance(sql_type, sa.Uuid):
            keep.add(str)
        elif ftype == "integer":
            keep.add(int)
        elif ftype == "float":
            keep.add(float)
        elif ftype == "decimal":
            keep.update((Decimal, int))
        elif ftype == "boolean":
            keep.add(bool)
        elif ftype == "date":
            keep.add(dt.date)
        elif ftype == "json":
            keep.update((dict, list))
        aware = bool(sql_type.timezone) if isinstance(sql_type, sa.DateTime) else None
        return frozenset(keep), aware

    def bind(self, value: Any, col: Any) -> Any:
        """A Python value as the database value for ``col`` (naive UTC for columns without
        time zone, parsed JSON for JSON columns, text for text columns...)."""
        if value is None:
            return None
        sql_type = col.type
        ftype = self.types.get(col.name, "string")
        kind = type(value)
        # the common cases first, unchanged by every rule below (a bulk load binds each value)
        if (kind is str and ftype == "string" and not isinstance(sql_type, sa.Uuid)) or (
                kind is int and ftype == "integer") or (kind is float and ftype == "float"):
            return value
        if isinstance(value, str) and ftype != "string":
            value = parse_text(value, ftype, sql_type)
        if isinstance(value, dt.datetime):
            if isinstance(sql_type, sa.DateTime):
                if sql_type.timezone:
                    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
                return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
            if isinstance(sql_type, sa.Date) and value.time() == dt.time(0):
                return value.date()
        elif isinstance(value, dt.date) and ftype == "datetime":
            tz = dt.UTC if getattr(sql_type, "timezone", False) else None
            return dt.datetime(value.year, value.month, value.day, tzinfo=tz)
        if (
            ftype == "string"
            and not isinstance(value, str)
            and not isinstance(sql_type, sa.LargeBinary | sa.Uuid | sa.Interval | sa.Time)
        ):
            return to_text(value)
        if ftype == "float" and isinstance(value, Decimal | int) and not isinstance(value, bool):
            return float(value)
        if ftype == "decimal" and isinstance(value, float):
            return Decimal(repr(value))
        if isinstance(sql_type, sa.Uuid) and isinstance(value, str) and sql_type.as_uuid:
            try:
                return uuid.UUID(value)
            except ValueError:
                return value
        return value


def find_table(conn: Connection, text: str, default_schema: str | None, where_url: str
               ) -> tuple[str | None, str]:
    """(schema, table) for a table name written as ``table`` or ``schema.table``."""
    insp = sa.inspect(conn)
    candidates: list[tuple[str | None, str]] = [(default_schema, unquote(text))]
    for i, ch in enumerate(text):
        if ch == ".":
            candidates.append((unquote(text[:i]), unquote(text[i + 1 :])))

    def names(schema: str | None) -> list[str]:
        try:
            return list(insp.get_table_names(schema)) + list(insp.get_view_names(schema))
        except sa_exc.SQLAlchemyError:
            return []

    for schema, table in candidates:
        try:
            if table and insp.has_table(table, schema=schema):
                return schema, table
        except sa_exc.SQLAlchemyError:
            continue
    # PostgreSQL folds unquoted names to lower case, others differ: match case-insensitively
    for schema, table in candidates:
        same = [n for n in names(schema) if n.lower() == table.lower()]
        if len(same) == 1:
            return schema, same[0]
    available = names(default_schema)
    where = f"schema {default_schema!r}" if default_schema else "the default schema"
    listing = ", ".join(sorted(available)[:20]) or "none"
    raise ProviderError(
        f"table {short(text)!r} not found in {where} of {where_url}"
        f"{close_names(unquote(text), available)} (tables: {listing}); check `query:` "
        "and Schema="
    )

def table_entity(conn: Connection, query: Query, text: str, default_schema: str | None,
                 where_url: str) -> "Entity":
    """The entity of a table: reflected columns, field types, key, read-only columns."""
    schema, name = find_table(conn, text, default_schema, where_url)
    table = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=conn)
    refine_types(table, conn)
    for col in table.primary_key.columns:
        # SQLite reflects `id INTEGER PRIMARY KEY` as nullable; SQLAlchemy then refuses the
        # batched INSERT ... RETURNING (no "sentinel"), and every batch fell back to one
        # transaction per row. A primary key is never NULL.
        col.nullable = False
    label = f"{schema}.{name}" if schema else name
    columns = {c.name: c for c in table.columns}
    types: dict[str, str] = {}
    read_only: set[str] = set()
    for col in table.columns:
        types[col.name] = field_type(col.type)[0]
        if isinstance(col.type, sa.JSON):
            col.type.none_as_null = True  # None is SQL NULL, not the JSON text 'null'
        if col.computed is not None or (col.identity is not None and col.identity.always):
            read_only.add(col.name)
    if query.key:
        key = named_column(columns, query.key, label, "key")
    else:
        pk = list(table.primary_key.columns)
        if len(pk) != 1:
            what = "a composite primary key" if pk else "no primary key"
            raise ProviderError(
                f"table {label!r} has {what}; set `key:` in the connection to the column "
                "that identifies a record"
            )
        key = pk[0]
    generated = is_generated(table, key, conn.dialect.name)
    fields = []
    for col in table.columns:
        ftype, typed = field_type(col.type)
        fields.append(
            FieldInfo(
                name=col.name,
                type=ftype,
                typed=typed,
                read_only=col.name in read_only or (col is key and generated),
                nullable=bool(col.nullable),
            )
        )
    modified = None
    if query.modified:
        modified = named_column(columns, query.modified, label, "modified").name
    desc = EntityDescription(tuple(fields), key.name, generated, True, modified, scope="all")
    raw = {}
    if conn.dialect.name == "sqlite":
        raw = {c.name: types[c.name] for c in table.columns
               if isinstance(c.type, SQLITE_PARSED) and c is not key}
    return Entity(desc, columns, types, key, table=table, read_only=read_only, label=label,
                   raw=raw)

def select_entity(conn: Connection, query: Query, statement: SelectStatement) -> "Entity":
    """The entity of a SELECT: its columns, with field types guessed from sampled rows."""
    text = statement.text
    result = conn.execution_options(stream_results=True).execute(sa.text(text))
    try:
        names = list(result.keys())
        sample = result.fetchmany(SAMPLE_ROWS)
    finally:
        result.close()
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ProviderError(
            f"the SELECT query returns the column name {dupes[0]!r} more than once; "
            "give every column a distinct name (AS ...)"
        )
    label = "the SELECT query"
    if not query.key:
        raise ProviderError(
            "a SELECT query has no primary key; set `key:` in the connection to the column "
            "that identifies a record"
        )
    plain = {n: sa.column(n) for n in names}
    key_name = named_column(plain, query.key, label, "key").name
    modified = None
    if query.modified:
        modified = named_column(plain, query.modified, label, "modified").name
    types: dict[str, str] = {}
    fields = []
    typed_columns = []
    for i, n in enumerate(names):
        values = [row[i] for row in sample if row[i] is not None]
        seen = {python_type(v) for v in values}
        ftype = seen.pop() if len(seen) == 1 else "string"
        sql_type: Any = None
        if n == modified and ftype in ("datetime", "string"):
            # typed so that the watermark binds (and SQLite text parses) like the column
            aware = any(isinstance(v, dt.datetime) and v.tzinfo for v in values)
            sql_type, ftype = sa.DateTime(timezone=aware), "datetime"
        types[n] = ftype
        fields.append(FieldInfo(n, ftype, typed=bool(values) and not seen, read_only=True))
        typed_columns.append(sa.column(n, sql_type))
    source = sa.text(text).columns(*typed_columns).subquery("l2sync_q")
    everything = sa.text(statement.unrestricted).columns(
        *[sa.column(c.name, c.type) for c in typed_columns]).subquery("l2sync_all")
    columns = {n: source.c[n] for n in names}
    desc = EntityDescription(tuple(fields), key_name, False, False, modified,
                             scope=statement.scope,  # type: ignore[arg-type]
                             restriction=statement.restriction)
    raw = {}
    if conn.dialect.name == "sqlite":
        raw = {n: types[n] for n, c in zip(names, typed_columns, strict=True)
               if isinstance(c.type, SQLITE_PARSED) and n != key_name}
    return Entity(
        desc,
        columns,
        types,
        columns[key_name],
        select=text,
        select_source=source,
        lookup_source=everything,
        read_only=set(names),
        label=label,
        raw=raw,
    )

def named_column(columns: dict[str, Any], name: str, label: str, role: str) -> Any:
    col = columns.get(name)
    if col is None:
        same = [c for n, c in columns.items() if n.lower() == name.lower()]
        col = same[0] if len(same) == 1 else None
    if col is None:
        raise ProviderError(
            f"`{role}: {name}`: {label} has no column {name!r}{close_names(name, list(columns))} "
            f"(columns: {', '.join(columns)})"
        )
    return col


#: SQLAlchemy types whose SQLite result processing parses the stored value (and raises on
#: a bad one); such columns are read as stored and converted by :func:`_from_raw`
SQLITE_PARSED = (sa.Date, sa.DateTime, sa.Numeric, sa.Boolean, sa.JSON)


def short(text: str, limit: int = 60) -> str:
    """``text`` on one line, cut to ``limit`` characters (saying how much was cut)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"



def is_generated(table: sa.Table, col: Any, dialect: str) -> bool:
    """True when the database makes the key's value (identity, serial, autoincrement)."""
    if not isinstance(col.type, sa.Integer):
        return False
    if col.identity is not None:
        return True
    pk = list(table.primary_key.columns)
    if dialect == "sqlite":
        # only ``INTEGER PRIMARY KEY`` is an alias of the rowid
        return len(pk) == 1 and pk[0] is col and type(col.type).__name__ == "INTEGER"
    if col.autoincrement is True:
        return True
    default = col.server_default
    return default is not None and "nextval(" in str(getattr(default, "arg", "")).lower()



# --- values ------------------------------------------------------------------------------
