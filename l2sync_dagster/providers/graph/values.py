"""Values between Graph JSON and RecordFrames: parsing what Graph returns, formatting what it
takes, and building a RecordFrame column by column.

Conventions (shared by the Graph-based providers): datetimes are UTC (Graph writes ``...Z``,
seconds precision for SharePoint); dates are ``datetime.date``; decimals ``Decimal``; ``json``
fields hold compact JSON text (lists/objects), as the engine's canonical form does.
"""

import datetime as dt
import json
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pandas as pd

from l2sync_dagster.contract import TRUE_WORDS
from l2sync_dagster.providers.base import KEY_INDEX, MODIFIED, VERSION, typed_column


def parse_datetime(value: Any) -> dt.datetime | None:
    """An ISO 8601 string (``2026-01-31T08:00:00Z``, fractions up to 7 digits) as UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if "." in text:
        # Graph sends up to 7 fractional digits; Python takes at most 6
        head, _, rest = text.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def format_datetime(value: Any) -> str | None:
    """A datetime (naive = UTC) as Graph's ``YYYY-MM-DDTHH:MM:SSZ`` (fractions kept)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = parse_datetime(value)
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        text = value.strftime("%Y-%m-%dT%H:%M:%S")
        if value.microsecond:
            text += f".{value.microsecond:06d}".rstrip("0")
        return text + "Z"
    if isinstance(value, dt.date):
        return f"{value.isoformat()}T00:00:00Z"
    raise TypeError(f"not a datetime: {value!r}")


def parse_date(value: Any) -> dt.date | None:
    """A date from ``YYYY-MM-DD`` or a midnight datetime string."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def to_json_text(value: Any) -> str | None:
    """Lists/objects as compact JSON text; None and empty lists as None."""
    if value is None or value == [] or value == {}:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def from_json_text(value: Any) -> Any:
    """The engine's JSON text (or an already parsed value) as Python data."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        return json.loads(text)
    return value


def parse_value(value: Any, type_: str) -> Any:
    """A Graph JSON value as the Python value of canonical type ``type_``."""
    if value is None:
        return None
    if type_ == "json":
        return to_json_text(value)
    if isinstance(value, list | dict):
        return to_json_text(value)
    if type_ == "string":
        return value if isinstance(value, str) else str(value)
    if type_ == "integer":
        return int(value)
    if type_ == "float":
        return float(value)
    if type_ == "decimal":
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return None
    if type_ == "boolean":
        if isinstance(value, str):
            return value.strip().lower() in TRUE_WORDS
        return bool(value)
    if type_ == "datetime":
        return parse_datetime(value)
    if type_ == "date":
        return parse_date(value)
    return value


def format_value(value: Any, type_: str) -> Any:
    """A Python value (as the engine hands it over) as Graph JSON of canonical type ``type_``."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if type_ == "json":
        return from_json_text(value)
    if type_ == "datetime":
        return format_datetime(value)
    if type_ == "date":
        return format_datetime(parse_date(value) if isinstance(value, str) else value)
    if type_ == "decimal":
        number = Decimal(str(value))
        return int(number) if number == number.to_integral_value() else float(number)
    if type_ == "integer":
        return int(value)
    if type_ == "float":
        return float(value)
    if type_ == "boolean":
        if isinstance(value, str):
            return value.strip().lower() in TRUE_WORDS
        return bool(value)
    if type_ == "string":
        return value if isinstance(value, str) else str(value)
    return value


def build_frame(rows: Sequence[dict[str, Any]], types: dict[str, str], keys: Sequence[str],
                modified: Sequence[Any] | None = None,
                versions: Sequence[Any] | None = None) -> pd.DataFrame:
    """A RecordFrame: one column per field in ``types`` (values already parsed), index ``_key``,
    plus ``_modified`` (UTC) and ``_version`` when given."""
    data: dict[str, Any] = {}
    for name, type_ in types.items():
        data[name] = typed_column([r.get(name) for r in rows], type_)
    frame = pd.DataFrame(data, columns=list(types))
    frame.index = pd.Index([str(k) for k in keys], name=KEY_INDEX, dtype=object)
    if modified is not None:
        frame[MODIFIED] = pd.to_datetime(pd.Series(list(modified), dtype=object,
                                                   index=frame.index), utc=True)
    if versions is not None:
        frame[VERSION] = np.fromiter(versions, dtype=object, count=len(versions))
    return frame
