"""End to end against a real MariaDB server (time zone -05:00): a CSV file <-> a MariaDB table
stamped by ``ON UPDATE CURRENT_TIMESTAMP``, with the state store in MariaDB too, through the
CLI; one record's values are over 64 KiB."""

import csv
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.mariadb

L2SYNC = str(Path(sys.executable).with_name("l2sync"))
LONG_NOTE = "Notizen über Kunden. " * 4000  # 84,000 characters: over MariaDB's TEXT

CONNECTION = """
title: CSV <-> MariaDB
direction: bidirectional
left:
  provider: file
  connection_string: "Path=data/customers.csv"
  key: customer_no
right:
  provider: sql
  connection_string: "URL={url};Password=env:MARIADB_TEST_PASSWORD"
  query: customers
  key: id
  modified: updated_at
mapping:
  auto: true
  fields:
    - {{left: vip, right: vip, type: boolean}}
match_on: [customer_no]
conflicts: {{policy: merge, fallback: right_wins}}
deletes: {{propagate: true, max_fraction: 0.5}}
"""

CSV_ROWS = [
    {"customer_no": "C-1", "name": "Ada", "city": "London", "vip": "true", "note": LONG_NOTE},
    {"customer_no": "C-2", "name": "Grace", "city": "New York", "vip": "false", "note": ""},
    {"customer_no": "C-3", "name": "Alan", "city": "Manchester", "vip": "", "note": "hi"},
]


@pytest.fixture
def project(tmp_path, mariadb, mariadb_password_env, monkeypatch):
    database = f"e2e_{uuid.uuid4().hex[:10]}"
    admin = mariadb.admin()
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {database}")
    url = mariadb.url.rsplit("/", 1)[0] + f"/{database}"
    # another application: its sessions keep the server's time zone
    engine = create_engine(mariadb.url_with_password(database))
    with engine.begin() as c:
        c.execute(text(
            "CREATE TABLE customers (id INT AUTO_INCREMENT PRIMARY KEY, customer_no VARCHAR(20) "
            "UNIQUE, name VARCHAR(100) NOT NULL, city VARCHAR(100), vip BOOLEAN, "
            "note MEDIUMTEXT, updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP "
            "ON UPDATE CURRENT_TIMESTAMP)"))
    (tmp_path / "connections").mkdir()
    (tmp_path / "connections" / "maria.yaml").write_text(CONNECTION.format(url=url))
    (tmp_path / "data").mkdir()
    with (tmp_path / "data" / "customers.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(CSV_ROWS[0]))
        w.writeheader()
        w.writerows(CSV_ROWS)
    monkeypatch.setenv("L2SYNC_STATE_URL", mariadb.url_with_password(database))
    yield tmp_path, engine
    engine.dispose()
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE {database}")
    admin.close()


def _run(cwd: Path) -> dict:
    r = subprocess.run([L2SYNC, "run", "maria", "--json"], cwd=cwd, capture_output=True,
                       text=True, env=os.environ.copy(), timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def _csv(tmp: Path) -> dict[str, dict[str, str]]:
    with (tmp / "data" / "customers.csv").open(encoding="utf-8") as f:
        return {r["customer_no"]: r for r in csv.DictReader(f)}


def test_csv_and_mariadb_both_ways_with_state_in_mariadb(project, mariadb):
    tmp, engine = project
    first = _run(tmp)
    assert first["right"]["inserted"] == 3, first
    with engine.connect() as c:
        rows = {r.customer_no: r for r in c.execute(text(
            "SELECT customer_no, vip, note, updated_at, NOW() AS now FROM customers"))}
        archived = c.execute(text(
            "SELECT max(length(values_json)) FROM l2sync_archive WHERE connection = 'maria'"
        )).scalar_one()
    assert rows["C-1"].vip == 1 and rows["C-2"].vip == 0 and rows["C-3"].vip is None
    assert rows["C-1"].note == LONG_NOTE and archived > 65_535
    # our inserts are stamped by the server's clock, in its zone, like the application's
    assert all(abs((r.now - r.updated_at).total_seconds()) < 60 for r in rows.values())

    second = _run(tmp)  # reads our own inserts back: the watermark moves up to their stamps
    assert all(second[s][k] == 0 for s in ("left", "right")
               for k in ("inserted", "updated", "deleted")), second
    with engine.begin() as c:  # the application edits; ON UPDATE stamps it
        c.execute(text("UPDATE customers SET city = 'Arlington', vip = TRUE "
                       "WHERE customer_no = 'C-2'"))
        c.execute(text("INSERT INTO customers (customer_no, name, city) "
                       "VALUES ('C-4', 'Mary', 'Hampton')"))
    third = _run(tmp)
    assert third["left"]["updated"] == 1 and third["left"]["inserted"] == 1, third
    rows_csv = _csv(tmp)
    assert rows_csv["C-2"]["city"] == "Arlington" and rows_csv["C-4"]["name"] == "Mary"
    assert rows_csv["C-2"]["vip"].lower() in ("true", "1")
    assert rows_csv["C-1"]["note"] == LONG_NOTE
    fourth = _run(tmp)
    assert all(fourth[s][k] == 0 for s in ("left", "right")
               for k in ("inserted", "updated", "deleted")), fourth
    r = subprocess.run([L2SYNC, "status", "maria"], cwd=tmp, capture_output=True, text=True,
                       env=os.environ.copy(), timeout=60)
    assert mariadb.password not in r.stdout + r.stderr
