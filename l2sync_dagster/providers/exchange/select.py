"""The select statement of the ``exchange`` provider, shared by the EWS and Graph backends.

Grammar (keywords case-insensitive)::

    SELECT [TOP n] <field>[, <field> ...] | * [, <field> ...]
    FROM <scope> [AS <ItemType>]
    [WHERE <field> <op> <value> [AND <field> <op> <value> ...]]
    [ORDER BY <field> [ASC|DESC]]

- ``<field>``: a dotted field name of the item type (``fields.py``; case-insensitive, written
  back in its canonical spelling) or an extended property (below). ``*`` = the item type's
  default fields; ``*`` may be followed by more fields. ``[Name With Spaces]`` and
  ``"quoted"`` names are accepted.
- ``<scope>``: a well-known folder (``Contacts``, ``Calendar``, ``Tasks``, ``Inbox``,
  ``SentItems``, ``Notes``, ``Drafts``, ``DeletedItems``, ``JunkEmail``, ``Outbox``,
  ``Journal``, ``MsgFolderRoot``), ``ContactGroups`` (the Contacts folder's contact groups),
  ``Directory`` (the organisation's people, ``DirectoryUser`` items; read-only), a
  path (``Inbox/Projects/Alpha``; a first segment that is not a well-known folder is a folder
  under the mailbox's top of information store), ``Inbox/**`` (the folder and all subfolders),
  or ``*`` / ``?`` wildcards inside a segment (``Projects/*``, ``Inbox/Proj*``). Quote a path
  that holds spaces or special characters: ``FROM 'Inbox/My Projects'``; a literal ``/`` inside
  a folder name is written ``\\/``.
- ``AS <ItemType>``: the item type when the scope's root is not a well-known folder of that
  type (``FROM 'Shared/Team' AS Contact``); otherwise it follows from the folder.
- ``<op>``: ``=``, ``<>`` / ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``CONTAINS``, ``STARTSWITH``,
  ``IN (v, ...)``, ``IS NULL``, ``IS NOT NULL``. ``<value>``: ``'text'`` (``''`` escapes a
  quote), a number, ``TRUE``/``FALSE``, ``NULL``, or ``'2026-01-31'`` /
  ``'2026-01-31T08:00:00Z'`` for dates and datetimes (converted by the field's type).
- ``TOP n`` limits the read to n items; without it everything in scope is read (paging).

Extended properties (user-defined fields) are declared in the select list, in either form:

- ``Ext.CustomerNo`` or ``Ext.CustomerNo:Integer``: a named property in
  ``PSETID_PublicStrings`` (where Outlook keeps user-defined fields); type default ``String``.
- ``ExtendedProperty:{PSETID_PublicStrings}/CustomerNo:String``, with a well-known property
  set name or a GUID, and a name or a numeric id (``{PSETID_Address}/0x8083:String``), or a
  property tag ``ExtendedProperty:0x3A45:String``.

Either form may end with ``AS Alias``; the column is named the alias, else ``Ext.<Name>``
(``Ext.0x8083`` for ids and tags). Types: String, Integer, Short, Long, Boolean, Double,
Float, Currency, SystemTime, StringArray, IntegerArray.

Interface (stable; the Graph backend relies on it): :func:`parse_select` ->
:class:`SelectStatement` (``top``, ``item_type``, ``columns``, ``fields``, ``extended``,
``scope``, ``where``, ``order_by``, ``descending``); :class:`Scope` (``root``, ``segments``,
``recursive``, ``well_known``); :class:`Condition` (``field``, ``op``, ``value``);
:class:`ExtendedProperty` (``column``, ``property_set`` GUID, ``name``/``prop_id``/``tag``,
``ews_type``, ``type``); :class:`SelectError` for every mistake, with close matches;
:func:`statement_matches` / :func:`condition_holds` evaluate WHERE on canonical values
(client-side filtering of change-feed results).
"""

import datetime as dt
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from decimal import Decimal, InvalidOperation
from typing import Any

from l2sync_dagster.contract import utc
from l2sync_dagster.providers.exchange.fields import (
    CatalogError,
    FieldDef,
    ItemType,
    item_type,
    suggestion,
)
from l2sync_dagster.providers.select_tokens import Token, TokenCursor, tokenize

#: the longest select statement accepted (a guard against runaway input)
MAX_LENGTH = 20_000
MAX_TOP = 10_000_000


class SelectError(ValueError):
    """The select statement is malformed or names an unknown field, scope or item type."""


#: well-known folder name (lower) -> (EWS distinguished folder id, item type name or None)
WELL_KNOWN_FOLDERS: dict[str, tuple[str, str | None]] = {
    "contacts": ("contacts", "Contact"),
    "contactgroups": ("contacts", "ContactGroup"),
    "calendar": ("calendar", "CalendarItem"),
    "tasks": ("tasks", "Task"),
    "notes": ("notes", "Note"),
    "inbox": ("inbox", "Message"),
    "sentitems": ("sentitems", "Message"),
    "drafts": ("drafts", "Message"),
    "deleteditems": ("deleteditems", "Message"),
    "junkemail": ("junkemail", "Message"),
    "outbox": ("outbox", "Message"),
    "journal": ("journal", "Message"),
    "msgfolderroot": ("msgfolderroot", None),
    "directory": ("directory", "DirectoryUser"),
}
#: display spelling of the well-known names
WELL_KNOWN_NAMES = ("Contacts", "ContactGroups", "Calendar", "Tasks", "Notes", "Inbox",
                    "SentItems", "Drafts", "DeletedItems", "JunkEmail", "Outbox", "Journal",
                    "MsgFolderRoot", "Directory")

#: well-known property set name (lower) -> GUID (MS-OXPROPS)
_SET_GUIDS: dict[str, str] = {
    "PSETID_PublicStrings": "00020329-0000-0000-C000-000000000046",
    "PSETID_Common": "00062008-0000-0000-C000-000000000046",
    "PSETID_Address": "00062004-0000-0000-C000-000000000046",
    "PSETID_Appointment": "00062002-0000-0000-C000-000000000046",
    "PSETID_Task": "00062003-0000-0000-C000-000000000046",
    "PSETID_Meeting": "6ED8DA90-450B-101B-98DA-00AA003F1305",
    "PSETID_Log": "0006200A-0000-0000-C000-000000000046",
    "PSETID_Note": "0006200E-0000-0000-C000-000000000046",
    "PSETID_Sharing": "00062040-0000-0000-C000-000000000046",
    "PSETID_UnifiedMessaging": "4442858E-A9E3-4E80-B900-317A210CC15B",
    "InternetHeaders": "00020386-0000-0000-C000-000000000046",
}
#: well-known property set name (lower case) -> GUID (MS-OXPROPS)
PROPERTY_SETS: dict[str, str] = {k.lower(): v for k, v in _SET_GUIDS.items()}
#: EWS MAPI property types -> canonical type
EXTENDED_TYPES: dict[str, str] = {
    "String": "string",
    "Integer": "integer",
    "Short": "integer",
    "Long": "integer",
    "Boolean": "boolean",
    "Double": "float",
    "Float": "float",
    "Currency": "decimal",
    "SystemTime": "datetime",
    "StringArray": "json",
    "IntegerArray": "json",
}
OPERATORS = ("=", "<>", "<", "<=", ">", ">=", "CONTAINS", "STARTSWITH", "IN", "IS NULL",
             "IS NOT NULL")
_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                      r"[0-9a-fA-F]{12}$")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class ExtendedProperty:
    """A user-defined (MAPI extended) property declared in the select list.

    Exactly one of ``name`` (named property), ``prop_id`` (numeric id in a property set) or
    ``tag`` (a property tag, no set) is given. ``property_set`` is the set's GUID (upper case)
    or None for tags. ``ews_type`` is the MAPI type name (``String``...), ``type`` the
    canonical one. ``column`` is the RecordFrame column.
    """

    column: str
    ews_type: str
    type: str
    property_set: str | None = None
    name: str | None = None
    prop_id: int | None = None
    tag: int | None = None

    @property
    def read_only(self) -> bool:
        """Extended properties are writable."""
        return False

    @property
    def is_array(self) -> bool:
        """Whether the property holds a list."""
        return self.ews_type.endswith("Array")


@dataclass(frozen=True)
class Scope:
    """The folder part of the statement.

    ``root`` is the EWS distinguished folder id (``contacts``, ``msgfolderroot``...) the path
    starts from; ``segments`` the folder names below it (may hold ``*``/``?`` wildcards);
    ``recursive`` is True for a trailing ``/**`` (the folder and every subfolder).
    ``well_known`` is True when ``segments`` is empty (a single well-known folder).
    """

    text: str
    root: str
    segments: tuple[str, ...] = ()
    recursive: bool = False

    @property
    def well_known(self) -> bool:
        """True when the scope is exactly one well-known folder."""
        return not self.segments and not self.recursive

    @property
    def has_wildcards(self) -> bool:
        """True when a segment holds ``*`` or ``?``."""
        return any(("*" in s or "?" in s) for s in self.segments)


@dataclass(frozen=True)
class Condition:
    """One ``<field> <op> <value>`` of the WHERE clause; ``value`` converted to the field's
    type (a tuple for IN, None for IS [NOT] NULL)."""

    field: str
    op: str
    value: Any = None
    #: the canonical type of the field (``json`` lists are tested member by member)
    kind: str | None = dc_field(default=None, compare=False)


#: the longest restriction text kept for messages
RESTRICTION_CHARS = 80


@dataclass(frozen=True)
class SelectStatement:
    """A parsed select statement (see the module docstring)."""

    text: str
    item_type: ItemType
    fields: tuple[FieldDef, ...]
    extended: tuple[ExtendedProperty, ...]
    scope: Scope
    top: int | None = None
    where: tuple[Condition, ...] = ()
    order_by: str | None = None
    descending: bool = False
    star: bool = False
    #: the TOP and WHERE clauses as written (``TOP 5 WHERE CompanyName = 'in'``), cut short
    restriction: str | None = None
    #: catalog fields the statement names itself (select list, WHERE, ORDER BY), not via ``*``
    explicit: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        """Every RecordFrame column, in select order (catalog fields, then extended ones)."""
        return [f.name for f in self.fields] + [e.column for e in self.extended]

    def extended_by_column(self, column: str) -> ExtendedProperty | None:
        """The extended property behind a column (case-insensitive), or None."""
        low = column.lower()
        return next((e for e in self.extended if e.column.lower() == low), None)


# --- tokenizer -----------------------------------------------------------------------------
_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<dquoted>"(?:[^"]|"")*")
  | (?P<bracket>\[[^\]]*\])
  | (?P<op><>|!=|<=|>=|=|<|>)
  | (?P<punct>[,()])
  | (?P<word>[^\s,()'"=<>!\[;]+)
    """,
    re.VERBOSE,
)


def _tokens(text: str) -> list[Token]:
    return tokenize(text, _TOKEN_RE, lambda t, pos: SelectError(
        f"unexpected character {t[pos]!r} at position {pos + 1}"))


def _unquote(tok: Token) -> str:
    t = tok.text
    if tok.kind == "string":
        return t[1:-1].replace("''", "'")
    if tok.kind == "dquoted":
        return t[1:-1].replace('""', '"')
    if tok.kind == "bracket":
        return t[1:-1]
    return t


class _Parser(TokenCursor):
    def __init__(self, text: str) -> None:
        super().__init__(_tokens(text), lambda what: SelectError(
            f"unexpected end of the statement: expected {what}"))
        self.text = text

    def keyword(self, *words: str) -> bool:
        """Consume the keyword sequence when it comes next."""
        for k, w in enumerate(words):
            tok = self.peek(k)
            if tok is None or tok.upper != w:
                return False
        self.i += len(words)
        return True

    def expect(self, *words: str) -> None:
        if not self.keyword(*words):
            tok = self.peek()
            found = f"{tok.text!r} at position {tok.pos + 1}" if tok else "the end"
            raise SelectError(f"expected {' '.join(words)}, found {found}")

    def where_am_i(self) -> str:
        tok = self.peek()
        return f"{tok.text!r} at position {tok.pos + 1}" if tok else "the end"


_CLAUSE_WORDS = {"FROM", "WHERE", "ORDER", "AS", "AND", "TOP"}


def _parse_extended(spec: str, alias: str | None) -> ExtendedProperty:
    """``Ext.Name[:Type]`` or ``ExtendedProperty:{set}/name-or-id:Type`` / ``...:0xTAG:Type``."""
    if spec.lower().startswith("ext."):
        body = spec[4:]
        name, _, ews_type = body.partition(":")
        set_guid: str | None = PROPERTY_SETS["psetid_publicstrings"]
        ident: str | None = name
        tag: int | None = None
        prop_id: int | None = None
        if not name:
            raise SelectError(f"extended property {spec!r} has no name (Ext.Name[:Type])")
    else:
        body = spec.split(":", 1)[1] if ":" in spec else ""
        ews_type = ""
        if body.count(":"):
            body, ews_type = body.rsplit(":", 1)
        ident = None
        tag = None
        prop_id = None
        set_guid = None
        if body.startswith("{"):
            close = body.find("}")
            if close < 0 or close + 1 >= len(body) or body[close + 1] != "/":
                raise SelectError(
                    f"extended property {spec!r}: expected {{PropertySet}}/Name:Type")
            set_text = body[1:close].strip()
            set_guid = PROPERTY_SETS.get(set_text.lower())
            if set_guid is None:
                if not _GUID_RE.match(set_text):
                    raise SelectError(
                        f"extended property {spec!r}: unknown property set {set_text!r}; use a "
                        "GUID or one of " + ", ".join(_SET_GUIDS)
                        + suggestion(set_text, _SET_GUIDS))
                set_guid = set_text.upper()
            rest = body[close + 2:].strip()
            if not rest:
                raise SelectError(f"extended property {spec!r} has no name or id")
            if re.fullmatch(r"0[xX][0-9a-fA-F]{1,4}|\d{1,5}", rest):
                prop_id = int(rest, 0)
            else:
                ident = rest
        elif re.fullmatch(r"0[xX][0-9a-fA-F]{1,4}", body.strip()):
            tag = int(body.strip(), 16)
        else:
            raise SelectError(
                f"extended property {spec!r}: expected ExtendedProperty:{{PropertySet}}/Name:Type"
                " or ExtendedProperty:0xTAG:Type")
    ews_type = ews_type.strip() or "String"
    canon = {k.lower(): k for k in EXTENDED_TYPES}.get(ews_type.lower())
    if canon is None:
        raise SelectError(f"extended property {spec!r}: unknown type {ews_type!r}; types are "
                          + ", ".join(EXTENDED_TYPES) + suggestion(ews_type, EXTENDED_TYPES))
    if ident is not None and not re.fullmatch(r"[^\s:/{}\\]{1,255}", ident):
        raise SelectError(f"extended property {spec!r}: invalid name {ident!r}")
    label = ident if ident is not None else f"0x{(prop_id if tag is None else tag):04X}"
    column = alias or f"Ext.{label}"
    return ExtendedProperty(column=column, ews_type=canon, type=EXTENDED_TYPES[canon],
                            property_set=set_guid, name=ident, prop_id=prop_id, tag=tag)


def _parse_scope(text: str) -> tuple[Scope, str | None]:
    """A scope text -> Scope and the item type the root folder implies (or None)."""
    raw = text.strip()
    if not raw:
        raise SelectError("the FROM clause names no folder")
    parts: list[str] = []
    buf: list[str] = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw) and raw[i + 1] == "/":
            buf.append("/")
            i += 2
            continue
        if c == "/":
            parts.append("".join(buf).strip())
            buf = []
        else:
            buf.append(c)
        i += 1
    parts.append("".join(buf).strip())
    if any(not p for p in parts):
        raise SelectError(f"scope {text!r} has an empty folder name")
    recursive = False
    if parts[-1] == "**":
        recursive = True
        parts.pop()
        if not parts:
            raise SelectError("scope '**' needs a folder: write MsgFolderRoot/** for all folders")
    if any("**" in p for p in parts):
        raise SelectError(f"scope {text!r}: '**' is allowed only as the last segment")
    for p in parts:
        if any(ord(ch) < 32 for ch in p) or len(p) > 255:
            raise SelectError(f"scope {text!r}: invalid folder name {p[:40]!r}")
    first = parts[0].lower()
    known = WELL_KNOWN_FOLDERS.get(first)
    if known is not None:
        root, implied = known
        segments = tuple(parts[1:])
    else:
        if "*" not in parts[0] and "?" not in parts[0] and len(parts) == 1 and not recursive:
            close = suggestion(parts[0], WELL_KNOWN_NAMES)
            if close:
                raise SelectError(f"unknown folder {parts[0]!r}{close} (a folder under the "
                                  f"mailbox root is written MsgFolderRoot/{parts[0]})")
        root, implied = "msgfolderroot", None
        segments = tuple(parts)
    return Scope(text=raw, root=root, segments=segments, recursive=recursive), implied


def _check_directory(scope: Scope, itype: ItemType) -> None:
    """The directory is a scope of its own: no folders below it, no other item type in it,
    and its item type nowhere else."""
    if scope.root == "directory":
        if scope.segments or scope.recursive:
            raise SelectError(f"scope {scope.text!r}: the directory has no folders; write "
                              "FROM Directory")
        if itype.name != "DirectoryUser":
            raise SelectError(f"FROM Directory holds DirectoryUser items, not {itype.name}")
    elif itype.name == "DirectoryUser":
        raise SelectError(f"DirectoryUser items are read FROM Directory, not from "
                          f"{scope.text!r}")


def _convert(value: Any, f: FieldDef | ExtendedProperty, raw: str) -> Any:
    """A literal converted to the field's canonical type (SelectError when it does not fit)."""
    if value is None:
        return None
    kind = f.type
    name = f.name if isinstance(f, FieldDef) else f.column
    try:
        if kind == "string":
            if not isinstance(value, str):
                value = raw
            choices = getattr(f, "choices", ())
            if choices and value.lower() not in {c.lower() for c in choices}:
                raise SelectError(f"{name} is one of {', '.join(choices)}, not {value!r}"
                                  + suggestion(value, choices))
            if choices:
                value = next(c for c in choices if c.lower() == value.lower())
            return value
        if kind == "integer":
            if isinstance(value, bool) or not re.fullmatch(r"[+-]?\d{1,18}", str(value)):
                raise ValueError
            return int(str(value))
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind == "decimal":
            if isinstance(value, bool):
                raise ValueError
            return Decimal(str(value))
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            low = str(value).lower()
            if low in {"true", "1"}:
                return True
            if low in {"false", "0"}:
                return False
            raise ValueError
        if kind == "date":
            return dt.date.fromisoformat(str(value))
        if kind == "datetime":
            return utc(dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")))
        return value
    except SelectError:
        raise
    except (ValueError, InvalidOperation, TypeError):
        raise SelectError(f"{name} is a {kind} field; {raw} is not a {kind}") from None


def parse_select(text: str, naming: dict[str, str] | None = None) -> SelectStatement:
    """Parse a select statement (see the module docstring); SelectError on any mistake.

    ``naming`` maps alternative column names (``NamingScheme=SharePoint``) to dotted names;
    when given, those names are accepted in the select list and WHERE/ORDER BY.
    """
    if not isinstance(text, str) or not text.strip():
        raise SelectError("the select statement is empty; expected SELECT ... FROM <folder>")
    if len(text) > MAX_LENGTH:
        raise SelectError(f"the select statement is longer than {MAX_LENGTH} characters")
    if "\x00" in text:
        raise SelectError("the select statement contains a NUL character")
    p = _Parser(text)
    p.expect("SELECT")
    top: int | None = None
    explicit: list[str] = []
    if p.keyword("TOP"):
        tok = p.next("a number after TOP")
        if tok.kind != "word" or not tok.text.isdigit() or not 0 < int(tok.text) <= MAX_TOP:
            raise SelectError(f"TOP needs a whole number from 1 to {MAX_TOP}, not {tok.text!r}")
        top = int(tok.text)
    # select list: raw items, resolved once the item type is known
    items: list[tuple[str, str | None, Token]] = []
    while True:
        tok = p.next("a field name or *")
        if tok.kind == "word" and tok.upper == "FROM":
            after = p.peek()
            # the message field From: "SELECT Subject, From FROM Inbox" (or quote it: [From])
            is_field = bool(items) and after is not None and (
                (after.kind == "punct" and after.text == ",") or after.upper == "FROM")
            if not is_field:
                raise SelectError("the select list is empty; write * or field names before "
                                  "FROM")
        if tok.kind not in ("word", "dquoted", "bracket"):
            raise SelectError(f"expected a field name, found {tok.text!r} at position "
                              f"{tok.pos + 1}")
        name = _unquote(tok)
        alias = None
        if p.keyword("AS"):
            at = p.next("an alias after AS")
            if at.kind not in ("word", "dquoted", "bracket") or at.upper in _CLAUSE_WORDS:
                raise SelectError(f"expected an alias after AS, found {at.text!r}")
            alias = _unquote(at)
        items.append((name, alias, tok))
        nxt = p.peek()
        if nxt is not None and nxt.kind == "punct" and nxt.text == ",":
            p.i += 1
            continue
        break
    p.expect("FROM")
    scope_tok = p.next("a folder after FROM")
    if scope_tok.kind not in ("word", "string", "dquoted", "bracket"):
        raise SelectError(f"expected a folder after FROM, found {scope_tok.text!r}")
    scope, implied = _parse_scope(_unquote(scope_tok))
    type_name = implied
    if p.keyword("AS"):
        tt = p.next("an item type after AS")
        try:
            named_type = item_type(_unquote(tt))
        except CatalogError as exc:
            raise SelectError(str(exc)) from None
        type_name = named_type.name
    try:
        itype = item_type(type_name or "Message")
    except CatalogError as exc:  # pragma: no cover - implied names are catalog names
        raise SelectError(str(exc)) from None
    _check_directory(scope, itype)

    naming_low = {k.lower(): v for k, v in (naming or {}).items()}

    def resolve(name: str) -> FieldDef:
        found = itype.field(name) or (
            itype.field(naming_low[name.lower()]) if name.lower() in naming_low else None)
        if found is None:
            raise SelectError(f"unknown field {name!r} for {itype.name} items"
                              + suggestion(name, itype.names() + list(naming or {})))
        return found

    fields: list[FieldDef] = []
    extended: list[ExtendedProperty] = []
    star = False
    for name, alias, tok in items:
        if name == "*" and tok.kind == "word":
            if alias:
                raise SelectError("* cannot have an alias")
            star = True
            for f in itype.default_fields():
                if f not in fields:
                    fields.append(f)
            continue
        if name.lower().startswith(("ext.", "extendedproperty:")):
            extended.append(_parse_extended(name, alias))
            continue
        if alias:
            raise SelectError(f"AS is only for extended properties; {name!r} keeps its name")
        f = resolve(name)
        explicit.append(f.name)
        if f not in fields:
            fields.append(f)
    columns_low: dict[str, str] = {f.name.lower(): f.name for f in fields}
    for e in extended:
        if e.column.lower() in columns_low:
            raise SelectError(f"column {e.column!r} is selected twice; give one an alias "
                              "with AS")
        columns_low[e.column.lower()] = e.column

    def resolve_any(name: str) -> FieldDef | ExtendedProperty:
        for e in extended:
            if e.column.lower() == name.lower():
                return e
        return resolve(name)

    where: list[Condition] = []
    where_start = p.peek().pos if p.peek() is not None else len(text)  # type: ignore[union-attr]
    if p.keyword("WHERE"):
        while True:
            ftok = p.next("a field name in WHERE")
            if ftok.kind not in ("word", "dquoted", "bracket"):
                raise SelectError(f"expected a field name in WHERE, found {ftok.text!r}")
            target = resolve_any(_unquote(ftok))
            tname = target.name if isinstance(target, FieldDef) else target.column
            if isinstance(target, FieldDef) and not target.filterable:
                raise SelectError(f"{tname} cannot be used in WHERE")
            if isinstance(target, FieldDef):
                explicit.append(target.name)
            where.append(_condition(p, target, tname))
            if not p.keyword("AND"):
                break
        nxt = p.peek()
        if nxt is not None and nxt.upper == "OR":
            raise SelectError("OR is not supported in WHERE; combine conditions with AND")
    where_end = p.peek().pos if p.peek() is not None else len(text)  # type: ignore[union-attr]
    order_by = None
    descending = False
    if p.keyword("ORDER", "BY"):
        otok = p.next("a field name after ORDER BY")
        if otok.kind not in ("word", "dquoted", "bracket"):
            raise SelectError(f"expected a field name after ORDER BY, found {otok.text!r}")
        target = resolve_any(_unquote(otok))
        if isinstance(target, FieldDef):
            if not target.filterable:
                raise SelectError(f"cannot ORDER BY {target.name}")
            order_by = target.name
            explicit.append(target.name)
        else:
            order_by = target.column
        if p.keyword("DESC"):
            descending = True
        else:
            p.keyword("ASC")
    if p.peek() is not None:
        raise SelectError(f"unexpected {p.where_am_i()}")
    parts = [f"TOP {top}"] if top is not None else []
    if where:
        parts.append(" ".join(text[where_start:where_end].split()))
    restriction = " ".join(parts) or None
    if restriction and len(restriction) > RESTRICTION_CHARS:
        restriction = restriction[:RESTRICTION_CHARS - 1].rstrip() + "\u2026"
    return SelectStatement(text=text, item_type=itype, fields=tuple(fields),
                           extended=tuple(extended), scope=scope, top=top, where=tuple(where),
                           order_by=order_by, descending=descending, star=star,
                           restriction=restriction, explicit=tuple(dict.fromkeys(explicit)))


def _literal(p: _Parser) -> tuple[Any, str]:
    tok = p.next("a value")
    if tok.kind == "string":
        return _unquote(tok), tok.text
    if tok.kind == "word":
        up = tok.upper
        if up in ("TRUE", "FALSE"):
            return up == "TRUE", tok.text
        if up == "NULL":
            return None, tok.text
        if _NUMBER_RE.match(tok.text):
            return tok.text, tok.text
    raise SelectError(f"expected a value ('text', a number, TRUE, FALSE), found {tok.text!r} "
                      f"at position {tok.pos + 1}")


def _condition(p: _Parser, target: FieldDef | ExtendedProperty, name: str) -> Condition:
    cond = _parse_condition(p, target, name)
    return Condition(cond.field, cond.op, cond.value, target.type)


def _parse_condition(p: _Parser, target: FieldDef | ExtendedProperty, name: str) -> Condition:
    if p.keyword("IS", "NOT", "NULL"):
        return Condition(name, "IS NOT NULL")
    if p.keyword("IS", "NULL"):
        return Condition(name, "IS NULL")
    tok = p.next("an operator")
    if tok.kind == "op":
        op = "<>" if tok.text == "!=" else tok.text
        value, raw = _literal(p)
        if value is None:
            raise SelectError(f"write {name} IS NULL / IS NOT NULL instead of comparing with "
                              "NULL")
        if target.type == "json":
            raise SelectError(f"{name} holds a list; use CONTAINS to test a member")
        return Condition(name, op, _convert(value, target, raw))
    up = tok.upper
    if up in ("CONTAINS", "STARTSWITH"):
        value, raw = _literal(p)
        if not isinstance(value, str):
            raise SelectError(f"{up} needs a quoted text value")
        if target.type not in ("string", "json"):
            raise SelectError(f"{up} works on text fields; {name} is a {target.type}")
        return Condition(name, up, value)
    if up == "IN":
        open_ = p.next("(")
        if open_.text != "(":
            raise SelectError("IN needs a list: IN ('a', 'b')")
        values = []
        while True:
            value, raw = _literal(p)
            values.append(_convert(value, target, raw))
            sep = p.next(", or )")
            if sep.text == ")":
                break
            if sep.text != ",":
                raise SelectError(f"expected , or ) in the IN list, found {sep.text!r}")
        return Condition(name, "IN", tuple(values))
    raise SelectError(f"unknown operator {tok.text!r} after {name}; operators are "
                      + ", ".join(OPERATORS))


def is_null(value: Any) -> bool:
    """Whether a canonical value counts as NULL in WHERE: None, NaN, an empty list, and a
    text that is empty or only blanks (Exchange keeps no empty text: Outlook removes a
    cleared field, and both backends read a blank text as null)."""
    if value is None:
        return True
    if isinstance(value, float) and value != value:  # NaN
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple):
        return not value
    return False


def _members(value: Any, kind: str | None) -> list[Any] | None:
    """The members of a json list value (a list, or JSON text of one), else None."""
    if isinstance(value, list | tuple):
        return list(value)
    if kind == "json" and isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, list) else None
    return None


def _comparable(value: Any) -> Any:
    """A value as WHERE and ORDER BY compare it: text case-insensitive, datetimes in UTC,
    a date as midnight UTC when it meets a datetime (see :func:`_order`)."""
    if isinstance(value, str):
        return value.casefold()
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return value


def _order(a: Any, b: Any) -> int | None:
    """-1, 0, 1, or None when the values cannot be compared (never true then)."""
    x, y = _comparable(a), _comparable(b)
    if isinstance(x, dt.datetime) != isinstance(y, dt.datetime):
        if isinstance(x, dt.date) and not isinstance(x, dt.datetime):
            x = dt.datetime(x.year, x.month, x.day, tzinfo=dt.UTC)
        if isinstance(y, dt.date) and not isinstance(y, dt.datetime):
            y = dt.datetime(y.year, y.month, y.day, tzinfo=dt.UTC)
    if isinstance(x, bool) != isinstance(y, bool):
        return None
    try:
        return (x > y) - (x < y)
    except TypeError:
        return None


def condition_holds(cond: Condition, value: Any) -> bool:
    """Whether a canonical value satisfies one condition: the one WHERE evaluator of both
    backends (EWS filters change-feed results with it, Graph everything it reads).

    SQL semantics: a NULL (see :func:`is_null`) satisfies only ``IS NULL``; every comparison
    with it, ``<>`` included, is false (``WHERE CompanyName <> 'x'`` leaves out contacts
    without a company, as SQL leaves out NULL rows). Text compares case-insensitively, as
    Exchange does. A json list satisfies CONTAINS / STARTSWITH when one of its members does;
    it is never compared with ``=`` (the parser refuses that)."""
    op = cond.op.upper()
    if op == "!=":
        op = "<>"
    if op == "IS NULL":
        return is_null(value)
    if op == "IS NOT NULL":
        return not is_null(value)
    if is_null(value):
        return False
    if op in ("CONTAINS", "STARTSWITH"):
        needle = str(cond.value).casefold()
        members = _members(value, cond.kind)
        texts = [str(m).casefold() for m in members] if members is not None \
            else [str(value).casefold()]
        if op == "CONTAINS":
            return any(needle in t for t in texts)
        return any(t.startswith(needle) for t in texts)
    targets = tuple(cond.value or ()) if op == "IN" else (cond.value,)
    results = [_order(value, t) for t in targets if not is_null(t)]
    if op == "IN":
        return any(c == 0 for c in results)
    if not results or results[0] is None:
        return False
    c = results[0]
    checks: dict[str, Callable[[int], bool]] = {
        "=": lambda c: c == 0, "<>": lambda c: c != 0, "<": lambda c: c < 0,
        "<=": lambda c: c <= 0, ">": lambda c: c > 0, ">=": lambda c: c >= 0}
    check = checks.get(op)
    return bool(check and check(c))


def statement_matches(stmt: SelectStatement, values: dict[str, Any]) -> bool:
    """Whether a record (canonical values by column) satisfies every WHERE condition."""
    return all(condition_holds(c, values.get(c.field)) for c in stmt.where)


def order_records(stmt: SelectStatement, records: Sequence[Any],
                  value_of: Callable[[Any, str], Any]) -> list[Any]:
    """``records`` in ORDER BY order (nulls last, text case-insensitive) and cut to TOP n:
    how both backends finish a TOP read. ``value_of(record, column)`` gives a value."""
    out = list(records)
    col = stmt.order_by
    if col:
        present = [r for r in out if not is_null(value_of(r, col))]
        missing = [r for r in out if is_null(value_of(r, col))]

        def key(r: Any) -> Any:
            v = _comparable(value_of(r, col))
            if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
                v = dt.datetime(v.year, v.month, v.day, tzinfo=dt.UTC)
            return v

        try:
            present.sort(key=key, reverse=stmt.descending)
        except TypeError:  # mixed types: keep the server's order
            pass
        out = present + missing
    if stmt.top is not None:
        out = out[:stmt.top]
    return out
