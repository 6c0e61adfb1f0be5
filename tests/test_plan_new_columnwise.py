"""The column-wise planning of new records (``pairing.COLUMNWISE``, ``Planner.insert_many``,
``effects._finalize_batch``) gives exactly the plan of the row-by-row code it replaces.

The reference below is the row-by-row ``plan_new`` and ``finalize`` as they were before the
column-wise path (every new record a dict, every insert through ``Planner.insert``, every
effect finalized from its rows). A plan is compared whole: writes in order with their native
values and types, effects in order with hashes, agreed values and dirty flags, conflicts,
rejections, counts, and the journal entries with their hashes and values. Pair ids are random,
so they are compared by order of first appearance; GUID keys come from a counter.
"""

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import fields, is_dataclass
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from engine_helpers import archive_after
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2sync_dagster.engine import decide, pairing
from l2sync_dagster.engine import reconcile as reconcile_module
from l2sync_dagster.engine.canonical import ARROW_TYPES, to_json_value
from l2sync_dagster.engine.classify import DuplicateKeyError, SideInput
from l2sync_dagster.engine.decide import Pair, Planner
from l2sync_dagster.engine.hashing import row_hash
from l2sync_dagster.engine.mapping import FieldMapping, FieldPair
from l2sync_dagster.engine.plan import PendingInsert, Rejection, Side, other
from l2sync_dagster.engine.policy import POLICIES, SyncPolicy
from l2sync_dagster.engine.recover import journaled_base, source_gone

_JSON_NATIVE = frozenset({"string", "integer", "float", "boolean", "json"})


# --- the reference: the row-by-row code ----------------------------------------------------
def _pid() -> str:  # patched by the tests
    raise AssertionError


def reference_plan_new(planner: Planner, new_pos: dict[Side, np.ndarray],
                       adopted: Sequence[tuple[PendingInsert, str]]) -> None:
    canon = planner.canon
    names = planner.names
    rows = {s: canon[s].rows(new_pos[s], names) for s in new_pos}
    keys = {s: canon[s].key_list(new_pos[s]) for s in new_pos}
    for s, ks in keys.items():
        if len(set(ks)) != len(ks):
            raise DuplicateKeyError(f"{s} side: a key was read more than once")
    used: dict[Side, set[int]] = {"left": set(), "right": set()}

    def meta(side: Side, j: int) -> tuple[Any, Any]:
        c = canon[side]
        p = int(new_pos[side][j])
        ver = c.versions[p] if c.versions is not None else None
        mod = c.modified[p] if c.modified is not None else None
        return (None if ver is None else str(ver)), mod

    def pair_up(lj: int, rj: int, base: dict | None, kind: str, pid: str | None = None) -> None:
        used["left"].add(lj)
        used["right"].add(rj)
        lver, lmod = meta("left", lj)
        rver, rmod = meta("right", rj)
        lrow, rrow = rows["left"][lj], rows["right"][rj]
        lch = base is None or any(lrow[n] != base[n] for n in names)
        rch = base is None or any(rrow[n] != base[n] for n in names)
        planner.both_present(Pair(pid or _pid(), keys["left"][lj], keys["right"][rj],
                                  lrow, rrow, base, lver, rver, lmod, rmod, archived=False),
                             lch, rch, kind)

    if adopted:
        index = {s: {k: j for j, k in enumerate(keys[s])} for s in keys}
        for entry, target_key in adopted:
            tside: Side = entry.side
            src = other(tside)
            sj, tj = index[src].get(entry.source_key), index[tside].get(target_key)
            if tj is None or tj in used[tside] or (sj is not None and sj in used[src]):
                continue
            trow = rows[tside][tj]
            base = journaled_base(entry, planner) or dict(trow)
            if sj is not None:
                lj, rj = (sj, tj) if src == "left" else (tj, sj)
                pair_up(lj, rj, base, "recovered insert", entry.pair_id)
                continue
            used[tside].add(tj)
            tver, _ = meta(tside, tj)
            lkey, rkey = ((entry.source_key, target_key) if src == "left"
                          else (target_key, entry.source_key))
            if source_gone(planner.inputs[src], entry.source_key):
                planner.deleted_one(entry.pair_id, lkey, rkey, src, trow, tver)
                continue
            srow = dict(base)
            lrow, rrow = (srow, trow) if src == "left" else (trow, srow)
            lver, rver = (None, tver) if src == "left" else (tver, None)
            planner.both_present(Pair(entry.pair_id, lkey, rkey, lrow, rrow, base, lver, rver,
                                      archived=False),
                                 src != "left" and trow != base, src == "left" and trow != base,
                                 "recovered insert")

    pol = planner.policy
    if pol.match_on:
        groups: dict[Side, dict[tuple, list[int]]] = {"left": {}, "right": {}}
        for side in ("left", "right"):
            for j, r in enumerate(rows[side]):
                if j in used[side]:
                    continue
                mk = tuple(r[n] for n in pol.match_on)
                if any(v is None for v in mk):
                    continue
                groups[side].setdefault(mk, []).append(j)
        for mk, ljs in groups["left"].items():
            rjs = groups["right"].get(mk)
            if not rjs:
                continue
            if len(ljs) > 1 or len(rjs) > 1:
                label = ", ".join(f"{n}={v!r}" for n, v in zip(pol.match_on, mk, strict=True))
                for side, js in (("left", ljs), ("right", rjs)):
                    for j in js:
                        used[side].add(j)
                        planner.plan.rejections.append(Rejection(
                            side, keys[side][j],
                            f"ambiguous match_on ({label}): {len(ljs)} left and {len(rjs)} "
                            "right records; make them unique or pair them by hand"))
                continue
            pair_up(ljs[0], rjs[0], None, "first-sync match")

    for side in ("left", "right"):
        to = other(side)
        for j, r in enumerate(rows[side]):
            if j in used[side]:
                continue
            key = keys[side][j]
            ver, _ = meta(side, j)
            if planner.policy.writes_to(to):
                planner.insert(to, _pid(), r, key, ver)
            elif pol.mirror and pol.source == to:
                planner.write(side, "delete", _pid(), key, version=ver,
                              reason="mirror: not in source")


def reference_finalize(planner: Planner) -> None:
    assert not planner.batches
    names = planner.names
    types = planner.types
    pids = [p for p, e in planner.plan.effects.items() if e is not None]
    if not pids:
        return
    lrows = [planner.rows_after[p][0] for p in pids]
    rrows = [planner.rows_after[p][1] for p in pids]
    lcols = {n: [None if r is None else r[n] for r in lrows] for n in names}
    rcols = {n: [None if r is None else r[n] for r in rrows] for n in names}
    hashes = {
        side: row_hash([pa.array(cols[n], type=ARROW_TYPES[types[n]]) for n in names], len(pids))
        for side, cols in (("left", lcols), ("right", rcols))
    }
    k = len(pids)
    ldirty = [False] * k
    rdirty = [False] * k
    agreed: dict[str, list[Any]] = {}
    for n in names:
        lc, rc = lcols[n], rcols[n]
        left_is_source = planner.flows(n, "right")
        col = []
        for i in range(k):
            lv, rv = lc[i], rc[i]
            if lv == rv:
                v = lv
            elif lrows[i] is None:
                v = rv
            elif rrows[i] is None or left_is_source:
                v = lv
            else:
                v = rv
            if lv != v and lrows[i] is not None:
                ldirty[i] = True
            if rv != v and rrows[i] is not None:
                rdirty[i] = True
            col.append(v)
        if types[n] not in _JSON_NATIVE:
            col = [to_json_value(v, types[n]) for v in col]
        agreed[n] = col
    pending_by_pid = {p.pair_id: p for p in planner.pending}
    lh, rh = hashes["left"].tolist(), hashes["right"].tolist()
    for i, pid in enumerate(pids):
        eff = planner.plan.effects[pid]
        assert eff is not None
        eff.values = {n: agreed[n][i] for n in names}
        eff.left_hash = lh[i] if lrows[i] is not None else None
        eff.right_hash = rh[i] if rrows[i] is not None else None
        eff.left_dirty, eff.right_dirty = ldirty[i], rdirty[i]
        pend = pending_by_pid.get(pid)
        if pend is not None:
            pend.expected_hash = (eff.left_hash if pend.side == "left" else eff.right_hash) or 0
            pend.values = eff.values


# --- running a plan three ways --------------------------------------------------------------
_PID = re.compile(r"^P\d{8}$")
_GUID = re.compile(r"^00000000-0000-0000-0000-\d{12}$")
# one sequence for the whole session: ids of a later run never repeat an earlier run's
_PIDS = iter(range(10**8))
_GUIDS = iter(range(1, 10**8))


def _next_pid() -> str:
    return f"P{next(_PIDS):08d}"


def _next_guid() -> uuid.UUID:
    return uuid.UUID(f"00000000-0000-0000-0000-{next(_GUIDS):012d}")


@contextmanager
def _deterministic():
    with mock.patch.object(pairing, "new_pair_id", _next_pid), \
            mock.patch.object(decide, "new_pair_ids", lambda k: [_next_pid() for _ in range(k)]), \
            mock.patch(f"{__name__}._pid", _next_pid), \
            mock.patch.object(uuid, "uuid4", _next_guid):
        yield


def run_plan(how: str, *args: Any, **kw: Any):
    """reconcile() with the reference ("reference"), the general ("general") or the
    column-wise ("columnwise") planning of new records; pair ids and GUIDs deterministic."""
    patches = []
    if how == "reference":
        patches = [mock.patch.object(reconcile_module, "plan_new", reference_plan_new),
                   mock.patch.object(reconcile_module, "finalize", reference_finalize)]
    with _deterministic(), mock.patch.object(pairing, "COLUMNWISE", how == "columnwise"):
        for p in patches:
            p.start()
        try:
            return reconcile_module.reconcile(*args, **kw)
        except (DuplicateKeyError, KeyError) as exc:
            return type(exc).__name__
        finally:
            for p in patches:
                p.stop()


def normal(x: Any, ids: dict[str, int]) -> Any:
    """A comparable form of a plan: order-sensitive, typed (1, 1.0 and True differ), pair ids
    and GUIDs numbered by first appearance."""
    if is_dataclass(x) and not isinstance(x, type):
        # SyncPlan.fresh (the ids the plan drew) came after the reference; what it does is
        # test_state_store_keyed_plans.py's
        return (type(x).__name__, *(normal(getattr(x, f.name), ids) for f in fields(x)
                                    if f.name != "fresh"))
    if isinstance(x, dict):
        return ("dict", *((normal(k, ids), normal(v, ids)) for k, v in x.items()))
    if isinstance(x, list | tuple):
        return (type(x).__name__, *(normal(v, ids) for v in x))
    if isinstance(x, str) and (_PID.match(x) or _GUID.match(x)):
        return ("id", ids.setdefault(x, len(ids)))
    if isinstance(x, float):
        return ("float", repr(x))
    return (type(x).__name__, x)


def comparable(result: Any) -> Any:
    if isinstance(result, str):
        return result
    plan, pending = result
    ids: dict[str, int] = {}
    return normal(plan, ids), normal(pending, ids)


# --- random configurations -------------------------------------------------------------------
UTC = dt.UTC
VALUES: dict[str, list[Any]] = {
    "string": [None, "a", "b", "", "é"],
    "integer": [None, 0, 1, -7, 2**40],
    "float": [None, 0.0, 1.5, -2.25, float("inf")],
    "decimal": [None, "1.5", "2", "0.10"],
    "boolean": [None, True, False],
    "date": [None, dt.date(2020, 1, 1), dt.date(1999, 12, 31)],
    "datetime": [None, dt.datetime(2020, 1, 1, tzinfo=UTC),
                 dt.datetime(2021, 5, 5, 12, 30, 0, 123456, tzinfo=UTC)],
    "json": [None, '{"a": 1}', "[1, 2]"],
}


@st.composite
def configurations(draw):
    m = draw(st.integers(1, 4))
    upper = draw(st.booleans())
    pairs = tuple(FieldPair(f"f{i}", f"f{i}", f"F{i}" if upper else f"f{i}",
                            draw(st.sampled_from(sorted(VALUES))),
                            draw(st.sampled_from(["both", "both", "left_to_right",
                                                  "right_to_left"])))
                  for i in range(m))
    mapping = FieldMapping(pairs)
    direction = draw(st.sampled_from(["bidirectional", "left_to_right", "right_to_left"]))
    policy = SyncPolicy(
        direction=direction, mirror=draw(st.booleans()),
        conflict=draw(st.sampled_from(POLICIES)),
        fallback=draw(st.sampled_from(["skip", "left_wins", "right_wins", "latest_wins"])),
        propagate_deletes=draw(st.booleans()),
        match_on=draw(st.sampled_from([(), (), ("f0",), tuple(p.name for p in pairs[:2])])),
        allow_mass_delete=draw(st.booleans()))
    sides = {}
    for s in ("left", "right"):
        native = [p.field(s) for p in pairs]
        key_field = draw(st.sampled_from(["", native[0], native[0].swapcase(), "ID"]))
        sides[s] = {
            "key_field": key_field, "key_generated": draw(st.booleans()),
            "writable": draw(st.integers(0, 3)) > 0, "versions": draw(st.booleans()),
            "complete": draw(st.integers(0, 3)) > 0,
        }
    def records(s: Side, n_max: int) -> dict[str, dict[str, Any]]:
        keys = draw(st.lists(st.integers(0, 12), max_size=n_max, unique=True))
        out = {}
        for k in keys:
            out[f"{s[0]}{k}"] = {p.field(s): draw(st.sampled_from(VALUES[p.type]))
                                 for p in pairs}
        return out
    first = {s: records(s, 6) for s in ("left", "right")}
    second = {s: records(s, 10) for s in ("left", "right")}
    crash = draw(st.booleans())
    return mapping, policy, sides, first, second, crash


def side_input(records: dict[str, dict[str, Any]], conf: dict[str, Any]) -> SideInput:
    frame = pd.DataFrame.from_dict(records, orient="index") if records else pd.DataFrame()
    frame.index = pd.Index(list(records), name="_key", dtype=object)
    if conf["versions"] and records:
        frame["_version"] = [f"v{i}" for i in range(len(records))]
    return SideInput(frame=frame, key_field=conf["key_field"],
                     key_generated=conf["key_generated"], writable=conf["writable"],
                     complete=conf["complete"])


def scenario(conf):
    """The arguments of a second run: after a first run whose effects were committed, or
    killed after its inserts were written (their journal entries left pending)."""
    mapping, policy, sides, first, second, crash = conf
    one = run_plan("reference", "t", side_input(first["left"], sides["left"]),
                   side_input(first["right"], sides["right"]), _empty(mapping), mapping, policy)
    if isinstance(one, str):
        return None
    plan, pending = one
    if plan.blocked:
        return None
    records = {s: {**first[s], **second[s]} for s in ("left", "right")}
    journal: list[PendingInsert] = []
    if crash:
        crashed = {p.pair_id for p in pending}
        plan.effects = {p: e for p, e in plan.effects.items() if p not in crashed}
        for w in plan.writes:
            if w.op == "insert" and w.pair_id in crashed:
                key = w.key or f"new{len(journal)}"
                # what the insert wrote, the fields that do not flow to that side empty
                records[w.side][key] = {f: w.values.get(f) for f in _native(mapping, w.side)}
        journal = list(pending)
    archive = archive_after(mapping, plan)
    return ("t", side_input(records["left"], sides["left"]),
            side_input(records["right"], sides["right"]), archive, mapping, policy,
            journal)


def _native(mapping: FieldMapping, s: Side) -> list[str]:
    return [p.field(s) for p in mapping.pairs]


def _empty(mapping: FieldMapping) -> pd.DataFrame:
    from l2sync_dagster.engine.archive import empty_archive
    return empty_archive(mapping)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(configurations())
def test_columnwise_plans_exactly_what_the_row_by_row_code_plans(conf):
    args = scenario(conf)
    if args is None:
        return
    *head, journal = args
    ref = comparable(run_plan("reference", *head, pending=journal))
    general = comparable(run_plan("general", *head, pending=journal))
    fast = comparable(run_plan("columnwise", *head, pending=journal))
    assert general == ref
    assert fast == ref


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(configurations())
def test_first_run_columnwise_equals_row_by_row(conf):
    mapping, policy, sides, first, second, _ = conf
    records = {s: {**first[s], **second[s]} for s in ("left", "right")}
    args = ("t", side_input(records["left"], sides["left"]),
            side_input(records["right"], sides["right"]), _empty(mapping), mapping, policy)
    assert comparable(run_plan("columnwise", *args)) == comparable(run_plan("reference", *args))


@pytest.mark.parametrize("direction", ["left_to_right", "right_to_left", "bidirectional"])
def test_initial_load_of_many_rows_is_planned_column_wise(direction):
    """Every type, nulls, one-way fields, a key field: the same plan, through insert_many."""
    n = 500
    rng = np.random.default_rng(7)
    types = sorted(VALUES)
    pairs = tuple(FieldPair(f"f{i}", f"f{i}", f"r_f{i}", t,
                            "right_to_left" if t == "json" else "both")
                  for i, t in enumerate(types))
    mapping = FieldMapping(pairs)
    src: Side = "right" if direction == "right_to_left" else "left"
    recs = {f"k{i}": {p.field(src): VALUES[p.type][int(rng.integers(len(VALUES[p.type])))]
                      for p in pairs} for i in range(n)}
    conf = {"key_field": pairs[types.index("integer")].field(other(src)), "key_generated": False,
            "writable": True, "versions": True, "complete": True}
    inputs = {src: side_input(recs, conf), other(src): side_input({}, conf)}
    args = ("t", inputs["left"], inputs["right"], _empty(mapping), mapping,
            SyncPolicy(direction=direction))
    calls = []
    real = Planner.insert_many
    with mock.patch.object(Planner, "insert_many",
                           lambda self, *a: calls.append(len(a[2])) or real(self, *a)):
        fast = run_plan("columnwise", *args)
    assert calls == [n]
    assert comparable(fast) == comparable(run_plan("reference", *args))
    plan, pending = fast
    assert len(plan.writes) == n and len(pending) == n
    assert all(p.values is plan.effects[p.pair_id].values for p in pending)


_timestamps = st.lists(st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))), max_size=30)
_dates = st.lists(st.one_of(st.none(), st.dates()), max_size=30)


@settings(max_examples=300, deadline=None)
@given(_timestamps, _dates, st.sampled_from(["UTC", "+00:00", None]))
def test_python_and_json_values_equal_to_pylist(stamps, days, tz):
    """The faster conversions give exactly Arrow's objects and ``to_json_value``'s text,
    every year 1-9999, with and without microseconds, nulls, other time zones."""
    from l2sync_dagster.engine.canonical import json_values, python_values
    ts = pa.array(stamps, type=pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us", tz=tz))
    ds = pa.array(days, type=pa.date32())
    for arr, t in ((ts, "datetime"), (ds, "date")):
        fast, slow = python_values(arr), arr.to_pylist()
        assert fast == slow
        assert [type(v) for v in fast] == [type(v) for v in slow]
        assert [getattr(v, "tzinfo", None) for v in fast] == \
            [getattr(v, "tzinfo", None) for v in slow]
        assert json_values(arr, t) == [to_json_value(v, t) for v in slow]


def test_new_pair_ids_are_distinct_pair_ids():
    from l2sync_dagster.engine.plan import new_pair_id, new_pair_ids
    ids = new_pair_ids(1000)
    assert len(set(ids)) == 1000 and new_pair_ids(0) == []
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert re.fullmatch(r"[0-9a-f]{32}", new_pair_id())
