"""End to end against a real PostgreSQL server: a CSV file <-> a PostgreSQL table, with the
state store in PostgreSQL too, through the CLI and through Dagster."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import create_engine, text

from l2sync_dagster import demo
from l2sync_dagster.orchestration.definitions import build_definitions

L2SYNC = str(Path(sys.executable).with_name("l2sync"))

CONNECTION = """
title: CSV <-> PostgreSQL
direction: bidirectional
left:
  provider: file
  connection_string: "Path=data/demo/customers.csv"
  key: customer_no
right:
  provider: sql
  connection_string: "URL={url};Password=env:PG_TEST_PASSWORD"
  query: {table}
  key: id
  modified: updated_at
mapping:
  auto: true
  fields:
    - {{left: email, right: email_address}}
    - {{left: since, right: customer_since, type: date}}
match_on: [email]
conflicts: {{policy: merge, fallback: right_wins}}
deletes: {{propagate: true, max_fraction: 0.5}}
"""


@pytest.fixture
def project(tmp_path, postgres, pg_password_env, monkeypatch, request):
    table = f"customers_{request.node.name[-12:].strip('[]_').lower()}"
    engine = create_engine(postgres.url.replace("sync@", f"sync:{postgres.password}@"))
    with engine.begin() as c:
        c.execute(text(f'DROP TABLE IF EXISTS "{table}"'))
        c.execute(
            text(
                f'CREATE TABLE "{table}" (id SERIAL PRIMARY KEY, customer_no TEXT UNIQUE, '
                "name TEXT NOT NULL, email_address TEXT, phone TEXT, city TEXT, "
                "customer_since DATE, updated_at TIMESTAMPTZ)"
            )
        )
        c.execute(
            text(
                f'INSERT INTO "{table}" (customer_no, name, email_address, phone, city, '
                "customer_since, updated_at) VALUES ('C-1002', 'Grace Hopper', "
                "'grace@example.com', '+1 212 0000', 'New York', '2020-11-15', now())"
            )
        )
    (tmp_path / "connections").mkdir()
    (tmp_path / "connections" / "pg.yaml").write_text(
        CONNECTION.format(url=postgres.url, table=table)
    )
    demo._seed(tmp_path)
    state_url = postgres.url.replace("sync@", f"sync:{postgres.password}@")
    monkeypatch.setenv("L2SYNC_STATE_URL", state_url)
    yield tmp_path, engine, table
    with engine.begin() as c:
        c.execute(text("DELETE FROM l2sync_archive WHERE connection = 'pg'"))
        c.execute(text("DELETE FROM l2sync_cursor WHERE connection = 'pg'"))
    engine.dispose()


def _run(cwd: Path) -> dict:
    r = subprocess.run(
        [L2SYNC, "run", "pg", "--json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_csv_and_postgres_both_ways_with_state_in_postgres(project):
    tmp, engine, table = project
    first = _run(tmp)
    assert first["right"]["inserted"] == 3 and first["left"]["inserted"] == 0
    assert first["conflicts"] == 1  # Grace's phone differs; merge without a base: CRM wins
    with engine.connect() as c:
        assert c.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one() == 4
        assert (
            c.execute(
                text("SELECT count(*) FROM l2sync_archive WHERE connection = 'pg'")
            ).scalar_one()
            == 4
        )
        since = c.execute(
            text(f"SELECT customer_since FROM \"{table}\" WHERE customer_no = 'C-1001'")
        ).scalar_one()
        assert str(since) == "2021-03-01"
    rows = {r["customer_no"]: r for r in csv.DictReader((tmp / "data/demo/customers.csv").open())}
    assert rows["C-1002"]["phone"] == "+1 212 0000"

    with engine.begin() as c:  # an edit in PostgreSQL, with its timestamp
        c.execute(
            text(
                f"UPDATE \"{table}\" SET city = 'Arlington', updated_at = now() "
                "WHERE customer_no = 'C-1004'"
            )
        )
        c.execute(
            text(
                f'INSERT INTO "{table}" (customer_no, name, updated_at) '
                "VALUES ('C-3000', 'Mary Jackson', now())"
            )
        )
    second = _run(tmp)
    assert second["left"]["updated"] == 1 and second["left"]["inserted"] == 1
    rows = {r["customer_no"]: r for r in csv.DictReader((tmp / "data/demo/customers.csv").open())}
    assert rows["C-1004"]["city"] == "Arlington" and rows["C-3000"]["name"] == "Mary Jackson"
    third = _run(tmp)
    assert all(
        third[s][k] == 0 for s in ("left", "right") for k in ("inserted", "updated", "deleted")
    )


def test_dagster_materialize_against_postgres(project, postgres):
    tmp, engine, table = project
    defs = build_definitions(tmp / "connections")
    result = dg.materialize(list(defs.assets or []), resources=defs.resources,
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    # the secret is in the environment only: never in events, metadata or logs
    for event in result.all_events:
        assert postgres.password not in repr(event)
    with engine.connect() as c:
        assert c.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one() == 4
