"""One run path: the command line, the Dagster resource and the sensors all go through
``sync.steps.run_steps`` / ``Sync``; what one can do, the other can (Dagster: `full` and
`allow_mass_delete` as run config; the CLI: the in_sync check)."""

import json
import sqlite3
from pathlib import Path

import dagster as dg
import pytest

from l2sync_dagster import cli
from l2sync_dagster.orchestration.definitions import build_definitions
from l2sync_dagster.orchestration.sensors import ProbeFailed, probe_sides
from l2sync_dagster.spec.loader import find_connection
from l2sync_dagster.sync.runner import Sync
from l2sync_dagster.sync.steps import (
    ApplyStep,
    CheckStep,
    PlanStep,
    ReadStep,
    RunOptions,
    run_steps,
)


def _project(tmp: Path, rows: int = 10) -> Path:
    (tmp / "connections").mkdir()
    (tmp / "people.csv").write_text("id,name\n" + "".join(f"{i},N{i}\n" for i in range(rows)))
    with sqlite3.connect(tmp / "crm.db") as conn:
        conn.execute("CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT)")
    (tmp / "connections" / "people.yaml").write_text("""
direction: left_to_right
mirror: true
left: {provider: file, connection_string: "Path=people.csv", key: id}
right: {provider: sql, connection_string: "URL=sqlite:///crm.db", query: people, key: id}
deletes: {propagate: true, max_fraction: 0.2}
""")
    return tmp / "connections"


def _names(tmp: Path) -> list[str]:
    with sqlite3.connect(tmp / "crm.db") as conn:
        return sorted(r[0] for r in conn.execute("SELECT name FROM people"))


def test_steps_of_a_run_in_order(tmp_path: Path, monkeypatch) -> None:
    conns = _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    sync = Sync(find_connection("people", conns))
    kinds = [type(s).__name__ for s in run_steps(sync, RunOptions(check=True))]
    sync.close()
    assert kinds == ["ReadStep", "ReadStep", "PlanStep", "ApplyStep", "CheckStep"]
    sync = Sync(find_connection("people", conns))
    steps = list(run_steps(sync, RunOptions(dry_run=True, read=())))
    sync.close()
    assert [type(s) for s in steps] == [PlanStep] and not steps[0].prepared.plan.writes
    assert ReadStep and ApplyStep and CheckStep  # the step types callers match on


def test_dagster_run_config_full_and_allow_mass_delete(tmp_path: Path, monkeypatch) -> None:
    conns = _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    defs = build_definitions(conns)
    job = defs.resolve_job_def("people_job")
    assert job.execute_in_process(instance=dg.DagsterInstance.ephemeral()).success
    assert len(_names(tmp_path)) == 10
    (tmp_path / "people.csv").write_text("id,name\n0,N0\n")  # 9 of 10 deleted: the brake
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(),
                                    raise_on_error=False)
    assert not result.success and len(_names(tmp_path)) == 10
    config = {"ops": {"people_sync": {"config": {"allow_mass_delete": True, "full": True}}}}
    result = job.execute_in_process(run_config=config, instance=dg.DagsterInstance.ephemeral())
    assert result.success and _names(tmp_path) == ["N0"]


def test_cli_run_makes_the_in_sync_check(tmp_path: Path, capsys, monkeypatch) -> None:
    conns = _project(tmp_path, rows=3)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "people", "--json", "--connections", str(conns)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["check"] == {"passed": True, "checked": 3, "mismatches": []}
    assert cli.main(["run", "people", "--json", "--no-check", "--connections",
                     str(conns)]) == 0
    assert "check" not in json.loads(capsys.readouterr().out)


def test_sensor_probes_open_providers_as_runs_do(tmp_path: Path, monkeypatch) -> None:
    conns = _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    spec = find_connection("people", conns)
    assert set(probe_sides(spec)) == {"left", "right"}
    bad = spec.model_copy(update={"right": spec.right.model_copy(
        update={"connection_string": "URL=sqlite:///crm.db;Colour=blue"})})
    with pytest.raises(ProbeFailed, match="right.connection_string.*Colour"):
        probe_sides(bad)


def test_in_sync_check_finds_the_one_record_the_target_changed(tmp_path: Path, capsys,
                                                               monkeypatch) -> None:
    conns = _project(tmp_path, rows=10)
    with sqlite3.connect(tmp_path / "crm.db") as conn:  # the database rewrites one record
        conn.execute("CREATE TRIGGER shout AFTER INSERT ON people WHEN NEW.id = '7' BEGIN "
                     "UPDATE people SET name = upper(name) || '!' WHERE id = NEW.id; END")
    monkeypatch.chdir(tmp_path)
    cli.main(["run", "people", "--json", "--connections", str(conns)])
    check = json.loads(capsys.readouterr().out)["check"]
    assert check == {"passed": False, "checked": 10, "mismatches": [
        {"side": "right", "key": "7", "problem": "values read back differ from the plan"}]}
