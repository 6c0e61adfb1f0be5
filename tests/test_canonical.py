"""Canonical values: what is written and read back must compare equal; bad values are rejected."""

import datetime as dt
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest

from l2sync_dagster.engine.canonical import to_canonical, to_json_value, to_python
from l2sync_dagster.engine.hashing import row_hash


def canon(values, type_name):
    conv = to_canonical(pd.Series(values, dtype=object), type_name)
    return conv.values.to_pylist(), conv.errors


def test_strings_are_nfc_and_every_null_is_null():
    values, errors = canon(["e\u0301", "", "  ", None, float("nan"), pd.NA, 12, True], "string")
    assert values == ["\u00e9", None, "  ", None, None, None, "12", "true"]
    assert errors == {}


def test_integers_reject_what_is_not_integral():
    values, errors = canon(["7", " 8 ", 9.0, "9.5", "seven", "", None], "integer")
    assert values == [7, 8, 9, None, None, None, None]
    assert set(errors) == {3, 4} and "seven" in errors[4]


def test_floats_have_no_negative_zero_and_round_trip_through_text():
    values, errors = canon(["-0", -0.0, repr(0.1 + 0.2), "x"], "float")
    assert values[:3] == [0.0, 0.0, 0.1 + 0.2] and str(values[0]) == "0.0"
    assert list(errors) == [3]


def test_decimals_are_exact_and_normalised():
    values, errors = canon(["1.50", Decimal("2.500"), 0.1, "1e2", "-0.00", "NaN", "x"], "decimal")
    assert values == ["1.5", "2.5", "0.1", "100", "0", None, None]
    assert set(errors) == {5, 6}
    assert to_python("1.5", "decimal") == Decimal("1.5")


def test_booleans():
    values, errors = canon(["true", "No", 1, 0, "maybe", None], "boolean")
    assert values == [True, False, True, False, None, None] and list(errors) == [4]


def test_dates_from_text_and_objects_and_time_of_day_is_rejected():
    values, errors = canon(["2024-02-29", dt.date(2020, 1, 2), dt.datetime(2020, 1, 3),
                            "2024-01-05T10:00", "2024-13-01"], "date")
    assert values[:3] == [dt.date(2024, 2, 29), dt.date(2020, 1, 2), dt.date(2020, 1, 3)]
    assert set(errors) == {3, 4} and "time of day" in errors[3]


def test_datetimes_are_utc_microseconds_naive_taken_as_utc():
    plus2 = dt.timezone(dt.timedelta(hours=2))
    values, errors = canon([
        "2024-01-05T10:00:00+02:00", dt.datetime(2024, 1, 5, 8, 0, tzinfo=dt.UTC),
        dt.datetime(2024, 1, 5, 10, 0, tzinfo=plus2), "2024-01-05 08:00:00",
        "2024-01-05T08:00:00.1234567Z", "soon"], "datetime")
    eight = dt.datetime(2024, 1, 5, 8, 0, tzinfo=dt.UTC)
    assert values[:4] == [eight] * 4
    assert values[4] == dt.datetime(2024, 1, 5, 8, 0, 0, 123456, tzinfo=dt.UTC)
    assert list(errors) == [5]
    assert to_json_value(values[0], "datetime") == "2024-01-05T08:00:00+00:00"


def test_json_is_key_sorted_and_compact():
    values, errors = canon(['{"b": 1, "a": [1, 2]}', {"a": [1, 2], "b": 1}, "{oops"], "json")
    assert values[0] == values[1] == '{"a":[1,2],"b":1}' and list(errors) == [2]


def test_unknown_type_names_the_allowed_ones():
    with pytest.raises(ValueError, match="use one of string, integer"):
        to_canonical(pd.Series(["x"]), "money")


def test_row_hash_is_stable_across_versions():
    # archives store these hashes: changing the function silently re-syncs every record
    cols = [pa.array(["Ann", None]), pa.array([1.5, None]), pa.array([3, None], pa.int64()),
            pa.array([dt.date(2024, 1, 2), None], pa.date32()), pa.array([True, None])]
    assert row_hash(cols, 2).tolist() == PINNED
    assert row_hash(cols[::-1], 2).tolist() != PINNED


PINNED: list[int] = [-5102187963482435615, -5087575393747604562]


def test_integers_are_exact_and_never_pass_through_float64():
    big = 9007199254740993  # 2**53 + 1: float64 makes it ...992
    values, errors = canon([big, str(big), " -9223372036854775808 ", "1e3", "12.0"], "integer")
    assert values == [big, big, -(2**63), 1000, 12] and errors == {}
    values, errors = canon([2**63, "9223372036854775808", 1e20, float("inf"), "x"], "integer")
    assert values == [None] * 5
    assert "does not fit in a 64-bit integer" in errors[0] and "1e+20" in errors[2]
    assert set(errors) == {0, 1, 2, 3, 4}


def test_integer_columns_of_every_dtype():
    def conv(series):
        c = to_canonical(series, "integer")
        return c.values.to_pylist(), sorted(c.errors)

    assert conv(pd.Series([2**64 - 1, 3], dtype="UInt64")) == ([None, 3], [0])
    assert conv(pd.Series([1.0, None, 1e20, 2.5])) == ([1, None, None, None], [2, 3])
    assert conv(pd.Series([9007199254740993, None], dtype="Int64")) == (
        [9007199254740993, None], [])


def test_text_that_is_not_utf8_is_rejected_not_repaired():
    values, errors = canon(["a", b"\xffab", b"ok", "x\udcff", None], "string")
    assert values == ["a", None, "ok", None, None]
    assert set(errors) == {1, 3} and "not valid UTF-8" in errors[1]
