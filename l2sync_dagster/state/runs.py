"""The run log: runs with their counts and messages (secrets masked), the conflicts they met,
and the windows partitioned runs synced."""

import json
import socket
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine

from l2sync_dagster.contract import utc
from l2sync_dagster.engine.plan import Conflict
from l2sync_dagster.spec.masking import mask_secrets
from l2sync_dagster.state.lock import pid_alive
from l2sync_dagster.state.tables import (
    as_aware,
    conflict_table,
    lock_table,
    run_table,
    to_json,
    utc_now,
    window_table,
)


class RunLog:
    """Runs, conflicts and synced windows."""

    engine: Engine

    # --- windows of time-partitioned connections -------------------------------------------
    def record_windows(self, connection: str, windows: Sequence[tuple[Any, Any]], run_id: str,
                       status: str, counts: dict[str, Any] | None = None) -> None:
        """Remember that a run synced these windows (the latest run per window is kept)."""
        t = window_table
        now = utc_now()
        with self.engine.begin() as conn:
            for start, end in windows:
                s, e = utc(start), utc(end)
                conn.execute(delete(t).where(t.c.connection == connection,
                                             t.c.window_start == s, t.c.window_end == e))
                conn.execute(insert(t).values(connection=connection, window_start=s,
                                              window_end=e, run_id=run_id, status=status,
                                              synced_at=now, counts_json=to_json(counts or {})))

    def windows(self, connection: str) -> list[dict[str, Any]]:
        """The windows runs have synced, oldest window first."""
        t = window_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.connection == connection)
                                .order_by(t.c.window_start)).mappings().all()
        out = []
        for r in rows:
            d = dict(r)
            for k in ("window_start", "window_end", "synced_at"):
                d[k] = as_aware(d[k])
            d["counts"] = json.loads(d.pop("counts_json") or "{}")
            out.append(d)
        return out

    # --- conflicts and runs ----------------------------------------------------------------
    def record_conflicts(self, connection: str, run_id: str, conflicts: Sequence[Conflict]
                         ) -> None:
        """Keep every conflict with both sides' values, whatever the policy did."""
        if not conflicts:
            return
        now = utc_now()
        with self.engine.begin() as conn:
            conn.execute(insert(conflict_table), [
                {"connection": connection, "run_id": run_id, "pair_id": c.pair_id,
                 "kind": c.kind, "left_key": c.left_key, "right_key": c.right_key,
                 "fields_json": to_json(c.fields), "base_json": to_json(c.base),
                 "left_json": to_json(c.left), "right_json": to_json(c.right),
                 "resolution": c.resolution, "recorded_at": now}
                for c in conflicts
            ])

    def conflicts(self, connection: str, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent conflicts of a connection."""
        t = conflict_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.connection == connection)
                                .order_by(t.c.id.desc()).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    def start_run(self, connection: str, run_id: str) -> None:
        """Record that a run started (a retried attempt of the same run starts it again)."""
        with self.engine.begin() as conn:
            conn.execute(delete(run_table).where(run_table.c.run_id == run_id))
            conn.execute(insert(run_table).values(run_id=run_id, connection=connection,
                                                  started_at=utc_now(), status="running"))

    def finish_run(self, run_id: str, status: str, counts: dict[str, Any] | None = None,
                   message: str | None = None) -> None:
        """Record how a run ended (secrets in the message or the counts' notes masked)."""
        with self.engine.begin() as conn:
            conn.execute(update(run_table).where(run_table.c.run_id == run_id).values(
                finished_at=utc_now(), status=status,
                counts_json=mask_secrets(to_json(counts or {})),
                message=None if message is None else mask_secrets(message)))

    def runs(self, connection: str, limit: int = 10) -> list[dict[str, Any]]:
        """The most recent runs of a connection, newest first."""
        t = run_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.connection == connection)
                                .order_by(t.c.started_at.desc()).limit(limit)).mappings().all()
            held = conn.execute(select(lock_table).where(
                lock_table.c.connection == connection)).mappings().first()
        out = []
        for r in rows:
            d = dict(r)
            d["counts"] = json.loads(d.pop("counts_json") or "{}")
            if d["status"] == "running" and not _running(held, d["run_id"]):
                # its process is gone (killed, or the machine went down): say so
                d["status"] = "interrupted"
            out.append(d)
        return out


def _running(lock: Any, run_id: str) -> bool:
    """True when ``lock`` (a lock row or None) shows run ``run_id`` still going: it holds the
    lock and its process lives (or lives on another host, which this one cannot ask)."""
    if lock is None or lock["run_id"] != run_id:
        return False
    return lock["host"] != socket.gethostname() or pid_alive(int(lock["pid"]))
