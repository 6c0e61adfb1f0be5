"""`make demo` end to end in a throw-away project: the offline demo, then the Microsoft 365
scenarios against the sandbox started in-process."""

import shutil
import sqlite3
from pathlib import Path

import pytest
from project_helpers import REPO

from l2sync_dagster.demo.__main__ import main


def test_the_whole_demo_runs_and_leaves_the_sandbox_data_for_make_ui(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conns = tmp_path / "connections"
    shutil.copytree(REPO / "connections", conns)
    assert main([str(conns)]) == 0
    out = capsys.readouterr().out
    assert "Zoe in the mailbox: True; David in the mailbox: False" in out
    assert "SharePoint list Contacts now holds 6 items" in out
    assert "Dynamics now holds 25 accounts" in out
    # the directory into 200 mailboxes by the command line, then by Dagster in runs of 50
    assert "200 of 200 mailboxes synced: 0 inserted, 200 updated, 0 deleted" in out
    assert out.count(", 50/50 synced, right side +0 ~50 -0 !0") == 4
    assert "200 of 200 partitions materialized" in out
    assert "Colleague9 is in Sales" in out
    # the merged account: the phone from the list and the city from Dynamics on both sides
    merged = [line for line in out.splitlines() if "Dynamics phone=+1 555 0100" in line]
    assert merged and "city=Porto" in merged[0] and "City=Porto" in merged[0]
    with sqlite3.connect(tmp_path / "data" / "demo" / "exchange.db") as db:
        (n,) = db.execute("SELECT count(*) FROM contacts").fetchone()
        (title,) = db.execute("SELECT job_title FROM contacts WHERE first_name = 'Ben'").fetchone()
    assert n == 12 and title == "Head of Purchasing"
    saved = {p.name for p in (tmp_path / ".l2sync" / "sandbox").iterdir()}
    assert {"ews.json", "graph.json", "dataverse.json"} <= saved
