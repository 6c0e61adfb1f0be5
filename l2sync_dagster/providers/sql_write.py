"""The write path of the ``sql`` provider: ``apply`` in batches, one transaction per batch;
a failing batch is retried one record per transaction so that only the bad records fail; keys
the database generates come back (``RETURNING`` where the dialect has it) and are announced to
the ``created`` callback before COMMIT; a ``modified`` column is stamped by the database's
clock in the statement."""

import datetime as dt
import logging
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import InvalidOperation
from itertools import repeat
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from l2sync_dagster.postgres_copy import can_copy, copy_rows, drop_staging, staging_table
from l2sync_dagster.providers.base import Change, CreatedCallback, Outcome, Query
from l2sync_dagster.providers.sql_describe import Entity, close_names
from l2sync_dagster.providers.sql_dialect import MYSQL_FAMILY, database_now
from l2sync_dagster.providers.sql_values import chunks, key_str

log = logging.getLogger("l2sync.providers.sql.write")

#: a failing part of a batch with more records than this is retried in halves
BISECT_MIN = 16


class SqlWrites:
    """``apply`` of :class:`~l2sync_dagster.providers.sql.SqlProvider`.

    Mixed into the provider, which supplies the entity of a query, connections, the batch
    size and its error messages."""

    batch_size: int
    #: keys per ``IN (...)`` list
    in_chunk: int
    _backend: str
    _entity: Callable[[Query], Entity]
    _connect: Callable[[], Connection]
    _message: Callable[[BaseException], str]
    _raise_if_unavailable: Callable[[BaseException], None]

    def apply(self, query: Query, changes: Sequence[Change], *,
              created: CreatedCallback | None = None) -> list[Outcome]:
        """Write changes in batches of ``max_batch_size()``, one transaction per batch.

        A batch that fails is rolled back and retried one record per transaction, so that
        only the bad records fail. Raises ProviderError only when the database is unreachable.

        ``created`` is called with the outcomes (new keys) of the transaction's successful
        inserts after the database assigned the keys and before COMMIT; if it raises, the
        transaction is rolled back (none of its changes is written) and the exception
        propagates.
        """
        ent = self._entity(query)
        if ent.table is None:
            return [
                Outcome(
                    c.ref,
                    False,
                    key=c.key,
                    error="the SELECT query is read-only; use a table name in `query:` to write",
                )
                for c in changes
            ]
        outcomes: list[Outcome | None] = [None] * len(changes)
        for start in range(0, len(changes), self.batch_size):
            batch = list(range(start, min(start + self.batch_size, len(changes))))
            self._apply_batch(ent, changes, batch, outcomes, created)
        return [
            o
            if o is not None
            else Outcome(changes[i].ref, False, key=changes[i].key, error="not applied")
            for i, o in enumerate(outcomes)
        ]

    def _apply_batch(
        self,
        ent: Entity,
        changes: Sequence[Change],
        batch: list[int],
        outcomes: list[Outcome | None],
        created: CreatedCallback | None,
    ) -> None:
        prepared: list[_Prepared] = []
        for i, p in zip(batch, self._prepare_batch(ent, changes, batch), strict=True):
            if isinstance(p, Outcome):
                outcomes[i] = p
            else:
                prepared.append(p)
        if not prepared:
            return
        with self._connect() as conn:
            self._apply_part(conn, ent, changes, prepared, outcomes, created)

    def _apply_part(
        self,
        conn: Connection,
        ent: Entity,
        changes: Sequence[Change],
        part: list["_Prepared"],
        outcomes: list[Outcome | None],
        created: CreatedCallback | None,
    ) -> None:
        """``part`` in one transaction. When a record makes it fail, it is rolled back and
        tried again in halves (down to :data:`BISECT_MIN` records, then record by record),
        each in its own transaction, so that only the bad records fail and one bad record in
        a large batch costs a few transactions, not one per record."""
        try:
            with conn.begin():
                done = self._execute(conn, ent, part)
                _announce(created, changes, done)
        except _CallbackFailed as failed:
            raise failed.original from None
        except (sa_exc.SQLAlchemyError, ValueError, TypeError) as exc:
            self._raise_if_unavailable(exc)
            if len(part) == 1:
                p = part[0]
                outcomes[p.pos] = Outcome(
                    p.change.ref, False, key=p.change.key, error=self._message(exc)
                )
                return
            halves = len(part) > BISECT_MIN
            log.info("%s: batch of %d failed (%s); retrying %s", ent.label, len(part),
                     self._message(exc), "in halves" if halves else "record by record")
            mid = len(part) // 2
            for sub in [part[:mid], part[mid:]] if halves else [[p] for p in part]:
                self._apply_part(conn, ent, changes, sub, outcomes, created)
            return
        for i, o in done.items():
            outcomes[i] = o

    def _prepare(self, ent: Entity, change: Change, pos: int) -> "_Prepared | Outcome":
        """Check a change and convert its key and values to database values."""
        key_col = ent.key

        def fail(message: str) -> Outcome:
            return Outcome(change.ref, False, key=change.key, error=message)

        if change.op not in ("insert", "update", "delete"):
            return fail(f"unknown operation {change.op!r}")
        key_value = None
        if change.key is not None:
            try:
                key_value = ent.key_value(change.key)
            except (ValueError, TypeError, InvalidOperation):
                return fail(
                    f"key {change.key!r} is not a valid {ent.types[key_col.name]} "
                    f"for column {key_col.name}"
                )
        elif change.op != "insert":
            return fail(f"{change.op} needs the record's key")
        row: dict[str, Any] = {}
        if change.op != "delete":
            for name, value in change.values.items():
                col = ent.column(name)
                if col is None:
                    return fail(
                        f"{ent.label} has no column {name!r}{close_names(name, list(ent.columns))}"
                    )
                if col.name in ent.read_only:
                    return fail(f"column {col.name!r} is read-only (computed by the database)")
                row[col.name] = ent.bind(value, col)
            _settle_row(row, change.op, key_col.name, key_col.name in row, key_value,
                        self._stamper(ent))
        return _Prepared(pos, change, key_value, row)

    def _stamper(self, ent: Entity) -> Callable[[dict[str, Any], str], None] | None:
        """What stamps the ``modified`` column of a prepared row that does not set it (an
        insert, or an update that writes something): the database's clock in the statement
        where the dialect has one, else now; None when the entity has no column to stamp."""
        mod = ent.description.modified
        if not mod or mod in ent.read_only:
            return None
        mod_col = ent.columns[mod]
        by_database = database_now(self._backend, mod_col.type) is not None

        def stamp(row: dict[str, Any], op: str) -> None:
            if mod not in row and (op == "insert" or row):
                row[mod] = (DB_NOW if by_database  # stamped in the statement
                            else ent.bind(dt.datetime.now(dt.UTC), mod_col))
        return stamp

    def _prepare_batch(self, ent: Entity, changes: Sequence[Change], batch: list[int]
                       ) -> list["_Prepared | Outcome"]:
        """``[self._prepare(ent, changes[i], i) for i in batch]``, column by column: the
        columns, read-only checks and binding are resolved once per set of value names, and
        each column's values are bound together (:meth:`Entity.bind_many`).

        A change that fails a check is prepared by :meth:`_prepare` (its message, and the
        values it binds before it fails, are that method's); when anything raises, the whole
        batch is, so that the same exception propagates as from the per-change path."""
        try:
            return self._prepare_columns(ent, changes, batch)
        except Exception:
            # _prepare has no side effect: it raises the same error, or (when the error came
            # from a value that _prepare never binds, as its change fails first) succeeds
            return [self._prepare(ent, changes[i], i) for i in batch]

    def _prepare_columns(self, ent: Entity, changes: Sequence[Change], batch: list[int]
                         ) -> list["_Prepared | Outcome"]:
        out: list[_Prepared | Outcome | None] = [None] * len(batch)
        key_name = ent.key.name
        # (op, value names) -> [(slot in out, position, change, key value)]
        groups: dict[tuple[str, tuple[str, ...]], list[tuple[int, int, Change, Any]]] = {}
        for slot, i in enumerate(batch):
            change = changes[i]
            op = change.op
            if op not in ("insert", "update", "delete"):
                out[slot] = self._prepare(ent, change, i)
                continue
            if change.key is not None:
                try:
                    key_value = ent.key_value(change.key)
                except (ValueError, TypeError, InvalidOperation):
                    out[slot] = self._prepare(ent, change, i)
                    continue
            elif op != "insert":
                out[slot] = self._prepare(ent, change, i)
                continue
            else:
                key_value = None
            if op == "delete":
                out[slot] = _Prepared(i, change, key_value, {})
                continue
            groups.setdefault((op, tuple(change.values)), []).append(
                (slot, i, change, key_value))

        stamp = self._stamper(ent)
        resolved: dict[tuple[str, ...], list[Any] | None] = {}
        for (op, names), members in groups.items():
            if names not in resolved:
                resolved[names] = self._resolve(ent, names)
            cols = resolved[names]
            if cols is None:  # an unknown or read-only column: _prepare says which
                for slot, i, change, _ in members:
                    out[slot] = self._prepare(ent, change, i)
                continue
            # values column by column (values() iterates in the order of the names)
            by_column = list(zip(*[tuple(m[2].values.values()) for m in members],
                                 strict=True)) if cols else []
            bound = [ent.bind_many(vals, col) for vals, col in zip(by_column, cols, strict=True)]
            col_names = [col.name for col in cols]
            rows = ([dict(zip(col_names, vals, strict=True)) for vals in zip(*bound, strict=True)]
                    if cols else [{} for _ in members])
            has_key = key_name in col_names
            # rows whose names and stamps are alike group alike: their group's columns are
            # worked out once per shape, unless a value is DB_NOW itself (then by the row)
            marked = any(any(map(operator.is_, vals, repeat(DB_NOW))) for vals in bound)
            group_cols: dict[int, tuple[Any, ...]] = {}
            for (slot, i, change, key_value), row in zip(members, rows, strict=True):
                # (whether the row is stamped follows from the key's fate: ``mod`` in it or
                # not, the row empty or not)
                shape = _settle_row(row, op, key_name, has_key, key_value, stamp)
                known = None
                if not marked and key_value is not DB_NOW:
                    known = group_cols.get(shape)
                    if known is None:
                        known = group_cols[shape] = _columns_of(row)
                out[slot] = _Prepared(i, change, key_value, row, known)
        assert all(p is not None for p in out)
        return out  # type: ignore[return-value]

    @staticmethod
    def _resolve(ent: Entity, names: tuple[str, ...]) -> list[Any] | None:
        """The columns of ``names``, or None when one is unknown or read-only."""
        cols = []
        for name in names:
            col = ent.column(name)
            if col is None or col.name in ent.read_only:
                return None
            cols.append(col)
        return cols

    def _execute(
        self, conn: Connection, ent: Entity, prepared: list["_Prepared"]
    ) -> dict[int, Outcome]:
        """Run prepared changes, grouping consecutive changes of the same kind."""
        done: dict[int, Outcome] = {}
        run: list[_Prepared] = []
        for p in [*prepared, None]:
            if run and (p is None or p.change.op != run[0].change.op):
                op = run[0].change.op
                if op == "insert":
                    done.update(self._insert(conn, ent, run))
                elif op == "update":
                    done.update(self._update(conn, ent, run))
                else:
                    done.update(self._delete(conn, ent, run))
                run = []
            if p is not None:
                run.append(p)
        return done

    def _insert(self, conn: Connection, ent: Entity, run: list["_Prepared"]) -> dict[int, Outcome]:
        assert ent.table is not None
        table, key_col = ent.table, ent.key
        dialect = conn.dialect
        can_return = bool(
            dialect.insert_executemany_returning
            and dialect.insert_executemany_returning_sort_by_parameter_order
        )
        single_pk = list(table.primary_key.columns) == [key_col]
        out: dict[int, Outcome] = {}
        for cols, group in _group_by_columns(run).items():
            stamped = self._stamped(table, cols)
            cols = tuple(c for c in cols if isinstance(c, str))
            if key_col.name in cols and len(group) > 1 and can_copy(conn):
                self._copy_insert(conn, table, cols, stamped, group)
                for p in group:
                    out[p.pos] = Outcome(p.change.ref, True, key=key_str(p.row[key_col.name]))
                continue
            rows = [{c: p.row[c] for c in cols} for p in group]
            stmt = table.insert()
            if stamped:
                stmt = stmt.values(stamped)
            keys: list[Any]
            if key_col.name in cols:
                conn.execute(stmt, rows)
                keys = [row[key_col.name] for row in rows]
            elif can_return:
                stmt = stmt.returning(key_col, sort_by_parameter_order=True)
                keys = list(conn.execute(stmt, rows).scalars())
            else:
                keys = []
                for row in rows:
                    pk = conn.execute(stmt, row).inserted_primary_key
                    keys.append(pk[0] if single_pk and pk else None)
            for p, k in zip(group, keys, strict=True):
                out[p.pos] = Outcome(p.change.ref, True, key=None if k is None else key_str(k))
        return out

    @staticmethod
    def _copy_insert(conn: Connection, table: sa.Table, cols: Sequence[str],
                     stamped: dict[str, Any], group: list["_Prepared"]) -> None:
        """PostgreSQL: the rows of ``group`` in one COPY. A stamped column gets the database's
        clock read once in the transaction: PostgreSQL's CURRENT_TIMESTAMP is the transaction's
        start, the same for every statement of it, so this is the value an INSERT would
        write."""
        now = {c: conn.execute(sa.select(sa.cast(expr, table.c[c].type))).scalar_one()
               for c, expr in stamped.items()}
        stamps = tuple(now.values())
        copy_rows(conn, table, [*cols, *now], _values_of(group, cols, stamps))

    def _update(self, conn: Connection, ent: Entity, run: list["_Prepared"]) -> dict[int, Outcome]:
        assert ent.table is not None
        table, key_col = ent.table, ent.key
        found = self._existing(conn, ent, [p.key for p in run])
        out: dict[int, Outcome] = {}
        todo = []
        for p in run:
            if key_str(p.key) not in found:
                out[p.pos] = Outcome(
                    p.change.ref,
                    False,
                    key=p.change.key,
                    error="record not found (deleted since it was read?)",
                )
            elif not p.row:
                out[p.pos] = Outcome(p.change.ref, True, key=p.change.key)
            else:
                todo.append(p)
        for cols, group in _group_by_columns(todo).items():
            stamped = self._stamped(table, cols)
            cols = tuple(c for c in cols if isinstance(c, str))
            unique = len({key_str(p.key) for p in group}) == len(group)
            if self._backend in MYSQL_FAMILY and len(group) > 1:
                self._update_joined(conn, table, key_col, cols, stamped, group)
            elif unique and len(group) > 1 and can_copy(conn):
                self._update_copied(conn, table, key_col, cols, stamped, group)
            else:
                params = {c: f"p{i}" for i, c in enumerate(cols)}
                stmt = (
                    table.update()
                    .where(key_col == sa.bindparam("k"))
                    .values({table.c[c]: sa.bindparam(params[c]) for c in cols})
                )
                if stamped:
                    stmt = stmt.values(stamped)
                rows = [{"k": p.key, **{params[c]: p.row[c] for c in cols}} for p in group]
                conn.execute(stmt, rows)
            for p in group:
                new_key = p.row.get(key_col.name, p.key)
                out[p.pos] = Outcome(p.change.ref, True, key=key_str(new_key))
        return out

    def _stamped(self, table: sa.Table, cols: Sequence[Any]) -> dict[str, Any]:
        """The columns of a group stamped by the database's clock -> their SQL."""
        out = {}
        for c in cols:
            if isinstance(c, tuple):  # (name, DB_NOW) from _group_by_columns
                out[c[0]] = database_now(self._backend, table.c[c[0]].type)
        return out

    def _update_joined(self, conn: Connection, table: sa.Table, key_col: Any,
                       cols: Sequence[str], stamped: dict[str, Any],
                       group: list["_Prepared"]) -> None:
        """MySQL/MariaDB: one ``UPDATE t, (SELECT ... UNION ALL SELECT ...) v SET ... WHERE
        t.key = v.k`` per chunk of rows (their drivers send an executemany of UPDATEs as one
        statement per row)."""
        for chunk in chunks(group, self.in_chunk):
            selects = [
                sa.select(sa.literal(p.key, key_col.type).label("k"),
                          *[sa.literal(p.row[c], table.c[c].type).label(f"p{i}")
                            for i, c in enumerate(cols)])
                for p in chunk
            ]
            values = sa.union_all(*selects).subquery("l2sync_v")
            stmt = (
                table.update()
                .where(key_col == values.c.k)
                .values({**{table.c[c]: values.c[f"p{i}"] for i, c in enumerate(cols)},
                         **{table.c[c]: expr for c, expr in stamped.items()}})
            )
            conn.execute(stmt)

    @staticmethod
    def _update_copied(conn: Connection, table: sa.Table, key_col: Any, cols: Sequence[str],
                       stamped: dict[str, Any], group: list["_Prepared"]) -> None:
        """PostgreSQL: COPY the new values into a temporary table and update from it in one
        ``UPDATE t SET ... FROM stage WHERE t.key = stage.k`` (keys unique in ``group``)."""
        columns = {"k": key_col, **{f"p{i}": table.c[c] for i, c in enumerate(cols)}}
        stage = staging_table(conn, table, columns)
        copy_rows(conn, stage, list(columns),
                  [(p.key, *row) for p, row in zip(group, _values_of(group, cols, ()),
                                                   strict=True)])
        conn.execute(
            table.update()
            .where(key_col == stage.c.k)
            .values({**{table.c[c]: stage.c[f"p{i}"] for i, c in enumerate(cols)},
                     **{table.c[c]: expr for c, expr in stamped.items()}}))
        drop_staging(conn, stage)

    def _delete(self, conn: Connection, ent: Entity, run: list["_Prepared"]) -> dict[int, Outcome]:
        assert ent.table is not None
        keys = [p.key for p in run]
        for chunk in chunks(keys, self.in_chunk):
            conn.execute(ent.table.delete().where(ent.key.in_(chunk)))
        return {p.pos: Outcome(p.change.ref, True, key=p.change.key) for p in run}

    def _existing(self, conn: Connection, ent: Entity, keys: list[Any]) -> set[str]:
        found: set[str] = set()
        for chunk in chunks(keys, self.in_chunk):
            stmt = sa.select(ent.key).where(ent.key.in_(chunk))
            found.update(key_str(k) for k in conn.execute(stmt).scalars())
        return found


class _DbNow:
    """The value of a ``modified`` column that the statement sets to the database's clock."""

    def __repr__(self) -> str:
        return "DB_NOW"


DB_NOW = _DbNow()


class _CallbackFailed(Exception):
    """The ``created`` callback raised: roll back and re-raise ``original`` (not a record
    error to retry record by record)."""

    def __init__(self, original: Exception) -> None:
        super().__init__(str(original))
        self.original = original


def _announce(created: CreatedCallback | None, changes: Sequence[Change],
              done: dict[int, Outcome]) -> None:
    """Call ``created`` with the successful inserts among ``done`` (inside the transaction)."""
    if created is None:
        return
    inserted = [o for i, o in sorted(done.items()) if o.ok and changes[i].op == "insert"]
    if not inserted:
        return
    try:
        created(inserted)
    except Exception as exc:
        raise _CallbackFailed(exc) from exc


@dataclass
class _Prepared:
    """One change ready for the database: its key and row as database values."""

    pos: int
    change: Change
    key: Any
    row: dict[str, Any]
    #: ``_columns_of(row)`` when the preparation knows it (else worked out when grouping)
    cols: tuple[Any, ...] | None = None



def _settle_row(row: dict[str, Any], op: str, key_name: str, has_key: bool, key_value: Any,
                stamp: Callable[[dict[str, Any], str], None] | None) -> int:
    """The key and the stamp of a prepared insert or update row (``has_key``: the change's
    values name the key column): an insert gets its key (one given as None is left for the
    database to make), an update drops a key equal to the record's; then ``stamp``. Returns
    the key's fate: 0 as given, 1 added at the end, 2 removed."""
    shape = 0
    if op == "insert":
        if key_value is not None:
            row[key_name] = key_value
            shape = 0 if has_key else 1
        elif has_key and row[key_name] is None:
            del row[key_name]  # let the database generate it
            shape = 2
    elif has_key and key_str(row[key_name]) == key_str(key_value):
        del row[key_name]
        shape = 2
    if stamp is not None:
        stamp(row, op)
    return shape


def _values_of(group: list[_Prepared], cols: Sequence[str], tail: tuple[Any, ...]
               ) -> list[tuple[Any, ...]]:
    """The values of ``cols`` of every row of ``group``, followed by ``tail``."""
    if not cols:
        return [tail for _ in group]
    get = operator.itemgetter(*cols)
    if len(cols) == 1:
        return [(get(p.row), *tail) for p in group]
    if tail:
        return [get(p.row) + tail for p in group]
    return [get(p.row) for p in group]


def _columns_of(row: dict[str, Any]) -> tuple[Any, ...]:
    """The names of ``row`` sorted, a column stamped by the database's clock as
    ``(name, DB_NOW)``."""
    seen = [c if v is not DB_NOW else (c, DB_NOW) for c, v in row.items()]
    return tuple(sorted(seen, key=lambda c: c if isinstance(c, str) else c[0]))


def _group_by_columns(run: list[_Prepared]) -> dict[tuple[Any, ...], list[_Prepared]]:
    """Changes grouped by the columns they write; a column stamped by the database's clock
    appears as ``(name, DB_NOW)``."""
    groups: dict[tuple[Any, ...], list[_Prepared]] = {}
    # names and which values are DB_NOW -> the group's columns, sorted once per such shape
    cols_by_shape: dict[tuple[tuple[str, ...], tuple[bool, ...]], tuple[Any, ...]] = {}
    marker = repeat(DB_NOW)
    for p in run:
        cols = p.cols
        if cols is None:
            row = p.row
            shape = (tuple(row), tuple(map(operator.is_, row.values(), marker)))
            cols = cols_by_shape.get(shape)
            if cols is None:
                cols = cols_by_shape[shape] = _columns_of(row)
        groups.setdefault(cols, []).append(p)
    return groups

