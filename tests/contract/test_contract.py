"""The provider contract suite: every provider configuration (``case_*.py`` in this folder) runs
the same tests, through the real provider against a real server, and then through real syncs
with a SQLite table on the other side (real runner, engine and state store).

What every provider must do: report how much of the entity a query reads (``scope``), look keys
up whatever the query's WHERE or TOP, return the keys it created (``created`` callback), and,
inside a sync: propagate the delete of a record the sync created even when its change feed never
reported it, never insert twice into a side whose WHERE does not select what the sync wrote,
refuse TOP on a side that is written to, and come through a crash followed by a user's edit
without a duplicate.
"""

import importlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    from contract.harness import CaseFactory, SideCase
except ImportError:  # pragma: no cover - depends on how the suite is collected
    from harness import CaseFactory, SideCase  # type: ignore[no-redef]

from l2sync_dagster.engine.mapping import MappingError
from l2sync_dagster.providers.base import Change, Query
from l2sync_dagster.providers.registry import open_provider
from l2sync_dagster.spec.model import (
    ConflictSpec,
    ConnectionSpec,
    DeleteSpec,
    EntitySpec,
    MappingSpec,
)
from l2sync_dagster.state.store import StateStore
from l2sync_dagster.sync.runner import Sync


def _factories() -> dict[str, CaseFactory]:
    out: dict[str, CaseFactory] = {}
    for path in sorted(Path(__file__).parent.glob("case_*.py")):
        module = importlib.import_module(path.stem)
        out.update(module.CASES)
    return out


FACTORIES = _factories()


@pytest.fixture(params=sorted(FACTORIES))
def case(request: pytest.FixtureRequest, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[SideCase]:
    """One provider configuration, its entity empty, its secrets in the environment."""
    made = FACTORIES[request.param](request, tmp_path)
    for name, value in made.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    yield made


def _provider(case: SideCase, tmp: Path):
    return open_provider(case.provider, case.connection_string, tmp)


def _query(case: SideCase, text: str | None) -> Query:
    return Query(text=text, key=case.key, modified=case.modified)


class Crash(RuntimeError):
    """The process dies."""


# --- the provider alone ----------------------------------------------------------------------

def test_scope_of_whole_filtered_and_limited_queries(case: SideCase, tmp_path: Path) -> None:
    p = _provider(case, tmp_path)
    try:
        assert p.describe(_query(case, case.query)).scope == "all"
        if case.filtered_query:
            d = p.describe(_query(case, case.filtered_query))
            assert d.scope == "filtered" and d.restriction
        if case.limited_query:
            d = p.describe(_query(case, case.limited_query))
            assert d.scope == "limited" and d.restriction
    finally:
        p.close()


def test_lookup_ignores_the_filter_and_skips_deleted_keys(case: SideCase, tmp_path: Path
                                                          ) -> None:
    inside = case.user.create("Ann", "in")
    outside = case.user.create("Bob", "out")
    gone = case.user.create("Cid", "in")
    case.user.delete(gone)
    p = _provider(case, tmp_path)
    try:
        q = _query(case, case.filtered_query or case.query)
        read = p.read(q)
        if case.filtered_query:
            assert list(map(str, read.frame.index)) == [inside]
        found = p.lookup(q, [inside, outside, gone])
        assert sorted(map(str, found.index)) == sorted([inside, outside])
        assert list(found.columns) == list(read.frame.columns)
    finally:
        p.close()


def test_inserts_return_their_keys_through_created(case: SideCase, tmp_path: Path) -> None:
    p = _provider(case, tmp_path)
    seen: list[str] = []
    try:
        q = _query(case, case.query)
        changes = [Change("insert", f"r{i}", None,
                          {case.name_field: f"N{i}", case.city_field: "c"}) for i in range(3)]
        desc = p.describe(q)
        if not desc.key_generated:
            import uuid

            changes = [Change(c.op, c.ref, str(uuid.uuid4()), c.values) for c in changes]
        outcomes = p.apply(q, changes,
                           created=lambda outs: seen.extend(str(o.key) for o in outs))
        assert all(o.ok for o in outcomes), [o.error for o in outcomes]
        keys = sorted(str(o.key) for o in outcomes)
        assert sorted(seen) == keys
        assert sorted(case.user.records()) == keys
    finally:
        p.close()


# --- the provider in a sync with a SQLite table ----------------------------------------------

def _table(tmp: Path) -> Path:
    db = tmp / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS people (id INTEGER PRIMARY KEY, name TEXT, "
                     "city TEXT, updated_at TIMESTAMP)")
    return db


def _sync(case: SideCase, tmp: Path, *, query: str | None, direction: str = "bidirectional",
          store: StateStore | None = None) -> Sync:
    db = _table(tmp)
    spec = ConnectionSpec(
        name="contract", path=tmp / "connections" / "contract.yaml", project_dir=tmp,
        direction=direction,
        left=EntitySpec(provider="sql", connection_string=f"URL=sqlite:///{db}",
                        query="people", key="id", modified="updated_at"),
        right=EntitySpec(provider=case.provider, connection_string=case.connection_string,
                         query=query, key=case.key, modified=case.modified),
        mapping=MappingSpec(auto=False, fields=[
            {"left": "name", "right": case.name_field},
            {"left": "city", "right": case.city_field}]),
        conflicts=ConflictSpec(policy="left_wins", fallback="left_wins"),
        deletes=DeleteSpec(propagate=True, max_fraction=1.0),
    )
    return Sync(spec, store or StateStore(f"sqlite:///{tmp / 'state.db'}"))


def _db(tmp: Path) -> dict[int, tuple[str, str]]:
    with sqlite3.connect(tmp / "other.db") as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, name, city FROM people")}


def _db_insert(tmp: Path, name: str, city: str) -> None:
    with sqlite3.connect(_table(tmp)) as conn:
        conn.execute("INSERT INTO people (name, city, updated_at) VALUES (?, ?, "
                     "CURRENT_TIMESTAMP)", (name, city))


def _run(sync: Sync) -> None:
    try:
        sync.run()
    finally:
        sync.close()


def test_delete_of_a_record_the_sync_created_propagates(case: SideCase, tmp_path: Path) -> None:
    _run(_sync(case, tmp_path, query=case.query))  # first run: nothing, cursors saved
    _db_insert(tmp_path, "Dee", "x")
    _run(_sync(case, tmp_path, query=case.query))
    created = list(case.user.records())
    assert len(created) == 1
    case.user.delete(created[0])
    _run(_sync(case, tmp_path, query=case.query))
    assert _db(tmp_path) == {}


def test_top_on_the_written_side_is_refused(case: SideCase, tmp_path: Path) -> None:
    if not case.limited_query:
        pytest.skip(f"{case.id} has no TOP syntax")
    sync = _sync(case, tmp_path, query=case.limited_query)
    try:
        with pytest.raises(MappingError, match="limits what the sync reads|read-only"):
            sync.verify()
    finally:
        sync.close()


def test_where_on_the_written_side_never_inserts_twice(case: SideCase, tmp_path: Path) -> None:
    if not case.filtered_query:
        pytest.skip(f"{case.id} has no WHERE syntax")
    probe = _sync(case, tmp_path, query=case.filtered_query)
    writable = probe.describe("right").writable
    probe.close()
    if not writable:
        pytest.skip(f"{case.id}: a query with WHERE is read-only for this provider")
    _db_insert(tmp_path, "Eve", "in")
    _db_insert(tmp_path, "Fay", "out")
    for _ in range(3):
        _run(_sync(case, tmp_path, query=case.filtered_query))
    assert sorted(case.user.records().values()) == [("Eve", "in"), ("Fay", "out")]
    assert sorted(_db(tmp_path).values()) == [("Eve", "in"), ("Fay", "out")]


@pytest.mark.parametrize("when", ["after_keys", "before_keys"])
def test_crash_after_create_then_user_edit_no_duplicate(case: SideCase, tmp_path: Path,
                                                        when: str) -> None:
    """Killed after the system created the record (before or after the runner recorded its
    key); a person edits the created record; the re-run pairs it, and the edit survives."""
    _run(_sync(case, tmp_path, query=case.query))
    _db_insert(tmp_path, "Gus", "x")
    sync = _sync(case, tmp_path, query=case.query)
    provider = sync.provider("right")
    real = provider.apply

    def dying_apply(query, changes, *, created=None):
        real(query, changes, created=created if when == "after_keys" else None)
        raise Crash("killed")

    if when == "before_keys" and not case.stamps and sync.describe("right").key_generated:
        sync.close()
        pytest.skip(f"{case.id}: keys are made by the system and it cannot stamp records; "
                    "the window between its answer and the journal is not covered")
    provider.apply = dying_apply  # type: ignore[method-assign]
    with pytest.raises(Crash):
        sync.run()
    sync.close()
    created = list(case.user.records())
    assert len(created) == 1
    case.user.update(created[0], name="Gus edited")
    _run(_sync(case, tmp_path, query=case.query))
    _run(_sync(case, tmp_path, query=case.query))
    assert list(case.user.records().values()) == [("Gus edited", "x")]
    assert list(_db(tmp_path).values()) == [("Gus edited", "x")]


def test_update_delete_and_a_bad_record_fails_alone(case: SideCase, tmp_path: Path) -> None:
    """One batch: an update, an update of a record a person deleted, a delete. Only the second
    fails, with a reason; the others are done."""
    keep = case.user.create("Hal", "x")
    drop = case.user.create("Ida", "x")
    gone = case.user.create("Jon", "x")
    case.user.delete(gone)
    p = _provider(case, tmp_path)
    try:
        q = _query(case, case.query)
        frame = p.read(q).frame
        ver = (lambda k: str(frame.loc[k, "_version"])) if "_version" in frame.columns \
            else (lambda k: None)
        outcomes = p.apply(q, [
            Change("update", "a", keep, {case.name_field: "Hal 2"}, ver(keep)),
            Change("update", "b", gone, {case.name_field: "nobody"}),
            Change("delete", "c", drop, version=ver(drop)),
        ])
        by_ref = {o.ref: o for o in outcomes}
        assert by_ref["a"].ok and by_ref["c"].ok, outcomes
        # a system that keeps deleted records (Exchange's Deleted Items) may accept the
        # update; the record must not come back either way
        assert not by_ref["b"].ok and by_ref["b"].error or gone not in case.user.records()
        assert case.user.records() == {keep: ("Hal 2", "x")}
    finally:
        p.close()


def test_update_with_a_stale_version_is_refused(case: SideCase, tmp_path: Path) -> None:
    """Where the system versions records (ChangeKey, ETag), an update carrying the version the
    sync read before a person's edit must not overwrite that edit."""
    key = case.user.create("Kim", "x")
    p = _provider(case, tmp_path)
    try:
        q = _query(case, case.query)
        frame = p.read(q).frame
        if "_version" not in frame.columns:
            pytest.skip(f"{case.id}: the system has no record versions")
        old = str(frame.loc[key, "_version"])
        case.user.update(key, name="Kim by hand")
        assert str(p.read(q).frame.loc[key, "_version"]) != old
        [out] = p.apply(q, [Change("update", "a", key, {case.name_field: "Kim sync"}, old)])
        assert not out.ok
        assert case.user.records()[key][0] == "Kim by hand"
    finally:
        p.close()


def test_a_read_only_target_is_refused_naming_field_and_side(case: SideCase, tmp_path: Path
                                                             ) -> None:
    if not case.read_only_field:
        pytest.skip(f"{case.id} has no read-only field")
    query = case.query
    if query and query.upper().startswith("SELECT ") and "*" not in query:
        query = f"SELECT {case.read_only_field}, {query[7:]}"  # select the field too
    sync = _sync(case, tmp_path, query=query)
    fields = [{"left": "name", "right": case.name_field},
              {"left": "city", "right": case.read_only_field}]
    sync.spec = sync.spec.model_copy(update={"mapping": MappingSpec(auto=False, fields=fields)})
    try:
        with pytest.raises(MappingError) as err:
            sync.verify()
        text = str(err.value)
        assert case.read_only_field in text and "right" in text and "read-only" in text
        if case.writable_alternative:
            assert case.writable_alternative in text
    finally:
        sync.close()
