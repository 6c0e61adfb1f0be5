"""Integrity under the configurations users write: TOP and WHERE on either side, one way then
both ways, crashes followed by user edits and deletes before the re-run, and records the sync
created that a change feed never reports. Real runner, engine and state store; the systems are
in-memory providers that behave like the real ones (restricted reads, a change feed that only
reports deletes of records it knew, stamps, keys the system generates).
"""

import tempfile
from pathlib import Path

import pytest
from memory_provider import Crash, MemoryProvider

from l2sync_dagster.engine.mapping import MappingError
from l2sync_dagster.spec.model import (
    ConflictSpec,
    ConnectionSpec,
    DeleteSpec,
    EntitySpec,
    MappingSpec,
)
from l2sync_dagster.state.store import StateStore
from l2sync_dagster.sync.runner import Sync

FIELDS = ["name", "city"]


def make_sync(direction: str = "bidirectional", *, left_query: str | None = None,
              right_query: str | None = None, propagate: bool = True, mirror: bool = False,
              out_of_scope: str = "keep", match_on: tuple[str, ...] = (),
              left: MemoryProvider | None = None, right: MemoryProvider | None = None,
              store: StateStore | None = None, tmp: Path | None = None) -> Sync:
    """A connection between two memory systems; pass the systems and store to re-open it."""
    tmp = tmp or Path(tempfile.mkdtemp(prefix="l2sync-integrity-"))
    spec = ConnectionSpec(
        name="integrity", path=tmp / "connections" / "integrity.yaml", project_dir=tmp,
        direction=direction, mirror=mirror,
        left=EntitySpec(provider="memory", connection_string="Name=left", key="lid",
                        query=left_query),
        right=EntitySpec(provider="memory", connection_string="Name=right", key="rid",
                         query=right_query),
        mapping=MappingSpec(auto=True), match_on=list(match_on),
        conflicts=ConflictSpec(policy="left_wins", fallback="left_wins"),
        deletes=DeleteSpec(propagate=propagate, max_fraction=1.0, out_of_scope=out_of_scope),
    )
    left = left or MemoryProvider(FIELDS, key="lid", key_generated=True, batch_size=2)
    right = right or MemoryProvider(FIELDS, key="rid", key_generated=True, batch_size=2)
    sync = Sync(spec, store or StateStore(f"sqlite:///{tmp / 'state.db'}"))
    sync._providers = {"left": left, "right": right}
    sync.tmp = tmp  # type: ignore[attr-defined]
    return sync


def reopen(sync: Sync, **changes) -> Sync:
    """The same systems and archive with a changed connection file (a user edits the YAML)."""
    s = sync.spec
    kw = dict(direction=s.direction, left_query=s.left.query, right_query=s.right.query,
              propagate=s.deletes.propagate, mirror=s.mirror, out_of_scope=s.deletes.out_of_scope,
              match_on=tuple(s.match_on))
    kw.update(changes)
    return make_sync(**kw, left=sync._providers["left"], right=sync._providers["right"],
                     store=sync.store, tmp=sync.tmp)  # type: ignore[attr-defined]


def values(p: MemoryProvider) -> list[tuple]:
    return sorted((r["name"], r["city"]) for r in p.rows.values())


def run_clean(sync: Sync) -> None:
    """Run, then check that a second run plans nothing."""
    sync.run()
    plan = sync.run(dry_run=True).prepared.plan  # type: ignore[union-attr]
    assert not plan.writes, plan.render()


# --- TOP -----------------------------------------------------------------------------------

@pytest.mark.parametrize("direction,side", [("bidirectional", "left"),
                                            ("bidirectional", "right"),
                                            ("right_to_left", "left"),
                                            ("left_to_right", "right")])
def test_top_on_a_side_that_is_written_to_is_refused(direction: str, side: str) -> None:
    sync = make_sync(direction, **{f"{side}_query": "TOP 5"})
    with pytest.raises(MappingError, match=rf"{side}.query: TOP 5 limits .* writes to it"):
        sync.verify()
    with pytest.raises(MappingError):
        sync.run(dry_run=True)


def test_top_on_the_source_of_a_mirror_is_refused() -> None:
    sync = make_sync("left_to_right", left_query="TOP 5", mirror=True)
    with pytest.raises(MappingError, match="mirror"):
        sync.run(dry_run=True)


def test_top_source_one_way_then_both_ways_without_top_no_duplicate_no_loss() -> None:
    """The Layer2 walkthrough: TOP 5 one way, then both ways (TOP refused, then removed)."""
    sync = make_sync("left_to_right", left_query="TOP 5")
    src, dst = sync._providers["left"], sync._providers["right"]
    for i in range(8):
        src.user_insert({"name": f"a{i}", "city": "x"})
    for i in range(3):
        dst.user_insert({"name": f"own{i}", "city": "y"})
    run_clean(sync)
    assert len(dst.rows) == 8  # 3 own + the first 5
    # the order changes: the first run's records leave the TOP 5, the other 3 enter it; the
    # ones that left are not deleted, the new ones are added: 3 own + all 8
    first = list(src.rows)
    src.rows = {k: src.rows[k] for k in reversed(first)}
    run_clean(sync)
    assert len(dst.rows) == 3 + 8
    both = reopen(sync, direction="bidirectional")
    with pytest.raises(MappingError, match="TOP 5"):
        both.run()
    both = reopen(sync, direction="bidirectional", left_query=None)
    run_clean(both)
    assert values(src) == values(dst)
    assert len(src.rows) == 11 and len(dst.rows) == 11
    assert len(set(values(src))) == 11


def test_top_source_record_beyond_the_limit_is_not_deleted_on_the_target() -> None:
    sync = make_sync("left_to_right", left_query="TOP 2", propagate=True)
    src, dst = sync._providers["left"], sync._providers["right"]
    keys = [src.user_insert({"name": f"a{i}", "city": "x"}) for i in range(2)]
    run_clean(sync)
    src.rows = {k: src.rows[k] for k in reversed(list(src.rows))}
    src.user_insert({"name": "new", "city": "x"})
    src.rows = {k: src.rows[k] for k in [list(src.rows)[-1], *keys]}  # new first
    run_clean(sync)
    assert sorted(values(dst)) == [("a0", "x"), ("a1", "x"), ("new", "x")]
    # a real delete of a record beyond the limit still propagates (looked up by key)
    src.user_delete(keys[1])
    run_clean(sync)
    assert sorted(values(dst)) == [("a0", "x"), ("new", "x")]


# --- WHERE ---------------------------------------------------------------------------------

@pytest.mark.parametrize("direction", ["bidirectional", "left_to_right"])
def test_where_on_the_written_side_inserts_once(direction: str) -> None:
    """A record the sync writes into a side whose query does not select it is not seen by
    that read, and must never be inserted again nor its pair deleted."""
    sync = make_sync(direction, right_query="WHERE city = 'in'")
    src, dst = sync._providers["left"], sync._providers["right"]
    src.user_insert({"name": "inside", "city": "in"})
    src.user_insert({"name": "outside", "city": "out"})
    run_clean(sync)
    run_clean(sync)
    assert values(dst) == [("inside", "in"), ("outside", "out")]
    assert values(src) == [("inside", "in"), ("outside", "out")]


def test_record_leaving_the_filter_is_kept_and_stays_paired() -> None:
    sync = make_sync("left_to_right", left_query="WHERE city = 'in'", propagate=True)
    src, dst = sync._providers["left"], sync._providers["right"]
    k = src.user_insert({"name": "a", "city": "in"})
    run_clean(sync)
    src.user_update(k, {"city": "moved"})
    run_clean(sync)
    assert values(dst) == [("a", "moved")]
    src.user_update(k, {"name": "b"})
    run_clean(sync)
    assert values(dst) == [("b", "moved")]
    src.user_delete(k)
    run_clean(sync)
    assert values(dst) == []


def test_out_of_scope_delete_removes_what_left_the_filter() -> None:
    sync = make_sync("left_to_right", left_query="WHERE city = 'in'", propagate=True,
                     out_of_scope="delete")
    src, dst = sync._providers["left"], sync._providers["right"]
    k = src.user_insert({"name": "a", "city": "in"})
    src.user_insert({"name": "b", "city": "in"})
    run_clean(sync)
    src.user_update(k, {"city": "moved"})
    run_clean(sync)
    assert values(dst) == [("b", "in")]


def test_filtered_source_with_incremental_feed_is_not_judged_deleted() -> None:
    """A change feed over a filtered query may report a record that left the filter as
    deleted; the runner looks it up before believing it."""
    sync = make_sync("left_to_right", left_query="WHERE city = 'in'", propagate=True)
    src, dst = sync._providers["left"], sync._providers["right"]
    src.feed = True
    k = src.user_insert({"name": "a", "city": "in"})
    run_clean(sync)
    src.user_update(k, {"city": "out"})
    src.deleted_at[k] = src.seq  # the feed reports it "removed" from the query's scope
    run_clean(sync)
    assert values(dst) == [("a", "out")]


# --- change feeds and the sync's own inserts ------------------------------------------------

@pytest.mark.parametrize("feed_side", ["left", "right"])
def test_delete_of_a_record_the_sync_created_propagates_incrementally(feed_side: str) -> None:
    sync = make_sync("bidirectional", propagate=True)
    feed = sync._providers[feed_side]
    other = sync._providers["right" if feed_side == "left" else "left"]
    feed.feed = True
    run_clean(sync)  # first run: full reads, cursors saved
    other.user_insert({"name": "n", "city": "c"})
    run_clean(sync)  # created on the feed side after its cursor was taken
    created = next(iter(feed.rows))
    feed.user_delete(created)
    run_clean(sync)
    assert other.rows == {} and feed.rows == {}


# --- crashes followed by user edits and deletes ---------------------------------------------

def crash_run(sync: Sync, side: str, *, before_keys: bool = True) -> None:
    p = sync._providers[side]
    if before_keys:
        p.crash_before_created = p.calls + 1
    else:
        p.crash_after_calls = p.calls + 1
    with pytest.raises(Crash):
        sync.run()


@pytest.mark.parametrize("stamps,before_keys", [(True, True), (False, False)])
def test_crash_after_create_then_user_edit_no_duplicate(stamps: bool, before_keys: bool
                                                        ) -> None:
    """Killed right after the system created the record; the user edits it; re-run: one copy
    on each side, and the user's edit wins (it is the newer change)."""
    sync = make_sync("bidirectional")
    src, dst = sync._providers["left"], sync._providers["right"]
    dst.stamps = stamps
    run_clean(sync)
    src.user_insert({"name": "new", "city": "c"})
    crash_run(sync, "right", before_keys=before_keys)
    created = next(iter(dst.rows))
    dst.user_update(created, {"name": "edited", "city": "changed"})
    run_clean(sync)
    assert values(src) == values(dst) == [("edited", "changed")]


def test_crash_after_create_on_the_database_side_then_edit_no_duplicate() -> None:
    """The mirror case: a row created in the database (generated id), then edited there."""
    sync = make_sync("bidirectional")
    src, dst = sync._providers["right"], sync._providers["left"]
    run_clean(sync)
    src.user_insert({"name": "new", "city": "c"})
    crash_run(sync, "left", before_keys=False)
    created = next(iter(dst.rows))
    dst.user_update(created, {"city": "edited"})
    run_clean(sync)
    assert values(src) == values(dst) == [("new", "edited")]


@pytest.mark.parametrize("propagate", [True, False])
def test_crash_after_create_then_source_deleted_is_never_copied_back(propagate: bool) -> None:
    sync = make_sync("bidirectional", propagate=propagate)
    src, dst = sync._providers["left"], sync._providers["right"]
    dst.stamps = True
    run_clean(sync)
    k = src.user_insert({"name": "new", "city": "c"})
    crash_run(sync, "right")
    src.user_delete(k)
    run_clean(sync)
    assert src.rows == {}
    assert len(dst.rows) == (0 if propagate else 1)
    run_clean(sync)
    assert src.rows == {}


def test_crash_after_create_outside_the_target_filter_no_duplicate() -> None:
    sync = make_sync("left_to_right", right_query="WHERE city = 'in'")
    src, dst = sync._providers["left"], sync._providers["right"]
    dst.stamps = True
    run_clean(sync)
    src.user_insert({"name": "new", "city": "out"})
    crash_run(sync, "right")
    run_clean(sync)
    assert values(dst) == [("new", "out")]


def test_a_killed_run_shows_as_interrupted(tmp_path: Path) -> None:
    """`l2sync status` of a run whose process is gone: interrupted, not running forever."""
    import subprocess
    import sys

    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    code = ("import sys; from l2sync_dagster.state.store import StateStore;"
            f"s = StateStore('sqlite:///{tmp_path / 'state.db'}');"
            "s.acquire_lock('c', 'r1'); s.start_run('c', 'r1')")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert store.runs("c")[0]["status"] == "interrupted"
    store.acquire_lock("c", "r2")  # taken over from the dead process
    store.start_run("c", "r2")
    assert [r["status"] for r in store.runs("c")][:1] == ["running"]
