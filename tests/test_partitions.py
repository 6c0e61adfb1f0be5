"""Time partitions: each partition syncs only its window, moves between windows are updates,
deletes are judged only inside the window read, and a backfill range is one run.

A calendar-like table in SQLite (events by month) is synced one way into a CSV file through
Dagster; both providers filter by the window (SQL in its WHERE clause, the CSV after parsing).
"""

import datetime as dt
import logging
import sqlite3
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.instance_for_test import instance_for_test
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import PythonFileTarget
from dagster._daemon.backfill import execute_backfill_iteration

from l2sync_dagster.orchestration.definitions import build_definitions
from l2sync_dagster.providers.base import Query
from l2sync_dagster.providers.file import FileProvider
from l2sync_dagster.providers.sql import SqlProvider
from l2sync_dagster.spec.loader import load_connection
from l2sync_dagster.state.store import StateStore, default_state_url
from l2sync_dagster.sync.runner import Sync

CONNECTION = """\
title: Calendar by month
direction: left_to_right
left:
  provider: sql
  connection_string: "URL=sqlite:///data/cal.db"
  query: events
  key: id
  modified: updated_at
right:
  provider: file
  connection_string: "Path=data/events.csv"
  key: id
mapping:
  exclude: [updated_at]
deletes: {propagate: true, max_fraction: 1.0}
partitions: {field: start, granularity: month, start: 2024-01-01, end: 2024-05-01}
"""

EVENTS = [  # id, title, start
    (1, "kick-off", "2024-01-10 09:00:00"),
    (2, "review", "2024-01-31 23:30:00"),
    (3, "planning", "2024-02-05 10:00:00"),
    (4, "retro", "2024-02-20 15:00:00"),
    (5, "demo", "2024-03-12 11:00:00"),
]
T0 = "2024-04-01 00:00:00"


def make_project(tmp: Path, connection: str = CONNECTION) -> Path:
    """connections/cal.yaml, data/cal.db with EVENTS, data/events.csv with a header only."""
    (tmp / "connections").mkdir()
    (tmp / "data").mkdir()
    (tmp / "connections" / "cal.yaml").write_text(connection)
    with sqlite3.connect(tmp / "data" / "cal.db") as db:
        db.execute("CREATE TABLE events (id TEXT PRIMARY KEY, title TEXT NOT NULL, "
                   "start DATETIME, updated_at DATETIME)")
        db.executemany("INSERT INTO events VALUES (?, ?, ?, ?)",
                       [(str(e[0]), *e[1:], T0) for e in EVENTS])
    (tmp / "data" / "events.csv").write_text("id,title,start\n")
    return tmp / "connections"


def sql(tmp: Path, statement: str, *args: object) -> None:
    with sqlite3.connect(tmp / "data" / "cal.db") as db:
        db.execute(statement, args)


def csv_rows(tmp: Path) -> dict[str, dict[str, str]]:
    frame = pd.read_csv(tmp / "data" / "events.csv", dtype=str, keep_default_na=False)
    assert not frame["id"].duplicated().any(), "a record was inserted twice"
    return {r["id"]: r for r in frame.to_dict("records")}


def month(csv_start: str) -> int:
    return pd.Timestamp(csv_start).month


class Cal:
    """The project's Dagster definitions and one persistent instance for all its runs."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.defs = build_definitions(make_project(tmp))
        self.instance = dg.DagsterInstance.ephemeral()

    def run(self, partition: str) -> dg.ExecuteInProcessResult:
        result = dg.materialize(list(self.defs.assets or []), resources=self.defs.resources,
                                partition_key=partition,
                                instance=self.instance, raise_on_error=False)
        assert result.success, result.all_events
        return result

    def plan(self, result: dg.ExecuteInProcessResult) -> dict:
        (mat,) = [m for m in result.asset_materializations_for_node("cal_sync")
                  if m.asset_key.to_user_string() == "cal/plan"]
        return {k: v.value for k, v in mat.metadata.items()}

    def store(self) -> StateStore:
        return StateStore(default_state_url(self.tmp))


@pytest.fixture
def cal(tmp_path: Path) -> Cal:
    return Cal(tmp_path)


def test_partitions_definition_and_single_run_backfill_policy(cal: Cal) -> None:
    (assets,) = cal.defs.assets  # type: ignore[misc]
    pdef = assets.partitions_def
    assert isinstance(pdef, dg.TimeWindowPartitionsDefinition)
    assert pdef.get_partition_keys() == ["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"]
    assert assets.backfill_policy == dg.BackfillPolicy.single_run()
    job = cal.defs.resolve_job_def("cal_job")
    assert job.partitions_def == pdef


def test_each_partition_syncs_only_its_window(cal: Cal) -> None:
    result = cal.run("2024-02-01")
    plan = cal.plan(result)
    assert plan["right_to_insert"] == 2 and plan["window_end"] > plan["window_start"]
    assert set(csv_rows(cal.tmp)) == {"3", "4"}
    cal.run("2024-01-01")
    # 2024-01-31 23:30 UTC is January: windows are half-open and UTC here
    assert set(csv_rows(cal.tmp)) == {"1", "2", "3", "4"}
    seen = cal.store().windows("cal")
    assert [w["window_start"].date().isoformat() for w in seen] == ["2024-01-01", "2024-02-01"]
    assert all(w["status"] == "succeeded" for w in seen)


def test_providers_push_the_window_down(tmp_path: Path) -> None:
    make_project(tmp_path)
    window = (dt.datetime(2024, 2, 1, tzinfo=dt.UTC), dt.datetime(2024, 3, 1, tzinfo=dt.UTC))
    p = SqlProvider.from_connection_string("URL=sqlite:///data/cal.db", base_dir=tmp_path)
    result = p.read(Query("events", key="id", window_field="start"), window=window)
    assert sorted(result.frame.index) == ["3", "4"] and result.complete
    assert sorted(p.lookup(Query("events", key="id"), ["1", "99", "x"]).index) == ["1"]
    p.close()
    (tmp_path / "data" / "events.csv").write_text(
        "id,title,start\n1,a,2024-01-31T23:59:59Z\n2,b,2024-02-01\n3,c,\n4,d,2024-03-01T00:00\n")
    f = FileProvider.from_connection_string("Path=data/events.csv", base_dir=tmp_path)
    result = f.read(Query(key="id", window_field="start"), window=window)
    assert list(result.frame.index) == ["2"] and result.complete


def test_a_record_moved_to_another_month_is_an_update(cal: Cal) -> None:
    for part in ("2024-01-01", "2024-02-01"):
        cal.run(part)
    # event 2 moves from January to February; the January run sees it missing from its window
    sql(cal.tmp, "UPDATE events SET start = '2024-02-14 12:00:00', updated_at = ? WHERE id = 2",
        "2024-04-02 00:00:00")
    plan = cal.plan(cal.run("2024-01-01"))
    assert (plan["right_to_update"], plan["right_to_insert"], plan["right_to_delete"]) == (1, 0, 0)
    assert "moved to another window" in plan["notes"]
    assert plan["left_moved_between_windows"] == 1
    assert month(csv_rows(cal.tmp)["2"]["start"]) == 2
    plan = cal.plan(cal.run("2024-02-01"))  # already in sync
    assert (plan["right_to_update"], plan["right_to_insert"], plan["right_to_delete"]) == (0, 0, 0)

    # event 3 moves from February to March; this time the run of the NEW window comes first
    sql(cal.tmp, "UPDATE events SET start = '2024-03-01 08:00:00', updated_at = ? WHERE id = 3",
        "2024-04-03 00:00:00")
    plan = cal.plan(cal.run("2024-03-01"))
    # event 3 is an update; event 5 (March, never synced before) the only insert
    assert (plan["right_to_update"], plan["right_to_insert"], plan["right_to_delete"]) == (1, 1, 0)
    rows = csv_rows(cal.tmp)
    assert month(rows["3"]["start"]) == 3 and set(rows) == {"1", "2", "3", "4", "5"}
    plan = cal.plan(cal.run("2024-02-01"))
    assert (plan["right_to_update"], plan["right_to_insert"], plan["right_to_delete"]) == (0, 0, 0)


def test_deletes_are_judged_only_inside_the_window(cal: Cal) -> None:
    for part in ("2024-01-01", "2024-02-01"):
        cal.run(part)
    sql(cal.tmp, "DELETE FROM events WHERE id = 4")  # a February event
    plan = cal.plan(cal.run("2024-01-01"))
    assert plan["right_to_delete"] == 0 and "4" in csv_rows(cal.tmp)
    plan = cal.plan(cal.run("2024-02-01"))
    assert plan["right_to_delete"] == 1 and "4" not in csv_rows(cal.tmp)
    assert set(csv_rows(cal.tmp)) == {"1", "2", "3"}


def test_without_lookup_nothing_missing_is_deleted(cal: Cal, monkeypatch) -> None:
    for part in ("2024-01-01", "2024-02-01"):
        cal.run(part)
    sql(cal.tmp, "UPDATE events SET start = '2024-02-14 12:00:00', updated_at = ? WHERE id = 1",
        "2024-04-02 00:00:00")
    monkeypatch.setattr(SqlProvider, "capabilities", SqlProvider.capabilities - {"lookup"})
    plan = cal.plan(cal.run("2024-01-01"))
    assert plan["right_to_delete"] == 0 and "cannot look keys up" in plan["notes"]
    assert "1" in csv_rows(cal.tmp)
    plan = cal.plan(cal.run("2024-02-01"))  # the window it moved to updates it
    assert (plan["right_to_update"], plan["right_to_insert"]) == (1, 0)
    assert month(csv_rows(cal.tmp)["1"]["start"]) == 2


RANGE_TAGS = {"dagster/asset_partition_range_start": "2024-01-01",
              "dagster/asset_partition_range_end": "2024-03-01"}


def test_the_backfill_daemon_makes_one_run_for_three_months(tmp_path: Path) -> None:
    conns = make_project(tmp_path)
    defs_file = tmp_path / "definitions.py"
    defs_file.write_text("from l2sync_dagster.orchestration.definitions import build_definitions"
                         f"\ndefs = build_definitions({str(conns)!r})\n")
    launcher = {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}
    with instance_for_test(overrides={"run_launcher": launcher}) as instance:
        target = PythonFileTarget(python_file=str(defs_file), attribute="defs",
                                  working_directory=str(tmp_path), location_name="l2sync")
        with create_test_daemon_workspace_context(target, instance) as workspace:
            graph = workspace.create_request_context().asset_graph
            backfill = PartitionBackfill.from_asset_partitions(
                backfill_id="three_months", asset_graph=graph,
                partition_names=["2024-01-01", "2024-02-01", "2024-03-01"],
                asset_selection=[k for k in graph.get_all_asset_keys() if k.path[0] == "cal"],
                backfill_timestamp=time.time(), tags={}, dynamic_partitions_store=instance,
                all_partitions=False, title=None, description=None, run_config=None)
            instance.add_backfill(backfill)
            for _ in range(3):  # further iterations must not add runs
                list(execute_backfill_iteration(workspace, logging.getLogger("backfill")))
            (run,) = instance.get_runs()
    assert {k: run.tags.get(k) for k in RANGE_TAGS} == RANGE_TAGS


def test_a_backfill_run_over_three_months_syncs_them_all(cal: Cal) -> None:
    job = cal.defs.resolve_job_def("cal_job")
    result = job.execute_in_process(instance=cal.instance, tags=RANGE_TAGS)
    assert result.success
    assert len(cal.instance.get_runs()) == 1
    assert set(csv_rows(cal.tmp)) == {"1", "2", "3", "4", "5"}
    seen = cal.store().windows("cal")
    assert [w["window_start"].month for w in seen] == [1, 2, 3]
    assert {w["run_id"] for w in seen} == {result.run_id}
    mats = result.asset_materializations_for_node("cal_sync")
    assert {m.partition for m in mats if m.asset_key.to_user_string() == "cal/apply_right"} == \
        {"2024-01-01", "2024-02-01", "2024-03-01"}


def test_the_archive_keeps_each_pairs_window(cal: Cal) -> None:
    cal.run("2024-01-01")
    spec = load_connection(cal.tmp / "connections" / "cal.yaml")
    store = cal.store()
    sync = Sync(spec, store)
    mapping = sync.mapping()
    archive = store.load_archive("cal", mapping, window=(dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                                                         dt.datetime(2024, 2, 1, tzinfo=dt.UTC)))
    assert sorted(archive["left_key"]) == ["1", "2"]
    feb = store.load_archive("cal", mapping, window=(dt.datetime(2024, 2, 1, tzinfo=dt.UTC),
                                                     None), keys={"left": ["2"]})
    assert list(feb["left_key"]) == ["2"]  # found by key, not by window
    sync.close()


def test_a_store_made_before_partitions_gets_the_window_column(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # the archive table as the previous version made it
        conn.execute("CREATE TABLE l2sync_archive (connection VARCHAR(200), pair_id VARCHAR(64), "
                     "left_key TEXT, right_key TEXT, left_hash BIGINT, right_hash BIGINT, "
                     "left_dirty BOOLEAN NOT NULL, right_dirty BOOLEAN NOT NULL, "
                     "left_version TEXT, right_version TEXT, mapping VARCHAR(32), "
                     "values_json TEXT NOT NULL, updated_at DATETIME, "
                     "PRIMARY KEY (connection, pair_id))")
    StateStore(f"sqlite:///{db}").close()
    with sqlite3.connect(db) as conn:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(l2sync_archive)")}
    assert "window_at" in columns


def test_a_sensor_of_a_partitioned_connection_requests_the_current_window(
        tmp_path: Path) -> None:
    conns = make_project(tmp_path, CONNECTION.replace(", end: 2024-05-01", "")
                         + "sensor: {interval: 60}\n")
    defs = build_definitions(conns)
    sensor = defs.resolve_sensor_def("cal_sensor")
    context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(),
                                      repository_def=defs.get_repository_def())
    data = sensor.evaluate_tick(context)
    (request,) = data.run_requests
    (assets,) = defs.assets  # type: ignore[misc]
    assert request.partition_key == assets.partitions_def.get_last_partition_key()
    now = dt.datetime.now(dt.UTC)
    assert request.partition_key == f"{now.year:04d}-{now.month:02d}-01"
