"""The read path of the ``sql`` provider: ``read`` (full, incremental by watermark, windowed),
``lookup`` of keys whatever the query's restrictions, ``probe``, and RecordFrames built column by
column from fetched rows."""

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from decimal import InvalidOperation
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from l2sync_dagster.providers.base import (
    KEY_INDEX,
    MODIFIED,
    ProviderError,
    Query,
    ReadResult,
    typed_column,
)
from l2sync_dagster.providers.sql_describe import Entity, close_names
from l2sync_dagster.providers.sql_values import (
    chunks,
    from_raw,
    key_index,
    key_strs,
    to_text,
)
from l2sync_dagster.sql_fetch import fetch_columns

log = logging.getLogger("l2sync.providers.sql.read")


class SqlReads:
    """``read``, ``lookup`` and ``probe`` of :class:`~l2sync_dagster.providers.sql.SqlProvider`.

    Mixed into the provider, which supplies the entity of a query, read-only connections and
    its error messages."""

    #: keys per ``IN (...)`` list
    in_chunk: int
    _entity: Callable[[Query], Entity]
    _reading: Callable[[], AbstractContextManager[Connection]]
    _db_error: Callable[[str, BaseException], ProviderError]

    def read(
        self, query: Query, cursor: str | None = None, window: tuple[Any, Any] | None = None
    ) -> ReadResult:
        """Read the entity in one SELECT; only rows modified since the cursor's watermark when
        ``query.modified`` is set and a cursor is given. ``window`` = (start, end) limits the
        read to ``start <= window_field < end`` (``query.window_field``, else the modified
        column; either bound may be None), in the WHERE clause. A read limited by a window
        only is complete for its window.

        An incremental read's ``present_keys`` are the keys within the query's scope (for a
        SELECT with WHERE/LIMIT: the keys it selects now, not every key of the table)."""
        ent = self._entity(query)
        desc = ent.description
        names = list(ent.columns)
        mod_col = ent.columns[desc.modified] if desc.modified else None
        watermark = parse_cursor(cursor) if mod_col is not None else None
        win_col = self._window_column(ent, query) if window is not None else None
        conditions = []
        if watermark is not None:
            # rows without a modified time cannot be ordered: read them every time
            since = mod_col >= ent.bind(watermark, mod_col)
            conditions.append(sa.or_(since, mod_col.is_(None)))
        incremental = bool(conditions)
        if window is not None:
            start, end = window
            if start is not None:
                conditions.append(win_col >= ent.bind(as_utc(start), win_col))
            if end is not None:
                conditions.append(win_col < ent.bind(as_utc(end), win_col))
        if ent.table is not None or conditions:
            stmt: Any = sa.select(*ent.read_columns(names))
        else:
            stmt = sa.text(ent.select or "")
        if conditions:
            stmt = stmt.where(*conditions)
        present = None
        with self._reading() as conn:
            try:
                columns = fetch_columns(conn, stmt)
                if incremental:
                    keys = fetch_columns(conn, sa.select(ent.key))[0]
                    present = key_index(keys, KEY_INDEX)
            except sa_exc.SQLAlchemyError as exc:
                raise self._db_error(f"reading {ent.label} failed", exc) from None
        frame = build_frame(columns, names, ent.types, desc.key, ent.raw)
        if desc.modified:
            frame[MODIFIED] = utc_series(frame[desc.modified])
        new_cursor = None
        if desc.modified:
            seen = frame[MODIFIED].dropna()
            if len(seen):
                newest = seen.max().to_pydatetime()
                if watermark is not None and newest < watermark:
                    newest = watermark
                new_cursor = json.dumps({"watermark": newest.isoformat()})
            elif cursor is not None and watermark is not None:
                new_cursor = cursor
        if window is not None:
            new_cursor = cursor
        return ReadResult(frame, complete=not incremental, cursor=new_cursor, present_keys=present)

    def _window_column(self, ent: Entity, query: Query) -> Any:
        name = query.window_field or ent.description.modified
        if not name:
            raise ProviderError("a read window needs `modified:` or a window field")
        col = ent.column(name)
        if col is None:
            raise ProviderError(
                f"{ent.label} has no column {name!r} to slice windows on"
                f"{close_names(name, list(ent.columns))}")
        return col

    def lookup(self, query: Query, keys: Sequence[str]) -> pd.DataFrame:
        """The records among ``keys`` that still exist, as a RecordFrame, whatever the query's
        WHERE, LIMIT/TOP or window: a SELECT's keys are looked up in the statement without
        those clauses (for a single-table SELECT: in the table). Batched in ``IN`` lists."""
        ent = self._entity(query)
        desc = ent.description
        names = list(ent.columns)
        values = []
        for k in keys:
            try:
                values.append(ent.key_value(str(k)))
            except (ValueError, InvalidOperation):
                continue  # a key this column cannot hold does not exist
        source = ent.lookup_source
        cols = ent.read_columns(names, source)
        key = ent.key if source is None else source.c[desc.key]
        columns: list[list[Any]] = [[] for _ in names]
        with self._reading() as conn:
            try:
                for chunk in chunks(values, self.in_chunk):
                    got = fetch_columns(conn, sa.select(*cols).where(key.in_(chunk)))
                    for column, part in zip(columns, got, strict=True):
                        column.extend(part)
            except sa_exc.SQLAlchemyError as exc:
                raise self._db_error(f"looking up keys in {ent.label} failed", exc) from None
        frame = build_frame(columns, names, ent.types, desc.key, ent.raw)
        if desc.modified:
            frame[MODIFIED] = utc_series(frame[desc.modified])
        return frame

    def probe(self, query: Query, cursor: str | None = None) -> str:
        """``count(*)`` and ``max(modified)`` of the entity in one aggregate query; without a
        modified column, a digest of every row (the only correct fingerprint then)."""
        ent = self._entity(query)
        desc = ent.description
        source: Any = ent.table if ent.table is not None else ent.select_source
        with self._reading() as conn:
            try:
                if desc.modified:
                    mod = ent.columns[desc.modified]
                    if desc.modified in ent.raw:  # as stored: a bad value must not raise here
                        mod = sa.type_coerce(mod, sa.types.NullType())
                    row = conn.execute(sa.select(sa.func.count(), sa.func.max(mod),
                                                 sa.func.min(mod)).select_from(source)).one()
                    return json.dumps({"count": int(row[0]), "max_modified": to_text(row[1]),
                                       "min_modified": to_text(row[2])})
                names = list(ent.columns)
                rows = conn.execute(sa.select(*ent.read_columns(names))
                                    .order_by(ent.key)).fetchall()
            except sa_exc.SQLAlchemyError as exc:
                raise self._db_error(f"probing {ent.label} failed", exc) from None
        digest = hashlib.sha256()
        for r in rows:
            digest.update(repr(tuple(r)).encode())
        return json.dumps({"count": len(rows), "rows_sha256": digest.hexdigest()})




def as_utc(value: Any) -> dt.datetime:
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def parse_cursor(cursor: str | None) -> dt.datetime | None:
    """The watermark of a cursor; None (a full read) for no cursor or one this provider did
    not write."""
    if not cursor:
        return None
    try:
        data = json.loads(cursor)
        return as_utc(dt.datetime.fromisoformat(data["watermark"]))
    except (ValueError, TypeError, KeyError):
        log.warning("ignoring a cursor that is not a sql watermark; reading everything")
        return None


def build_frame(
    columns: Sequence[Sequence[Any]], names: list[str], types: dict[str, str], key: str,
    raw: dict[str, str] | None = None,
) -> pd.DataFrame:
    """A RecordFrame from fetched columns (:func:`~l2sync_dagster.sql_fetch.fetch_columns`),
    one per name (no per-row Python objects); ``raw`` columns hold values as stored and are
    converted here."""
    data: dict[str, Any] = {}
    for name, values in zip(names, columns, strict=True):
        ftype = types.get(name, "string")
        if raw and name in raw:
            values = tuple(from_raw(v, ftype) for v in values)
        data[name] = _column(values, ftype)
    frame = pd.DataFrame(data, columns=names)
    keys = frame[key]
    if len(frame) and keys.isna().any():
        raise ProviderError(
            f"{int(keys.isna().sum())} rows have no value in the key column "
            f"{key!r}; choose a key column without NULLs"
        )
    if pd.api.types.is_integer_dtype(keys.dtype):
        index = pd.Index(keys.to_numpy(dtype=np.int64).astype(str), name=KEY_INDEX)
    else:
        index = pd.Index(key_strs(keys.to_numpy(dtype=object)), name=KEY_INDEX)
    if index.has_duplicates:
        dup = index[index.duplicated()][0]
        raise ProviderError(
            f"the key column {key!r} is not unique: {dup!r} appears more than "
            "once; choose a unique key column"
        )
    frame.index = index
    return frame


def _column(values: Sequence[Any], ftype: str) -> Any:
    """One column as a pandas array; strings as pandas' string array when they all are."""
    if ftype == "string":
        try:
            return pd.array(values)
        except (TypeError, ValueError):
            pass
    if ftype == "integer" and not all(
        v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values
    ):
        # a REAL or text in an INTEGER column (SQLite): kept as stored, never cast through
        # float64; the engine converts it exactly or rejects its record
        return np.fromiter(values, dtype=object, count=len(values))
    return typed_column(values, ftype)


def utc_series(series: pd.Series) -> pd.Series:
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert("UTC")
    return pd.to_datetime(series, utc=True, errors="coerce", format="mixed")
