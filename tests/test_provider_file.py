"""The file provider against real CSV and Parquet files in a temporary folder."""

import datetime as dt
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import IO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from l2sync_dagster.providers.base import Change, EntityMissing, ProviderError, Query
from l2sync_dagster.providers.file import FileProvider, csv_text
from l2sync_dagster.spec.connection_string import ConnectionStringError

Q = Query(key="id")


def provider(tmp_path: Path, name: str, extra: str = "") -> FileProvider:
    return FileProvider.from_connection_string(f"Path={name}{extra}", base_dir=tmp_path)


@pytest.fixture(params=["csv", "parquet"])
def fmt(request: pytest.FixtureRequest) -> str:
    return request.param


def test_connection_string(tmp_path: Path) -> None:
    p = provider(tmp_path, "data/x.tsv")
    assert p.path == (tmp_path / "data" / "x.tsv").resolve()
    assert (p.format, p.delimiter) == ("csv", "\t")
    p = FileProvider.from_connection_string(
        "Path=x.dat;Format=parquet;Encoding=latin-1", base_dir=tmp_path
    )
    assert p.format == "parquet"
    with pytest.raises(ConnectionStringError, match="Sheet"):
        FileProvider.from_connection_string("Path=x.csv;Sheet=1", base_dir=tmp_path)
    with pytest.raises(ConnectionStringError, match="Path"):
        FileProvider.from_connection_string("Format=csv", base_dir=tmp_path)
    with pytest.raises(ConnectionStringError, match="Format"):
        FileProvider.from_connection_string("Path=x.dat", base_dir=tmp_path)
    with pytest.raises(ConnectionStringError, match="Delimiter"):
        FileProvider.from_connection_string("Path=x.csv;Delimiter=ab", base_dir=tmp_path)


def test_key_is_required(tmp_path: Path) -> None:
    p = provider(tmp_path, "x.csv")
    with pytest.raises(ProviderError, match="needs `key:` in the connection"):
        p.describe(Query())


def test_missing_file_is_missing_not_empty(tmp_path: Path, fmt: str) -> None:
    """A missing file is described (no fields), but a read says it is missing instead of
    returning no records: the sync decides (a target it holds nothing of is written, a
    missing source is an error); lookups find nothing."""
    p = provider(tmp_path, f"none.{fmt}")
    desc = p.describe(Q)
    assert desc.fields == () and desc.key == "id" and not desc.key_generated
    with pytest.raises(EntityMissing, match="none.* does not exist"):
        p.read(Q)
    assert p.lookup(Q, ["1"]).empty
    assert "does not exist yet" in p.verify(Q)


def test_csv_read_is_text(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text('id,name,n\n1,Ann,007\n2,"B, b",\n', encoding="utf-8")
    p = provider(tmp_path, "c.csv")
    desc = p.describe(Q)
    assert [(f.name, f.type, f.typed) for f in desc.fields] == [
        ("id", "string", False),
        ("name", "string", False),
        ("n", "string", False),
    ]
    frame = p.read(Q).frame
    assert list(frame.index) == ["1", "2"] and frame.index.name == "_key"
    assert list(frame.columns) == ["id", "name", "n"]
    assert frame.loc["1", "n"] == "007" and frame.loc["2", "n"] == ""
    assert frame.loc["2", "name"] == "B, b"


def test_parquet_types(tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": pa.array([1, 2], pa.int64()),
            "name": ["a", None],
            "price": [1.5, None],
            "amount": pa.array([Decimal("1.10"), None], pa.decimal128(10, 2)),
            "ok": [True, None],
            "day": pa.array([dt.date(2024, 1, 2), None], pa.date32()),
            "at": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5), None], pa.timestamp("us")),
            "tags": [["a"], None],
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    p = provider(tmp_path, "t.parquet")
    desc = p.describe(Q)
    assert {f.name: f.type for f in desc.fields} == {
        "id": "integer",
        "name": "string",
        "price": "float",
        "amount": "decimal",
        "ok": "boolean",
        "day": "date",
        "at": "datetime",
        "tags": "json",
    }
    assert all(f.typed for f in desc.fields)
    frame = p.read(Q).frame
    assert list(frame.index) == ["1", "2"]
    assert frame.loc["1", "amount"] == Decimal("1.10")
    assert pd.isna(frame.loc["2", "ok"])
    out = p.apply(
        Q,
        [
            Change(
                "insert",
                "i",
                key="3",
                values={
                    "name": "c",
                    "at": dt.datetime(
                        2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=2))
                    ),
                },
            ),
            Change("update", "u", key="1", values={"price": "oops"}),
        ],
    )
    assert out[0].ok, out[0]
    assert not out[1].ok and "price" in out[1].error
    back = pq.read_table(tmp_path / "t.parquet")
    assert back.schema.field("id").type == pa.int64()  # existing column types are kept
    assert back.column("at").to_pylist()[2] == dt.datetime(2024, 5, 6, 5, 8, 9)  # naive UTC
    assert back.column("price").to_pylist()[0] == 1.5


def test_round_trip_and_outcomes(tmp_path: Path, fmt: str) -> None:
    p = provider(tmp_path, f"r.{fmt}")
    values = {
        "name": "Zoë",
        "n": 0.1 + 0.2,
        "count": 3,
        "flag": False,
        "amount": Decimal("12.30"),
        "day": dt.date(2024, 2, 29),
        "at": dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.UTC),
        "empty": None,
    }
    out = p.apply(
        Q,
        [
            Change("insert", "a", key="k1", values=values),
            Change("insert", "b", key="k2", values={"name": "second", "id": "k2"}),
            Change("insert", "c", key=None, values={"name": "no key"}),
            Change("insert", "d", key="k1", values={"name": "dupe"}),
            Change("update", "e", key="missing", values={"name": "x"}),
            Change("delete", "f", key="gone"),
        ],
    )
    assert [(o.ref, o.ok, o.key) for o in out] == [
        ("a", True, "k1"),
        ("b", True, "k2"),
        ("c", False, None),
        ("d", False, "k1"),
        ("e", False, "missing"),
        ("f", True, "gone"),
    ]
    assert out[2].error == "the file provider does not generate keys"
    assert "already exists" in out[3].error
    assert out[4].error == "record not found (deleted since it was read?)"

    frame = p.read(Q).frame
    assert list(frame.index) == ["k1", "k2"]
    assert list(frame.columns)[:2] == ["id", "name"]
    row = frame.loc["k1"]
    if fmt == "csv":
        assert row["n"] == repr(0.1 + 0.2) and float(row["n"]) == 0.1 + 0.2
        assert (row["count"], row["flag"], row["amount"]) == ("3", "false", "12.30")
        assert (row["day"], row["at"]) == ("2024-02-29", "2024-01-01T12:00:00+00:00")
        assert row["empty"] == "" and frame.loc["k2", "count"] == ""
    else:
        assert row["n"] == 0.1 + 0.2 and row["count"] == 3 and not row["flag"]
        assert row["amount"] == Decimal("12.30") and row["day"] == dt.date(2024, 2, 29)
        assert row["at"] == pd.Timestamp("2024-01-01 12:00", tz="UTC")
    assert row["name"] == "Zoë"

    out = p.apply(
        Q,
        [
            Change("update", "u", key="k2", values={"name": "changed", "new": "col"}),
            Change("delete", "d", key="k1"),
        ],
    )
    assert all(o.ok for o in out)
    frame = p.read(Q).frame
    assert list(frame.index) == ["k2"]
    assert frame.loc["k2", "name"] == "changed" and frame.loc["k2", "new"] == "col"
    assert list(frame.columns)[-1] == "new"  # new columns are appended, order preserved


def test_update_keeps_other_values_and_column_order(tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text("b,id,a\r\nx,1,y\r\n", encoding="utf-8")
    p = provider(tmp_path, "o.csv")
    assert p.apply(Q, [Change("update", "u", key="1", values={"a": "z"})])[0].ok
    assert path.read_bytes() == b"b,id,a\r\nx,1,z\r\n"


def test_duplicate_key_is_an_error(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"d.{fmt}"
    frame = pd.DataFrame({"id": ["1", "2", "1"], "v": ["a", "b", "c"]})
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    p = provider(tmp_path, f"d.{fmt}")
    where = "line 4" if fmt == "csv" else "row 3"
    with pytest.raises(ProviderError, match=f"duplicate key '1'.*{where}"):
        p.read(Q)
    with pytest.raises(ProviderError, match="duplicate key"):
        p.apply(Q, [Change("insert", "i", key="9")])


def test_cursor_no_change_probe(tmp_path: Path, fmt: str) -> None:
    p = provider(tmp_path, f"c.{fmt}")
    p.apply(Q, [Change("insert", "a", key="1", values={"v": "x"})])
    first = p.read(Q)
    assert first.complete and first.cursor
    assert set(json.loads(first.cursor)) == {"mtime_ns", "size", "sha256"}
    probe = p.read(Q, cursor=first.cursor)
    assert not probe.complete and len(probe.frame) == 0 and probe.cursor == first.cursor
    p.apply(Q, [Change("update", "u", key="1", values={"v": "y"})])
    again = p.read(Q, cursor=first.cursor)
    assert again.complete and again.cursor != first.cursor
    assert again.frame.loc["1", "v"] == "y"


def test_same_size_and_mtime_but_new_content_is_read(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("id,v\n1,a\n")
    p = provider(tmp_path, "s.csv")
    first = p.read(Q)
    stat = path.stat()
    path.write_text("id,v\n1,b\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = p.read(Q, cursor=first.cursor)
    assert again.complete and again.frame.loc["1", "v"] == "b"


def test_atomic_write(tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    p = provider(tmp_path, f"a.{fmt}")
    p.apply(Q, [Change("insert", "a", key="1", values={"v": "old"})])
    path = tmp_path / f"a.{fmt}"
    before = path.read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(ProviderError, match="disk on fire"):
        p.apply(Q, [Change("update", "u", key="1", values={"v": "new"})])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(f.name for f in tmp_path.iterdir()) == [path.name]


def test_write_keeps_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("id,v\n1,a\n")
    path.chmod(0o640)
    p = provider(tmp_path, "m.csv")
    assert p.apply(Q, [Change("update", "u", key="1", values={"v": "b"})])[0].ok
    assert path.stat().st_mode & 0o777 == 0o640


def test_delimiter_and_encoding(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_bytes("id;name\n1;Jürgen\n".encode("latin-1"))
    p = FileProvider.from_connection_string(
        'Path=l.csv;Delimiter=";";Encoding=latin-1', base_dir=tmp_path
    )
    assert p.read(Q).frame.loc["1", "name"] == "Jürgen"
    assert p.apply(Q, [Change("insert", "i", key="2", values={"name": "Zoë; x"})])[0].ok
    assert path.read_bytes().decode("latin-1") == 'id;name\n1;Jürgen\n2;"Zoë; x"\n'


def test_changing_the_key_is_refused(tmp_path: Path) -> None:
    p = provider(tmp_path, "k.csv")
    p.apply(Q, [Change("insert", "a", key="1", values={"v": "x"})])
    out = p.apply(Q, [Change("update", "u", key="1", values={"id": "2"})])
    assert not out[0].ok and "cannot be changed" in out[0].error


def test_csv_text() -> None:
    assert csv_text(None) == ""
    assert csv_text(True) == "true"
    assert csv_text(1e-7) == "1e-07"
    assert csv_text(Decimal("1.50")) == "1.50"
    assert csv_text(dt.date(2024, 1, 2)) == "2024-01-02"


def test_concurrent_change_is_not_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.csv"
    path.write_text("id,v\n1,a\n")
    p = provider(tmp_path, "w.csv")
    original = FileProvider._write_csv

    def meanwhile(self: FileProvider, f: IO[bytes], cols: dict, newline: str) -> None:
        with path.open("a") as other:
            other.write("2,theirs\n")
        original(self, f, cols, newline)

    monkeypatch.setattr(FileProvider, "_write_csv", meanwhile)
    with pytest.raises(ProviderError, match="changed by someone else") as info:
        p.apply(Q, [Change("update", "u", key="1", values={"v": "mine"})])
    assert info.value.transient
    assert path.read_text() == "id,v\n1,a\n2,theirs\n"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["w.csv"]
