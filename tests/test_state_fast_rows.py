"""The state store's bulk writes per batch store exactly what they are given, for keys and pair
ids that array input or COPY could misread: quotes, backslashes, commas, braces, spaces,
``NULL``, tabs, newlines, unicode.

On PostgreSQL an id list goes to ``= ANY`` as one text in array input form
(``tables.pg_text_array``) rather than psycopg's dump of a Python list: the text must read back
as the very list, and a store using it must end with the same rows as one sending the list
(the general path, also taken for a value holding NUL); the keys systems answered go in one
``UPDATE ... FROM unnest`` of such arrays, with the effect of an executemany. On every backend
the archive and journal rows, now built as tuples, must hold the values the caller gave, column
by column."""

import datetime as dt
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Text, bindparam, cast, create_engine, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Engine
from sqlalchemy.types import NullType

from l2sync_dagster.engine.plan import ArchiveRow, PendingInsert
from l2sync_dagster.state import archive, tables
from l2sync_dagster.state.store import StateStore
from l2sync_dagster.state.tables import (
    archive_table,
    as_aware,
    created_table,
    pending_table,
    pg_text_array,
    to_json,
)

#: texts that array input (quotes, backslashes, separators, braces, NULL, blanks) or COPY's
#: text format (tab, newline, backslash) reads specially
TRICKY = ['a"b', "a\\b", "a,b", "{x}", " sp ", "NULL", "null", "", "é日本", '\\"', "}{,\"\\ ",
          "'", "a\tb\nc", '"NULL"', "NULL,NULL", "{}", "\\N", "a;b", "\\\\", '""']

WHEN = "2024-05-06T07:08:09+02:00"


def _pg_url(request: pytest.FixtureRequest) -> str:
    postgres = request.getfixturevalue("postgres")
    return postgres.url.replace("sync@", f"sync:{postgres.password}@")


@pytest.fixture(scope="module")
def pg_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    engine = create_engine(_pg_url(request).replace("postgresql://", "postgresql+psycopg://"))
    yield engine
    engine.dispose()


def _read_back(engine: Engine, values: list[str]) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(cast(bindparam("p", pg_text_array(values), NullType()),
                                        ARRAY(Text())))).scalar_one()


@pytest.mark.postgres
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.text(st.characters(exclude_categories=("Cs",),
                                             exclude_characters="\x00")),
                       min_size=1, max_size=12))
@example(values=TRICKY)
@example(values=[""])
@example(values=["NULL"])
def test_array_text_reads_back_as_the_list(pg_engine: Engine, values: list[str]) -> None:
    assert _read_back(pg_engine, values) == values


def test_a_value_with_nul_takes_the_general_path() -> None:
    assert pg_text_array(["a", "b\x00c"]) is None
    assert pg_text_array(['a"', "b\\"]) == '{"a\\"","b\\\\"}'


def _pid(i: int, side_key: str) -> str:
    return f"p{i:02d}{side_key}"[:64]


def _scenario(store: StateStore, name: str) -> dict[str, Any]:
    """Journal, re-journal, created keys, archive, replace and forget pairs whose ids and keys
    are :data:`TRICKY`; what every table then holds."""
    keys = TRICKY
    pids = [_pid(i, k) for i, k in enumerate(keys)]
    sides = ["left" if i % 2 else "right" for i in range(len(keys))]

    def values(i: int, attempt: int) -> dict[str, Any] | None:
        if i % 5 == 4:
            return None
        return {"k": keys[i], "n": i * attempt, "none": None, "when": WHEN,
                "other": keys[-1 - i], "attempt": attempt}

    first = [PendingInsert(pids[i], sides[i], keys[i], None if i % 3 else keys[-1 - i],
                           1000 + i, values(i, 1)) for i in range(len(keys))]
    store.journal_inserts(name, "run-1", first)
    # a re-planned insert: the same (pair, side) journaled again replaces the entry
    again = [PendingInsert(p.pair_id, p.side, p.source_key + "!", p.target_key, -p.expected_hash,
                           values(i, 2)) for i, p in enumerate(first) if i % 2 == 0]
    store.journal_inserts(name, "run-2", again)
    store.record_created_keys(name, [(p.pair_id, p.side, keys[-1 - i])
                                     for i, p in enumerate(first) if p.target_key is None]
                              + [("nope", "left", "no entry: nothing written")])
    # the same entry twice: the last key wins, as in an executemany
    store.record_created_keys(name, [(pids[1], sides[1], "first"), (pids[1], sides[1], "NULL")])
    pending_mid = _rows(store, pending_table, name)

    # the pairs journaled again agree on the very values journaled (their text is reused), but
    # the first, whose agreed values are others
    agreed = {p.pair_id: p.values for p in again if p.values is not None}
    effects = {pids[i]: ArchiveRow(
        pids[i], keys[i], keys[-1 - i], i, None if i % 4 else -i,
        (agreed.get(pids[i]) if i else values(i, 3)) or values(i, 2) or {"x": keys[i]},
        left_dirty=bool(i % 2), right_dirty=bool(i % 3 == 0),
        left_version=keys[i] if i % 2 else None, right_version=keys[-1 - i])
        for i in range(len(keys))}
    done = [(p.pair_id, p.side) for p in first]
    store.commit_effects(name, "sig", list(effects.items()), done_pending=done[:12],
                         window_field="when")
    store.commit_effects(name, "sig", [], done_pending=done[12:])
    archive_mid = _rows(store, archive_table, name)
    windows = [store.window_of(name, pid) for pid in pids]
    # replaced and forgotten pairs
    store.commit_effects(name, "sig2", [
        (pid, e.with_values(left_key=e.right_key, right_key=e.left_key, left_hash=7)
         if i % 2 else None) for i, (pid, e) in enumerate(list(effects.items())[:8])])
    store.note_created(name, "left", keys, replace=False)
    store.note_created(name, "left", keys[::2] + ["new"], replace=False)
    store.note_created(name, "right", keys[:5], replace=False)
    loaded = store.partner_keys(name, "left", keys)
    return {
        "pending_mid": pending_mid, "archive_mid": archive_mid,
        "pending": _rows(store, pending_table, name),
        "archive": _rows(store, archive_table, name),
        "created": _rows(store, created_table, name),
        "partners": sorted(loaded),
        "right_partners": sorted(store.partner_keys(name, "right", keys)),
        "windows": windows,
        "expected_effects": effects, "first": first, "again": again,
    }


def _rows(store: StateStore, table: Any, name: str) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(table).where(table.c.connection == name)).mappings().all()
    out = []
    for r in rows:
        row = dict(r)
        for col in ("updated_at", "window_at"):
            if col in row:
                row[col] = as_aware(row[col])
        out.append(row)
    return sorted(out, key=lambda r: tuple(str(v) for v in r.values()))


def _check_against_inputs(result: dict[str, Any], name: str) -> None:
    """The stored rows are the inputs, column by column (an oracle independent of the code)."""
    first, again = result["first"], result["again"]
    latest = {(p.pair_id, p.side): (p, "run-1") for p in first}
    latest.update({(p.pair_id, p.side): (p, "run-2") for p in again})
    created = {(p.pair_id, p.side): TRICKY[-1 - TRICKY.index(p.source_key)]
               for p in first if p.target_key is None}
    created[(first[1].pair_id, first[1].side)] = "NULL"
    want = [{"connection": name, "pair_id": pid, "side": side, "source_key": p.source_key,
             "target_key": created.get((pid, side), p.target_key),
             "expected_hash": p.expected_hash, "run_id": run,
             "values_json": None if p.values is None else to_json(p.values)}
            for (pid, side), (p, run) in latest.items()]
    assert result["pending_mid"] == sorted(want, key=lambda r: tuple(str(v) for v in r.values()))
    assert result["pending"] == []

    effects = result["expected_effects"]
    got = {r["pair_id"]: r for r in result["archive_mid"]}
    assert set(got) == set(effects)
    stamps = {r["updated_at"] for r in got.values()}
    assert len(stamps) == 1 and None not in stamps
    stamp = stamps.pop()
    when = dt.datetime(2024, 5, 6, 5, 8, 9, tzinfo=dt.UTC)
    for pid, e in effects.items():
        assert got[pid] == {
            "connection": name, "pair_id": pid, "left_key": e.left_key,
            "right_key": e.right_key, "left_hash": e.left_hash, "right_hash": e.right_hash,
            "left_dirty": e.left_dirty, "right_dirty": e.right_dirty,
            "left_version": e.left_version, "right_version": e.right_version,
            "mapping": "sig", "values_json": to_json(e.values), "updated_at": stamp,
            "window_at": when if "when" in e.values else None}, pid
    assert result["windows"] == [got[pid]["window_at"] for pid in effects]

    final = {r["pair_id"]: r for r in result["archive"]}
    for i, (pid, e) in enumerate(effects.items()):
        if i >= 8:
            assert final[pid] == got[pid]
        elif i % 2:
            assert (final[pid]["left_key"], final[pid]["right_key"], final[pid]["left_hash"],
                    final[pid]["mapping"], final[pid]["window_at"]) == (
                e.right_key, e.left_key, 7, "sig2", None)
        else:
            assert pid not in final
    created_rows = {(r["side"], r["key"]) for r in result["created"]}
    assert created_rows == ({("left", k) for k in TRICKY} | {("left", "new")}
                            | {("right", k) for k in TRICKY[:5]})
    assert len(result["created"]) == len(created_rows)
    assert result["partners"] == sorted({r["right_key"] for r in final.values()})
    assert result["right_partners"] == sorted({r["left_key"] for r in final.values()})


@pytest.fixture
def sqlite_store() -> Iterator[StateStore]:
    store = StateStore(f"sqlite:///{Path(tempfile.mkdtemp(prefix='l2sync-fast-')) / 's.db'}")
    yield store
    store.close()


def test_sqlite_stores_the_batches_it_is_given(sqlite_store: StateStore) -> None:
    _check_against_inputs(_scenario(sqlite_store, "fast"), "fast")


def _strip(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` without what differs between two runs of the scenario: the connection's
    name and the stamps of the writes."""
    out = {}
    for k, v in result.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            v = [{c: (None if c == "updated_at" else x) for c, x in r.items()
                  if c != "connection"} for r in v]
        out[k] = v
    return out


@pytest.mark.postgres
def test_postgres_stores_what_the_general_path_stores(
        request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    store = StateStore(_pg_url(request))
    taken: list[bool] = []

    def update_many(*args: Any) -> bool:
        taken.append(tables.update_many(*args))
        return taken[-1]

    monkeypatch.setattr(archive, "update_many", update_many)
    try:
        fast_name = f"fast_{uuid.uuid4().hex[:8]}"
        fast = _scenario(store, fast_name)
        _check_against_inputs(fast, fast_name)
        # the created keys in one statement; the same entry twice by the general path
        assert taken == [True, False]
        # the general path: every id list dumped by psycopg as a Python list
        monkeypatch.setattr(tables, "pg_text_array", lambda values: None)
        general_name = f"general_{uuid.uuid4().hex[:8]}"
        general = _scenario(store, general_name)
        _check_against_inputs(general, general_name)
        assert taken == [True, False, False, False]
        assert _strip(fast) == _strip(general)
    finally:
        store.close()
