"""Runs whose cost follows the changes (issue 15) decide exactly what full runs decide.

A run whose reads are all incremental loads only the archive pairs they touched, and the
target of a one-way connection without mirror is read by key (the pairs its source's changes
touched) instead of in full. The property test drives two identical worlds through the same
configurations, user edits, deletes and crashes, one with ``Sync.follow_changes`` and one
without, and requires both systems to hold the same records after every run. The other tests
show that the narrow path is taken, what it reads, and that it falls back to a full read where
the target could tell more.
"""

import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from memory_provider import MemoryProvider
from test_integrity_properties import SIDES, World, edit

from l2sync_dagster.engine.mapping import MappingError
from l2sync_dagster.orchestration.metadata import read_metadata
from l2sync_dagster.spec.model import ConnectionSpec, DeleteSpec, EntitySpec, MappingSpec
from l2sync_dagster.state.store import StateStore
from l2sync_dagster.sync.runner import Sync

configs = st.fixed_dictionaries({
    "direction": st.sampled_from(["left_to_right", "right_to_left", "left_to_right",
                                  "right_to_left", "bidirectional"]),
    "mirror": st.sampled_from([False, False, True]),
    "left_query": st.sampled_from([None, None, "WHERE city = 'in'"]),
    "right_query": st.sampled_from([None, None, "WHERE city = 'in'"]),
    "stamps": st.sampled_from([(False, False), (True, True)]),
    "switch": st.just(False),
    "city": st.sampled_from(["both", "left_to_right", "right_to_left"]),
    "generated": st.sampled_from([(True, True), (True, False), (False, True), (False, False)]),
    # a one-way source always has a change feed; a target or a bidirectional side may
    "feed": st.tuples(st.booleans(), st.booleans()),
    # a feed reports deletes, or lists the keys in scope (a sql watermark read)
    "lists_keys": st.tuples(st.booleans(), st.booleans()),
})
step = st.tuples(st.lists(edit, max_size=5),
                 st.one_of(st.none(), st.none(), st.tuples(st.sampled_from(SIDES),
                                                           st.booleans(), st.integers(1, 3))),
                 st.lists(edit, max_size=3))
#: a person deletes a one-way target's record, then the source edits it
TARGET_DELETE = {"direction": "left_to_right", "mirror": False, "left_query": None,
                 "right_query": None, "stamps": (False, False), "switch": False, "city": "both",
                 "generated": (False, False), "feed": (True, False),
                 "lists_keys": (False, False)}
TARGET_DELETE_STEPS = [([("left", "insert", 0, "name", "a"), ("left", "insert", 0, "name", "b")],
                        None, []),
                       ([("right", "delete", 1, "name", "x")], None, []),
                       ([("left", "update", 1, "city", "x")], None, [])]
#: both sides with change feeds (every run narrow): a delete one feed reports
FEED_DELETE = {**TARGET_DELETE, "direction": "bidirectional", "feed": (True, True)}
FEED_DELETE_STEPS = [([("left", "insert", 0, "name", "a"), ("left", "insert", 0, "name", "b")],
                      None, []),
                     ([("left", "delete", 1, "name", "x")], None, [])]


class UidWorld(World):
    """A world whose people pick records by their uid, not by the system's key (keys the sync
    makes are random, and two worlds must receive the same edits)."""

    def __init__(self, cfg: dict, follow: bool) -> None:
        feed = list(cfg["feed"])
        if cfg["direction"] != "bidirectional":
            feed[0 if cfg["direction"] == "left_to_right" else 1] = True
        super().__init__({**cfg, "feed": tuple(feed)})
        for side, lists in zip(SIDES, cfg["lists_keys"], strict=True):
            self.p[side].lists_keys = lists
        self.follow = follow

    def sync(self) -> Sync:
        sync = super().sync()
        sync.follow_changes = self.follow
        return sync

    def order(self, p: MemoryProvider) -> list[str]:
        return sorted(p.rows, key=lambda k: p.rows[k]["uid"])

    def contents(self) -> dict[str, list[tuple]]:
        return {s: sorted((r["uid"], r["name"], r["city"]) for r in self.p[s].rows.values())
                for s in SIDES}


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target])
@given(cfg=configs, steps=st.lists(step, min_size=1, max_size=4))
@example(cfg=TARGET_DELETE, steps=TARGET_DELETE_STEPS)
@example(cfg=FEED_DELETE, steps=FEED_DELETE_STEPS)
def test_runs_that_follow_the_changes_write_what_full_runs_write(cfg: dict, steps: list
                                                                   ) -> None:
    worlds = [UidWorld(cfg, follow=True), UidWorld(cfg, follow=False)]
    try:
        worlds[0].sync().verify()
    except MappingError:
        return
    for edits, crash, after in [*steps, ([], None, []), ([], None, [])]:
        for w in worlds:
            w.user(edits)
            w.run(crash)
            w.user(after)
        narrow, full = (w.contents() for w in worlds)
        assert narrow == full


def _sqlite_pair(tmp: Path, rows: int) -> ConnectionSpec:
    with sqlite3.connect(tmp / "src.db") as db:
        db.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, city TEXT, "
                   "updated_at TIMESTAMP)")
        db.executemany("INSERT INTO people VALUES (?, ?, ?, '2026-01-01 00:00:00')",
                       [(i, f"p{i}", "Oslo") for i in range(1, rows + 1)])
    with sqlite3.connect(tmp / "dst.db") as db:
        db.execute("CREATE TABLE people (id BIGINT PRIMARY KEY, name TEXT, city TEXT)")
    return ConnectionSpec(
        name="people", path=tmp / "connections" / "people.yaml", project_dir=tmp,
        direction="left_to_right",
        left=EntitySpec(provider="sql", connection_string="URL=sqlite:///src.db",
                        query="people", key="id", modified="updated_at"),
        right=EntitySpec(provider="sql", connection_string="URL=sqlite:///dst.db",
                         query="people", key="id"),
        mapping=MappingSpec(auto=True, fields=[{"left": "id", "right": "id"}],
                            exclude=["updated_at"]),
        deletes=DeleteSpec(propagate=True),
    )


@pytest.fixture
def sql_pair():
    tmp = Path(tempfile.mkdtemp(prefix="l2sync-follow-"))
    spec = _sqlite_pair(tmp, 50)
    store = StateStore(f"sqlite:///{tmp / 'state.db'}")
    assert Sync(spec, store).run().status == "succeeded"
    yield tmp, spec, store
    store.close()


def _edit(db: Path, sql: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql)


class Spy:
    """Records the target's reads and lookups and the archive loads of a run."""

    def __init__(self, sync: Sync) -> None:
        self.reads = 0
        self.lookups: list[list[str]] = []
        self.archive_keys: list[dict | None] = []
        target = sync.provider("right")
        read, lookup = target.read, target.lookup
        load = sync.store.load_archive

        def spy_read(*a, **kw):
            self.reads += 1
            return read(*a, **kw)

        def spy_lookup(query, keys):
            self.lookups.append(sorted(keys))
            return lookup(query, keys)

        def spy_load(*a, **kw):
            self.archive_keys.append(kw.get("keys"))
            return load(*a, **kw)

        target.read, target.lookup = spy_read, spy_lookup  # type: ignore[method-assign]
        sync.store.load_archive = spy_load  # type: ignore[method-assign]


def test_a_one_way_target_is_read_by_key_and_the_archive_by_the_changes(sql_pair) -> None:
    tmp, spec, store = sql_pair
    _edit(tmp / "src.db", "UPDATE people SET city = 'Rome', updated_at = '2026-02-01 00:00:00' "
                          "WHERE id IN (3, 7)")
    sync = Sync(spec, store)
    spy = Spy(sync)
    report = sync.run()
    assert report.status == "succeeded"
    assert report.counts()["right"]["updated"] == 2
    assert spy.reads == 0  # the target was not read in full
    # the two changed pairs, plus one archived key asked to show that the table is there
    assert len(spy.lookups) == 1 and {"3", "7"} <= set(spy.lookups[0])
    assert len(spy.lookups[0]) <= 3
    assert any("read by key" in n for n in report.prepared.notes)
    reads = report.details()["reads"]
    assert reads["right"]["feed"] == "by key" and reads["left"]["feed"] == "incremental"
    # the Dagster extract asset's metadata says so too
    assert read_metadata(report.prepared.reads["right"])["feed"].value == "by key"
    # the archive was loaded for the touched keys only, never in full
    assert spy.archive_keys and all(k is not None for k in spy.archive_keys)
    with sqlite3.connect(tmp / "dst.db") as db:
        assert db.execute("SELECT count(*) FROM people WHERE city = 'Rome'").fetchone() == (2,)


def test_a_no_change_run_loads_no_archive_pair(sql_pair) -> None:
    tmp, spec, store = sql_pair
    sync = Sync(spec, store)
    spy = Spy(sync)
    report = sync.run()
    assert report.counts()["right"]["updated"] == 0 and spy.reads == 0
    assert spy.archive_keys == [{"left": [], "right": []}]  # one keyed load, of nothing
    assert len(store.load_archive(spec.name, sync.mapping(), keys={"left": [], "right": []})) == 0


def test_a_target_record_a_person_deleted_sends_the_run_to_a_full_read(sql_pair) -> None:
    tmp, spec, store = sql_pair
    _edit(tmp / "dst.db", "DELETE FROM people WHERE id = 5")
    _edit(tmp / "src.db", "UPDATE people SET city = 'Lima', updated_at = '2026-02-01 00:00:00' "
                          "WHERE id = 5")
    sync = Sync(spec, store)
    spy = Spy(sync)
    report = sync.run()
    assert spy.reads == 1  # the lookup missed id 5: the full read judged it, as always
    assert report.status == "succeeded"
    with sqlite3.connect(tmp / "dst.db") as db:  # one-way: the source's record comes back
        assert db.execute("SELECT city FROM people WHERE id = 5").fetchone() == ("Lima",)


def test_a_source_read_in_full_still_reads_the_target_in_full(sql_pair) -> None:
    tmp, spec, store = sql_pair
    spec = spec.model_copy(update={"left": spec.left.model_copy(
        update={"connection_string": "URL=sqlite:///src.db", "modified": None})})
    # a source without a watermark is read in full: the run is not narrow, deletes are seen
    _edit(tmp / "src.db", "DELETE FROM people WHERE id = 9")
    sync = Sync(spec, store)
    spy = Spy(sync)
    report = sync.run()
    assert report.counts()["right"]["deleted"] == 1 and spy.reads == 1


@pytest.mark.parametrize("change", ["match_on", "mirror", "full"])
def test_what_needs_the_whole_target_still_reads_it(sql_pair, change: str) -> None:
    tmp, spec, store = sql_pair
    _edit(tmp / "src.db", "UPDATE people SET city = 'Bern', updated_at = '2026-02-01 00:00:00' "
                          "WHERE id = 2")
    if change == "match_on":
        spec = spec.model_copy(update={"match_on": ["name"]})
    elif change == "mirror":
        spec = spec.model_copy(update={"mirror": True})
    sync = Sync(spec, store)
    spy = Spy(sync)
    report = sync.run(full=change == "full")
    assert spy.reads == 1 and not spy.lookups
    assert report.counts()["right"]["updated"] == 1


def test_the_check_reads_back_by_key_what_a_small_run_wrote(sql_pair) -> None:
    tmp, spec, store = sql_pair
    _edit(tmp / "src.db", "UPDATE people SET name = 'Ada', updated_at = '2026-02-01 00:00:00' "
                          "WHERE id = 4")
    sync = Sync(spec, store)
    spy = Spy(sync)
    report = sync.run(check=True)
    assert report.check is not None and report.check.passed and report.check.checked == 1
    assert spy.reads == 0 and ["4"] in spy.lookups
    # a value the target changed behind the sync's back is found by the keyed check too
    original = sync.provider("right").apply

    def lossy(query, changes, **kw):
        out = original(query, changes, **kw)
        _edit(tmp / "dst.db", "UPDATE people SET name = 'lost' WHERE id = 6")
        return out

    sync = Sync(spec, store)
    sync.provider("right").apply = lossy  # type: ignore[method-assign]
    _edit(tmp / "src.db", "UPDATE people SET name = 'Bo', updated_at = '2026-02-02 00:00:00' "
                          "WHERE id = 6")
    report = sync.run(check=True)
    assert report.check is not None and not report.check.passed
    assert report.check.mismatches[0]["key"] == "6"


def test_after_a_crash_the_target_is_read_in_full(sql_pair) -> None:
    """The journal's inserts are recognised among every target record, so the run after a
    crash reads the whole target; the one after that follows the changes again."""
    tmp, spec, store = sql_pair
    _edit(tmp / "src.db", "INSERT INTO people VALUES (51, 'new', 'Kyiv', '2026-02-01 00:00:00')")
    sync = Sync(spec, store)
    original = sync.provider("right").apply

    def dies(query, changes, **kw):
        original(query, changes, **kw)
        raise KeyboardInterrupt("killed after the insert, before its outcome")

    sync.provider("right").apply = dies  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        sync.run()
    assert store.pending_inserts(spec.name)
    sync = Sync(spec, store)
    spy = Spy(sync)
    report = sync.run()
    assert spy.reads == 1 and report.counts()["right"]["inserted"] == 0  # recovered, once
    assert not store.pending_inserts(spec.name)
    _edit(tmp / "src.db", "UPDATE people SET name = 'newer', updated_at = '2026-02-02 00:00:00' "
                          "WHERE id = 51")
    sync = Sync(spec, store)
    spy = Spy(sync)
    assert sync.run().counts()["right"]["updated"] == 1 and spy.reads == 0
    with sqlite3.connect(tmp / "dst.db") as db:
        assert db.execute("SELECT count(*), max(name) FROM people WHERE id = 51").fetchone() \
            == (1, "newer")
