"""The state store: archive of synced pairs, cursors, conflicts, runs, locks and the journal of
inserts in flight. SQLAlchemy; a SQLite file by default, PostgreSQL in production.

Time-partitioned connections: every archive row keeps ``window_at``, the agreed value of the
connection's window field (UTC), so that a windowed run loads only the pairs of its window (plus
the pairs whose keys it read); ``l2sync_window`` lists the windows that runs have synced.

The parts: ``tables`` (schema and upgrades), ``archive`` (pairs and the insert journal),
``cursors``, ``runs`` (run log, conflicts, windows), ``lock``.
"""

import os
from pathlib import Path
from typing import Any

from sqlalchemy import (
    create_engine,
    delete,
    event,
)
from sqlalchemy.engine import Engine

from l2sync_dagster.providers.sql_dialect import missing_driver_hint, prepare_engine
from l2sync_dagster.state.archive import ArchiveStore
from l2sync_dagster.state.cursors import CursorStore
from l2sync_dagster.state.lock import ConnectionLocked, LockStore
from l2sync_dagster.state.runs import RunLog
from l2sync_dagster.state.tables import (
    STATE_URL_ENV,
    add_key_indexes,
    add_missing_columns,
    archive_table,
    conflict_table,
    created_table,
    cursor_table,
    metadata,
    pending_table,
    run_table,
    window_table,
)

__all__ = ["STATE_URL_ENV", "ConnectionLocked", "StateStore", "default_state_url"]


def default_state_url(project_dir: Path) -> str:
    """``L2SYNC_STATE_URL`` if set, else the SQLite file ``.l2sync/state.db`` in the project."""
    url = os.environ.get(STATE_URL_ENV)
    if url:
        return url
    path = Path(project_dir) / ".l2sync" / "state.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _connect_args(url: str) -> dict[str, Any]:
    """psycopg 3 prepares a statement after 5 runs and keeps its generic plan; for the store's
    tables that plan is made while they are small (a sequential scan) and then makes every
    commit O(table size). Plan each statement afresh instead."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() == "postgresql" and u.get_driver_name() in ("psycopg", "psycopg_async"):
        return {"prepare_threshold": None}
    return {}


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class StateStore(ArchiveStore, CursorStore, RunLog, LockStore):
    """Archive, cursors, conflicts, runs, locks and the insert journal of every connection."""

    def __init__(self, url: str | None = None, *, engine: Engine | None = None) -> None:
        if engine is None:
            if url is None:
                raise ValueError("StateStore needs a URL or an engine")
            try:
                # hide_parameters: an error must not echo every record's values
                engine = create_engine(url, connect_args=_connect_args(url),
                                       hide_parameters=True)
            except ImportError as exc:
                from sqlalchemy.engine import make_url

                raise ImportError(
                    f"state store: {missing_driver_hint(make_url(url)) or exc}") from None
            if engine.dialect.name == "sqlite":
                event.listen(engine, "connect", _sqlite_pragmas)
            prepare_engine(engine)
        self.engine = engine
        metadata.create_all(engine)
        add_missing_columns(engine)
        add_key_indexes(engine)

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()

    def reset(self, connection: str, history: bool = False) -> None:
        """Forget a connection's archive, cursors and journal (and its runs and conflicts
        with ``history``): the next run is a first sync again."""
        tables = [archive_table, cursor_table, pending_table, window_table, created_table]
        if history:
            tables += [run_table, conflict_table]
        with self.engine.begin() as conn:
            for t in tables:
                conn.execute(delete(t).where(t.c.connection == connection))
