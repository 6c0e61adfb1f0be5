"""The ``L2SyncConnections`` Dagster Component: same graphs as the factory, overrides, strict
loading, the scaffolder, and ``dg`` itself (``dg check defs``, ``dg scaffold defs``,
``dg list components``) run as a user runs it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import jsonschema
import pandas as pd
import pytest
from dagster.components.testing import create_defs_folder_sandbox
from project_helpers import REPO, demo_project

from l2sync_dagster.orchestration.component import ConnectionFilesError, L2SyncConnections
from l2sync_dagster.orchestration.definitions import build_definitions

TYPE = "l2sync_dagster.orchestration.component.L2SyncConnections"
DG = Path(sys.executable).parent / "dg"
DEMO_KEYS = {f"customers_demo/{s}" for s in ("left", "right", "plan", "apply_left", "apply_right")}


def _keys(defs: dg.Definitions) -> set[str]:
    return {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}


def _names(items) -> set[str]:
    return {item.name for item in items or ()}


def _component_defs(attributes: dict) -> dg.Definitions:
    """Definitions of a defs.yaml using the component with ``attributes``."""
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(
            component_cls=L2SyncConnections, defs_path="sync",
            defs_yaml_contents={"type": TYPE, "attributes": attributes})
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            assert isinstance(component, L2SyncConnections)
            dg.Definitions.validate_loadable(defs)
            return defs


def _second_connection(conns: Path) -> None:
    """A one-way copy of the demo connection under another name, with a sensor instead of a
    schedule."""
    text = (conns / "customers_demo.yaml").read_text()
    text = text.replace("direction: bidirectional", "direction: left_to_right")
    text = text.replace('schedule: "*/15 * * * *"\n', "sensor: {interval: 60}\n")
    (conns / "crm-export.yaml").write_text(text)


def test_same_graphs_as_the_factory(tmp_path):
    conns = demo_project(tmp_path)
    _second_connection(conns)
    plain = build_definitions(conns)
    defs = _component_defs({"path": str(conns)})

    assert _keys(defs) == _keys(plain)
    assert DEMO_KEYS | {"crm_export/apply_right"} <= _keys(defs)
    assert _names(defs.jobs) == _names(plain.jobs) == {"customers_demo_job", "crm_export_job"}
    assert _names(defs.schedules) == _names(plain.schedules) == {"customers_demo_schedule"}
    assert _names(defs.sensors) == _names(plain.sensors)
    assert "crm_export_sensor" in _names(defs.sensors)
    checks = defs.resolve_asset_graph().asset_check_keys
    assert {(c.asset_key.to_user_string(), c.name) for c in checks} == {
        ("customers_demo/apply_right", "in_sync"), ("crm_export/apply_right", "in_sync")}


def test_relative_path_starts_at_the_component_folder(tmp_path):
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(component_cls=L2SyncConnections, defs_path="sync")
        shutil.copy(REPO / "connections" / "customers_demo.yaml", path / "connections")
        (path / "defs.yaml").write_text(f"type: {TYPE}\nattributes:\n  path: connections\n")
        with sandbox.load_component_and_build_defs(defs_path=path) as (_, defs):
            assert DEMO_KEYS <= _keys(defs)
            assert "example_contacts/apply_right" in _keys(defs)


def test_include_exclude_schedules_and_tags(tmp_path):
    conns = demo_project(tmp_path)
    _second_connection(conns)

    only = _component_defs({"path": str(conns), "include": ["crm-export"]})
    assert {k.split("/")[0] for k in _keys(only)} == {"crm_export"}
    assert _names(only.jobs) == {"crm_export_job"} and not only.schedules
    assert "crm_export_sensor" in _names(only.sensors)
    jobs = {job.name for job in only.get_repository_def().get_all_jobs()}
    assert not any(name.startswith("customers_demo") for name in jobs), jobs

    rest = _component_defs({"path": str(conns), "exclude": ["crm_export"],
                            "schedules": False, "tags": {"team": "crm"}})
    assert _keys(rest) == DEMO_KEYS
    assert _names(rest.jobs) == {"customers_demo_job"} and not rest.schedules
    assert "crm_export_sensor" not in _names(rest.sensors)
    jobs = {job.name for job in rest.get_repository_def().get_all_jobs()}
    assert not any(name.startswith("crm_export") for name in jobs), jobs
    graph = rest.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        tags = graph.get(key).tags
        assert tags["team"] == "crm" and tags["l2sync/connection"] == "customers_demo"


def test_unknown_include_or_exclude_name_is_an_error(tmp_path):
    conns = demo_project(tmp_path)
    with pytest.raises(Exception) as info:
        _component_defs({"path": str(conns), "include": ["customers"], "exclude": ["nope"]})
    chain = _message_chain(info.value)
    assert "include: no connection named 'customers'; available: customers_demo" in chain
    assert "exclude: no connection named 'nope'" in chain


def _message_chain(exc: BaseException | None) -> str:
    parts = []
    while exc is not None:
        parts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def test_a_bad_connection_file_fails_the_load_with_file_and_line(tmp_path):
    conns = demo_project(tmp_path)
    (conns / "broken.yaml").write_text("title: x\ndirection: sideways\n")
    with pytest.raises(Exception) as info:
        _component_defs({"path": str(conns)})
    chain = _message_chain(info.value)
    assert "broken.yaml line 2: direction must be one of left_to_right" in chain
    assert "broken.yaml: left is required" in chain
    cause = info.value
    while cause is not None and not isinstance(cause, ConnectionFilesError):
        cause = cause.__cause__
    assert isinstance(cause, ConnectionFilesError) and len(cause.problems) == 3


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(Exception) as info:
        _component_defs({"path": str(tmp_path / "nowhere")})
    assert "connections folder not found" in _message_chain(info.value)


def test_scaffolded_example_runs(tmp_path):
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(component_cls=L2SyncConnections, defs_path="sync")
        assert "path: connections" in (path / "defs.yaml").read_text()
        assert (path / "connections" / "example_contacts.yaml").is_file()
        with sandbox.load_component_and_build_defs(defs_path=path) as (_, defs):
            assert _keys(defs) == {f"example_contacts/{s}"
                                   for s in ("left", "right", "plan", "apply_right")}
            result = dg.materialize(list(defs.assets or []), resources=defs.resources,
                                    instance=dg.DagsterInstance.ephemeral())
        assert result.success
        (mat,) = [m for m in result.asset_materializations_for_node("example_contacts_sync")
                  if m.asset_key.to_user_string() == "example_contacts/apply_right"]
        assert mat.metadata["inserted"].value == 3
        written = pd.read_parquet(path / "data" / "example_contacts.parquet")
        assert sorted(written["email"]) == ["ada@example.com", "alan@example.com",
                                            "grace@example.com"]


# --- dg, run as a user runs it ------------------------------------------------------------------


def _dg(args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess:
    """``dg ARGS`` with this venv active and a throw-away DAGSTER_HOME."""
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    venv = Path(sys.executable).parent.parent
    env = {**os.environ, "DAGSTER_HOME": str(home), "VIRTUAL_ENV": str(venv),
           "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    return subprocess.run([str(DG), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_dg_check_defs_passes_in_the_repository(tmp_path):
    out = _dg(["check", "defs"], REPO, tmp_path / "home")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All component YAML validated successfully." in out.stdout
    assert "All definitions loaded successfully." in out.stdout


def test_dg_lists_the_component(tmp_path):
    out = _dg(["list", "components", "--json"], REPO, tmp_path / "home")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f'"{TYPE}"' in out.stdout


def test_dg_scaffold_then_check_defs_names_a_bad_file(tmp_path):
    project = tmp_path / "proj"
    (project / "newproj" / "defs").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "newproj"\nversion = "0"\n\n[tool.dg]\ndirectory_type = "project"\n\n'
        '[tool.dg.project]\nroot_module = "newproj"\n')
    (project / "newproj" / "__init__.py").write_text("")
    shutil.copy(REPO / "l2sync_dagster_defs" / "definitions.py", project / "newproj")
    home = tmp_path / "home"

    out = _dg(["scaffold", "defs", TYPE, "sync"], project, home)
    assert out.returncode == 0, out.stdout + out.stderr
    component = project / "newproj" / "defs" / "sync"
    assert (component / "connections" / "example_contacts.yaml").is_file()
    # (that the scaffolded example loads and runs: test_scaffolded_example_runs)

    # a broken connection file: dg check defs fails and names the file and the line
    (component / "connections" / "broken.yaml").write_text("title: x\ndirection: sideways\n")
    out = _dg(["check", "defs", "--use-active-venv"], project, home)
    assert out.returncode == 1
    assert ("connections/broken.yaml line 2: direction must be one of left_to_right"
            in out.stdout + out.stderr), out.stdout + out.stderr


def test_defs_yaml_schema_refuses_unknown_attributes():
    # the JSON schema `dg check yaml` validates the attributes of defs.yaml with
    schema = L2SyncConnections.get_model_cls().model_json_schema()
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors({"path": "connections", "schedules": False,
                                           "include": ["a"], "tags": {"team": "crm"}}))
    errors = [e.message for e in validator.iter_errors({"path": "c", "shedules": False})]
    assert errors == ["Additional properties are not allowed ('shedules' was unexpected)"]
    assert [e.message for e in validator.iter_errors({})] == ["'path' is a required property"]
