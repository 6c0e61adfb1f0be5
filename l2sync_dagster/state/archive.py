"""The archive of synced pairs and the journal of inserts in flight (with the keys systems
answered, and the records created after a side's cursor)."""

import datetime as dt
import json
import logging
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import pandas as pd
from sqlalchemy import (
    bindparam,
    delete,
    select,
    update,
)
from sqlalchemy.engine import Engine

from l2sync_dagster.contract import utc
from l2sync_dagster.engine.archive import ARCHIVE_COLUMNS, archive_frame, empty_archive
from l2sync_dagster.engine.mapping import FieldMapping
from l2sync_dagster.engine.plan import ArchiveRow, PendingInsert
from l2sync_dagster.sql_fetch import fetch_columns
from l2sync_dagster.state.tables import (
    archive_table,
    as_aware,
    bulk_insert,
    bulk_insert_rows,
    created_table,
    in_keys,
    pending_table,
    to_json,
    update_many,
    utc_now,
)

log = logging.getLogger("l2sync.state")

#: a run that archives at least this many pairs, and this share of those it started with,
#: refreshes PostgreSQL's statistics of the archive (:meth:`ArchiveStore.refresh_statistics`)
STATISTICS_MIN_ROWS = 1_000
STATISTICS_SHARE = 0.1
STATISTICS_LOCK_TIMEOUT_MS = 2000

#: the columns of the rows commit_effects and journal_inserts write, in their tuples' order
_ARCHIVE_WRITE = ("connection", "pair_id", "left_key", "right_key", "left_hash", "right_hash",
                  "left_dirty", "right_dirty", "left_version", "right_version", "mapping",
                  "values_json", "updated_at", "window_at")
_PENDING_WRITE = ("connection", "pair_id", "side", "source_key", "target_key",
                  "expected_hash", "run_id", "values_json")


class ArchiveStore:
    """Archive rows, journal entries and created keys of every connection."""

    engine: Engine
    #: the values texts of the batch last journaled: pair id -> (values, text); replaced,
    #: never changed in place, so the empty class default is never shared by mutation
    _journal_texts: dict[str, tuple[Any, str]] = {}

    # --- archive ----------------------------------------------------------------------
    def load_archive(self, connection: str, mapping: FieldMapping, *,
                     window: tuple[Any, Any] | None = None,
                     keys: dict[str, Sequence[str]] | None = None,
                     pair_ids: Sequence[str] = ()) -> pd.DataFrame:
        """The archive frame of a connection (see ``engine.reconcile.ARCHIVE_COLUMNS``).

        Without ``window`` and ``keys``: every pair. With ``keys`` (``{side: keys}``): only the
        pairs whose left or right key is among them, plus the pairs named in ``pair_ids``
        (journaled inserts): what a run whose reads are all incremental needs, at a cost that
        follows the changes rather than the archive. With ``window`` = (start, end): the pairs
        whose window value lies in ``[start, end)``, plus those of ``keys`` and ``pair_ids``
        (records a windowed read returned that were archived in another window, or never had
        a value).
        """
        t = archive_table
        cols = (*(t.c[name] for name in ARCHIVE_COLUMNS), t.c.values_json)
        with self.engine.connect() as conn:
            if window is None and keys is None:
                columns = fetch_columns(conn, select(*cols).where(
                    t.c.connection == connection).order_by(t.c.pair_id))
                if not columns[0]:
                    return empty_archive(mapping)
                return archive_frame(mapping, dict(zip(ARCHIVE_COLUMNS, columns, strict=False)),
                                     [json.loads(v) for v in columns[-1]])
            found: dict[str, Any] = {}
            if window is not None:
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
                for cond_in in in_keys(conn, column, values):
                    for r in conn.execute(select(*cols).where(
                            t.c.connection == connection, cond_in)).all():
                        found.setdefault(r[0], r)
            rows = [found[k] for k in sorted(found)]
        if not rows:
            return empty_archive(mapping)
        cols = list(zip(*rows, strict=True))
        return archive_frame(mapping, dict(zip(ARCHIVE_COLUMNS, cols, strict=False)),
                             [json.loads(v) for v in cols[-1]])

    def archived_keys(self, connection: str, side: str) -> list[str]:
        """Every key of ``side`` that the archive holds (one column, no values)."""
        t = archive_table
        column = t.c.left_key if side == "left" else t.c.right_key
        with self.engine.connect() as conn:
            return fetch_columns(conn, select(column).where(
                t.c.connection == connection, column.is_not(None)))[0]

    def partner_keys(self, connection: str, side: str, keys: Sequence[str]) -> list[str]:
        """The other side's keys of the pairs whose ``side`` key is among ``keys`` (no values
        decoded), in no particular order, each once."""
        t = archive_table
        mine, theirs = ((t.c.left_key, t.c.right_key) if side == "left"
                        else (t.c.right_key, t.c.left_key))
        found: dict[str, None] = {}
        with self.engine.connect() as conn:
            for cond_in in in_keys(conn, mine, list(keys)):
                # pairs without a partner are dropped here, not in SQL: a ``theirs IS NOT
                # NULL`` there is a range the planners may take instead of the keys, and walk
                # every pair of the connection (SQLite, and PostgreSQL's seq scan)
                found.update(dict.fromkeys(conn.execute(select(theirs).where(
                    t.c.connection == connection, cond_in)).scalars().all()))
        found.pop(None, None)  # type: ignore[call-overload]
        return list(found)

    def an_archived_key(self, connection: str, side: str) -> str | None:
        """One key of ``side`` that the archive holds (None when it holds none)."""
        t = archive_table
        column = t.c.left_key if side == "left" else t.c.right_key
        with self.engine.connect() as conn:
            return conn.execute(select(column).where(
                t.c.connection == connection, column.is_not(None)).limit(1)).scalar()

    def has_pairs(self, connection: str) -> bool:
        """Whether the archive holds any pair of ``connection`` (without counting them)."""
        t = archive_table
        with self.engine.connect() as conn:
            return conn.execute(select(t.c.pair_id).where(
                t.c.connection == connection).limit(1)).first() is not None

    def refresh_statistics(self, archived: int, pairs_before: int) -> None:
        """After a run that archived many pairs (``archived``) against the ``pairs_before`` it
        started with: have PostgreSQL's planner count them now. Until autovacuum does (up to a
        minute later, or never for a store without it), the planner takes the archive for as
        small as it was, and answers the next run's keyed loads with a scan of every pair of
        the connection instead of its indexes."""
        if self.engine.dialect.name != "postgresql" or archived < STATISTICS_MIN_ROWS \
                or archived < pairs_before * STATISTICS_SHARE:
            return
        from sqlalchemy import exc, text

        try:
            with self.engine.begin() as conn:
                # a VACUUM holding the tables must not hold up the run's end
                conn.execute(text(f"SET LOCAL lock_timeout = {STATISTICS_LOCK_TIMEOUT_MS}"))
                # a role that does not own the tables gets a warning, not an error
                conn.execute(text(f"ANALYZE {archive_table.name}, {created_table.name}"))
        except exc.DBAPIError as error:  # the run's work is done: only later runs are slower
            log.warning("could not refresh the state store's statistics: %s",
                        type(error.orig).__name__)

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
        fresh: Collection[str] = (),
    ) -> None:
        """Record pairs as synced (or forget them) and clear their journal entries, atomically.

        ``window_field`` (time-partitioned connections) names the mapped field whose agreed
        value places the pair in a window. ``fresh``: pair ids no archive row holds (drawn by
        this run's plan), whose earlier rows need not be deleted: a batch of new pairs costs
        no DELETE (on PostgreSQL a scan of the connection's pairs at a few 100,000)."""
        effects = list(effects)
        if not effects and not done_pending:
            return
        t = archive_table
        now = utc_now()
        ids = [pid for pid, _ in effects if pid not in fresh]
        # the text of a pair's agreed values: the journal's, when the batch just journaled these
        # very values (encoded once), else encoded now
        cached = self._journal_texts
        rows = []
        for pid, e in effects:
            if e is None:
                continue
            values = e.values
            hit = cached.get(pid)
            rows.append((
                connection, pid, e.left_key, e.right_key, e.left_hash, e.right_hash,
                e.left_dirty, e.right_dirty, e.left_version, e.right_version, mapping,
                hit[1] if hit is not None and hit[0] is values else to_json(values), now,
                None if window_field is None else _window_value(values, window_field)))
        with self.engine.begin() as conn:
            for cond_in in in_keys(conn, t.c.pair_id, ids):
                conn.execute(delete(t).where(t.c.connection == connection, cond_in))
            bulk_insert_rows(conn, t, _ARCHIVE_WRITE, rows)
            _delete_pending(conn, connection, done_pending)

    def window_of(self, connection: str, pair_id: str) -> dt.datetime | None:
        """The window value the archive holds for a pair (None when it has none)."""
        t = archive_table
        with self.engine.connect() as conn:
            value = conn.execute(select(t.c.window_at).where(
                t.c.connection == connection, t.c.pair_id == pair_id)).scalar_one_or_none()
        return as_aware(value)

    # --- insert journal ------------------------------------------------------------------
    def journal_inserts(self, connection: str, run_id: str,
                        inserts: Sequence[PendingInsert]) -> None:
        """Write the inserts about to be applied, so a crash cannot make duplicates."""
        if not inserts:
            return
        texts = {p.pair_id: (p.values, to_json(p.values)) for p in inserts
                 if p.values is not None}
        rows = [(connection, p.pair_id, p.side, p.source_key, p.target_key, p.expected_hash,
                 run_id, texts[p.pair_id][1] if p.pair_id in texts else None)
                for p in inserts]
        with self.engine.begin() as conn:
            # a re-planned insert replaces the entry of the attempt before
            _delete_pending(conn, connection, [(p.pair_id, p.side) for p in inserts])
            bulk_insert_rows(conn, pending_table, _PENDING_WRITE, rows)
        # the batch's archive rows carry the same values once its writes succeed
        self._journal_texts = texts

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
            if not update_many(conn, t, {"connection": connection}, ("pair_id", "side"),
                               "target_key", created):
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
                for cond_in in in_keys(conn, t.c.key, list(keys)):
                    conn.execute(delete(t).where(t.c.connection == connection,
                                                 t.c.side == side, cond_in))
            rows = [{"connection": connection, "side": side, "key": k} for k in dict.fromkeys(keys)]
            bulk_insert(conn, t, rows)

    def clear_pending(self, connection: str, pairs: Sequence[tuple[str, str]] | None = None
                      ) -> None:
        """Drop journal entries (all of them when ``pairs`` is None)."""
        with self.engine.begin() as conn:
            if pairs is None:
                conn.execute(delete(pending_table).where(
                    pending_table.c.connection == connection))
            else:
                _delete_pending(conn, connection, pairs)


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


def _delete_pending(conn: Any, connection: str, pairs: Sequence[tuple[str, str]]) -> None:
    """Delete journal entries (one statement per side, or per side and 500 pairs)."""
    t = pending_table
    for side in ("left", "right"):
        ids = [pid for pid, s in pairs if s == side]
        for cond_in in in_keys(conn, t.c.pair_id, ids):
            conn.execute(delete(t).where(t.c.connection == connection, t.c.side == side,
                                         cond_in))
