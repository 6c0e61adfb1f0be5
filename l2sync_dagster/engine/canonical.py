"""Canonical values: one representation per field type, so that a value written to one system
and read back from the other compares equal to what was written.

Rules: strings are NFC-normalised and the empty string is null; every kind of null (None, NaN,
NaT, pd.NA, "") is null; datetimes are UTC with microsecond precision (naive values are taken
as UTC); decimals are exact (kept as normalised decimal strings); floats have no -0.0;
integers are exact 64-bit integers (never through float64: ``9007199254740993`` stays itself; a
value outside the int64 range, such as ``1e20``, is rejected); text that is not valid UTF-8 is
rejected rather than repaired.

Conversion is vectorised; a value that cannot be converted rejects its record with a reason.
"""

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from l2sync_dagster.contract import FALSE_WORDS as _FALSE
from l2sync_dagster.contract import TRUE_WORDS as _TRUE

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "float": pa.float64(),
    "decimal": pa.string(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us", tz="UTC"),
    "json": pa.string(),
}

_INT_RE = re.compile(r"^\s*[+-]?\d{1,25}\s*$")


@dataclass
class Converted:
    """A canonical column and the positions (with reasons) that could not be converted."""

    values: pa.Array
    errors: dict[int, str]


def arrow_of(series: pd.Series) -> pa.Array | None:
    """The series as one Arrow array when it is Arrow-backed, else None."""
    if isinstance(series.dtype, pd.ArrowDtype) or (
        isinstance(series.dtype, pd.StringDtype) and series.dtype.storage == "pyarrow"
    ):
        arr = pa.array(series.array)
        return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    return None


def _objects(series: pd.Series) -> np.ndarray:
    """Values as an object array with every null as None and blank strings as None."""
    obj = series.to_numpy(dtype=object, na_value=None)
    out = obj.copy()
    for i, v in enumerate(obj):
        if v is None:
            continue
        if isinstance(v, str):
            if not v.strip():
                out[i] = None
        elif isinstance(v, float) and v != v:
            out[i] = None
        elif v is pd.NaT or v is pd.NA:
            out[i] = None
    return out


def _errors(mask: np.ndarray, obj: np.ndarray, type_name: str) -> dict[int, str]:
    return {
        int(i): f"cannot convert {obj[i]!r} to {type_name}" for i in np.flatnonzero(mask)
    }


def _to_str(v: Any) -> str:
    if isinstance(v, str):
        v.encode("utf-8")  # lone surrogates (undecodable bytes smuggled into str) raise
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, bytes | bytearray):
        return bytes(v).decode("utf-8")
    return str(v)


def _text_or_error(v: Any) -> str:
    try:
        return _to_str(v)
    except UnicodeError:
        shown = bytes(v[:20]) if isinstance(v, bytes | bytearray) else v[:20]
        raise ValueError(f"{shown!r} is not valid UTF-8 text") from None


def _string(series: pd.Series) -> Converted:
    arr = arrow_of(series)
    errors: dict[int, str] = {}
    if arr is None or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        obj = series.to_numpy(dtype=object, na_value=None)
        try:
            if any(isinstance(v, bytes | bytearray) for v in obj):
                raise pa.ArrowTypeError("bytes are decoded one by one")
            arr = pa.array(obj, type=pa.string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeError):
            out: list[str | None] = []
            for i, v in enumerate(obj):
                if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
                    out.append(None)
                    continue
                try:
                    out.append(_text_or_error(v))
                except ValueError as exc:
                    out.append(None)
                    errors[i] = f"cannot convert to string: {exc}"
            arr = pa.array(out, type=pa.string())
    arr = arr.cast(pa.string())
    if not pc.all(pc.string_is_ascii(arr)).as_py():  # ASCII is already NFC
        arr = pc.utf8_normalize(arr, form="NFC")
    if pc.any(pc.equal(arr, "")).as_py():
        arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
    return Converted(arr, errors)


def _numeric(series: pd.Series, type_name: str) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Float values, null mask and errors for any input dtype."""
    if pd.api.types.is_bool_dtype(series.dtype):
        vals = series.astype("float64").to_numpy(na_value=np.nan)
        return vals, np.isnan(vals), {}
    if pd.api.types.is_numeric_dtype(series.dtype):
        vals = series.astype("float64").to_numpy(na_value=np.nan)
        return vals, np.isnan(vals), {}
    obj = _objects(series)
    cleaned = pd.Series(
        [v.strip() if isinstance(v, str) else v for v in obj], dtype=object
    )
    num = pd.to_numeric(cleaned, errors="coerce").astype("float64").to_numpy()
    null_in = np.array([v is None for v in obj], dtype=bool)
    bad = np.isnan(num) & ~null_in
    errors = _errors(bad, obj, type_name)
    return num, np.isnan(num), errors


INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def _int_value(v: Any) -> int:
    """One value as an exact Python int; ValueError with the reason when it is not a whole
    number or does not fit in 64 bits."""
    if isinstance(v, bool | np.bool_):
        number = int(v)
    elif isinstance(v, int | np.integer):
        number = int(v)
    elif isinstance(v, float | np.floating):
        if not np.isfinite(v) or not float(v).is_integer():
            raise ValueError(f"cannot convert {v!r} to integer")
        number = int(v)
    elif isinstance(v, str) and _INT_RE.match(v):
        number = int(v)
    else:
        text = _to_str(v).strip() if not isinstance(v, Decimal) else None
        try:
            d = v if isinstance(v, Decimal) else Decimal(text)  # type: ignore[arg-type]
        except InvalidOperation:
            raise ValueError(f"cannot convert {v!r} to integer") from None
        if not d.is_finite() or d != d.to_integral_value():
            raise ValueError(f"cannot convert {v!r} to integer")
        number = int(d)
    if not INT64_MIN <= number <= INT64_MAX:
        raise ValueError(f"{v!r} does not fit in a 64-bit integer")
    return number


def _integer(series: pd.Series) -> Converted:
    dtype = series.dtype
    if pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        try:
            return Converted(pa.array(series, type=pa.int64(), from_pandas=True), {})
        except (pa.ArrowInvalid, OverflowError):
            pass  # unsigned 64-bit values beyond int64: found one by one below
    elif pd.api.types.is_float_dtype(dtype):
        vals = series.to_numpy(dtype=np.float64, na_value=np.nan)
        nulls = np.isnan(vals)
        # 2**63 is exact as a float; every float below it and >= -2**63 fits in int64
        ok = ~nulls & np.isfinite(vals) & (np.floor(vals) == vals) & (vals >= -(2.0**63)) & (
            vals < 2.0**63)
        bad = ~nulls & ~ok
        ints = np.zeros(len(vals), dtype=np.int64)
        ints[ok] = vals[ok].astype(np.int64)
        errors = {
            int(i): (f"{float(vals[i])!r} does not fit in a 64-bit integer"
                     if np.isfinite(vals[i]) and np.floor(vals[i]) == vals[i]
                     else f"cannot convert {float(vals[i])!r} to integer")
            for i in np.flatnonzero(bad)
        }
        return Converted(pa.array(ints, mask=~ok), errors)
    out: list[int | None] = []
    errors = {}
    for i, v in enumerate(_objects(series)):
        if v is None:
            out.append(None)
            continue
        try:
            out.append(_int_value(v))
        except (ValueError, TypeError, UnicodeError) as exc:
            out.append(None)
            errors[i] = str(exc) if isinstance(exc, ValueError) else (
                f"cannot convert {v!r} to integer")
    return Converted(pa.array(out, type=pa.int64()), errors)


def _float(series: pd.Series) -> Converted:
    vals, nulls, errors = _numeric(series, "float")
    vals = vals + 0.0  # turns -0.0 into 0.0
    return Converted(pa.array(vals, mask=nulls, type=pa.float64()), errors)


def _each(series: pd.Series, type_name: str, convert: Any) -> Converted:
    """Convert value by value (for types with no vectorised path); failures become errors."""
    out: list[str | None] = []
    errors: dict[int, str] = {}
    for i, v in enumerate(_objects(series)):
        if v is None:
            out.append(None)
            continue
        try:
            out.append(convert(v))
        except (InvalidOperation, ValueError, TypeError):
            out.append(None)
            errors[i] = f"cannot convert {v!r} to {type_name}"
    return Converted(pa.array(out, type=ARROW_TYPES[type_name]), errors)


def _decimal_text(v: Any) -> str:
    d = Decimal(repr(v)) if isinstance(v, float) else Decimal(_to_str(v).strip())
    if not d.is_finite():
        raise InvalidOperation
    text = format(d.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _decimal(series: pd.Series) -> Converted:
    return _each(series, "decimal", _decimal_text)


def _boolean(series: pd.Series) -> Converted:
    if pd.api.types.is_bool_dtype(series.dtype):
        return Converted(pa.array(series, type=pa.bool_(), from_pandas=True), {})
    obj = _objects(series)
    out: list[bool | None] = []
    errors: dict[int, str] = {}
    for i, v in enumerate(obj):
        if v is None:
            out.append(None)
        elif isinstance(v, bool | np.bool_):
            out.append(bool(v))
        elif isinstance(v, int | float | np.integer | np.floating) and v in (0, 1):
            out.append(bool(v))
        elif isinstance(v, str) and v.strip().lower() in _TRUE:
            out.append(True)
        elif isinstance(v, str) and v.strip().lower() in _FALSE:
            out.append(False)
        else:
            out.append(None)
            errors[i] = f"cannot convert {v!r} to boolean"
    return Converted(pa.array(out, type=pa.bool_()), errors)


def _to_utc(series: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Parse to tz-aware UTC timestamps; returns (timestamps, the input as objects or empty).

    Strings are parsed as ISO 8601 in one call; date/datetime objects in another (naive values
    are UTC). What cannot be parsed becomes NaT; the caller turns that into a rejection.
    """
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        s = pd.Series(series.array)
        s = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
        return s, np.empty(0, dtype=object)
    obj = _objects(series)
    out = np.full(len(obj), np.datetime64("NaT", "us"), dtype="datetime64[us]")
    is_str = np.array([isinstance(v, str) for v in obj], dtype=bool)
    is_other = np.array([v is not None for v in obj], dtype=bool) & ~is_str
    if is_str.any():
        parsed = pd.to_datetime(pd.Series([v.strip() for v in obj[is_str]], dtype=object),
                                utc=True, errors="coerce", format="ISO8601")
        out[is_str] = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    if is_other.any():
        others = [_as_utc_naive(v) for v in obj[is_other]]
        out[is_other] = np.array(others, dtype="datetime64[us]")
    return pd.Series(out).dt.tz_localize("UTC"), obj


def _as_utc_naive(v: Any) -> Any:
    """A date or datetime as a naive UTC datetime (NaT when it is neither)."""
    try:
        if isinstance(v, dt.datetime):
            return v.astimezone(dt.UTC).replace(tzinfo=None) if v.tzinfo else v
        if isinstance(v, dt.date):
            return dt.datetime(v.year, v.month, v.day)
        ts = pd.Timestamp(v)
        return (ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts).to_datetime64()
    except (TypeError, ValueError, OverflowError):
        return np.datetime64("NaT")


def _datetime(series: pd.Series) -> Converted:
    parsed, obj = _to_utc(series)
    errors: dict[int, str] = {}
    if len(obj):
        bad = np.array([v is not None for v in obj], dtype=bool) & parsed.isna().to_numpy()
        errors = _errors(bad, obj, "datetime")
    parsed = parsed.dt.floor("us").astype("datetime64[us, UTC]")
    return Converted(pa.array(parsed, type=ARROW_TYPES["datetime"], from_pandas=True), errors)


def _date(series: pd.Series) -> Converted:
    arr = arrow_of(series)
    if arr is not None and pa.types.is_date(arr.type):
        return Converted(arr.cast(pa.date32()), {})
    parsed, obj = _to_utc(series)
    errors: dict[int, str] = {}
    if len(obj):
        bad = np.array([v is not None for v in obj], dtype=bool) & parsed.isna().to_numpy()
        errors = _errors(bad, obj, "date")
    has_time = (parsed.notna() & (parsed != parsed.dt.floor("D"))).to_numpy()
    for i in np.flatnonzero(has_time):
        errors[int(i)] = f"cannot convert {series.iloc[i]!r} to date: it has a time of day"
    days = parsed.dt.floor("D").to_numpy(dtype="datetime64[D]")
    mask = parsed.isna().to_numpy() | has_time
    return Converted(pa.array(days, mask=mask, type=pa.date32()), errors)


def _json_text(v: Any) -> str:
    loaded = json.loads(v) if isinstance(v, str) else v
    return json.dumps(loaded, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def _json(series: pd.Series) -> Converted:
    return _each(series, "json", _json_text)


_CONVERTERS = {
    "string": _string,
    "integer": _integer,
    "float": _float,
    "decimal": _decimal,
    "boolean": _boolean,
    "date": _date,
    "datetime": _datetime,
    "json": _json,
}


def to_canonical(series: pd.Series, type_name: str) -> Converted:
    """Convert one column to its canonical Arrow form; unconvertible positions go to errors."""
    try:
        converter = _CONVERTERS[type_name]
    except KeyError:
        raise ValueError(
            f"unknown field type {type_name!r}; use one of {', '.join(_CONVERTERS)}"
        ) from None
    series = series.reset_index(drop=True)
    if len(series) == 0:
        return Converted(pa.array([], type=ARROW_TYPES[type_name]), {})
    return converter(series)


def _aware(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


#: the canonical types whose Python value for a provider differs from what Arrow gives back
TO_PYTHON: dict[str, Callable[[Any], Any]] = {"decimal": Decimal, "datetime": _aware}


def to_python(value: Any, type_name: str) -> Any:
    """A canonical value (as Arrow gives it back) as the Python value handed to a provider."""
    if value is None:
        return None
    conv = TO_PYTHON.get(type_name)
    return value if conv is None else conv(value)


def to_json_value(value: Any, type_name: str) -> Any:
    """A canonical value as JSON-compatible data (for the archive and the conflict log)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


_EPOCH = dt.datetime(1970, 1, 1)
#: the microseconds and days since 1970 that Python's datetime and date can hold
_US_RANGE = ((dt.datetime.min - _EPOCH) // dt.timedelta(microseconds=1),
             (dt.datetime.max - _EPOCH) // dt.timedelta(microseconds=1))
_DAY_RANGE = ((dt.date.min - _EPOCH.date()).days, (dt.date.max - _EPOCH.date()).days)


def _in_range(arr: pa.Array, as_int: pa.DataType, bounds: tuple[int, int]) -> bool:
    mm = pc.min_max(arr.cast(as_int)).as_py()
    return mm["min"] is not None and bounds[0] <= mm["min"] and mm["max"] <= bounds[1]


def python_values(arr: pa.Array) -> list[Any]:
    """``arr.to_pylist()`` (the same objects), several times faster for dates and UTC
    timestamps: numpy converts them, and a timestamp gets the time zone Arrow gives it."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_date32(t) and _in_range(arr, pa.int32(), _DAY_RANGE):
        return arr.to_numpy(zero_copy_only=False).astype(object).tolist()
    if (pa.types.is_timestamp(t) and t.unit == "us" and t.tz == "UTC"
            and _in_range(arr, pa.int64(), _US_RANGE)):
        tz = arr.filter(arr.is_valid())[0].as_py().tzinfo
        naive = arr.to_numpy(zero_copy_only=False).astype(object).tolist()
        return [None if v is None else v.replace(tzinfo=tz) for v in naive]
    return arr.to_pylist()


def json_values(arr: pa.Array, type_name: str) -> list[Any]:
    """``[to_json_value(v, type_name) for v in arr.to_pylist()]`` for a canonical column of
    ``type_name``; dates and UTC timestamps formatted by Arrow (ISO 8601 as ``isoformat``
    writes it: no fraction when the microseconds are 0, ``+00:00`` for UTC)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if type_name == "date" and pa.types.is_date32(t) and _in_range(arr, pa.int32(), _DAY_RANGE):
        return arr.cast(pa.string()).to_pylist()
    if (type_name == "datetime" and pa.types.is_timestamp(t) and t.unit == "us"
            and t.tz == "UTC" and _in_range(arr, pa.int64(), _US_RANGE)):
        text = pc.strftime(arr, format="%Y-%m-%dT%H:%M:%S")  # seconds with 6 decimals
        whole = pc.and_(pc.equal(pc.millisecond(arr), 0), pc.equal(pc.microsecond(arr), 0))
        text = pc.if_else(whole, pc.utf8_slice_codeunits(text, 0, 19), text)
        return pc.binary_join_element_wise(text, "+00:00", "").to_pylist()
    values = python_values(arr)
    if type_name in ("string", "integer", "float", "boolean", "json"):
        return values
    return [to_json_value(v, type_name) for v in values]
