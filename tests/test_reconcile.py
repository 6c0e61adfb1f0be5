"""The reconciliation truth table, conflict policies, match_on, mirror and the delete brake."""

import pytest
from engine_helpers import archive_after, mapping, side

from l2sync_dagster.engine.archive import empty_archive
from l2sync_dagster.engine.policy import SyncPolicy
from l2sync_dagster.engine.reconcile import reconcile

M = mapping("id", "name", "city")


def synced(records: dict, policy: SyncPolicy | None = None):
    """Both sides hold ``records`` and the archive knows them as synced pairs."""
    left, right = side(records), side(records)
    plan, _ = reconcile("t", left, right, empty_archive(M), M,
                        policy or SyncPolicy(match_on=("id",)))
    assert not plan.writes and not plan.conflicts
    return archive_after(M, plan)


BASE = {"1": {"id": "1", "name": "Ann", "city": "Oslo"},
        "2": {"id": "2", "name": "Bob", "city": "Rome"},
        "3": {"id": "3", "name": "Cy", "city": "Riga"},
        "4": {"id": "4", "name": "Di", "city": "Kyiv"},
        "5": {"id": "5", "name": "Ed", "city": "Bern"}}


def edit(records: dict, key: str, **values) -> dict:
    out = {k: dict(v) for k, v in records.items()}
    out[key].update(values)
    return out


def drop(records: dict, key: str) -> dict:
    return {k: dict(v) for k, v in records.items() if k != key}


def run(left: dict, right: dict, archive, **policy):
    policy.setdefault("match_on", ("id",))
    plan, pending = reconcile("t", side(left), side(right), archive, M, SyncPolicy(**policy))
    return plan


def ops(plan):
    return sorted((w.side, w.op, w.key, tuple(sorted(w.values.items()))) for w in plan.writes)


def test_unchanged_both_plans_nothing():
    arch = synced(BASE)
    plan = run(BASE, BASE, arch)
    assert plan.is_empty


def test_changed_left_updates_right_with_only_changed_fields():
    arch = synced(BASE)
    plan = run(edit(BASE, "1", city="Bergen"), BASE, arch)
    assert ops(plan) == [("right", "update", "1", (("city", "Bergen"),))]
    assert not plan.conflicts


def test_changed_right_updates_left():
    arch = synced(BASE)
    plan = run(BASE, edit(BASE, "2", name="Robert"), arch)
    assert ops(plan) == [("left", "update", "2", (("name", "Robert"),))]


def test_both_changed_to_equal_values_is_recorded_as_synced():
    arch = synced(BASE)
    both = edit(BASE, "1", city="Bergen")
    plan = run(both, both, arch)
    assert not plan.writes and not plan.conflicts
    assert plan.effects  # the archive learns the new agreed values


@pytest.mark.parametrize("policy,expected", [
    ("left_wins", [("right", "update", "1", (("city", "Bergen"),))]),
    ("right_wins", [("left", "update", "1", (("city", "Tromso"),))]),
    ("skip", []),
])
def test_update_update_conflict_policies(policy, expected):
    arch = synced(BASE)
    plan = run(edit(BASE, "1", city="Bergen"), edit(BASE, "1", city="Tromso"), arch,
               conflict=policy)
    assert ops(plan) == expected
    assert len(plan.conflicts) == 1
    c = plan.conflicts[0]
    assert c.left["city"] == "Bergen" and c.right["city"] == "Tromso"
    assert c.base["city"] == "Oslo"


def test_fail_policy_blocks_before_any_write():
    arch = synced(BASE)
    plan = run(edit(BASE, "1", city="Bergen"), edit(BASE, "1", city="Tromso"), arch,
               conflict="fail")
    assert plan.blocked and "fail" in plan.blocked


def test_merge_takes_each_sides_fields_and_falls_back_on_clashes():
    arch = synced(BASE)
    left = edit(BASE, "1", city="Bergen")
    right = edit(BASE, "1", name="Annie")
    plan = run(left, right, arch, conflict="merge", fallback="skip")
    assert ops(plan) == [("left", "update", "1", (("name", "Annie"),)),
                         ("right", "update", "1", (("city", "Bergen"),))]
    clash_l = edit(left, "1", name="Anna")
    plan = run(clash_l, right, arch, conflict="merge", fallback="skip")
    assert ops(plan) == [] and plan.conflicts[0].resolution.startswith("skipped")
    plan = run(clash_l, right, arch, conflict="merge", fallback="right_wins")
    assert ops(plan) == [("left", "update", "1", (("name", "Annie"),)),
                         ("right", "update", "1", (("city", "Bergen"),))]


def test_latest_wins_uses_modified_and_skips_without_it():
    arch = synced(BASE)
    left, right = edit(BASE, "1", city="Bergen"), edit(BASE, "1", city="Tromso")
    plan = run(left, right, arch, conflict="latest_wins")
    assert ops(plan) == [] and "skipped" in plan.conflicts[0].resolution
    l_in, r_in = side(left), side(right)
    l_in.frame["_modified"] = "2026-01-01T10:00:00Z"
    r_in.frame["_modified"] = "2026-01-01T09:00:00Z"
    plan, _ = reconcile("t", l_in, r_in, arch, M,
                        SyncPolicy(conflict="latest_wins", match_on=("id",)))
    assert ops(plan) == [("right", "update", "1", (("city", "Bergen"),))]


def test_deletes_propagate_only_when_asked():
    arch = synced(BASE)
    plan = run(drop(BASE, "3"), BASE, arch, propagate_deletes=True)
    assert ops(plan) == [("right", "delete", "3", ())]
    plan = run(drop(BASE, "3"), BASE, arch, propagate_deletes=False)
    assert ops(plan) == []
    # the pair is kept without its left record, so the right one is not copied back
    arch2 = archive_after(M, plan, arch)
    assert ops(run(drop(BASE, "3"), BASE, arch2)) == []


def test_deleted_both_sides_drops_the_pair():
    arch = synced(BASE)
    plan = run(drop(BASE, "3"), drop(BASE, "3"), arch, propagate_deletes=True)
    assert not plan.writes and list(plan.effects.values()) == [None]


@pytest.mark.parametrize("policy,expected_op", [
    ("left_wins", ("right", "insert")), ("latest_wins", ("right", "insert")),
    ("right_wins", ("left", "delete")),
])
def test_edit_delete_conflict(policy, expected_op):
    arch = synced(BASE)
    plan = run(edit(BASE, "2", city="Milan"), drop(BASE, "2"), arch, conflict=policy,
               propagate_deletes=True)
    assert [(w.side, w.op) for w in plan.writes] == [expected_op]
    assert plan.conflicts[0].kind == "edit/delete"
    assert plan.conflicts[0].right is None


def test_mass_delete_brake_blocks_and_says_how_to_override():
    arch = synced(BASE)
    left = drop(drop(BASE, "1"), "2")
    plan = run(left, BASE, arch, propagate_deletes=True, max_delete_fraction=0.2)
    assert plan.blocked and "max_fraction" in plan.blocked and "--allow-mass-delete" in plan.blocked
    plan = run(left, BASE, arch, propagate_deletes=True, max_delete_fraction=0.2,
               allow_mass_delete=True)
    assert not plan.blocked and len(plan.writes) == 2


def test_match_on_pairs_existing_records_instead_of_inserting_twins():
    left = {"a": {"id": "a", "name": "Ann", "city": "Oslo"}}
    right = {"x": {"id": "a", "name": "Ann", "city": "Oslo"},
             "y": {"id": "b", "name": "Bo", "city": "Oslo"}}
    m = mapping("name", "city")
    plan, _ = reconcile("t", side(left), side(right), empty_archive(m), m,
                        SyncPolicy(match_on=("name",)))
    assert [(w.side, w.op) for w in plan.writes] == [("left", "insert")]
    assert len(plan.effects) == 2


def test_ambiguous_match_is_rejected_not_duplicated():
    m = mapping("name", "city")
    left = {"a": {"name": "Ann", "city": "Oslo"}}
    right = {"x": {"name": "Ann", "city": "Oslo"}, "y": {"name": "Ann", "city": "Rome"}}
    plan, _ = reconcile("t", side(left), side(right), empty_archive(m), m,
                        SyncPolicy(match_on=("name",)))
    assert not plan.writes
    assert {r.key for r in plan.rejections} == {"a", "x", "y"}


def test_one_way_ignores_target_edits_unless_mirror():
    arch = synced(BASE, SyncPolicy(direction="left_to_right", match_on=("id",)))
    right = edit(BASE, "4", city="Lviv")
    right["9"] = {"id": "9", "name": "Zed", "city": "Nowhere"}
    plan = run(BASE, right, arch, direction="left_to_right")
    assert ops(plan) == []
    plan = run(BASE, right, arch, direction="left_to_right", mirror=True,
               max_delete_fraction=1.0)
    assert ops(plan) == [("right", "delete", "9", ()),
                         ("right", "update", "4", (("city", "Kyiv"),))]


def test_one_way_source_change_over_target_edit_is_a_recorded_conflict():
    arch = synced(BASE, SyncPolicy(direction="left_to_right", match_on=("id",)))
    plan = run(edit(BASE, "4", city="Odesa"), edit(BASE, "4", city="Lviv"), arch,
               direction="left_to_right")
    assert ops(plan) == [("right", "update", "4", (("city", "Odesa"),))]
    assert len(plan.conflicts) == 1 and "one-way" in plan.conflicts[0].resolution


def test_conversion_error_rejects_only_that_record():
    m = mapping("name", "age", types={"age": "integer"})
    left = {"a": {"name": "Ann", "age": "41"}, "b": {"name": "Bo", "age": "forty"}}
    plan, _ = reconcile("t", side(left), side({}), empty_archive(m), m, SyncPolicy())
    assert [(w.values["name"], w.values["age"]) for w in plan.writes] == [("Ann", 41)]
    assert plan.rejections[0].key == "b" and "forty" in plan.rejections[0].reason


def test_rejected_record_in_archive_is_not_treated_as_deleted():
    m = mapping("name", "age", types={"age": "integer"})
    recs = {"a": {"name": "Ann", "age": "41"}}
    plan, _ = reconcile("t", side(recs), side(recs), empty_archive(m), m,
                        SyncPolicy(match_on=("name",)))
    arch = archive_after(m, plan)
    bad = {"a": {"name": "Ann", "age": "x"}}
    plan, _ = reconcile("t", side(bad), side(recs), arch, m,
                        SyncPolicy(propagate_deletes=True))
    assert not plan.writes and plan.rejections


def test_insert_into_side_without_generated_key_gets_a_guid():
    m = mapping("name")
    plan, pending = reconcile("t", side({"a": {"name": "Ann"}}), side({}, key="rid"),
                              empty_archive(m), m, SyncPolicy())
    (w,) = plan.writes
    assert w.op == "insert" and len(w.key) == 36 and w.values["rid"] == w.key
    assert pending[0].target_key == w.key and pending[0].expected_hash != 0


def test_incremental_read_keeps_unread_records_and_uses_present_keys_for_deletes():
    import pandas as pd
    arch = synced(BASE)
    changed = {"1": dict(BASE["1"], city="Bergen")}
    left = side(changed, complete=False, present_keys=pd.Index(["1", "2", "3", "4"]))
    plan, _ = reconcile("t", left, side(BASE), arch, M,
                        SyncPolicy(propagate_deletes=True, max_delete_fraction=1))
    assert ops(plan) == [("right", "delete", "5", ()),
                         ("right", "update", "1", (("city", "Bergen"),))]
