"""The command line's handling of connection files: located refusals, notes, options, output.

Runs ``l2sync_dagster.cli.main`` in-process (fast) against SQLite and CSV projects.
"""

import json
import sqlite3
from pathlib import Path

import pytest

from l2sync_dagster import cli
from l2sync_dagster.engine.mapping import MappingError, resolve_mapping
from l2sync_dagster.providers.base import EntityDescription, FieldInfo
from l2sync_dagster.spec.loader import ConnectionFileError, load_connection


def project(tmp: Path, mapping: str, direction: str = "bidirectional") -> Path:
    (tmp / "connections").mkdir(parents=True)
    (tmp / "data").mkdir()
    db = sqlite3.connect(tmp / "data" / "crm.db")
    db.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, score REAL, "
               "twice INTEGER GENERATED ALWAYS AS (id * 2))")
    db.execute("INSERT INTO people (id, name, score) VALUES (1, 'Ada', NULL), (2, NULL, 2.5)")
    db.commit()
    db.close()
    (tmp / "data" / "people.csv").write_text("id,name,score,twice,double\n")
    (tmp / "connections" / "people.yaml").write_text(
        f"direction: {direction}\n"
        "left:\n"
        "  provider: sql\n"
        '  connection_string: "URL=sqlite:///data/crm.db"\n'
        "  query: people\n"
        "  key: id\n"
        "right:\n"
        "  provider: file\n"
        '  connection_string: "Path=data/people.csv"\n'
        "  key: id\n"
        f"{mapping}"
    )
    return tmp


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


EXPLICIT = "mapping:\n  auto: false\n  fields:\n    - {left: name, right: name}\n" \
           "    - {left: twice, right: double}\n"


def test_verify_refuses_an_explicit_read_only_target_naming_file_line_side_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(project(tmp_path, EXPLICIT))
    for command in ("verify", "plan", "run"):
        code, out, err = run(capsys, command, "people")
        assert code == 1, (command, out, err)
        assert err.startswith(
            f"l2sync {command}: connections/people.yaml line 15: mapping.fields[1] "
            "(left field 'twice'): is read-only on the left side"), err
        assert "set direction: left_to_right on this pair" in err
    assert (tmp_path / "data" / "people.csv").read_text() == "id,name,score,twice,double\n"


def test_verify_and_plan_print_the_narrowing_of_an_auto_mapped_read_only_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(project(tmp_path, "mapping: {auto: true, exclude: [double]}\n"))
    code, out, err = run(capsys, "verify", "people")
    assert code == 0, err
    assert "note: mapping: auto-mapped field 'twice' is read-only on the left side, so it " \
           "only flows left_to_right" in out
    code, out, err = run(capsys, "plan", "people")
    assert code == 0, err
    assert "auto-mapped field 'twice'" in out


def test_connections_option_after_the_subcommand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = project(tmp_path / "p", "mapping: {auto: true, exclude: [double, twice]}\n",
                   direction="left_to_right")
    monkeypatch.chdir(root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = run(capsys, "run", "people", "--json", "--connections",
                         str(root / "connections"))
    assert code == 0, err
    assert json.loads(out)["right"]["inserted"] == 2
    code, out, err = run(capsys, "--connections", str(root / "connections"), "status", "people")
    assert code == 0 and "succeeded" in out


def test_preview_shows_empty_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(project(tmp_path, EXPLICIT))
    code, out, err = run(capsys, "preview", "people")
    assert code == 0, err
    assert "Ada" in out and "2.5" in out and "nan" not in out.lower()


@pytest.mark.parametrize("text", [
    "Password S3CR3T-MARKER;User=sync",
    "URL=postgresql://u:S3CR3T-MARKER@db/crm",
    "URL=postgresql://u@db/crm?password=S3CR3T-MARKER",
    "URL=https://u:S3CR3T-MARKER@host/x",
    "URL=sqlite:///x.db;Password=S3CR3T-MARKER",
])
def test_secrets_in_connection_strings_are_refused_and_never_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    text: str,
) -> None:
    monkeypatch.chdir(project(tmp_path, EXPLICIT))
    path = tmp_path / "connections" / "people.yaml"
    path.write_text(path.read_text().replace("URL=sqlite:///data/crm.db", text))
    code, out, err = run(capsys, "verify", "people")
    assert code == 1
    assert "S3CR3T" not in out + err
    assert err.startswith("l2sync verify: connections/people.yaml line 4: left.connection_string")
    assert err.count("\n") == 1 and len(err) < 500


def test_a_malformed_connection_string_names_the_part_not_its_text(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(
        "direction: left_to_right\n"
        'left: {provider: sql, connection_string: "URL=sqlite:///a.db;Password hunter2;User=s"}\n'
        'right: {provider: file, connection_string: "Path=a.csv"}\n')
    with pytest.raises(ConnectionFileError) as info:
        load_connection(tmp_path / "x.yaml")
    assert "hunter2" not in str(info.value)
    assert "line 2: left.connection_string: part 2 (from character 20) is not Key=Value" \
        in str(info.value)


def test_resolve_mapping_refuses_an_explicit_read_only_target_instead_of_narrowing() -> None:
    from l2sync_dagster.engine.mapping import ExplicitPair

    left = EntityDescription(fields=(FieldInfo("name"),), key="id")
    right = EntityDescription(fields=(FieldInfo("Title"), FieldInfo("Modified", read_only=True)),
                              key="id")
    with pytest.raises(MappingError, match="read-only on the right side"):
        resolve_mapping(auto=False, explicit=[ExplicitPair("name", "Modified")], exclude=(),
                        left=left, right=right, direction="bidirectional")
    with pytest.raises(MappingError, match="'phone' is not a mapped field"):
        resolve_mapping(auto=False, explicit=[ExplicitPair("name", "Title")], exclude=(),
                        left=left, right=right, direction="bidirectional", match_on=["phone"])
