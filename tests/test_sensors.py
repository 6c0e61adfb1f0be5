"""Sensors: probes of both sides decide whether a run is requested; the cursor lives in Dagster.

The demo connection (a CSV file and a SQLite table) gets ``sensor:``; ticks are evaluated as
the Dagster daemon would (``evaluate_tick`` with the cursor of the previous tick).
"""

import os
import sqlite3
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.sensor_definition import SensorExecutionData
from project_helpers import demo_project

from l2sync_dagster.orchestration.definitions import build_definitions
from l2sync_dagster.orchestration.sensors import CHANGED_TAG
from l2sync_dagster.providers.base import Provider, Query, can_probe
from l2sync_dagster.providers.file import FileProvider
from l2sync_dagster.providers.sql import SqlProvider

SENSOR = "customers_demo_sensor"


class Ticks:
    """Evaluates the connection's sensor tick after tick, carrying the cursor like the daemon."""

    def __init__(self, conns: Path) -> None:
        self.defs = build_definitions(conns)
        self.sensor = self.defs.resolve_sensor_def(SENSOR)
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor: str | None = None

    def tick(self) -> SensorExecutionData:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor)
        data = self.sensor.evaluate_tick(context)
        if data.cursor is not None:
            self.cursor = data.cursor
        return data


def _with_sensor(conns: Path, sensor: str = "{interval: 30}") -> None:
    path = conns / "customers_demo.yaml"
    path.write_text(path.read_text() + f"sensor: {sensor}\n")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    conns = demo_project(tmp_path)
    _with_sensor(conns)
    return conns


def _touch_csv(project: Path) -> None:
    csv_path = project.parent / "data" / "demo" / "customers.csv"
    stat = csv_path.stat()
    with csv_path.open("a", encoding="utf-8") as f:
        f.write("C-1009,Katherine Johnson,kj@example.com,,Hampton,2024-02-02\n")
    os.utime(csv_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def _edit_db(project: Path) -> None:
    with sqlite3.connect(project.parent / "data" / "demo" / "crm.db") as db:
        db.execute("UPDATE customers SET city = 'Bonn', updated_at = '2026-02-01 00:00:00' "
                   "WHERE id = 1")


def test_sensor_is_defined_with_its_interval(project: Path) -> None:
    sensor = build_definitions(project).resolve_sensor_def(SENSOR)
    assert sensor.minimum_interval_seconds == 30
    assert sensor.job_name == "customers_demo_job"


def test_a_run_is_requested_only_when_a_side_changed(project: Path) -> None:
    ticks = Ticks(project)
    first = ticks.tick()  # nothing proves the sides are in sync yet
    assert len(first.run_requests) == 1 and first.run_requests[0].run_key
    first_cursor = ticks.cursor
    assert first_cursor is not None and '"left"' in first_cursor and '"right"' in first_cursor

    quiet = ticks.tick()
    assert not quiet.run_requests and "no change" in quiet.skip_message
    assert ticks.cursor == first_cursor

    _touch_csv(project)
    changed = ticks.tick()
    (req,) = changed.run_requests
    assert req.run_key != first.run_requests[0].run_key
    assert req.tags[CHANGED_TAG] == "left" and req.tags["l2sync/connection"] == "customers_demo"
    assert not ticks.tick().run_requests

    _edit_db(project)
    (req,) = ticks.tick().run_requests
    assert req.tags[CHANGED_TAG] == "right"
    assert not ticks.tick().run_requests


def test_a_failing_probe_is_a_skip_reason_and_keeps_the_cursor(project: Path) -> None:
    ticks = Ticks(project)
    ticks.tick()
    cursor = ticks.cursor
    db = project.parent / "data" / "demo" / "crm.db"
    db.rename(db.with_suffix(".gone"))
    data = ticks.tick()
    assert not data.run_requests
    assert "right side (sql) probe failed" in data.skip_message
    assert "does not exist" in data.skip_message
    assert ticks.cursor == cursor
    db.with_suffix(".gone").rename(db)
    assert not ticks.tick().run_requests  # back as it was: no change, no run


def test_a_provider_without_probe_cannot_be_watched(project: Path, monkeypatch) -> None:
    monkeypatch.delattr(FileProvider, "probe")
    assert not can_probe(FileProvider(project.parent / "data" / "demo" / "customers.csv"))
    data = Ticks(project).tick()
    assert not data.run_requests
    assert "left side: the file provider cannot be probed" in data.skip_message


def test_probe_errors_never_show_secrets(project: Path, monkeypatch) -> None:
    path = project / "customers_demo.yaml"
    path.write_text(path.read_text().replace(
        "URL=sqlite:///data/demo/crm.db",
        "URL=postgresql://sync@127.0.0.1:9/crm;Password=env:CRM_PW"))
    monkeypatch.setenv("CRM_PW", "s3cret-Value")

    def leaky(self: SqlProvider, query: Query, cursor: str | None = None) -> str:
        raise RuntimeError("driver said: login with s3cret-Value refused")

    monkeypatch.setattr(SqlProvider, "probe", leaky)
    data = Ticks(project).tick()
    assert "login with *** refused" in data.skip_message
    assert "s3cret" not in data.skip_message


def test_a_hanging_probe_is_cut_off(tmp_path: Path, monkeypatch) -> None:
    conns = demo_project(tmp_path)
    _with_sensor(conns, "{interval: 30, timeout: 0.5}")

    def slow(self: FileProvider, query: Query, cursor: str | None = None) -> str:
        time.sleep(3)
        return "late"

    monkeypatch.setattr(FileProvider, "probe", slow)
    started = time.perf_counter()
    data = Ticks(conns).tick()
    assert time.perf_counter() - started < 2.5
    assert "longer than 0.5 s" in data.skip_message


def test_sql_probe_is_count_and_max_modified_or_a_digest(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT, m TIMESTAMP)")
        conn.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO a VALUES (1, 'x', '2024-01-01 00:00:00')")
        conn.execute("INSERT INTO b VALUES (1, 'x')")
    p = SqlProvider(f"sqlite:///{db}")
    assert isinstance(p, Provider)
    qa, qb = Query("a", modified="m"), Query("b")
    before = (p.probe(qa), p.probe(qb))
    assert '"count": 1' in before[0] and "2024-01-01" in before[0]
    assert (p.probe(qa), p.probe(qb)) == before
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE a SET v = 'y', m = '2024-01-02 00:00:00'")
        conn.execute("UPDATE b SET v = 'y'")  # no modified column: only a digest sees this
    after = (p.probe(qa), p.probe(qb))
    assert after[0] != before[0] and after[1] != before[1]
    select = Query("SELECT id, v, m FROM a", key="id", modified="m")
    assert p.probe(select) == after[0]  # a SELECT is probed as a subquery
    p.close()


def test_file_probe_is_mtime_and_size(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    f = FileProvider(path)
    assert '"missing": true' in f.probe(Query(key="id"))
    path.write_text("id\n1\n")
    first = f.probe(Query(key="id"))
    st = path.stat()
    assert first == f'{{"mtime_ns": {st.st_mtime_ns}, "size": {st.st_size}}}'
    path.write_text("id\n2\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert f.probe(Query(key="id")) != first
