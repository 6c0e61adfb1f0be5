"""Resolving a connection's mapping: read-only targets refused with their place, auto-mapped
read-only fields narrowed with a note, match_on checked, messages located in the file."""

from pathlib import Path

import pytest

from l2sync_dagster.engine.mapping import MappingError, resolve_for_spec, writable_alternatives
from l2sync_dagster.providers.base import EntityDescription, FieldInfo
from l2sync_dagster.spec.errors import LocatedError, line_of, located
from l2sync_dagster.spec.loader import load_connection

SQL = 'provider: sql, connection_string: "URL=sqlite:///x.db", query: t'
EXCHANGE = EntityDescription(
    fields=(
        FieldInfo("GivenName"), FieldInfo("Surname"),
        FieldInfo("CompleteName.GivenName"), FieldInfo("CompleteName.Surname"),
        FieldInfo("CompleteName.FullName", read_only=True),
        FieldInfo("EmailAddresses.EmailAddress1"),
        FieldInfo("LastModifiedTime", "datetime", read_only=True),
    ),
    key="ItemId", key_generated=True,
)
EMAIL = "{left: email, right: EmailAddresses.EmailAddress1}"
TABLE = EntityDescription(
    fields=(FieldInfo("id", "integer"), FieldInfo("name"), FieldInfo("first"),
            FieldInfo("email"), FieldInfo("LastModifiedTime", "datetime"),
            FieldInfo("Modified", "datetime", read_only=True)),
    key="id", key_generated=True,
)


def spec_of(tmp_path: Path, direction: str, fields: list[str], extra: str = ""):
    folder = tmp_path / "connections"
    folder.mkdir(exist_ok=True)
    lines = [
        f"direction: {direction}",
        f"left: {{{SQL}}}",
        f"right: {{{SQL}}}",
        "mapping:",
        "  auto: false",
        "  fields:",
        *(f"    - {f}" for f in fields),
    ]
    path = folder / "x.yaml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return load_connection(path)


@pytest.fixture(autouse=True)
def _cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_explicit_read_only_target_both_ways_is_refused_with_place_and_alternative(
    tmp_path: Path,
) -> None:
    spec = spec_of(tmp_path, "bidirectional", [
        "{left: email, right: EmailAddresses.EmailAddress1}",
        "{left: name, right: CompleteName.FullName}",
    ])
    with pytest.raises(MappingError) as info:
        resolve_for_spec(spec, TABLE, EXCHANGE)
    msg = str(info.value)
    assert msg.startswith(
        "connections/x.yaml line 8: mapping.fields[1] (right field 'CompleteName.FullName'): "
        "is read-only on the right side")
    assert "map a writable field instead (" in msg and "'CompleteName.GivenName'" in msg
    assert "set direction: right_to_left on this pair" in msg


def test_explicit_read_only_target_one_way_is_refused(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, "right_to_left", ["{left: Modified, right: LastModifiedTime}"])
    with pytest.raises(MappingError) as info:
        resolve_for_spec(spec, TABLE, EXCHANGE)
    msg = str(info.value)
    assert "line 7: mapping.fields[0] (left field 'Modified'): is read-only on the left" in msg
    assert "set direction" not in msg  # a one-way connection has no other way to offer


def test_read_only_source_with_the_pair_pointing_away_is_accepted(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, "bidirectional", [
        "{left: name, right: CompleteName.FullName, direction: right_to_left}",
    ])
    mapping = resolve_for_spec(spec, TABLE, EXCHANGE)
    assert [(p.left, p.right, p.direction) for p in mapping.pairs] == [
        ("name", "CompleteName.FullName", "right_to_left")]
    assert mapping.notes == ()


def test_auto_mapped_read_only_field_narrows_with_a_note(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, "bidirectional", [EMAIL])
    spec = spec.model_copy(update={"mapping": spec.mapping.model_copy(update={"auto": True})})
    mapping = resolve_for_spec(spec, TABLE, EXCHANGE)
    pair = mapping.by_name("LastModifiedTime")
    assert pair is not None and pair.direction == "right_to_left"
    assert len(mapping.notes) == 1 and "'LastModifiedTime'" in mapping.notes[0]
    assert "only flows right_to_left" in mapping.notes[0]
    # notes are not part of what the archive is valid for
    bare = type(mapping)(mapping.pairs)
    assert bare.signature() == mapping.signature() and bare == mapping


def test_auto_mapped_field_read_only_on_the_target_of_one_way_is_left_out_with_a_note(
    tmp_path: Path,
) -> None:
    spec = spec_of(tmp_path, "left_to_right", [EMAIL])
    spec = spec.model_copy(update={"mapping": spec.mapping.model_copy(update={"auto": True})})
    mapping = resolve_for_spec(spec, TABLE, EXCHANGE)
    assert mapping.by_name("LastModifiedTime") is None
    assert any("left out" in n and "right side" in n for n in mapping.notes)


def test_match_on_must_be_mapped_and_names_its_line(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, "bidirectional", [EMAIL],
                   "match_on: [email, phone]\n")
    with pytest.raises(MappingError) as info:
        resolve_for_spec(spec, TABLE, EXCHANGE)
    assert str(info.value).startswith(
        "connections/x.yaml line 8: match_on[1]: 'phone' is not a mapped field")


def test_unknown_field_names_file_line_side(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, "bidirectional", ["{left: email, right: EmailAdress1}"])
    with pytest.raises(MappingError) as info:
        resolve_for_spec(spec, TABLE, EXCHANGE)
    assert str(info.value).startswith(
        "connections/x.yaml line 7: mapping.fields[0].right (right field 'EmailAdress1'): "
        "does not exist on the right side")


def test_writable_alternatives() -> None:
    assert set(writable_alternatives(EXCHANGE, "CompleteName.FullName")) == {
        "CompleteName.GivenName", "CompleteName.Surname"}
    plain = EntityDescription(fields=(FieldInfo("FullName", read_only=True),
                                      FieldInfo("GivenName"), FieldInfo("Phone")), key="id")
    assert writable_alternatives(plain, "FullName") == ["GivenName"]
    only = EntityDescription(fields=(FieldInfo("Modified", read_only=True), FieldInfo("Title")),
                             key="id")
    assert writable_alternatives(only, "Modified") == []


def test_located_and_line_of(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, "bidirectional", ["{left: a, right: b}", "{left: c, right: d}"])
    assert line_of(spec, "mapping.fields.1.right") == 8
    assert line_of(spec, "mapping.fields.1.type") == 8  # nearest entry the file writes
    assert line_of(spec, "left.connection_string") == 2
    assert located(spec, "mapping.fields.1", "is read-only", side="right", key="d") == (
        "connections/x.yaml line 8: mapping.fields[1] (right field 'd'): is read-only")
    long = "sign-in failed for Password=hunter2 " + "x" * 900
    text = located(spec, "left.connection_string", long, side="left", key="Password", kind="key")
    assert text.startswith("connections/x.yaml line 2: left.connection_string (left key "
                           "'Password'): sign-in failed for Password=***")
    assert "hunter2" not in text and len(text) < 500 and "more characters" in text
    err = LocatedError(spec, "right.query", "table t not found", side="right", key="t",
                       kind="table")
    assert err.line == 3 and str(err).startswith("connections/x.yaml line 3: right.query")
