"""Every statement the state store sends for a set of keys (``IN (...)`` on SQLite and
MariaDB, ``= ANY(array)`` on PostgreSQL) is answered from the index of that key column, on
both state-store backends, for incremental runs one way and both ways: its cost follows the
keys, not the archive. Before: ``partner_keys``' ``right_key IS NOT NULL`` made SQLite walk
the right-key index over every pair of the connection (240 ms per 500 keys at 200,000 pairs).

The statements are the ones the runs really send (captured from the engine), explained with
their own parameters by each database's planner."""

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from postgres_server import PostgresServer
from sqlalchemy import event, text

from l2sync_dagster.spec.model import (
    ConnectionSpec,
    DeleteSpec,
    EntitySpec,
    FieldPairSpec,
    MappingSpec,
)
from l2sync_dagster.state.store import StateStore
from l2sync_dagster.sync.runner import Sync

ROWS = 3000
STATE_TABLES = ("l2sync_archive", "l2sync_pending", "l2sync_created")
#: the key column of a keyed condition, as SQLAlchemy renders it
_IN = re.compile(r"(\w+)\.(\w+) IN \(")
_ANY = re.compile(r"(\w+)\.(\w+) = ANY \(")


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    yield postgres.new_database("keyed")


def _spec(tmp: Path, direction: str) -> ConnectionSpec:
    with sqlite3.connect(tmp / "data.db") as db:
        for table in ("people", "people_copy"):
            db.execute(f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, name TEXT, "
                       "updated_at TIMESTAMP)")
        db.executemany("INSERT INTO people VALUES (?, ?, '2026-01-01 00:00:00')",
                       [(i, f"person {i}") for i in range(ROWS)])
    tables = ("people_copy", "people") if direction == "right_to_left" else ("people",
                                                                             "people_copy")
    side = {"connection_string": "URL=sqlite:///data.db", "key": "id",
            "modified": "updated_at"}
    return ConnectionSpec(
        name="people", path=tmp / "connections" / "people.yaml", project_dir=tmp,
        direction=direction,  # type: ignore[arg-type]
        # the source is always the seeded table ``people``
        left=EntitySpec(provider="sql", query=tables[0], **side),
        right=EntitySpec(provider="sql", query=tables[1], **side),
        mapping=MappingSpec(fields=[FieldPairSpec(left="id", right="id"),
                                    FieldPairSpec(left="name", right="name")]),
        deletes=DeleteSpec(propagate=True))


def _edit(tmp: Path, table: str, stamp: str, new_id: int, every: int) -> None:
    """Changes a run must follow: names edited, a record deleted, one added."""
    with sqlite3.connect(tmp / "data.db") as db:
        db.execute(f"UPDATE {table} SET name = name || ' (edited)', updated_at = ? "
                   "WHERE id % ? = 7", (stamp, every))
        db.execute(f"DELETE FROM {table} WHERE id = 11")
        db.execute(f"INSERT INTO {table} VALUES (?, 'new', ?)", (new_id, stamp))


def _captured(store: StateStore, run: Any) -> list[tuple[str, Any]]:
    """The statements (with parameters) ``run()`` sends to the state store."""
    sent: list[tuple[str, Any]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        if not executemany:
            sent.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    return sent


def _keyed(sent: list[tuple[str, Any]], pattern: re.Pattern) -> list[tuple[str, Any, str]]:
    """The statements on the state tables with a condition on a set of keys, and its column."""
    out = []
    for statement, params in sent:
        match = pattern.search(statement)
        if match and match.group(1) in STATE_TABLES and not statement.startswith("INSERT"):
            out.append((statement, params, match.group(2)))
    return out


def _explain(store: StateStore, statement: str, params: Any) -> str:
    """The plan of ``statement``. On PostgreSQL with sequential scans priced out: at a few
    thousand pairs a scan is the cheaper plan, so the question asked is whether an index can
    answer the condition at all (the sizes where the planner takes it are
    test_state_store_postgres_plans.py's)."""
    sqlite = store.engine.dialect.name == "sqlite"
    prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
    with store.engine.connect() as conn:
        if not sqlite:
            conn.exec_driver_sql("SET enable_seqscan = off")
        rows = conn.exec_driver_sql(prefix + statement, params).all()
        conn.rollback()
    return "\n".join(str(r[-1]) for r in rows)


@pytest.mark.parametrize("direction", ["left_to_right", "right_to_left", "bidirectional"])
def test_every_keyed_statement_of_an_incremental_run_uses_that_keys_index(
        tmp_path: Path, state_url: str, direction: str) -> None:
    store = StateStore(state_url)
    try:
        spec = _spec(tmp_path, direction)
        assert Sync(spec, store).run().status == "succeeded"
        _edit(tmp_path, "people", "2026-02-01 00:00:00", ROWS + 1, 100)
        if direction == "bidirectional":
            _edit(tmp_path, "people_copy", "2026-02-02 00:00:00", ROWS + 2, 101)
        reports = []
        sent = _captured(store, lambda: reports.append(Sync(spec, store).run()))
        assert reports[0].status == "succeeded", reports[0].counts()
        target = "left" if direction == "right_to_left" else "right"
        assert reports[0].counts()[target]["updated"] >= ROWS // 100 - 1
        pattern = _IN if store.engine.dialect.name == "sqlite" else _ANY
        keyed = _keyed(sent, pattern)
        columns = {c for _, _, c in keyed}
        # the run did look pairs up by key (else this test would prove nothing)
        wanted = {"pair_id"} if direction == "bidirectional" else {
            "pair_id", "right_key" if direction == "right_to_left" else "left_key"}
        assert wanted <= columns, columns
        for statement, params, column in keyed:
            plan = _explain(store, statement, params)
            if store.engine.dialect.name == "sqlite":
                assert f"{column}=?" in plan, f"{statement}\n-> {plan}"
            else:
                assert "Seq Scan" not in plan, f"{statement}\n-> {plan}"
    finally:
        store.close()


def test_partner_keys_skips_pairs_without_a_partner(tmp_path: Path, state_url: str) -> None:
    """A pair whose other record is gone (its key None) has no partner to name."""
    store = StateStore(state_url)
    try:
        assert Sync(_spec(tmp_path, "left_to_right"), store).run().status == "succeeded"
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE l2sync_archive SET right_key = NULL "
                              "WHERE connection = 'people' AND left_key IN ('1', '2')"))
        partners = store.partner_keys("people", "left", ["1", "2", "3", "nope"])
        assert partners == ["3"]
    finally:
        store.close()


def test_new_pairs_are_archived_without_a_delete_and_updated_ones_replaced(
        tmp_path: Path, state_url: str) -> None:
    """The pairs a plan makes have ids no archive row holds: recording them deletes nothing
    first (a DELETE per batch that finds nothing, on PostgreSQL a scan of the connection's
    pairs); pairs the archive holds are still replaced, one row each."""
    store = StateStore(state_url)
    try:
        spec = _spec(tmp_path, "left_to_right")
        reports = []
        sent = _captured(store, lambda: reports.append(Sync(spec, store).run()))
        assert reports[0].status == "succeeded"
        deletes = [s for s, _ in sent if s.startswith("DELETE FROM l2sync_archive")]
        assert deletes == []
        _edit(tmp_path, "people", "2026-02-01 00:00:00", ROWS + 1, 100)
        sent = _captured(store, lambda: reports.append(Sync(spec, store).run()))
        assert reports[1].status == "succeeded", reports[1].counts()
        assert any(s.startswith("DELETE FROM l2sync_archive") for s, _ in sent)
        with store.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT left_key, values_json FROM l2sync_archive "
                "WHERE connection = 'people'")).all()
        by_key = {k: v for k, v in rows}
        # one record deleted (its pair forgotten), one added
        assert len(rows) == len(by_key) == ROWS and "11" not in by_key and str(ROWS + 1) in by_key
        assert "(edited)" in by_key["7"] and "(edited)" not in by_key["8"]
    finally:
        store.close()
