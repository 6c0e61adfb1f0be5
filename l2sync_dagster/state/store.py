"""The state store: archive of synced pairs, cursors, conflicts, runs, locks and the journal of
inserts in flight. SQLAlchemy; a SQLite file by default, PostgreSQL in production.

Time-partitioned connections: every archive row keeps ``window_at``, the agreed value of the
connection's window field (UTC), so that a windowed run loads only the pairs of its window (plus
the pairs whose keys it read); ``l2sync_window`` lists the windows that runs have synced."""

import datetime as dt
import json
import os
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import mssql, mysql
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from l2sync_dagster.contract import utc
from l2sync_dagster.engine.archive import ARCHIVE_COLUMNS, archive_frame, empty_archive
from l2sync_dagster.engine.mapping import FieldMapping
from l2sync_dagster.engine.plan import ArchiveRow, Conflict, PendingInsert
from l2sync_dagster.providers.sql_dialect import missing_driver_hint, prepare_engine
from l2sync_dagster.spec.masking import mask_secrets

STATE_URL_ENV = "L2SYNC_STATE_URL"

#: JSON and free text: MySQL/MariaDB ``TEXT`` holds only 64 KiB (a record's values can be
#: longer), SQL Server's ``TEXT`` is deprecated; elsewhere ``TEXT``/``CLOB`` are unbounded
LongText = (Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
            .with_variant(mssql.NVARCHAR(None), "mssql"))
#: a UTC time; MySQL/MariaDB ``DATETIME`` keeps microseconds only when told to
Stamp = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

metadata = MetaData()

archive_table = Table(
    "l2sync_archive", metadata,
    Column("connection", String(200), primary_key=True),
    Column("pair_id", String(64), primary_key=True),
    Column("left_key", LongText),
    Column("right_key", LongText),
    Column("left_hash", BigInteger),
    Column("right_hash", BigInteger),
    Column("left_dirty", Boolean, nullable=False, default=False),
    Column("right_dirty", Boolean, nullable=False, default=False),
    Column("left_version", LongText),
    Column("right_version", LongText),
    Column("mapping", String(32)),
    Column("values_json", LongText, nullable=False),
    Column("updated_at", Stamp),
    Column("window_at", Stamp),
)
window_table = Table(
    "l2sync_window", metadata,
    Column("connection", String(200), primary_key=True),
    Column("window_start", Stamp, primary_key=True),
    Column("window_end", Stamp, primary_key=True),
    Column("run_id", String(64)),
    Column("status", String(20)),
    Column("synced_at", Stamp),
    Column("counts_json", LongText),
)
cursor_table = Table(
    "l2sync_cursor", metadata,
    Column("connection", String(200), primary_key=True),
    Column("side", String(8), primary_key=True),
    Column("cursor", LongText),
    Column("mapping", String(32)),
    Column("updated_at", Stamp),
)
conflict_table = Table(
    "l2sync_conflict", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("connection", String(200), index=True, nullable=False),
    Column("run_id", String(64)),
    Column("pair_id", String(64)),
    Column("kind", String(40)),
    Column("left_key", LongText),
    Column("right_key", LongText),
    Column("fields_json", LongText),
    Column("base_json", LongText),
    Column("left_json", LongText),
    Column("right_json", LongText),
    Column("resolution", LongText),
    Column("recorded_at", Stamp),
)
run_table = Table(
    "l2sync_run", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("connection", String(200), index=True, nullable=False),
    Column("started_at", Stamp),
    Column("finished_at", Stamp),
    Column("status", String(20)),
    Column("counts_json", LongText),
    Column("message", LongText),
)
lock_table = Table(
    "l2sync_lock", metadata,
    Column("connection", String(200), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("acquired_at", Stamp),
)
pending_table = Table(
    "l2sync_pending", metadata,
    Column("connection", String(200), primary_key=True),
    Column("pair_id", String(64), primary_key=True),
    Column("side", String(8), primary_key=True),
    Column("source_key", LongText, nullable=False),
    Column("target_key", LongText),
    Column("expected_hash", BigInteger),
    Column("run_id", String(64)),
    Column("values_json", LongText),
)
created_table = Table(
    # records the sync created on a side after that side's saved cursor was taken: a change
    # feed need not report the later delete of a record it never reported (EWS sync state)
    "l2sync_created", metadata,
    Column("connection", String(200), primary_key=True),
    Column("side", String(8), primary_key=True),
    Column("key", String(400), primary_key=True),
)


class ConnectionLocked(RuntimeError):
    """Another run of the same connection holds the lock."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)


def default_state_url(project_dir: Path) -> str:
    """``L2SYNC_STATE_URL`` if set, else the SQLite file ``.l2sync/state.db`` in the project."""
    url = os.environ.get(STATE_URL_ENV)
    if url:
        return url
    path = Path(project_dir) / ".l2sync" / "state.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running(lock: Any, run_id: str) -> bool:
    """True when ``lock`` (a lock row or None) shows run ``run_id`` still going: it holds the
    lock and its process lives (or lives on another host, which this one cannot ask)."""
    if lock is None or lock["run_id"] != run_id:
        return False
    return lock["host"] != socket.gethostname() or _pid_alive(int(lock["pid"]))


class StateStore:
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
        _add_missing_columns(engine)

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()

    # --- archive ----------------------------------------------------------------------
    def load_archive(self, connection: str, mapping: FieldMapping, *,
                     window: tuple[Any, Any] | None = None,
                     keys: dict[str, Sequence[str]] | None = None,
                     pair_ids: Sequence[str] = ()) -> pd.DataFrame:
        """The archive frame of a connection (see ``engine.reconcile.ARCHIVE_COLUMNS``).

        With ``window`` = (start, end): only the pairs whose window value lies in
        ``[start, end)``, plus the pairs whose left or right key is in ``keys[side]`` (records a
        windowed read returned that were archived in another window, or never had a value) and
        the pairs named in ``pair_ids`` (journaled inserts).
        """
        t = archive_table
        cols = (*(t.c[name] for name in ARCHIVE_COLUMNS), t.c.values_json)
        with self.engine.connect() as conn:
            if window is None:
                rows = conn.execute(
                    select(*cols).where(t.c.connection == connection).order_by(t.c.pair_id)
                ).all()
            else:
                start, end = window
                cond = [t.c.connection == connection, t.c.window_at.is_not(None)]
                if start is not None:
                    cond.append(t.c.window_at >= utc(start))
                if end is not None:
                    cond.append(t.c.window_at < utc(end))
                found = {r[0]: r for r in conn.execute(select(*cols).where(*cond)).all()}
                lookups = [(t.c.pair_id, list(pair_ids))]
                for side, side_keys in (keys or {}).items():
                    column = t.c.left_key if side == "left" else t.c.right_key
                    lookups.append((column, list(side_keys)))
                for column, values in lookups:
                    for chunk in _chunks(values, 500):
                        for r in conn.execute(select(*cols).where(
                                t.c.connection == connection, column.in_(chunk))).all():
                            found.setdefault(r[0], r)
                rows = [found[k] for k in sorted(found)]
        if not rows:
            return empty_archive(mapping)
        cols = list(zip(*rows, strict=True))
        return archive_frame(mapping, dict(zip(ARCHIVE_COLUMNS, cols, strict=False)),
                             [json.loads(v) for v in cols[-1]])

    def archive_size(self, connection: str) -> int:
        """Number of pairs in the archive."""
        from sqlalchemy import func

        with self.engine.connect() as conn:
            return int(conn.execute(
                select(func.count()).select_from(archive_table)
                .where(archive_table.c.connection == connection)
            ).scalar_one())

    def commit_effects(
        self, connection: str, mapping: str, effects: Iterable[tuple[str, ArchiveRow | None]],
        done_pending: Sequence[tuple[str, str]] = (), *, window_field: str | None = None,
    ) -> None:
        """Record pairs as synced (or forget them) and clear their journal entries, atomically.

        ``window_field`` (time-partitioned connections) names the mapped field whose agreed
        value places the pair in a window."""
        effects = list(effects)
        if not effects and not done_pending:
            return
        t = archive_table
        now = _now()
        ids = [pid for pid, _ in effects]
        rows = [
            {
                "connection": connection, "pair_id": pid, "left_key": e.left_key,
                "right_key": e.right_key, "left_hash": e.left_hash, "right_hash": e.right_hash,
                "left_dirty": e.left_dirty, "right_dirty": e.right_dirty,
                "left_version": e.left_version, "right_version": e.right_version,
                "mapping": mapping, "values_json": _json(e.values), "updated_at": now,
                "window_at": _window_value(e.values, window_field),
            }
            for pid, e in effects if e is not None
        ]
        with self.engine.begin() as conn:
            for chunk in _chunks(ids, 500):
                conn.execute(delete(t).where(t.c.connection == connection,
                                             t.c.pair_id.in_(chunk)))
            if rows:
                conn.execute(insert(t), rows)
            _delete_pending(conn, connection, done_pending)

    def reset(self, connection: str, history: bool = False) -> None:
        """Forget a connection's archive, cursors and journal (and its runs and conflicts
        with ``history``): the next run is a first sync again."""
        tables = [archive_table, cursor_table, pending_table, window_table, created_table]
        if history:
            tables += [run_table, conflict_table]
        with self.engine.begin() as conn:
            for t in tables:
                conn.execute(delete(t).where(t.c.connection == connection))

    # --- windows of time-partitioned connections -------------------------------------------
    def record_windows(self, connection: str, windows: Sequence[tuple[Any, Any]], run_id: str,
                       status: str, counts: dict[str, Any] | None = None) -> None:
        """Remember that a run synced these windows (the latest run per window is kept)."""
        t = window_table
        now = _now()
        with self.engine.begin() as conn:
            for start, end in windows:
                s, e = utc(start), utc(end)
                conn.execute(delete(t).where(t.c.connection == connection,
                                             t.c.window_start == s, t.c.window_end == e))
                conn.execute(insert(t).values(connection=connection, window_start=s,
                                              window_end=e, run_id=run_id, status=status,
                                              synced_at=now, counts_json=_json(counts or {})))

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
                d[k] = _as_aware(d[k])
            d["counts"] = json.loads(d.pop("counts_json") or "{}")
            out.append(d)
        return out

    def window_of(self, connection: str, pair_id: str) -> dt.datetime | None:
        """The window value the archive holds for a pair (None when it has none)."""
        t = archive_table
        with self.engine.connect() as conn:
            value = conn.execute(select(t.c.window_at).where(
                t.c.connection == connection, t.c.pair_id == pair_id)).scalar_one_or_none()
        return _as_aware(value)

    # --- insert journal ------------------------------------------------------------------
    def journal_inserts(self, connection: str, run_id: str,
                        inserts: Sequence[PendingInsert]) -> None:
        """Write the inserts about to be applied, so a crash cannot make duplicates."""
        if not inserts:
            return
        with self.engine.begin() as conn:
            # a re-planned insert replaces the entry of the attempt before
            _delete_pending(conn, connection, [(p.pair_id, p.side) for p in inserts])
            conn.execute(insert(pending_table), [
                {"connection": connection, "pair_id": p.pair_id, "side": p.side,
                 "source_key": p.source_key, "target_key": p.target_key,
                 "expected_hash": p.expected_hash, "run_id": run_id,
                 "values_json": None if p.values is None else _json(p.values)}
                for p in inserts
            ])

    def record_created_keys(self, connection: str, created: Sequence[tuple[str, str, str]]
                            ) -> None:
        """Write the keys systems gave journaled inserts, as (pair_id, side, key), at once:
        a crash after this cannot leave a created record the next run does not know."""
        if not created:
            return
        t = pending_table
        stmt = update(t).where(t.c.connection == connection, t.c.pair_id == bindparam("pid"),
                               t.c.side == bindparam("sd")).values(target_key=bindparam("tk"))
        with self.engine.begin() as conn:
            conn.execute(stmt, [{"pid": p, "sd": s, "tk": k} for p, s, k in created])

    def pending_inserts(self, connection: str) -> list[PendingInsert]:
        """Inserts journaled by runs that did not record their outcome."""
        t = pending_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.connection == connection)).mappings().all()
        return [PendingInsert(r["pair_id"], r["side"], r["source_key"], r["target_key"],
                              int(r["expected_hash"] or 0),
                              None if r["values_json"] is None else json.loads(r["values_json"]))
                for r in rows]

    # --- records created after a side's cursor -------------------------------------------
    def created_since_cursor(self, connection: str, side: str) -> list[str]:
        """Keys of records the sync created on ``side`` after its saved cursor was taken."""
        t = created_table
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(t.c.key).where(
                t.c.connection == connection, t.c.side == side)).all()]

    def note_created(self, connection: str, side: str, keys: Sequence[str], *,
                     replace: bool) -> None:
        """Remember keys created on ``side``; ``replace`` (a new cursor was saved) forgets the
        keys created before that cursor, which its change feed now knows."""
        t = created_table
        with self.engine.begin() as conn:
            if replace:
                conn.execute(delete(t).where(t.c.connection == connection, t.c.side == side))
            else:
                for chunk in _chunks(list(keys), 500):
                    conn.execute(delete(t).where(t.c.connection == connection,
                                                 t.c.side == side, t.c.key.in_(chunk)))
            rows = [{"connection": connection, "side": side, "key": k} for k in dict.fromkeys(keys)]
            for chunk in _chunks(rows, 500):
                conn.execute(insert(t), list(chunk))

    def clear_pending(self, connection: str, pairs: Sequence[tuple[str, str]] | None = None
                      ) -> None:
        """Drop journal entries (all of them when ``pairs`` is None)."""
        with self.engine.begin() as conn:
            if pairs is None:
                conn.execute(delete(pending_table).where(
                    pending_table.c.connection == connection))
            else:
                _delete_pending(conn, connection, pairs)

    # --- cursors -------------------------------------------------------------------------
    def cursors(self, connection: str, mapping: str) -> dict[str, str | None]:
        """Each side's change-feed cursor, if it was saved for this mapping."""
        t = cursor_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.connection == connection)).mappings().all()
        return {r["side"]: r["cursor"] for r in rows if r["mapping"] == mapping}

    def latest_cursors(self, connection: str) -> dict[str, str | None]:
        """Each side's last saved cursor, whatever mapping it was saved for."""
        t = cursor_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.connection == connection)).mappings().all()
        return {r["side"]: r["cursor"] for r in rows}

    def save_cursor(self, connection: str, side: str, cursor: str | None, mapping: str) -> None:
        """Remember where the next incremental read of ``side`` starts."""
        t = cursor_table
        with self.engine.begin() as conn:
            conn.execute(delete(t).where(t.c.connection == connection, t.c.side == side))
            conn.execute(insert(t).values(connection=connection, side=side, cursor=cursor,
                                          mapping=mapping, updated_at=_now()))

    # --- conflicts and runs ----------------------------------------------------------------
    def record_conflicts(self, connection: str, run_id: str, conflicts: Sequence[Conflict]
                         ) -> None:
        """Keep every conflict with both sides' values, whatever the policy did."""
        if not conflicts:
            return
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(insert(conflict_table), [
                {"connection": connection, "run_id": run_id, "pair_id": c.pair_id,
                 "kind": c.kind, "left_key": c.left_key, "right_key": c.right_key,
                 "fields_json": _json(c.fields), "base_json": _json(c.base),
                 "left_json": _json(c.left), "right_json": _json(c.right),
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
                                                  started_at=_now(), status="running"))

    def finish_run(self, run_id: str, status: str, counts: dict[str, Any] | None = None,
                   message: str | None = None) -> None:
        """Record how a run ended (secrets in the message or the counts' notes masked)."""
        with self.engine.begin() as conn:
            conn.execute(update(run_table).where(run_table.c.run_id == run_id).values(
                finished_at=_now(), status=status,
                counts_json=mask_secrets(_json(counts or {})),
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

    # --- lock ----------------------------------------------------------------------------
    def acquire_lock(self, connection: str, run_id: str) -> None:
        """Take the connection's lock or fail fast naming the run that holds it.

        A lock left by a dead process on this host is taken over.
        """
        host, pid = socket.gethostname(), os.getpid()
        row = {"connection": connection, "run_id": run_id, "host": host, "pid": pid,
               "acquired_at": _now()}
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
            if held["host"] == host and held["pid"] != pid and not _pid_alive(held["pid"]):
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


def _as_aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns naive datetimes; the store writes UTC only."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def _window_value(values: dict[str, Any], window_field: str | None) -> dt.datetime | None:
    """The pair's agreed window-field value in UTC; None when unset or not a date/time."""
    if window_field is None:
        return None
    raw = values.get(window_field)
    if raw is None or raw == "":
        return None
    try:
        ts = pd.Timestamp(raw)
    except (ValueError, TypeError):
        return None
    if ts is pd.NaT:
        return None
    return utc(ts)


def _add_missing_columns(engine: Engine) -> None:
    """Add columns newer versions introduced to tables an older version created."""
    from sqlalchemy import inspect, text

    name = engine.dialect.name
    have = {c["name"] for c in inspect(engine).get_columns(archive_table.name)}
    if "window_at" not in have:
        kind = {"postgresql": "TIMESTAMP WITH TIME ZONE", "mysql": "DATETIME(6)",
                "mariadb": "DATETIME(6)"}.get(name, "TIMESTAMP")
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {archive_table.name} ADD COLUMN window_at {kind}"))
    have = {c["name"] for c in inspect(engine).get_columns(pending_table.name)}
    if "values_json" not in have:
        kind = "LONGTEXT" if name in ("mysql", "mariadb") else "TEXT"
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {pending_table.name} ADD COLUMN values_json {kind}"))
    if name in ("mysql", "mariadb"):
        _widen_mysql_text(engine)


def _widen_mysql_text(engine: Engine) -> None:
    """MySQL/MariaDB stores made by older versions have ``TEXT`` (64 KiB) columns: make them
    ``LONGTEXT``, so that a record with long values cannot fail every later run."""
    from sqlalchemy import inspect, text

    insp = inspect(engine)
    for table in metadata.sorted_tables:
        reflected = {c["name"]: c["type"] for c in insp.get_columns(table.name)}
        for col in table.columns:
            if not isinstance(col.type, Text) or col.name not in reflected:
                continue
            if isinstance(reflected[col.name], mysql.LONGTEXT):
                continue
            null = "" if col.nullable else " NOT NULL"
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE {table.name} MODIFY `{col.name}` LONGTEXT{null}"))


def _delete_pending(conn: Any, connection: str, pairs: Sequence[tuple[str, str]]) -> None:
    """Delete journal entries in chunks (one statement per side and 500 pairs)."""
    t = pending_table
    for side in ("left", "right"):
        ids = [pid for pid, s in pairs if s == side]
        for chunk in _chunks(ids, 500):
            conn.execute(delete(t).where(t.c.connection == connection, t.c.side == side,
                                         t.c.pair_id.in_(chunk)))


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


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
