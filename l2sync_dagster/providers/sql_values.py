"""Values of the ``sql`` provider: keys as RecordFrame strings, SQLite values as stored,
text parsed for typed columns and values written as text, and key lists cut for ``IN``."""

import datetime as dt
import json
import re
from collections.abc import Iterator, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import pandas as pd
import pyarrow as pa

from l2sync_dagster.contract import FALSE_WORDS, TRUE_WORDS

_INT_RE = re.compile(r"^[+-]?\d+$")


def key_str(value: Any) -> str:
    """A key value as the string used in the RecordFrame index (integers as ``str(int)``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return str(int(value))
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def key_index(values: Sequence[Any], name: str) -> pd.Index:
    """A string index of :func:`key_str` of every value; 64-bit integer keys (the common
    case) converted by Arrow, a million in 0.1 s instead of 0.7 s."""
    try:
        # inferred, never forced: a forced int64 would truncate 1.5 to 1
        arr = pa.array(values)
    except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):
        arr = None
    if arr is not None and len(arr) and pa.types.is_int64(arr.type) and not arr.null_count:
        return pd.Index(pd.array(arr.cast(pa.string()), dtype="str"), name=name)
    return pd.Index(key_strs(values), name=name)


def key_strs(values: Any) -> list[str]:
    """:func:`key_str` of every value; integer keys (the common case) without the checks."""
    if all(type(v) is int for v in values):
        return list(map(str, values))
    return [key_str(v) for v in values]



def _sqlite_text(data: bytes) -> str | bytes:
    """SQLite TEXT as str; bytes that are not UTF-8 stay bytes (their record is rejected)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.text_factory = _sqlite_text


def from_raw(value: Any, ftype: str) -> Any:
    """A value as SQLite stored it, as the field type's Python value; a value that does not
    parse is returned as stored, so that the engine rejects its record with the reason."""
    if value is None:
        return None
    try:
        if ftype == "date" and isinstance(value, str):
            try:
                return dt.date.fromisoformat(value.strip())
            except ValueError:
                stamp = dt.datetime.fromisoformat(value.strip())
                return stamp.date() if stamp.time() == dt.time(0) else value
        if ftype == "datetime" and isinstance(value, str):
            return dt.datetime.fromisoformat(value.strip())
        if ftype == "decimal" and not isinstance(value, bool | bytes):
            number = Decimal(repr(value)) if isinstance(value, float) else Decimal(
                str(value).strip())
            return number if number.is_finite() else value
        if ftype == "boolean" and isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        if ftype == "json" and isinstance(value, str):
            return json.loads(value)
    except (ValueError, InvalidOperation, TypeError):
        return value
    return value



def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def parse_text(value: str, ftype: str, sql_type: Any) -> Any:
    """A text value for a typed column as the column's Python type; unparseable text is
    returned as is so that the database reports the error for that record."""
    text = value.strip()
    try:
        if ftype == "integer" and _INT_RE.match(text):
            return int(text)
        if ftype == "float":
            return float(text)
        if ftype == "decimal":
            return Decimal(text)
        if ftype == "boolean" and text.lower() in TRUE_WORDS | FALSE_WORDS:
            return text.lower() in TRUE_WORDS
        if ftype == "json":
            return json.loads(text)
        if ftype == "datetime":
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if ftype == "date":
            return dt.date.fromisoformat(text)
    except (ValueError, InvalidOperation):
        pass
    return value

