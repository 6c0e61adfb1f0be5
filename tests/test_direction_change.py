"""Switching a one-way connection to both ways: the former target is read in full once, so its
records that were never synced reach the other side (they sit behind its old cursor)."""

import sqlite3
from pathlib import Path

from l2sync_dagster.spec.loader import load_connection
from l2sync_dagster.state.store import StateStore
from l2sync_dagster.sync.runner import Sync

CONNECTION = """\
title: CRM -> web shop
direction: {direction}
left:
  provider: sql
  connection_string: "URL=sqlite:///crm.db"
  query: customers
  key: id
  modified: updated_at
right:
  provider: sql
  connection_string: "URL=sqlite:///shop.db"
  query: customers
  key: id
  modified: updated_at
mapping: {{auto: true, exclude: [id, updated_at]}}
match_on: [email]
conflicts: {{policy: merge, fallback: left_wins}}
"""


def _db(path: Path, rows: list[tuple[str, str]]) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                   "email TEXT, name TEXT, updated_at TIMESTAMP)")
        db.executemany("INSERT INTO customers (email, name, updated_at) "
                       "VALUES (?, ?, '2026-01-01 00:00:00')", rows)


def _emails(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT email FROM customers ORDER BY email")]


def _run(tmp: Path, direction: str) -> dict:
    conn = tmp / "connections" / "crm_shop.yaml"
    conn.write_text(CONNECTION.format(direction=direction))
    sync = Sync(load_connection(conn), StateStore(f"sqlite:///{tmp / 'state.db'}"))
    try:
        report = sync.run()
    finally:
        sync.close()
    assert report.status == "succeeded", report.message
    return report.counts()


def test_one_way_switched_to_bidirectional_reads_the_old_target_in_full(tmp_path: Path) -> None:
    (tmp_path / "connections").mkdir()
    _db(tmp_path / "crm.db", [("ada@example.com", "Ada"), ("alan@example.com", "Alan")])
    _db(tmp_path / "shop.db", [("grace@example.com", "Grace")])  # only in the shop

    _run(tmp_path, "left_to_right")
    assert _emails(tmp_path / "crm.db") == ["ada@example.com", "alan@example.com"]
    assert _emails(tmp_path / "shop.db") == [
        "ada@example.com", "alan@example.com", "grace@example.com"]
    _run(tmp_path, "left_to_right")  # cursors advance past Grace's row on both sides

    counts = _run(tmp_path, "bidirectional")
    assert _emails(tmp_path / "crm.db") == [
        "ada@example.com", "alan@example.com", "grace@example.com"]
    assert counts["left"]["inserted"] == 1 and counts["right"]["inserted"] == 0

    again = _run(tmp_path, "bidirectional")
    assert again["left"]["inserted"] == 0 and again["right"]["inserted"] == 0
