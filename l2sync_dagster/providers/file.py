"""The ``file`` provider: one CSV or Parquet file is one data entity.

Connection string::

    Path=data/contacts.csv;Format=csv;Delimiter=";";Encoding=utf-8

CSV is text: every value is read as a string (empty cells as ""), and the engine converts to
the types of the other side. Parquet keeps the Arrow schema's types. Writes rewrite the whole
file atomically (temporary file in the same folder, fsync, rename), so a crash leaves either
the old or the new file, never half of one.
"""

import codecs
import contextlib
import csv
import datetime as dt
import difflib
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, ClassVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from l2sync_dagster.providers.base import (
    KEY_INDEX,
    Capability,
    Change,
    CreatedCallback,
    EntityDescription,
    EntityMissing,
    FieldInfo,
    Outcome,
    ProviderError,
    Query,
    ReadResult,
)
from l2sync_dagster.providers.options import ProviderOptions, option
from l2sync_dagster.spec.connection_string import ConnectionString, ConnectionStringError


class FileOptions(ProviderOptions):
    """The file provider's connection-string options."""

    provider: ClassVar[str] = "file"
    path: str | None = option("Path", "file to read and write; relative to the spec", required=True)
    format: str | None = option("Format", "csv or parquet (default: from the extension)")
    delimiter: str | None = option("Delimiter", "CSV field separator, one character or \\t")
    encoding: str | None = option("Encoding", "text encoding of CSV files", "utf-8")


KEYS = tuple(FileOptions.keys())
FORMATS = ("csv", "parquet")
DEFAULT_BATCH_SIZE = 100_000
_EXTENSIONS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
NOT_FOUND = "record not found (deleted since it was read?)"


def arrow_field_type(arrow_type: pa.DataType) -> str:
    """The engine's field type of an Arrow type."""
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_decimal(arrow_type):
        return "decimal"
    if pa.types.is_timestamp(arrow_type):
        return "datetime"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_nested(arrow_type):
        return "json"
    return "string"


def csv_text(value: Any) -> str:
    """A Python value as CSV cell text: None is "", booleans are true/false, floats round-trip
    exactly (``repr``), dates and datetimes are ISO 8601."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if value != value else repr(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _key_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


@dataclass
class _Content:
    """A file's records as Python lists per column (cheap to edit in place)."""

    columns: dict[str, list[Any]]
    schema: pa.Schema | None
    newline: str
    #: (mtime_ns, size) of the file when it was loaded; None when it did not exist
    version: tuple[int, int] | None = None


class FileProvider:
    """Reads and writes one CSV or Parquet file."""

    name: ClassVar[str] = "file"
    options: ClassVar[type[ProviderOptions]] = FileOptions
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {"lookup", "probe", "close", "create_entity"})

    def __init__(
        self,
        path: Path | str,
        *,
        format: str | None = None,
        delimiter: str | None = None,
        encoding: str = "utf-8",
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        """A provider for the file at ``path``; the format defaults from the extension."""
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        fmt = (format or _EXTENSIONS.get(suffix, "")).lower()
        if fmt not in FORMATS:
            raise ConnectionStringError(
                f"file: cannot tell the format of {self.path.name!r}; "
                "set Format=csv or Format=parquet"
            )
        self.format = fmt
        self.delimiter = delimiter or ("\t" if suffix == ".tsv" else ",")
        self.encoding = encoding
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"FileProvider({str(self.path)!r}, format={self.format!r})"

    @classmethod
    def from_connection_string(
        cls, text: str | ConnectionString, *, base_dir: Path | None = None
    ) -> "FileProvider":
        """Parse ``Path=...;Format=csv|parquet;Delimiter=,;Encoding=utf-8``; a relative Path
        resolves against ``base_dir``."""
        cs = text if isinstance(text, ConnectionString) else ConnectionString(text, label="file")
        options = FileOptions.parse(cs)
        path = Path(options.path or "").expanduser()
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        fmt = options.format
        if fmt and fmt.strip().lower() not in FORMATS:
            raise ConnectionStringError(f"file: Format must be csv or parquet, not {fmt!r}")
        delimiter = options.delimiter
        if delimiter is not None:
            delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter.lower(), delimiter)
            if len(delimiter) != 1:
                raise ConnectionStringError(
                    f"file: Delimiter must be one character (or \\t), not {delimiter!r}"
                )
        encoding = options.encoding or "utf-8"
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ConnectionStringError(f"file: unknown Encoding {encoding!r}") from None
        return cls(
            path.resolve(),
            format=fmt.strip() if fmt else None,
            delimiter=delimiter,
            encoding=encoding,
        )

    # --- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _key(query: Query) -> str:
        if not query.key:
            raise ProviderError("the file provider needs `key:` in the connection")
        return query.key

    def _read_bytes(self) -> tuple[bytes, os.stat_result] | None:
        """The file's bytes and the stat they belong to; None when the file does not exist."""
        for _ in range(5):
            try:
                before = self.path.stat()
                data = self.path.read_bytes()
                after = self.path.stat()
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise ProviderError(f"cannot read {self.path}: {exc}") from None
            if (before.st_mtime_ns, before.st_size) == (after.st_mtime_ns, after.st_size):
                return data, after
        raise ProviderError(
            f"{self.path} keeps changing while it is read; try again", transient=True
        )

    def _parse(self, data: bytes) -> pd.DataFrame:
        """The file's content as a DataFrame (CSV: every value a str)."""
        try:
            if self.format == "csv":
                if not data.strip():
                    return pd.DataFrame()
                return pd.read_csv(
                    io.BytesIO(data),
                    dtype=str,
                    keep_default_na=False,
                    sep=self.delimiter,
                    encoding=self.encoding,
                )
            table = pq.read_table(io.BytesIO(data))
            return table.to_pandas(ignore_metadata=True, types_mapper=_NULLABLE.get)
        except (ValueError, UnicodeDecodeError, pa.ArrowException, csv.Error) as exc:
            raise ProviderError(f"cannot parse {self.path} as {self.format}: {exc}") from None

    def _schema(self) -> pa.Schema:
        try:
            return pq.read_schema(self.path)
        except (OSError, pa.ArrowException) as exc:
            raise ProviderError(f"cannot read {self.path} as parquet: {exc}") from None

    def _header(self) -> list[str]:
        """The column names (reads only the start of a CSV file)."""
        if self.format == "parquet":
            return list(self._schema().names)
        try:
            head = pd.read_csv(
                self.path,
                dtype=str,
                keep_default_na=False,
                sep=self.delimiter,
                encoding=self.encoding,
                nrows=0,
            )
        except pd.errors.EmptyDataError:
            return []
        except (OSError, ValueError, UnicodeDecodeError, csv.Error) as exc:
            raise ProviderError(f"cannot read {self.path} as csv: {exc}") from None
        return [str(c) for c in head.columns]

    def _key_column(self, columns: Sequence[str], key: str) -> str:
        if key in columns:
            return key
        same = [c for c in columns if str(c).lower() == key.lower()]
        if len(same) == 1:
            return same[0]
        close = difflib.get_close_matches(key, [str(c) for c in columns], n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ProviderError(
            f"`key: {key}`: {self.path.name} has no column {key!r}{hint} "
            f"(columns: {', '.join(map(str, columns)) or 'none'})"
        )

    def _place(self, position: int) -> str:
        return f"line {position + 2}" if self.format == "csv" else f"row {position + 1}"

    def _keys_of(self, values: Sequence[Any], key: str) -> list[str]:
        """Key values as strings; raises on an empty or duplicate key, naming where it is."""
        keys = [None if v is None or v is pd.NA or v != v else _key_text(v) for v in values]
        seen: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k is None or k == "":
                raise ProviderError(
                    f"{self.path.name}: the record on {self._place(i)} has no {key!r}"
                )
            if k in seen:
                raise ProviderError(
                    f"{self.path.name}: duplicate key {k!r} in column {key!r} on "
                    f"{self._place(seen[k])} and {self._place(i)}"
                )
            seen[k] = i
        return keys  # type: ignore[return-value]

    @staticmethod
    def _state(data: bytes, stat: os.stat_result) -> dict[str, Any]:
        return {
            "mtime_ns": stat.st_mtime_ns,
            "size": stat.st_size,
            "sha256": hashlib.sha256(data).hexdigest(),
        }

    def _unchanged(self, cursor: str | None) -> bool:
        """True when the file is in the state the cursor recorded (size, mtime and content)."""
        if not cursor:
            return False
        try:
            old = json.loads(cursor)
            stat = self.path.stat()
        except (ValueError, OSError):
            return False
        if not isinstance(old, dict):
            return False
        if (old.get("mtime_ns"), old.get("size")) != (stat.st_mtime_ns, stat.st_size):
            return False
        try:
            with self.path.open("rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError:
            return False
        return digest == old.get("sha256")

    # --- provider contract -------------------------------------------------------------------
    def verify(self, query: Query) -> str:
        """Check that the file can be read (or, when missing, that its folder exists)."""
        if not self.path.exists():
            if not self.path.parent.is_dir():
                raise ProviderError(
                    f"the folder {self.path.parent} does not exist; check Path= in the connection"
                )
            if not os.access(self.path.parent, os.W_OK):
                raise ProviderError(f"cannot write to the folder {self.path.parent}")
            return f"{self.path} does not exist yet; it will be created on the first write"
        desc = self.describe(query)
        return f"{self.path}: {self.format} file with {len(desc.fields)} columns"

    def describe(self, query: Query) -> EntityDescription:
        """Columns of the file (CSV: all ``string``, untyped; Parquet: the Arrow types)."""
        key = self._key(query)
        if not self.path.exists():
            return EntityDescription(fields=(), key=key, scope="all")
        if self.format == "parquet":
            fields = tuple(
                FieldInfo(f.name, arrow_field_type(f.type), typed=True, nullable=f.nullable)
                for f in self._schema()
            )
        else:
            fields = tuple(FieldInfo(c, "string", typed=False) for c in self._header())
        if not fields:
            return EntityDescription(fields=(), key=key, scope="all")
        key = self._key_column([f.name for f in fields], key)
        # a file has no query: every read returns every record
        return EntityDescription(fields=fields, key=key, key_generated=False, scope="all")

    def read(
        self, query: Query, cursor: str | None = None, window: tuple[Any, Any] | None = None
    ) -> ReadResult:
        """The whole file as a RecordFrame; an empty incremental result when the cursor says
        the file has not changed. ``window`` = (start, end) keeps the records whose
        ``query.window_field`` (a date or ISO date-time; naive values are UTC) lies in
        ``[start, end)``; the file is still read whole (a file has no index to push it to)."""
        key = self._key(query)
        if window is not None:
            result = self.read(query)
            return ReadResult(self._in_window(result.frame, query, window), complete=True,
                              cursor=result.cursor)
        if self._unchanged(cursor):
            head = pd.DataFrame({c: pd.Series([], dtype=object) for c in self._header()})
            head.index = pd.Index([], dtype=object, name=KEY_INDEX)
            return ReadResult(head, complete=False, cursor=cursor)
        loaded = self._read_bytes()
        if loaded is None:
            # never an empty read: a source file that went away (a share not mounted, a file
            # moved) would otherwise delete every copy of its records
            raise EntityMissing(f"file: {self.path} does not exist", what=f"file {self.path}")
        data, stat = loaded
        frame = self._parse(data)
        if len(frame.columns) == 0:
            frame = pd.DataFrame({key: pd.Series([], dtype=object)})
        key = self._key_column(list(frame.columns), key)
        keys = self._keys_of(frame[key].tolist(), key)
        frame.index = pd.Index(keys, name=KEY_INDEX)
        return ReadResult(frame, complete=True, cursor=json.dumps(self._state(data, stat)))

    def _in_window(self, frame: pd.DataFrame, query: Query, window: tuple[Any, Any]
                   ) -> pd.DataFrame:
        from l2sync_dagster.contract import as_window, in_window

        name = query.window_field
        if not name:
            raise ProviderError("file: a read window needs a window field")
        if frame.empty and name not in frame.columns:
            return frame
        column = self._key_column([str(c) for c in frame.columns], name)
        return frame[in_window(frame[column], as_window(*window)).to_numpy()]

    def create_entity(self, query: Query) -> str:
        """Nothing to do now: the first write creates the file (and its header)."""
        return f"the first write creates {self.path}"

    def lookup(self, query: Query, keys: Sequence[str]) -> pd.DataFrame:
        """The records among ``keys`` that are in the file (any window); none when the file
        does not exist."""
        try:
            frame = self.read(query).frame
        except EntityMissing:
            return pd.DataFrame(index=pd.Index([], dtype=object, name=KEY_INDEX))
        wanted = frame.index.isin([str(k) for k in keys])
        return frame[wanted]

    def probe(self, query: Query, cursor: str | None = None) -> str:
        """The file's modification time (ns) and size: one ``stat``, no read."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return json.dumps({"missing": True})
        except OSError as exc:
            raise ProviderError(f"cannot stat {self.path}: {exc}") from None
        return json.dumps({"mtime_ns": st.st_mtime_ns, "size": st.st_size})

    def max_batch_size(self) -> int:
        """Changes per apply call: each call rewrites the file once."""
        return self.batch_size

    def close(self) -> None:
        """Nothing to release."""

    # --- writes ------------------------------------------------------------------------------
    def _load(self) -> _Content:
        loaded = self._read_bytes()
        if loaded is None:
            return _Content({}, None if self.format == "csv" else pa.schema([]), "\n")
        data, stat = loaded
        version = (stat.st_mtime_ns, stat.st_size)
        if self.format == "csv":
            first = data.split(b"\n", 1)[0]
            newline = "\r\n" if first.endswith(b"\r") else "\n"
            frame = self._parse(data)
            columns = {str(c): frame[c].tolist() for c in frame.columns}
            return _Content(columns, None, newline, version)
        try:
            table = pq.read_table(io.BytesIO(data))
        except pa.ArrowException as exc:
            raise ProviderError(f"cannot parse {self.path} as parquet: {exc}") from None
        columns = {name: table.column(name).to_pylist() for name in table.column_names}
        return _Content(columns, table.schema.remove_metadata(), "\n", version)

    def apply(self, query: Query, changes: Sequence[Change], *,
              created: CreatedCallback | None = None) -> list[Outcome]:
        """Apply the changes in memory and rewrite the file atomically, once per call.

        Raises ProviderError when the file cannot be read or written (then nothing changed).
        ``created`` is called with the successful inserts' outcomes once the file is written
        (the keys are the caller's own, so nothing is lost if it raises).
        """
        key = self._key(query)
        content = self._load()
        cols = content.columns
        if cols:
            key = self._key_column(list(cols), key)
        else:
            cols[key] = []
        schema = content.schema
        by_low = {c.lower(): c for c in cols}
        n = len(cols[key])
        position = {k: i for i, k in enumerate(self._keys_of(cols[key], key))}
        deleted: set[int] = set()
        outcomes: list[Outcome] = []
        changed = False

        for change in changes:

            def fail(message: str, change: Change = change) -> None:
                outcomes.append(Outcome(change.ref, False, key=change.key, error=message))

            if change.key is None or change.key == "":
                fail(
                    "the file provider does not generate keys"
                    if change.op == "insert"
                    else f"{change.op} needs the record's key"
                )
                continue
            k = str(change.key)
            if change.op == "delete":
                i = position.pop(k, None)
                if i is not None:
                    deleted.add(i)
                    changed = True
                outcomes.append(Outcome(change.ref, True, key=k))
                continue
            if change.op not in ("insert", "update"):
                fail(f"unknown operation {change.op!r}")
                continue
            if change.op == "insert" and k in position:
                fail(f"a record with key {k!r} already exists in {self.path.name}")
                continue
            if change.op == "update" and k not in position:
                fail(NOT_FOUND)
                continue
            values: dict[str, Any] = {}
            error = None
            for name, value in change.values.items():
                column = by_low.get(name.lower(), name)
                if column == key:
                    if value is not None and _key_text(value) != k:
                        error = f"the key column {key!r} cannot be changed (from {k!r})"
                        break
                    continue
                converted = self._cell(value, schema, column)
                if isinstance(converted, _Bad):
                    error = f"{name}: {converted.reason}"
                    break
                values[column] = converted
            if error is None:
                key_value = self._cell(k, schema, key)
                if isinstance(key_value, _Bad):
                    error = f"key {k!r}: {key_value.reason}"
            if error is not None:
                fail(error)
                continue
            for column in values:
                if column not in cols:
                    cols[column] = [None if schema is not None else ""] * n
                    by_low[column.lower()] = column
            if change.op == "insert":
                empty = None if schema is not None else ""
                for column, items in cols.items():
                    items.append(values.get(column, empty))
                cols[key][n] = key_value
                position[k] = n
                n += 1
            else:
                i = position[k]
                for column, value in values.items():
                    cols[column][i] = value
            changed = True
            outcomes.append(Outcome(change.ref, True, key=k))

        if changed:
            if deleted:
                cols = {
                    c: [v for i, v in enumerate(items) if i not in deleted]
                    for c, items in cols.items()
                }
            if self.format == "csv":
                self._write_atomic(
                    lambda f: self._write_csv(f, cols, content.newline), content.version
                )
            else:
                table = _arrow_table(cols, schema)
                self._write_atomic(lambda f: pq.write_table(table, f), content.version)
        inserted = [o for c, o in zip(changes, outcomes, strict=True) if o.ok and c.op == "insert"]
        if created is not None and inserted:
            created(inserted)
        return outcomes

    def _cell(self, value: Any, schema: pa.Schema | None, column: str) -> Any:
        """A value as stored in the file: CSV text, or a value fitting the Parquet column."""
        if schema is None:  # CSV
            return csv_text(value)
        if value is None:
            return None
        index = schema.get_field_index(column)
        if index < 0:
            return value
        arrow_type = schema.field(index).type
        if pa.types.is_timestamp(arrow_type) and isinstance(value, dt.datetime):
            if arrow_type.tz is None and value.tzinfo is not None:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
            elif arrow_type.tz is not None and value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
        elif pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
            value = csv_text(value)
        elif pa.types.is_integer(arrow_type) and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = int(value.strip())
        elif pa.types.is_floating(arrow_type) and isinstance(value, str | Decimal):
            with contextlib.suppress(ValueError):
                value = float(value)
        elif pa.types.is_decimal(arrow_type) and isinstance(value, float | str | int):
            with contextlib.suppress(ArithmeticError, ValueError):
                value = Decimal(repr(value) if isinstance(value, float) else str(value))
        elif pa.types.is_nested(arrow_type) and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        try:
            pa.array([value], type=arrow_type)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            return _Bad(f"{value!r} does not fit the column type {arrow_type}")
        return value

    def _write_csv(self, f: IO[bytes], cols: dict[str, list[Any]], newline: str) -> None:
        text = io.TextIOWrapper(f, encoding=self.encoding, newline="")
        writer = csv.writer(text, delimiter=self.delimiter, lineterminator=newline)
        writer.writerow(list(cols))
        writer.writerows(zip(*cols.values(), strict=True))
        text.flush()
        text.detach()

    def _write_atomic(
        self, write: Callable[[IO[bytes]], None], expected: tuple[int, int] | None
    ) -> None:
        """Write to a temporary file in the same folder, fsync it, then rename it over the file:
        readers and crashes see the old or the new file, never a partial one. ``expected`` is
        the (mtime_ns, size) the changes were applied to: if someone else changed the file
        meanwhile, nothing is written (their change is not overwritten)."""
        folder = self.path.parent
        try:
            mode = self.path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        except OSError as exc:
            raise ProviderError(f"cannot write to the folder {folder}: {exc}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            try:
                now = self.path.stat()
                current: tuple[int, int] | None = (now.st_mtime_ns, now.st_size)
            except FileNotFoundError:
                current = None
            if current != expected:
                raise ProviderError(
                    f"{self.path} was changed by someone else while it was being written; "
                    "nothing was written, run again",
                    transient=True,
                )
            os.replace(tmp, self.path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise ProviderError(f"cannot write {self.path}: {exc}") from None
            raise
        # make the rename itself durable (best effort: not every platform allows it)
        with contextlib.suppress(OSError):
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


@dataclass
class _Bad:
    """A value that cannot be stored in its column."""

    reason: str


_NULLABLE: dict[pa.DataType, Any] = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


def _arrow_table(cols: dict[str, list[Any]], schema: pa.Schema | None) -> pa.Table:
    """The columns as an Arrow table: existing columns keep their type, new ones are inferred
    (falling back to text when the values are of mixed types)."""
    arrays = []
    fields = []
    for name, values in cols.items():
        index = schema.get_field_index(name) if schema is not None else -1
        if index >= 0:
            field = schema.field(index)  # type: ignore[union-attr]
            arrays.append(pa.array(values, type=field.type))
            fields.append(field)
            continue
        try:
            array = pa.array(values)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            array = pa.array([None if v is None else csv_text(v) for v in values], pa.string())
        if pa.types.is_null(array.type):
            array = array.cast(pa.string())
        arrays.append(array)
        fields.append(pa.field(name, array.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
