"""Connection files: schema, loader and the messages a data engineer sees."""

import pickle
from pathlib import Path

import pydantic
import pytest

from l2sync_dagster.spec.loader import (
    ConnectionFileError,
    find_connection,
    load_connection,
    load_connections,
)
from l2sync_dagster.spec.model import ConnectionSpec, EntitySpec, dagster_name_of

FIXTURES = Path(__file__).parent / "fixtures" / "connections"

BASE = """\
title: t
direction: left_to_right
left:
  provider: file
  connection_string: "Path=a.csv"
right:
  provider: sql
  connection_string: "URL=sqlite:///crm.db"
  query: customers
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with an empty connections/ folder, made the current directory."""
    (tmp_path / "connections").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(project: Path, text: str, name: str = "x.yaml") -> Path:
    path = project / "connections" / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(project: Path, text: str) -> ConnectionFileError:
    with pytest.raises(ConnectionFileError) as info:
        load_connection(write(project, text))
    return info.value


# --- the full example --------------------------------------------------------------------------


def test_full_example_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRM_PASSWORD", raising=False)  # env: references are not resolved here
    spec = load_connection(FIXTURES / "customers_crm.yaml")
    assert spec.name == "customers_crm"
    assert spec.dagster_name == "customers_crm"
    assert spec.path == (FIXTURES / "customers_crm.yaml").absolute()
    assert spec.project_dir == FIXTURES.parent.absolute()
    assert spec.title == "Customers CSV <-> CRM database"
    assert spec.direction == "bidirectional"
    assert spec.left.provider == "file"
    assert spec.left.connection_string == "Path=data/customers.csv"
    assert spec.left.key == "customer_no"
    assert spec.left.query is None
    assert spec.right.provider == "sql"
    assert spec.right.query == "customers"
    assert (spec.right.key, spec.right.modified) == ("id", "updated_at")
    assert "Password=env:CRM_PASSWORD" in spec.right.connection_string
    assert spec.mapping.auto is True
    assert [(f.left, f.right, f.type, f.direction) for f in spec.mapping.fields] == [
        ("email", "email_address", None, "both"),
        ("since", "customer_since", "date", "both"),
    ]
    assert spec.mapping.exclude == []
    assert spec.match_on == ["email"]
    assert (spec.conflicts.policy, spec.conflicts.fallback) == ("merge", "latest_wins")
    assert (spec.deletes.propagate, spec.deletes.max_fraction) == (True, 0.2)
    assert spec.mirror is False
    assert spec.schedule == "*/15 * * * *"
    assert spec.timezone is None
    assert spec.batch_size is None
    assert spec.tags == {}


def test_defaults_of_a_minimal_file(project: Path) -> None:
    spec = load_connection(write(project, BASE))
    assert spec.mapping.auto is True and spec.mapping.fields == []
    assert (spec.conflicts.policy, spec.conflicts.fallback) == ("skip", "skip")
    assert (spec.deletes.propagate, spec.deletes.max_fraction) == (False, 0.2)
    assert spec.mirror is False and spec.schedule is None and spec.match_on == []
    assert spec.display_path == "connections/x.yaml"
    assert spec.project_dir == project


def test_the_repository_examples_load() -> None:
    folder = Path(__file__).parent.parent / "connections"
    specs, errors = load_connections(folder)
    assert errors == []
    assert specs


def test_spec_is_frozen(project: Path) -> None:
    spec = load_connection(write(project, BASE))
    with pytest.raises(pydantic.ValidationError):
        spec.direction = "bidirectional"  # type: ignore[misc]


def test_optional_fields(project: Path) -> None:
    text = BASE + (
        "schedule: '0 6 * * MON-FRI'\ntimezone: Europe/Berlin\nbatch_size: 50\n"
        "tags: {team: crm, priority: 1}\ndescription: nightly\n"
        "mapping:\n  exclude: [notes]\n  fields:\n"
        "    - {left: a, right: b, direction: left_to_right}\n"
    )
    spec = load_connection(write(project, text))
    assert spec.timezone == "Europe/Berlin"
    assert spec.batch_size == 50
    assert spec.tags == {"team": "crm", "priority": "1"}
    assert spec.mapping.exclude == ["notes"]
    assert spec.mapping.fields[0].direction == "left_to_right"


# --- error messages ------------------------------------------------------------------------------


def test_bad_direction_names_line_and_choices(project: Path) -> None:
    err = load_error(project, BASE.replace("left_to_right", "sideways"))
    assert str(err) == (
        "connections/x.yaml line 2: direction must be one of "
        "left_to_right, right_to_left, bidirectional"
    )
    assert (err.line, err.field) == (2, "direction")
    assert err.path == project / "connections" / "x.yaml"


def test_nested_field_error_has_dotted_path(project: Path) -> None:
    err = load_error(project, BASE + "conflicts:\n  policy: lft_wins\n")
    assert str(err) == (
        "connections/x.yaml line 11: conflicts.policy must be one of "
        "left_wins, right_wins, latest_wins, merge, skip, fail"
    )
    assert err.field == "conflicts.policy"


def test_list_item_error_has_index(project: Path) -> None:
    text = BASE + (
        "mapping:\n  fields:\n"
        "    - {left: email, right: email_address}\n"
        "    - {left: since, right: customer_since, type: dat}\n"
    )
    err = load_error(project, text)
    assert str(err) == (
        "connections/x.yaml line 13: mapping.fields.1.type must be one of "
        "string, integer, float, decimal, boolean, date, datetime, json"
    )


def test_fallback_cannot_be_merge(project: Path) -> None:
    err = load_error(project, BASE + "conflicts: {policy: merge, fallback: merge}\n")
    assert str(err) == (
        "connections/x.yaml line 10: conflicts.fallback must be one of "
        "left_wins, right_wins, latest_wins, skip, fail"
    )


def test_unknown_key_lists_allowed_and_suggests(project: Path) -> None:
    err = load_error(project, BASE.replace("direction:", "directon:"))
    first, second = str(err).splitlines()
    assert first == (
        "connections/x.yaml line 2: unknown field 'directon'; allowed: title, direction, left, "
        "right, mapping, match_on, conflicts, deletes, mirror, schedule, sensor, partitions, "
        "for_each, timezone, batch_size, tags, description; did you mean 'direction'?"
    )
    assert second == "connections/x.yaml: direction is required"
    assert len(err.problems) == 2


def test_unknown_nested_key(project: Path) -> None:
    err = load_error(project, BASE.replace("  query:", "  querry:"))
    assert str(err) == (
        "connections/x.yaml line 9: unknown field 'right.querry'; allowed: provider, "
        "connection_string, query, key, modified; did you mean 'right.query'?"
    )


def test_unknown_key_without_close_match_has_no_suggestion(project: Path) -> None:
    err = load_error(project, BASE + "colour: blue\n")
    assert "unknown field 'colour'; allowed: title," in str(err)
    assert "did you mean" not in str(err)


def test_name_is_not_a_field(project: Path) -> None:
    err = load_error(project, BASE + "name: other\n")
    assert str(err).startswith(
        "connections/x.yaml line 10: unknown field 'name'; the connection name comes from the "
        "file name; allowed: title,"
    )


def test_missing_required_field(project: Path) -> None:
    err = load_error(project, BASE.replace("direction: left_to_right\n", ""))
    assert str(err) == "connections/x.yaml: direction is required"
    assert (err.line, err.field) == (None, "direction")


def test_missing_nested_field_gives_parent_line(project: Path) -> None:
    err = load_error(project, BASE.replace('  connection_string: "URL=sqlite:///crm.db"\n', ""))
    assert str(err) == "connections/x.yaml line 6: right.connection_string is required"


def test_empty_section(project: Path) -> None:
    err = load_error(project, BASE.replace("left:\n  provider: file\n", "left:\n  provider:\n"))
    assert str(err) == "connections/x.yaml line 4: left.provider must not be empty"


def test_wrong_types(project: Path) -> None:
    err = load_error(
        project,
        BASE + "mirror: maybe\nmatch_on: email\nbatch_size: 0\ndeletes: {max_fraction: 2}\n",
    )
    assert str(err).splitlines() == [
        "connections/x.yaml line 10: mirror must be true or false",
        "connections/x.yaml line 11: match_on must be a list",
        "connections/x.yaml line 12: batch_size must be greater than 0",
        "connections/x.yaml line 13: deletes.max_fraction must be at most 1",
    ]


def test_yaml_boolean_where_text_is_expected_says_quote_it(project: Path) -> None:
    err = load_error(project, BASE.replace("query: customers", "query: no"))
    assert str(err) == (
        "connections/x.yaml line 9: right.query must be text (quote it: YAML reads yes, no, on, "
        "off, true and false as true/false)"
    )


def test_all_problems_of_a_file_in_one_error_sorted_by_line(project: Path) -> None:
    text = BASE.replace("left_to_right", "sideways") + "conflicts: nope\nschedule: never\n"
    text = text.replace("  query:", "  querry:")
    err = load_error(project, text)
    lines = str(err).splitlines()
    assert [p.line for p in err.problems] == [2, 9, 10, 11]
    assert lines[0].startswith("connections/x.yaml line 2: direction must be one of")
    assert lines[1].startswith("connections/x.yaml line 9: unknown field 'right.querry'")
    assert lines[2].startswith("connections/x.yaml line 10: conflicts.policy must be one of")
    assert lines[3].startswith("connections/x.yaml line 11: schedule: 'never' is not a valid")
    assert (err.line, err.field) == (2, "direction")


def test_yaml_syntax_error_gives_line(project: Path) -> None:
    text = BASE.replace("  query: customers", "  query: [customers\nmirror: true")
    err = load_error(project, text)
    assert err.line == 10
    assert str(err).startswith("connections/x.yaml line 10: YAML syntax error: ")
    assert "while parsing a flow sequence on line 9" in str(err)


def test_yaml_indentation_error(project: Path) -> None:
    err = load_error(project, "direction: bidirectional\n  left: x\n")
    assert str(err) == (
        "connections/x.yaml line 2: YAML syntax error: "
        "mapping values are not allowed in this context"
    )


def test_duplicate_key_is_refused(project: Path) -> None:
    err = load_error(project, BASE + "direction: bidirectional\n")
    assert (
        str(err) == "connections/x.yaml line 10: field 'direction' is given twice (first on line 2)"
    )


def test_yaml_1_1_boolean_keys_stay_names(project: Path) -> None:
    err = load_error(project, BASE + "on: schedule\n")
    assert str(err).startswith("connections/x.yaml line 10: unknown field 'on'; allowed:")


def test_empty_file(project: Path) -> None:
    err = load_error(project, "# nothing yet\n")
    assert str(err) == (
        "connections/x.yaml: the file is empty; a connection needs at least direction, "
        "left and right"
    )


def test_file_that_is_a_list(project: Path) -> None:
    err = load_error(project, "- a\n- b\n")
    assert str(err) == (
        "connections/x.yaml line 1: the file must be a mapping of fields (key: value), not a list"
    )


def test_missing_file(project: Path) -> None:
    with pytest.raises(ConnectionFileError) as info:
        load_connection(project / "connections" / "nope.yaml")
    assert str(info.value) == "connections/nope.yaml: file not found"


# --- secrets -----------------------------------------------------------------------------------


def test_literal_password_is_refused_with_line(project: Path) -> None:
    text = BASE.replace("URL=sqlite:///crm.db", "URL=sqlite:///crm.db;Password=hunter2")
    err = load_error(project, text)
    assert str(err) == (
        "connections/x.yaml line 8: right.connection_string: Password must be a reference like "
        "Password=env:VARIABLE, never the secret itself"
    )
    assert err.field == "right.connection_string"
    assert "hunter2" not in str(err)


def test_env_reference_is_not_resolved(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    text = BASE.replace(
        "URL=sqlite:///crm.db", "URL=sqlite:///crm.db;Password=env:NOT_SET_ANYWHERE"
    )
    spec = load_connection(write(project, text))
    assert spec.right.connection_string.endswith("Password=env:NOT_SET_ANYWHERE")


def test_connection_string_syntax_is_checked(project: Path) -> None:
    err = load_error(project, BASE.replace('"Path=a.csv"', '"Path=\'a.csv"'))
    assert str(err) == (
        "connections/x.yaml line 5: left.connection_string: unclosed quote in the value of Path"
    )


def test_validation_error_of_the_model_never_shows_the_secret() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        EntitySpec(provider="sql", connection_string="URL=x;Password=hunter2")
    assert "hunter2" not in str(info.value)


# --- schedule, time zone and cross-field rules -------------------------------------------------


def test_bad_cron(project: Path) -> None:
    err = load_error(project, BASE + "schedule: '*/15 * * *'\n")
    assert str(err).startswith(
        "connections/x.yaml line 10: schedule: '*/15 * * *' is not a valid cron expression;"
    )
    assert err.field == "schedule"


def test_cron_aliases_are_accepted(project: Path) -> None:
    assert load_connection(write(project, BASE + "schedule: '@daily'\n")).schedule == "@daily"


def test_bad_timezone_suggests(project: Path) -> None:
    err = load_error(project, BASE + "schedule: '0 6 * * *'\ntimezone: Europe/Berln\n")
    assert str(err) == (
        "connections/x.yaml line 11: timezone: 'Europe/Berln' is not a known IANA time zone; "
        "did you mean 'Europe/Berlin'?"
    )


def test_mirror_needs_one_way(project: Path) -> None:
    text = BASE.replace("left_to_right", "bidirectional") + "mirror: true\n"
    err = load_error(project, text)
    assert str(err) == (
        "connections/x.yaml line 10: mirror applies to one-way connections; "
        "remove it or change direction"
    )
    assert err.field == "mirror"
    assert load_connection(write(project, BASE + "mirror: true\n")).mirror is True


def test_field_direction_must_agree_with_one_way_connection(project: Path) -> None:
    text = BASE + (
        "mapping:\n  fields:\n"
        "    - {left: a, right: b}\n"
        "    - {left: c, right: d, direction: right_to_left}\n"
    )
    err = load_error(project, text)
    assert str(err) == (
        "connections/x.yaml line 13: mapping.fields.1.direction right_to_left contradicts the "
        "connection direction left_to_right; use both or left_to_right"
    )
    bidi = text.replace("direction: left_to_right", "direction: bidirectional")
    assert load_connection(write(project, bidi)).mapping.fields[1].direction == "right_to_left"


@pytest.mark.parametrize("side", ["left", "right"])
def test_duplicate_names_in_mapping_fields(project: Path, side: str) -> None:
    pairs = {"left": ("email", "Email"), "right": ("mail", "MAIL")}[side]
    other = "left" if side == "right" else "right"
    text = BASE + (
        "mapping:\n  fields:\n"
        f"    - {{{side}: {pairs[0]}, {other}: x}}\n"
        "    - {left: p, right: q}\n"
        f"    - {{{side}: {pairs[1]}, {other}: y}}\n"
    )
    err = load_error(project, text)
    assert str(err) == (
        f"connections/x.yaml line 14: mapping.fields.2.{side} '{pairs[1]}' is already mapped by "
        "an earlier pair; a field may appear in one pair only"
    )


# --- short forms ------------------------------------------------------------------------------


def test_conflicts_scalar_form(project: Path) -> None:
    spec = load_connection(write(project, BASE + "conflicts: left_wins\n"))
    assert (spec.conflicts.policy, spec.conflicts.fallback) == ("left_wins", "skip")


def test_conflicts_scalar_form_bad_value(project: Path) -> None:
    err = load_error(project, BASE + "conflicts: lefty\n")
    assert str(err).startswith("connections/x.yaml line 10: conflicts.policy must be one of ")


def test_deletes_scalar_form(project: Path) -> None:
    spec = load_connection(write(project, BASE + "deletes: true\n"))
    assert (spec.deletes.propagate, spec.deletes.max_fraction) == (True, 0.2)


# --- names, paths, folders -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("customers_crm", "customers_crm"),
        ("customers-crm", "customers_crm"),
        ("2024 export.v2", "c_2024_export_v2"),
        ("müller", "m_ller"),
        ("_x", "_x"),
    ],
)
def test_dagster_name(name: str, expected: str) -> None:
    assert dagster_name_of(name) == expected


def test_dagster_name_of_a_loaded_file(project: Path) -> None:
    spec = load_connection(write(project, BASE, "9-to-5 sync.yaml"))
    assert spec.name == "9-to-5 sync"
    assert spec.dagster_name == "c_9_to_5_sync"


def test_project_dir_outside_a_connections_folder(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    path = tmp_path / "elsewhere" / "x.yml"
    path.write_text(BASE, encoding="utf-8")
    spec = load_connection(path)
    assert spec.project_dir == tmp_path / "elsewhere"
    assert spec.name == "x"


def test_display_path_outside_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    path = tmp_path / "b" / "x.yaml"
    path.write_text(BASE, encoding="utf-8")
    monkeypatch.chdir(tmp_path / "a")
    assert load_connection(path).display_path == str(path)


def test_load_connections_reports_bad_files_and_loads_the_rest(project: Path) -> None:
    write(project, BASE, "b_good.yaml")
    write(project, BASE.replace("left_to_right", "sideways"), "a_bad.yaml")
    write(project, BASE, "c_good.yml")
    write(project, BASE, ".hidden.yaml")
    write(project, "not: a connection", "notes.txt")
    specs, errors = load_connections("connections")
    assert [s.name for s in specs] == ["b_good", "c_good"]
    assert len(errors) == 1
    assert str(errors[0]).startswith("connections/a_bad.yaml line 2: direction must be one of")


def test_load_connections_refuses_colliding_dagster_names(project: Path) -> None:
    write(project, BASE, "crm-sync.yaml")
    write(project, BASE, "crm_sync.yaml")
    specs, errors = load_connections(project / "connections")
    assert [s.name for s in specs] == ["crm-sync"]
    assert [str(e) for e in errors] == [
        "connections/crm_sync.yaml: the Dagster name 'crm_sync' is already used by "
        "connections/crm-sync.yaml; rename one of the files"
    ]


def test_load_connections_of_a_missing_folder(project: Path) -> None:
    specs, errors = load_connections("nowhere")
    assert specs == []
    assert [str(e) for e in errors] == ["nowhere: connections folder not found"]


def test_find_connection_by_name_path_and_dagster_name(project: Path) -> None:
    write(project, BASE, "crm-sync.yaml")
    assert find_connection("crm-sync").name == "crm-sync"
    assert find_connection("crm_sync").name == "crm-sync"
    assert find_connection("connections/crm-sync.yaml").name == "crm-sync"
    assert find_connection(project / "connections" / "crm-sync.yaml").name == "crm-sync"
    assert find_connection("customers_crm", FIXTURES).name == "customers_crm"


def test_find_connection_unknown_name(project: Path) -> None:
    write(project, BASE, "customers.yaml")
    write(project, BASE, "orders.yaml")
    with pytest.raises(ConnectionFileError) as info:
        find_connection("custmers")
    assert str(info.value) == (
        "connections: unknown connection 'custmers'; available: customers, orders; "
        "did you mean 'customers'?"
    )


def test_find_connection_in_a_missing_folder(project: Path) -> None:
    with pytest.raises(ConnectionFileError) as info:
        find_connection("x", "nowhere")
    assert str(info.value) == "nowhere: connections folder not found (looking for connection 'x')"


def test_connection_file_error_pickles(project: Path) -> None:
    err = load_error(project, BASE.replace("left_to_right", "sideways") + "mirror: 3\n")
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err)
    assert (copy.path, copy.line, copy.field, copy.problems) == (
        err.path,
        err.line,
        err.field,
        err.problems,
    )


def test_spec_can_be_built_without_a_file(tmp_path: Path) -> None:
    spec = ConnectionSpec(
        name="n",
        path=tmp_path / "n.yaml",
        project_dir=tmp_path,
        direction="left_to_right",
        left=EntitySpec(provider="file", connection_string="Path=a.csv"),
        right=EntitySpec(provider="sql", connection_string="URL=sqlite://"),
    )
    assert spec.conflicts.policy == "skip"
