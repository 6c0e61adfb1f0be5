"""What the integrity rules need from the ``dataverse`` provider, against the Dataverse sandbox:
the read scope of every kind of query, lookup by key whatever the query's filter and top,
the ``created`` callback after each ``$batch`` answer, client-made keys by default, and batch
request lines relative to the service root."""

from collections.abc import Iterator

import pytest
import requests
from test_provider_dataverse import DV, PASSWORD_ENV, SECRET_ENV

from l2sync_dagster.providers.base import Change, Outcome, Query


@pytest.fixture
def dv(sandbox, monkeypatch) -> Iterator[DV]:
    monkeypatch.setenv(PASSWORD_ENV, "sandbox")
    monkeypatch.setenv(SECRET_ENV, "sandbox")
    helper = DV(sandbox)
    helper.control.reset()
    yield helper
    helper.control.clear_faults()
    helper.control.reset()


@pytest.mark.parametrize(("text", "scope", "restriction"), [
    (None, "all", None),
    ("SELECT name, address1_city FROM accounts", "all", None),
    ("SELECT name FROM accounts ORDER BY name", "all", None),
    ("SELECT name FROM accounts WHERE statecode = 0", "filtered", "WHERE statecode = 0"),
    ("SELECT TOP 5 name FROM accounts", "limited", "TOP 5"),
    ("SELECT TOP 5 name FROM accounts WHERE statecode = 0 ORDER BY name", "limited",
     "TOP 5 WHERE statecode = 0"),
    ("$select=name&$filter=statecode eq 0", "filtered", "$filter=statecode eq 0"),
    ("$select=name&$top=3", "limited", "$top=3"),
])
def test_describe_says_how_much_a_query_reads(dv, text, scope, restriction):
    d = dv.open().describe(Query(text))
    assert (d.scope, d.restriction) == (scope, restriction)


def test_a_long_where_clause_is_cut_for_messages(dv):
    cond = " or ".join(f"name = 'Company number {n}'" for n in range(10))
    d = dv.open().describe(Query(f"SELECT name FROM accounts WHERE {cond}"))
    assert d.scope == "filtered" and d.restriction.startswith("WHERE name = 'Company number 0'")
    assert len(d.restriction) <= 80 and d.restriction.endswith("...")


def test_lookup_finds_records_outside_the_filter_and_not_deleted_ones(dv):
    p = dv.open()
    rows = dv.rows()
    inside, outside, gone = rows[0]["accountid"], rows[1]["accountid"], rows[2]["accountid"]
    dv.edit(inside, address1_city="in")
    dv.edit(outside, address1_city="out")
    dv.remove(gone)
    q = Query("SELECT TOP 1 name, address1_city FROM accounts WHERE address1_city = 'in'")
    read = p.read(q)
    assert list(read.frame.index) == [inside]
    found = p.lookup(q, [inside, outside, gone, "not a guid"])
    assert sorted(found.index) == sorted([inside, outside])
    assert list(found.columns) == list(read.frame.columns)
    assert found.loc[outside, "address1_city"] == "out"
    # a lookup of many keys is split into several requests, never one per key
    keys = [r["accountid"] for r in rows]
    dv.control.reset_stats()
    assert len(p.lookup(Query(), keys * 3)) == len(keys) - 1  # `gone` is still gone
    assert dv.control.stats()["requests"].get("accounts.list") == 1  # 20 distinct keys


def test_created_is_called_after_each_batch_and_keys_are_made_by_the_sync(dv):
    p = dv.open(extra=";BatchSize=3;Concurrency=2")
    assert not p.describe(Query()).key_generated  # the default: KeyGeneration=client
    calls: list[list[Outcome]] = []

    def created(outs):
        stored = {r["accountid"] for r in dv.rows()}
        assert {o.key for o in outs} <= stored  # the records exist when we are told
        calls.append(list(outs))

    changes = [Change("insert", f"i{n}", None, {"name": f"Batch {n}"}) for n in range(7)]
    changes.append(Change("insert", "bad", None, {"name": "x" * 500}))  # too long: 400
    out = p.apply(Query(), changes, created=created)
    assert [o.ok for o in out] == [True] * 7 + [False]
    assert sorted(len(c) for c in calls) == [1, 3, 3]
    assert sorted(o.ref for c in calls for o in c) == sorted(f"i{n}" for n in range(7))


def test_a_failing_created_callback_removes_the_unrecorded_records(dv):
    p = dv.open(extra=";BatchSize=2;Concurrency=1;KeyGeneration=server")
    before = {r["accountid"] for r in dv.rows()}

    def created(outs):
        raise RuntimeError("state store unreachable")

    with pytest.raises(RuntimeError, match="unreachable"):
        p.apply(Query(), [Change("insert", f"i{n}", None, {"name": f"N {n}"})
                          for n in range(5)], created=created)
    assert {r["accountid"] for r in dv.rows()} == before


def test_batch_request_lines_are_relative_to_the_service_root(dv, monkeypatch):
    p = dv.open(extra=";BatchSize=10")
    frame = p.read(Query()).frame
    key = frame.index[0]
    bodies: list[bytes] = []
    real = requests.Session.request

    def spy(self, method, url, *args, **kwargs):
        if str(url).endswith("$batch"):
            bodies.append(kwargs.get("data") or b"")
        return real(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", spy)
    out = p.apply(Query(), [
        Change("insert", "i", None, {"name": "Relative"}),
        Change("update", "u", key, {"name": "Renamed"}, frame.loc[key, "_version"]),
    ])
    assert all(o.ok for o in out), out
    text = b"".join(bodies).decode()
    assert "\r\nPOST accounts HTTP/1.1\r\n" in text
    assert f"\r\nPATCH accounts({key}) HTTP/1.1\r\n" in text
    assert "https://" not in text and f"If-Match: {frame.loc[key, '_version']}" in text
