"""Canonical values: one representation per field type, so that a value written to one system
and read back from the other compares equal to what was written.

Rules: strings are NFC-normalised and the empty string is null; every kind of null (None, NaN,
NaT, pd.NA, "") is null; datetimes are UTC with microsecond precision (naive values are taken
as UTC); decimals are exact (kept as normalised decimal strings); floats have no -0.0.

Conversion is vectorised; a value that cannot be converted rejects its record with a reason.
"""

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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

_TRUE = {"true", "t", "yes", "y", "1", "on"}
_FALSE = {"false", "f", "no", "n", "0", "off"}


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
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    return str(v)


def _string(series: pd.Series) -> Converted:
    arr = arrow_of(series)
    if arr is None or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        obj = series.to_numpy(dtype=object, na_value=None)
        try:
            arr = pa.array(obj, type=pa.string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arr = pa.array(
                [None if v is None or (isinstance(v, float) and v != v) else _to_str(v)
                 for v in obj],
                type=pa.string(),
            )
    arr = arr.cast(pa.string())
    if not pc.all(pc.string_is_ascii(arr)).as_py():  # ASCII is already NFC
        arr = pc.utf8_normalize(arr, form="NFC")
    if pc.any(pc.equal(arr, "")).as_py():
        arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
    return Converted(arr, {})


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


def _integer(series: pd.Series) -> Converted:
    if pd.api.types.is_integer_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
        series.dtype
    ):
        return Converted(pa.array(series, type=pa.int64(), from_pandas=True), {})
    vals, nulls, errors = _numeric(series, "integer")
    nonint = ~nulls & (np.floor(vals) != vals)
    if nonint.any():
        obj = series.to_numpy(dtype=object)
        errors.update(_errors(nonint, obj, "integer"))
    ok = ~nulls & ~nonint
    ints = np.zeros(len(vals), dtype=np.int64)
    ints[ok] = vals[ok].astype(np.int64)
    return Converted(pa.array(ints, mask=~ok), errors)


def _float(series: pd.Series) -> Converted:
    vals, nulls, errors = _numeric(series, "float")
    vals = vals + 0.0  # turns -0.0 into 0.0
    return Converted(pa.array(vals, mask=nulls, type=pa.float64()), errors)


def _decimal(series: pd.Series) -> Converted:
    obj = _objects(series)
    out: list[str | None] = []
    errors: dict[int, str] = {}
    for i, v in enumerate(obj):
        if v is None:
            out.append(None)
            continue
        try:
            d = Decimal(repr(v)) if isinstance(v, float) else Decimal(_to_str(v).strip())
            if not d.is_finite():
                raise InvalidOperation
            text = format(d.normalize(), "f")
            out.append("0" if text in ("-0", "0") else text)
        except (InvalidOperation, ValueError):
            out.append(None)
            errors[i] = f"cannot convert {v!r} to decimal"
    return Converted(pa.array(out, type=pa.string()), errors)


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


def _to_utc(series: pd.Series) -> tuple[pd.Series, dict[int, str], np.ndarray]:
    """Parse to tz-aware UTC timestamps; returns (timestamps, errors, object values)."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        s = pd.Series(series.array)
        s = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
        return s, {}, np.empty(0, dtype=object)
    obj = _objects(series)
    parsed = pd.Series(pd.NaT, index=range(len(obj)), dtype="datetime64[us, UTC]")
    strings = [i for i, v in enumerate(obj) if isinstance(v, str)]
    others = [i for i, v in enumerate(obj) if v is not None and not isinstance(v, str)]
    if strings:
        parsed.iloc[strings] = pd.to_datetime(
            pd.Series([obj[i].strip() for i in strings], dtype=object),
            utc=True, errors="coerce", format="ISO8601",
        ).to_numpy()
    for i in others:
        v = obj[i]
        try:
            if isinstance(v, dt.datetime):
                ts = pd.Timestamp(v)
            elif isinstance(v, dt.date):
                ts = pd.Timestamp(v.year, v.month, v.day)
            else:
                ts = pd.Timestamp(v)
            ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
            parsed.iloc[i] = ts
        except (TypeError, ValueError):
            pass
    bad = np.array([v is not None for v in obj], dtype=bool) & parsed.isna().to_numpy()
    return parsed, {}, obj if bad.any() else obj


def _datetime(series: pd.Series) -> Converted:
    parsed, _, obj = _to_utc(series)
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
    parsed, _, obj = _to_utc(series)
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


def _json(series: pd.Series) -> Converted:
    obj = _objects(series)
    out: list[str | None] = []
    errors: dict[int, str] = {}
    for i, v in enumerate(obj):
        if v is None:
            out.append(None)
            continue
        try:
            loaded = json.loads(v) if isinstance(v, str) else v
            out.append(json.dumps(loaded, sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=False, default=str))
        except (ValueError, TypeError):
            out.append(None)
            errors[i] = f"cannot convert {v!r} to json"
    return Converted(pa.array(out, type=pa.string()), errors)


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


def to_python(value: Any, type_name: str) -> Any:
    """A canonical value (as Arrow gives it back) as the Python value handed to a provider."""
    if value is None:
        return None
    if type_name == "decimal":
        return Decimal(value)
    if type_name == "datetime" and isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return value


def to_json_value(value: Any, type_name: str) -> Any:
    """A canonical value as JSON-compatible data (for the archive and the conflict log)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return value
