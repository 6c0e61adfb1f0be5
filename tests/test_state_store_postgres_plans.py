"""The PostgreSQL state store answers a run's keyed archive loads from indexes: the archive's
key columns have hash indexes, and a run that archives many pairs refreshes the planner's
statistics, so that the next run does not scan every pair of the connection (before: 160 ms
for 10,000 keys among 300,000 pairs, growing with the archive)."""

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from postgres_server import PostgresServer
from sqlalchemy import create_engine, text

from l2sync_dagster.spec.model import (
    ConnectionSpec,
    DeleteSpec,
    EntitySpec,
    FieldPairSpec,
    MappingSpec,
)
from l2sync_dagster.state.store import StateStore
from l2sync_dagster.sync.runner import Sync

pytestmark = pytest.mark.postgres

ROWS = 3000


@pytest.fixture
def state_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh database for the state store alone (its statistics are this test's)."""
    yield postgres.new_database("plans")


def _spec(tmp: Path) -> ConnectionSpec:
    with sqlite3.connect(tmp / "source.db") as db:
        db.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT)")
        db.executemany("INSERT INTO people VALUES (?, ?)",
                       [(i, f"person {i}") for i in range(ROWS)])
        db.execute("CREATE TABLE people_copy (id BIGINT PRIMARY KEY, name TEXT)")
    return ConnectionSpec(
        name="people", path=tmp / "connections" / "people.yaml", project_dir=tmp,
        direction="left_to_right",
        left=EntitySpec(provider="sql", connection_string="URL=sqlite:///source.db",
                        query="people", key="id"),
        right=EntitySpec(provider="sql", connection_string="URL=sqlite:///source.db",
                         query="people_copy", key="id"),
        mapping=MappingSpec(auto=True, fields=[FieldPairSpec(left="id", right="id")]),
        deletes=DeleteSpec(propagate=True))


def _plan(store: StateStore, sql: str) -> str:
    with store.engine.connect() as conn:
        return "\n".join(r[0] for r in conn.execute(text(f"EXPLAIN {sql}")))


def test_a_large_run_leaves_statistics_and_keyed_loads_use_the_key_indexes(
        tmp_path: Path, state_url: str) -> None:
    store = StateStore(state_url)
    try:
        report = Sync(_spec(tmp_path), store).run()
        assert report.status == "succeeded" and store.archive_size("people") == ROWS
        with store.engine.connect() as conn:
            analyzed, tuples = conn.execute(text(
                "SELECT s.last_analyze IS NOT NULL, c.reltuples FROM pg_stat_user_tables s "
                "JOIN pg_class c ON c.oid = s.relid WHERE s.relname = 'l2sync_archive'")).one()
        assert analyzed and tuples == ROWS
        keys = ", ".join(f"'{i}'" for i in range(0, ROWS, 300))
        for side in ("left", "right"):
            plan = _plan(store, "SELECT pair_id FROM l2sync_archive WHERE connection = 'people'"
                                f" AND {side}_key = ANY(ARRAY[{keys}])")
            assert f"ix_l2sync_archive_{side}_key_hash" in plan, plan
        ids = ", ".join(f"'{p}'" for p in store.archived_keys("people", "left")[:10])
        plan = _plan(store, "SELECT 1 FROM l2sync_archive WHERE connection = 'people' AND "
                            f"left_key = ANY(ARRAY[{ids}])")
        assert "Seq Scan" not in plan, plan
    finally:
        store.close()


def test_a_small_run_leaves_statistics_to_autovacuum(
        tmp_path: Path, state_url: str, postgres: PostgresServer) -> None:
    """A run of a few changes against a large archive does not analyze it every time."""
    store = StateStore(state_url)
    try:
        spec = _spec(tmp_path)
        Sync(spec, store).run()
        with psycopg.connect(host="127.0.0.1", port=postgres.port, user="postgres",
                             password=postgres.superuser_password,
                             dbname=state_url.rsplit("/", 1)[1], autocommit=True) as conn:
            conn.execute("SELECT pg_stat_reset()")
        with sqlite3.connect(tmp_path / "source.db") as db:
            db.execute("UPDATE people SET name = 'changed' WHERE id < 50")
        assert Sync(spec, store).run().status == "succeeded"
        with store.engine.connect() as conn:
            analyzed = conn.execute(text(
                "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
                "WHERE relname = 'l2sync_archive'")).scalar_one()
        assert not analyzed
    finally:
        store.close()


def test_opening_a_store_again_keeps_one_set_of_indexes(state_url: str) -> None:
    StateStore(state_url).close()
    store = StateStore(state_url)
    try:
        engine = create_engine(state_url)
        with engine.connect() as conn:
            names = sorted(conn.execute(text(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'l2sync_archive'")).scalars())
        engine.dispose()
        assert names == ["ix_l2sync_archive_left_key_hash", "ix_l2sync_archive_right_key_hash",
                         "l2sync_archive_pkey"]
    finally:
        store.close()


def test_a_table_held_by_another_session_does_not_fail_or_hold_up_the_run(
        tmp_path: Path, state_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A VACUUM (or anything holding the archive) when the run ends: the statistics are not
    refreshed, the run has succeeded all the same and saved its cursors."""
    store = StateStore(state_url)
    holder = create_engine(state_url)
    try:
        with holder.connect() as other:
            other.execute(text("LOCK TABLE l2sync_archive IN SHARE UPDATE EXCLUSIVE MODE"))
            report = Sync(_spec(tmp_path), store).run()
            other.rollback()
        assert report.status == "succeeded" and store.archive_size("people") == ROWS
        assert "could not refresh the state store's statistics: LockNotAvailable" in caplog.text
        with store.engine.connect() as conn:
            assert not conn.execute(text(
                "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
                "WHERE relname = 'l2sync_archive'")).scalar_one()
    finally:
        holder.dispose()
        store.close()
