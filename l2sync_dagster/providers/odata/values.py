"""Values between OData JSON and RecordFrames: keys in URLs and bodies, typed columns,
watermarks, fingerprints."""

import datetime as dt
import hashlib
import json
import math
import re
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from l2sync_dagster.contract import FALSE_WORDS, TRUE_WORDS
from l2sync_dagster.providers.base import (
    MODIFIED,
    ProviderError,
)
from l2sync_dagster.providers.odata.select import (
    literal,
)


def is_deleted(row: dict[str, Any]) -> bool:
    """Whether a delta row is a ``$deletedEntity``."""
    ctx = str(row.get("@odata.context") or "")
    return ctx.endswith("$deletedEntity") or "@removed" in row or "@odata.removed" in row


def key_text(value: Any, ftype: str) -> str:
    """A key value as the text the RecordFrame index holds (GUIDs lower case)."""
    if ftype == "guid":
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def url_key(key: str, ftype: str) -> str:
    """The key as it goes inside ``Set(...)``, escaped."""
    if ftype == "guid":
        try:
            return str(uuid.UUID(key))
        except ValueError:
            raise ProviderError(f"key {key!r} is not a GUID") from None
    if ftype == "integer":
        if not re.fullmatch(r"-?\d+", key):
            raise ProviderError(f"key {key!r} is not a whole number")
        return key
    return quote(literal(key, "string"), safe="'")


def json_key(key: str, ftype: str) -> Any:
    """A key as it goes into a JSON body."""
    if ftype == "integer":
        return int(key)
    return key


def is_null(value: Any) -> bool:
    """None, pandas NA/NaT or a float NaN."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def json_value(value: Any, ftype: str, name: str = "") -> Any:
    """A Python value as the JSON an OData service takes for a property of ``ftype``."""
    if is_null(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if ftype == "datetime":
        ts = pd.Timestamp(value)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        text = ts.strftime("%Y-%m-%dT%H:%M:%S")
        if ts.microsecond:
            text += f".{ts.microsecond:06d}".rstrip("0")
        return text + "Z"
    if ftype == "date":
        if isinstance(value, dt.datetime):
            return value.date().isoformat()
        if isinstance(value, dt.date):
            return value.isoformat()
        return dt.date.fromisoformat(str(value)[:10]).isoformat()
    if ftype == "integer":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, float | Decimal) and value != int(value):
            raise ProviderError(f"{name}: {value!r} is not a whole number")
        return int(value)
    if ftype in ("float", "decimal"):
        if isinstance(value, str):
            value = Decimal(value)
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        return value
    if ftype == "boolean":
        if isinstance(value, str):
            low = value.strip().lower()
            if low in TRUE_WORDS:
                return True
            if low in FALSE_WORDS:
                return False
            raise ProviderError(f"{name}: {value!r} is not true or false")
        return bool(value)
    if ftype == "guid":
        return str(uuid.UUID(str(value)))
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def json_column(values: list[Any], ftype: str) -> Any:
    """One frame column from JSON values."""
    try:
        if ftype == "integer":
            return pd.array(values, dtype="Int64")
        if ftype == "boolean":
            return pd.array(values, dtype="boolean")
        if ftype == "float":
            return np.array([np.nan if v is None else float(v) for v in values],
                            dtype=np.float64)
        if ftype == "decimal":
            return np.fromiter((None if v is None else Decimal(str(v)) for v in values),
                               dtype=object, count=len(values))
        if ftype == "datetime":
            return pd.to_datetime(pd.Series(values, dtype=object), utc=True,
                                  format="ISO8601").array
        if ftype == "date":
            return np.fromiter((None if v is None else dt.date.fromisoformat(v[:10])
                                for v in values), dtype=object, count=len(values))
        if ftype == "guid":
            return pd.array([None if v is None else str(v).lower() for v in values],
                            dtype=object)
    except (TypeError, ValueError, OverflowError):
        pass
    return np.fromiter(values, dtype=object, count=len(values))


def watermark_of(cursor: str | None) -> str | None:
    """The ``modified`` watermark a cursor holds, if any."""
    if not cursor:
        return None
    try:
        data = json.loads(cursor)
    except ValueError:
        return None
    return data.get("watermark") if isinstance(data, dict) else None


def watermark_cursor(mark: str | None) -> str | None:
    """The cursor holding watermark ``mark``."""
    return json.dumps({"watermark": mark}) if mark else None


def max_modified(frame: pd.DataFrame, previous: str | None) -> str | None:
    """The new watermark: the latest ``_modified`` read, or ``previous``."""
    if MODIFIED not in frame.columns or frame.empty:
        return previous
    newest = frame[MODIFIED].max()
    if pd.isna(newest):
        return previous
    if previous and pd.Timestamp(previous) > newest:
        return previous
    text = newest.strftime("%Y-%m-%dT%H:%M:%S")
    if newest.microsecond:
        text += f".{newest.microsecond:06d}".rstrip("0")
    return text + "Z"


def digest(parts: Any) -> str:
    """A short stable fingerprint of JSON-able ``parts`` (probes)."""
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:32]
