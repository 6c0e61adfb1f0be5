"""The Dagster layer: definitions from a folder, materialization through Dagster, checks."""

import logging
import runpy
import sqlite3
from pathlib import Path

import dagster as dg
import pytest
from project_helpers import REPO, demo_project

from l2sync_dagster import demo
from l2sync_dagster.orchestration.definitions import build_definitions


def _keys(defs: dg.Definitions) -> set[str]:
    return {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}


def test_repository_definitions_load():
    defs = runpy.run_path(str(REPO / "definitions.py"))["defs"]  # what `dagster dev` loads

    dg.Definitions.validate_loadable(defs)
    assert {"customers_demo/left", "customers_demo/right", "customers_demo/plan",
            "customers_demo/apply_left", "customers_demo/apply_right"} <= _keys(defs)
    assert defs.resolve_job_def("customers_demo_job").tags["l2sync/connection"] == \
        "customers_demo"
    assert defs.resolve_schedule_def("customers_demo_schedule").cron_schedule == "*/15 * * * *"


def test_bad_file_is_reported_and_the_rest_load(tmp_path, caplog):
    conns = demo_project(tmp_path)
    (conns / "broken.yaml").write_text("title: x\ndirection: sideways\n")
    with caplog.at_level(logging.ERROR, logger="l2sync"):
        defs = build_definitions(conns)
    assert "customers_demo/plan" in _keys(defs)
    assert "broken.yaml line 2: direction must be one of" in caplog.text


def test_one_way_connection_has_only_its_apply_step(tmp_path):
    conns = demo_project(tmp_path)
    text = (conns / "customers_demo.yaml").read_text()
    (conns / "customers_demo.yaml").write_text(
        text.replace("direction: bidirectional", "direction: left_to_right"))
    keys = _keys(build_definitions(conns))
    assert "customers_demo/apply_right" in keys and "customers_demo/apply_left" not in keys


def _materialize(conns: Path, selection: str | None = None) -> dg.ExecuteInProcessResult:
    defs = build_definitions(conns)
    assets = list(defs.assets or [])
    return dg.materialize(assets, resources=defs.resources,
                          selection=selection, instance=dg.DagsterInstance.ephemeral(),
                          raise_on_error=False)


def _meta(result: dg.ExecuteInProcessResult, key: str) -> dict:
    mats = result.asset_materializations_for_node("customers_demo_sync")
    (mat,) = [m for m in mats if m.asset_key.to_user_string() == key]
    return {k: v.value for k, v in mat.metadata.items()}


def test_materialize_syncs_both_ways_and_checks(tmp_path):
    conns = demo_project(tmp_path)
    result = _materialize(conns)
    assert result.success
    right = _meta(result, "customers_demo/apply_right")
    left = _meta(result, "customers_demo/apply_left")
    # 4 CSV customers, 2 CRM customers, Grace on both (matched by e-mail)
    assert right["inserted"] == 3 and left["inserted"] == 1
    assert _meta(result, "customers_demo/left")["records_read"] == 4
    plan = _meta(result, "customers_demo/plan")
    assert plan["conflicts"] == 1  # Grace's phone differs: first-sync match
    assert "C-1002" in plan["conflicts_table"] and "+1 212 0000" in plan["conflicts_table"]
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.check_name == "in_sync"
    with sqlite3.connect(tmp_path / "data" / "demo" / "crm.db") as db:
        assert db.execute("SELECT count(*) FROM customers").fetchone()[0] == 5

    demo._edit(tmp_path / "data" / "demo" / "customers.csv", tmp_path / "data" / "demo" / "crm.db")
    result = _materialize(conns)
    assert result.success
    plan = _meta(result, "customers_demo/plan")
    assert plan["right_to_insert"] == 1 and plan["left_to_delete"] == 1
    assert "right wins city" in plan["conflicts_table"]
    assert result.get_asset_check_evaluations()[0].passed

    result = _materialize(conns)  # nothing changed since
    plan = _meta(result, "customers_demo/plan")
    assert all(plan[f"{s}_to_{op}"] == 0 for s in ("left", "right")
               for op in ("insert", "update", "delete"))


def test_subset_left_only_reads_and_writes_nothing(tmp_path):
    conns = demo_project(tmp_path)
    before = (tmp_path / "data" / "demo" / "customers.csv").read_bytes()
    result = _materialize(conns, selection="customers_demo/left")
    assert result.success
    mats = result.asset_materializations_for_node("customers_demo_sync")
    assert [m.asset_key.to_user_string() for m in mats] == ["customers_demo/left"]
    assert (tmp_path / "data" / "demo" / "customers.csv").read_bytes() == before
    with sqlite3.connect(tmp_path / "data" / "demo" / "crm.db") as db:
        assert db.execute("SELECT count(*) FROM customers").fetchone()[0] == 2


def test_mass_delete_brake_fails_the_run_before_writing(tmp_path):
    conns = demo_project(tmp_path)
    assert _materialize(conns).success
    csv_path = tmp_path / "data" / "demo" / "customers.csv"
    csv_path.write_text(csv_path.read_text().splitlines()[0] + "\n")  # every customer gone
    result = _materialize(conns)
    assert not result.success
    failure = result.failure_data_for_node("customers_demo_sync")
    assert "max_fraction" in failure.error.message
    with sqlite3.connect(tmp_path / "data" / "demo" / "crm.db") as db:
        assert db.execute("SELECT count(*) FROM customers").fetchone()[0] == 5


def test_shipped_dagster_yaml_queues_runs_per_connection(tmp_path):
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    assert {"key": "l2sync/connection", "value": {"applyLimitPerUniqueValue": True},
            "limit": 1} in limits


@pytest.mark.parametrize("name", ["customers-demo", "2024 sales"])
def test_group_names_are_valid_for_any_file_name(tmp_path, name):
    conns = demo_project(tmp_path)
    (conns / "customers_demo.yaml").rename(conns / f"{name}.yaml")
    defs = build_definitions(conns)
    dg.Definitions.validate_loadable(defs)
