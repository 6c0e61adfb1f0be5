"""The sql and file contract cases themselves: the entity starts empty, ``user`` edits are what
the provider reads, the filtered and limited queries restrict as promised, and the provider's
scope, lookup and ``created`` callback behave on each case's entity."""

import case_file
import case_sql
import pytest
from harness import SideCase

from l2sync_dagster.providers.base import Change, Query
from l2sync_dagster.providers.registry import open_provider

FACTORIES = {**case_sql.CASES, **case_file.CASES}
PARAMS = [pytest.param(k, marks=pytest.mark.postgres) if "postgres" in k
          else pytest.param(k, marks=pytest.mark.mariadb) if "mariadb" in k else k
          for k in FACTORIES]


@pytest.fixture(params=PARAMS)
def case(request: pytest.FixtureRequest, tmp_path, monkeypatch) -> SideCase:
    made = FACTORIES[request.param](request, tmp_path)
    for name, value in made.env.items():
        monkeypatch.setenv(name, value)
    return made


def values(frame, case: SideCase) -> dict[str, tuple]:
    return {str(k): (r[case.name_field], r[case.city_field]) for k, r in frame.iterrows()}


def test_user_edits_are_what_the_provider_reads(case: SideCase) -> None:
    provider = open_provider(case.provider, case.connection_string)
    query = Query(case.query, key=case.key, modified=case.modified)
    assert case.user.records() == {} and len(provider.read(query).frame) == 0
    a = case.user.create("Ann", "in")
    b = case.user.create("Bob", "out")
    c = case.user.create("Cy", "in")
    assert values(provider.read(query).frame, case) == case.user.records() == {
        a: ("Ann", "in"), b: ("Bob", "out"), c: ("Cy", "in")}
    case.user.update(a, name="Ann2")
    case.user.delete(c)
    assert values(provider.read(query).frame, case) == {a: ("Ann2", "in"), b: ("Bob", "out")}
    assert provider.describe(query).scope == "all"


def test_filtered_and_limited_queries(case: SideCase) -> None:
    if case.filtered_query is None:
        assert case.limited_query is None and case.provider == "file"
        return
    provider = open_provider(case.provider, case.connection_string)
    keys = [case.user.create(n, city) for n, city in
            [("Ann", "in"), ("Bob", "out"), ("Cy", "in"), ("Di", "in")]]
    filtered = Query(case.filtered_query, key=case.key, modified=case.modified)
    limited = Query(case.limited_query, key=case.key, modified=case.modified)
    assert sorted(provider.read(filtered).frame.index) == sorted([keys[0], keys[2], keys[3]])
    assert len(provider.read(limited).frame) == 2
    assert provider.describe(filtered).scope == "filtered"
    assert provider.describe(limited).scope == "limited"
    assert sorted(provider.lookup(filtered, keys).index) == sorted(keys)


def test_inserts_announce_their_keys(case: SideCase) -> None:
    provider = open_provider(case.provider, case.connection_string)
    query = Query(case.query, key=case.key, modified=case.modified)
    announced: list[str | None] = []
    key = None if case.provider == "sql" else "k-1"
    out = provider.apply(query, [Change("insert", "r1", key=key, values={
        case.name_field: "Eve", case.city_field: "in"})],
        created=lambda outcomes: announced.extend(o.key for o in outcomes))
    assert out[0].ok and announced == [out[0].key]
    assert case.user.records() == {out[0].key: ("Eve", "in")}
