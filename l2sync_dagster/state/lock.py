"""The per-connection lock: fail fast naming the holder, take over from a dead process on
this host."""

import os
import socket
from typing import Any

from sqlalchemy import (
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from l2sync_dagster.state.tables import (
    lock_table,
    utc_now,
)


class ConnectionLocked(RuntimeError):
    """Another run of the same connection holds the lock."""


class LockStore:
    """Locks of connections."""

    engine: Engine

    # --- lock ----------------------------------------------------------------------------
    def acquire_lock(self, connection: str, run_id: str) -> None:
        """Take the connection's lock or fail fast naming the run that holds it.

        A lock left by a dead process on this host is taken over.
        """
        host, pid = socket.gethostname(), os.getpid()
        row = {"connection": connection, "run_id": run_id, "host": host, "pid": pid,
               "acquired_at": utc_now()}
        t = lock_table
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(t).values(**row))
            return
        except IntegrityError:
            pass
        with self.engine.begin() as conn:
            held = conn.execute(select(t).where(t.c.connection == connection)).mappings().first()
            if held is None:
                conn.execute(insert(t).values(**row))
                return
            if held["host"] == host and held["pid"] != pid and not pid_alive(held["pid"]):
                res = conn.execute(update(t).where(t.c.connection == connection,
                                                   t.c.run_id == held["run_id"]).values(**row))
                if res.rowcount == 1:
                    return
            raise ConnectionLocked(
                f"connection {connection} is being synced by run {held['run_id']} "
                f"(pid {held['pid']} on {held['host']}, since {held['acquired_at']}); "
                "wait for it to finish, or if that process is gone run "
                f"`l2sync unlock {connection}`"
            )

    def release_lock(self, connection: str, run_id: str) -> None:
        """Give the lock back (only if this run holds it)."""
        with self.engine.begin() as conn:
            conn.execute(delete(lock_table).where(lock_table.c.connection == connection,
                                                  lock_table.c.run_id == run_id))

    def force_unlock(self, connection: str) -> bool:
        """Remove a stale lock; True when there was one."""
        with self.engine.begin() as conn:
            res = conn.execute(delete(lock_table).where(lock_table.c.connection == connection))
            return bool(res.rowcount)

    def lock_holder(self, connection: str) -> dict[str, Any] | None:
        """Who holds the lock, if anyone."""
        with self.engine.connect() as conn:
            row = conn.execute(select(lock_table).where(
                lock_table.c.connection == connection)).mappings().first()
        return dict(row) if row else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
