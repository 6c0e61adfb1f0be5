"""The schema of a connection file (``connections/<name>.yaml``) as pydantic models.

The models check what can be checked without I/O: names of fields, allowed values, cron and
time zone syntax, connection string syntax (literal secrets are refused), and rules that tie
fields together. Resolving the mapping against the providers' fields happens later, in the
engine. Rules that span fields raise :class:`pydantic_core.PydanticCustomError` of type
``spec_rule`` whose context names the offending field (``field``, a dotted path relative to the
model that raised it) and the text that follows it (``detail``), so that the loader can report
the line of that field.
"""

import datetime as dt
import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from l2sync_dagster.contract import FieldType
from l2sync_dagster.spec.connection_string import ConnectionString, ConnectionStringError
from l2sync_dagster.spec.errors import cut

Direction = Literal["left_to_right", "right_to_left", "bidirectional"]
FieldDirection = Literal["both", "left_to_right", "right_to_left"]
ConflictPolicy = Literal["left_wins", "right_wins", "latest_wins", "merge", "skip", "fail"]
FallbackPolicy = Literal["left_wins", "right_wins", "latest_wins", "skip", "fail"]

#: fields of ConnectionSpec that come from the file's location, not from its content
DERIVED_FIELDS: tuple[str, ...] = ("name", "path", "project_dir", "lines", "partition_of",
                                   "partition_value")

RULE_ERROR = "spec_rule"

# hide_input_in_errors: a ValidationError printed as is must never show a connection string
_CONFIG = ConfigDict(
    extra="forbid", frozen=True, hide_input_in_errors=True, coerce_numbers_to_str=True
)


def rule_error(field: str, detail: str) -> PydanticCustomError:
    """An error of a rule spanning fields, reported as ``<field> <detail>`` at ``field``'s line."""
    return PydanticCustomError(RULE_ERROR, "{field} {detail}", {"field": field, "detail": detail})


def display_path_of(path: Path | str) -> str:
    """``path`` relative to the current directory when it lies below it, else as given."""
    p = Path(path)
    try:
        return Path(os.path.abspath(p)).relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(p)


def dagster_name_of(name: str) -> str:
    """A name Dagster accepts: characters outside ``[A-Za-z0-9_]`` become ``_``."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not out or out[0].isdigit():
        out = "c_" + out
    return out


def checked_connection_string(value: str) -> str:
    """``value`` when it parses; parsing checks syntax and refuses literal secrets (``env:``
    references stay unresolved)."""
    try:
        ConnectionString(value, environ={})
    except ConnectionStringError as exc:
        raise ValueError(str(exc).removeprefix("connection string: ")) from None
    return value


class EntitySpec(BaseModel):
    """One side of a connection: a provider, its connection string and the entity in it."""

    model_config = _CONFIG

    provider: Annotated[str, Field(min_length=1)]
    connection_string: str
    query: str | None = None
    key: str | None = None
    modified: str | None = None

    @field_validator("provider", "query", "key", "modified")
    @classmethod
    def _no_control_characters(cls, value: str | None) -> str | None:
        # a NUL reaches C libraries (SQLite, file names) and cuts the text there
        for i, ch in enumerate(value or ""):
            if (ord(ch) < 32 and ch not in "\t\r\n") or ord(ch) == 127:
                raise ValueError(
                    f"holds a control character (U+{ord(ch):04X}) at character {i + 1}; "
                    "remove it"
                )
        return value

    @field_validator("connection_string")
    @classmethod
    def _check_connection_string(cls, value: str) -> str:
        return checked_connection_string(value)


class FieldPairSpec(BaseModel):
    """An explicit pair of fields, with an optional canonical type and a per-field direction."""

    model_config = _CONFIG

    left: Annotated[str, Field(min_length=1)]
    right: Annotated[str, Field(min_length=1)]
    type: FieldType | None = None
    direction: FieldDirection = "both"


class MappingSpec(BaseModel):
    """How fields pair up: same names (``auto``), explicit ``fields``, and ``exclude``."""

    model_config = _CONFIG

    auto: bool = True
    fields: list[FieldPairSpec] = []
    exclude: list[str] = []

    @model_validator(mode="after")
    def _no_duplicates(self) -> "MappingSpec":
        for side in ("left", "right"):
            seen: set[str] = set()
            for i, pair in enumerate(self.fields):
                low = getattr(pair, side).lower()
                if low in seen:
                    raise rule_error(
                        f"fields.{i}.{side}",
                        f"'{cut(getattr(pair, side))}' is already mapped by an earlier pair; "
                        "a field may appear in one pair only",
                    )
                seen.add(low)
        return self


class ConflictSpec(BaseModel):
    """What to do when both sides changed a record. ``fallback`` is used by ``merge`` only."""

    model_config = _CONFIG

    policy: ConflictPolicy = "skip"
    fallback: FallbackPolicy = "skip"

    @model_validator(mode="before")
    @classmethod
    def _scalar_form(cls, data: Any) -> Any:
        # `conflicts: left_wins` is short for `conflicts: {policy: left_wins}`
        if isinstance(data, str):
            return {"policy": data}
        return data


class DeleteSpec(BaseModel):
    """Whether deletes propagate, and the mass-delete brake."""

    model_config = _CONFIG

    propagate: bool = False
    max_fraction: Annotated[float, Field(ge=0, le=1)] = 0.2
    #: a synced record that no longer matches its side's WHERE: still paired (keep), or
    #: treated as deleted on that side (delete; it then follows ``propagate``)
    out_of_scope: Literal["keep", "delete"] = "keep"

    @model_validator(mode="before")
    @classmethod
    def _scalar_form(cls, data: Any) -> Any:
        # `deletes: true` is short for `deletes: {propagate: true}`
        if isinstance(data, bool):
            return {"propagate": data}
        return data


Granularity = Literal["hour", "day", "week", "month"]


class PartitionSpec(BaseModel):
    """``partitions:``: time windows on a date/time field; each partition syncs one window.

    ``field`` names the field on the left side (the right side uses the field mapped to it,
    or ``right_field``). Windows start at ``start`` (a date or an ISO date-time) and follow
    the connection's ``timezone``; ``end`` (exclusive) is optional.
    """

    model_config = _CONFIG

    field: Annotated[str, Field(min_length=1)]
    right_field: Annotated[str, Field(min_length=1)] | None = None
    granularity: Granularity = "day"
    start: str
    end: str | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _date_to_text(cls, value: Any) -> Any:
        # YAML reads `start: 2024-01-01` as a date
        if isinstance(value, dt.date):
            return value.isoformat()
        return value

    @field_validator("start", "end")
    @classmethod
    def _check_date(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise ValueError(
                f"'{cut(value)}' is not a date; write it as YYYY-MM-DD or YYYY-MM-DDTHH:MM"
            ) from None
        return str(value)

    @model_validator(mode="after")
    def _start_before_end(self) -> "PartitionSpec":
        if self.end is not None and dt.datetime.fromisoformat(self.end) <= \
                dt.datetime.fromisoformat(self.start):
            raise rule_error("end", f"{self.end} must be after start {self.start}")
        return self


class SensorSpec(BaseModel):
    """``sensor:``: watch both sides with cheap probes and run the sync when one changed.

    ``interval`` is the minimum number of seconds between two evaluations; ``timeout`` bounds
    how long one evaluation may spend probing.
    """

    model_config = _CONFIG

    interval: Annotated[int, Field(ge=10, strict=True)] = 60
    timeout: Annotated[float, Field(gt=0, le=300)] = 30.0

    @model_validator(mode="before")
    @classmethod
    def _scalar_form(cls, data: Any) -> Any:
        # `sensor: true` turns it on with the defaults; `sensor: 120` sets the interval
        if data is True:
            return {}
        if isinstance(data, int) and not isinstance(data, bool):
            return {"interval": data}
        return data


#: the placeholder a ``for_each`` value fills
FOR_EACH_VARIABLE = "mailbox"
#: the one placeholder in connection strings and queries; other braces are the user's text
#: (ODBC ``Driver={FreeTDS}``, a literal in a WHERE) and stay as written
PLACEHOLDER = re.compile(r"\{(" + FOR_EACH_VARIABLE + r")\}")
#: brace-enclosed words, to catch a misspelt ``{mailbox}`` in a file with ``for_each``
_BRACED_WORD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: what a ``for_each`` value may hold: it lands in connection strings and queries as is
FOR_EACH_VALUE = re.compile(r"[A-Za-z0-9._%+\-@]{1,254}")


def check_for_each_value(value: str) -> str:
    """``value`` stripped and lower-cased (mailboxes are case-insensitive); ValueError when
    it holds characters that could change a connection string or a query around it."""
    text = str(value).strip().lower()
    if not FOR_EACH_VALUE.fullmatch(text):
        raise ValueError(
            f"{cut(text)!r} is not a mailbox address l2sync can substitute for "
            "{mailbox}: use letters, digits and . _ % + - @ only (at most 254 characters)")
    return text


class ForEachSqlSource(BaseModel):
    """``for_each.mailbox: {provider: sql, connection_string: ..., query: SELECT ...}``: the
    values are the first (or ``column``) column of the rows the SELECT returns."""

    model_config = _CONFIG

    provider: Literal["sql"]
    connection_string: str
    query: Annotated[str, Field(min_length=1)]
    column: str | None = None

    @field_validator("connection_string")
    @classmethod
    def _check_connection_string(cls, value: str) -> str:
        return checked_connection_string(value)

    @field_validator("query")
    @classmethod
    def _select_only(cls, value: str) -> str:
        if not re.match(r"\s*(select|with)\b", value, re.IGNORECASE):
            raise ValueError("must be a SELECT query returning the mailbox addresses")
        return value


class ForEachGroup(BaseModel):
    """``for_each.mailbox: {members_of: group@x}``: the mail addresses of a group's transitive
    user members, read from Microsoft Graph with ``connection_string`` (msal keys: TenantId,
    ClientId, ClientSecret=env:..., and GraphURL or URL), else with the connection string of
    the first Graph side that holds ``{mailbox}`` (see :meth:`graph_connection_string`)."""

    model_config = _CONFIG

    members_of: Annotated[str, Field(min_length=1)]
    connection_string: str | None = None

    @field_validator("members_of")
    @classmethod
    def _check_group(cls, value: str) -> str:
        return check_for_each_value(value)

    @field_validator("connection_string")
    @classmethod
    def _check_connection_string(cls, value: str | None) -> str | None:
        return None if value is None else checked_connection_string(value)

    def graph_connection_string(self, left: "EntitySpec", right: "EntitySpec") -> str | None:
        """``connection_string``, else that of the first side (left, then right) whose
        connection string holds ``{mailbox}`` and talks to Graph (exchange with
        ``Backend=graph``), with its ``Email=`` removed; None when there is none."""
        if self.connection_string is not None:
            return self.connection_string
        for entity in (left, right):
            text = entity.connection_string
            if (entity.provider.lower() == "exchange" and PLACEHOLDER.search(text)
                    and re.search(r"(^|;)\s*Backend\s*=\s*graph\s*(;|$)", text, re.I)):
                return re.sub(r"(^|;)\s*Email\s*=[^;]*", "", text, flags=re.I).strip(";")
        return None


class ForEachSpec(BaseModel):
    """``for_each:``: one Dagster partition per value, each with its own archive, cursors,
    lock and run records; ``{mailbox}`` in connection strings and queries is the value.
    ``on_remove``: when a value leaves the list, its partition is removed from Dagster and
    its state kept (``keep``) or forgotten (``clear``: archive, cursors, journal).
    ``per_run``: how many mailboxes one Dagster run of a backfill or of the schedule syncs
    (the value-independent side is read once per run); ``workers``: how many of a run's
    mailboxes are synced at once."""

    model_config = _CONFIG

    mailbox: list[str] | ForEachSqlSource | ForEachGroup
    on_remove: Literal["keep", "clear"] = "keep"
    per_run: Annotated[int, Field(gt=0, le=1000, strict=True)] = 50
    workers: Annotated[int, Field(gt=0, le=64, strict=True)] = 4

    @field_validator("mailbox")
    @classmethod
    def _check_values(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("must list at least one mailbox")
            out = [check_for_each_value(v) for v in value]
            dupes = sorted({v for v in out if out.count(v) > 1})
            if dupes:
                raise ValueError(f"lists {dupes[0]!r} more than once")
            return out
        return value


class ConnectionSpec(BaseModel):
    """One connection file, validated. ``name`` is the file stem.

    ``project_dir`` is what relative paths in connection strings and the state store resolve
    against: the parent of the folder holding the file when that folder is named
    ``connections``, else the file's folder.
    """

    model_config = _CONFIG

    name: Annotated[str, Field(min_length=1)]
    path: Path
    project_dir: Path
    title: str | None = None
    direction: Direction
    left: EntitySpec
    right: EntitySpec
    mapping: MappingSpec = MappingSpec()
    match_on: list[Annotated[str, Field(min_length=1)]] = []
    conflicts: ConflictSpec = ConflictSpec()
    deletes: DeleteSpec = DeleteSpec()
    mirror: bool = False
    schedule: str | None = None
    sensor: SensorSpec | None = None
    partitions: PartitionSpec | None = None
    for_each: ForEachSpec | None = None
    timezone: str | None = None
    batch_size: Annotated[int, Field(gt=0, strict=True)] | None = None
    tags: dict[str, str] = {}
    description: str | None = None
    #: 1-based line of each entry of the file by dotted path (``mapping.fields.2.right``);
    #: empty when the spec was not loaded from a file. See :func:`spec.errors.line_of`.
    lines: dict[str, int] = Field(default_factory=dict, repr=False)
    #: set on the connection of one for_each value (:meth:`for_value`): the connection's own
    #: name and the value; ``name`` is then the partition's identity in the state store
    partition_of: str | None = None
    partition_value: str | None = None

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 200 or not _is_valid_cron(value)):
            raise ValueError(
                f"'{cut(value)}' is not a valid cron expression; expected five fields "
                "(minute hour day-of-month month day-of-week) like '*/15 * * * *', or @daily"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            if len(value) > 100 or "\x00" in value:
                raise ValueError(value)
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            import difflib

            close = (difflib.get_close_matches(value, sorted(available_timezones()), n=1)
                     if len(value) <= 100 else [])
            hint = f"; did you mean {close[0]!r}?" if close else " like 'Europe/Berlin' or 'UTC'"
            raise ValueError(f"'{cut(value)}' is not a known IANA time zone{hint}") from None
        return value

    @model_validator(mode="after")
    def _cross_field_rules(self) -> "ConnectionSpec":
        if self.mirror and self.direction == "bidirectional":
            raise rule_error(
                "mirror", "applies to one-way connections; remove it or change direction"
            )
        if self.direction != "bidirectional":
            for i, pair in enumerate(self.mapping.fields):
                if pair.direction not in ("both", self.direction):
                    raise rule_error(
                        f"mapping.fields.{i}.direction",
                        f"{pair.direction} contradicts the connection direction "
                        f"{self.direction}; use both or {self.direction}",
                    )
        if self.for_each is not None and self.for_each.on_remove == "clear" and not self.match_on:
            # clear forgets which records the sync wrote into the mailbox; if it rejoins, only
            # match_on can pair them again instead of writing every one a second time
            raise rule_error(
                "for_each.on_remove",
                "clear needs match_on: (fields that identify a record on both sides, like "
                "[EmailAddresses.EmailAddress1]); without it a mailbox that rejoins gets every "
                "record a second time. Add match_on or use on_remove: keep",
            )
        self._check_placeholders()
        return self

    def _check_placeholders(self) -> None:
        """``{mailbox}`` only with ``for_each`` (and then in at least one place, or every
        partition would sync the same records); in a file with ``for_each`` a braced word
        close to it (``{mailbx}``) is refused as a misspelling. Other braces are text."""
        used = False
        for side in ("left", "right"):
            entity = getattr(self, side)
            for attr in ("connection_string", "query"):
                where = f"{side}.{attr}"
                text = getattr(entity, attr) or ""
                for found in _BRACED_WORD.findall(text):
                    if (self.for_each is not None and found != FOR_EACH_VARIABLE
                            and difflib.get_close_matches(found.lower(), [FOR_EACH_VARIABLE],
                                                          cutoff=0.7)):
                        raise rule_error(where, f"holds the unknown placeholder {{{cut(found)}}}; "
                                         f"the only placeholder is {{{FOR_EACH_VARIABLE}}} "
                                         "(with for_each)")
                for _found in PLACEHOLDER.findall(text):
                    if self.for_each is None:
                        raise rule_error(where, f"holds {{{FOR_EACH_VARIABLE}}} but the file "
                                         "has no for_each: to fill it")
                    used = True
        if self.for_each is None:
            return
        source = self.for_each.mailbox
        if isinstance(source, ForEachSqlSource | ForEachGroup):
            for attr in ("connection_string", "query", "members_of"):
                found = PLACEHOLDER.search(getattr(source, attr, None) or "")
                if found:
                    raise rule_error(f"for_each.mailbox.{attr}",
                                     f"holds the placeholder {{{cut(found.group(1))}}}; the "
                                     "list of mailboxes cannot depend on a mailbox")
        if isinstance(source, ForEachGroup) and used and \
                source.graph_connection_string(self.left, self.right) is None:
            raise rule_error("for_each.mailbox", "members_of needs a connection_string: to "
                             "read the group from Microsoft Graph (TenantId, ClientId, "
                             "ClientSecret=env:..., GraphURL), or a side with provider "
                             f"exchange, Backend=graph and {{{FOR_EACH_VARIABLE}}} in its "
                             "connection string")
        if not used:
            raise rule_error("for_each", f"needs {{{FOR_EACH_VARIABLE}}} in a connection string "
                             "or query of left or right; without it every partition would "
                             "sync the same records")
        for what in ("partitions", "sensor"):
            if getattr(self, what) is not None:
                raise rule_error(what, "cannot be combined with for_each yet; remove one")

    def for_value(self, value: str) -> "ConnectionSpec":
        """The connection of one ``for_each`` value: ``{mailbox}`` filled in, and a name of its
        own (``<name>[<value>]``) that the state store keys its archive, cursors, lock and
        runs by. The file's other fields (and lines, for errors) stay as they are."""
        if self.for_each is None:
            raise ValueError(f"{self.display_path} has no for_each")
        value = check_for_each_value(value)
        sides = {}
        for side in ("left", "right"):
            entity = getattr(self, side)
            sides[side] = entity.model_copy(update={
                attr: PLACEHOLDER.sub(value, getattr(entity, attr))
                for attr in ("connection_string", "query") if getattr(entity, attr)})
        return self.model_copy(update={**sides, "name": partition_identity(self.name, value),
                                       "partition_of": self.name, "partition_value": value})

    @property
    def base_name(self) -> str:
        """The connection's own name (``x`` for the partition connection ``x[a@b]``)."""
        return self.partition_of or self.name

    @property
    def dagster_name(self) -> str:
        """The name in Dagster (asset key prefix, group, job): ``[A-Za-z0-9_]`` only."""
        return dagster_name_of(self.base_name)

    @property
    def display_path(self) -> str:
        """The file's path relative to the current directory when possible, for messages."""
        return display_path_of(self.path)


#: the state store's connection column is 200 characters wide
_IDENTITY_LIMIT = 200


def partition_identity(name: str, value: str) -> str:
    """The state store's name of one ``for_each`` value of connection ``name``: ``name[value]``,
    or ``name[#<hash>]`` when that would not fit the store's 200 characters."""
    identity = f"{name}[{value}]"
    if len(identity) <= _IDENTITY_LIMIT:
        return identity
    import hashlib

    return f"{name}[#{hashlib.sha256(value.encode()).hexdigest()[:32]}]"


def _is_valid_cron(value: str) -> bool:
    try:
        from dagster._utils.schedules import is_valid_cron_string
    except ImportError:  # dagster moved its private helper: fall back to a shape check
        fields = value.split()
        return value.startswith("@") or len(fields) == 5
    return is_valid_cron_string(value)
