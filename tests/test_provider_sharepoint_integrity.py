"""What the integrity rules need from the ``sharepoint`` provider, against the Graph sandbox:
scope (always the whole list), lookup of item ids through ``$batch`` (deleted ids are not
returned), and the ``created`` callback after each ``$batch`` answer (and what happens when it
raises)."""

import pytest
from sandbox_process import SandboxProcess
from test_provider_sharepoint import SECRET_ENV, sp_cs

from l2sync_dagster.providers.base import Change, Outcome, Query
from l2sync_dagster.providers.graph.throttle import RetryPolicy
from l2sync_dagster.providers.sharepoint import SharePointProvider

Q = Query()


@pytest.fixture
def sp(sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch) -> SharePointProvider:
    monkeypatch.setenv(SECRET_ENV, "sandbox")
    sandbox.control("graph").reset()
    provider = SharePointProvider.from_connection_string(sp_cs(sandbox))
    provider.client.retry = RetryPolicy(max_retries=10, base_s=0.02, cap_s=0.2,
                                        max_retry_after_s=0.05)
    yield provider
    sandbox.control("graph").clear_faults()


def test_scope_is_the_whole_list_and_there_are_no_stamps(sp: SharePointProvider) -> None:
    for query in (Q, Query("Customers")):
        d = sp.describe(query)
        assert (d.scope, d.restriction, d.stamps) == ("all", None, False)
        assert d.key_generated and d.field("Modified").read_only


def test_lookup_returns_existing_items_with_read_columns(sp: SharePointProvider,
                                                        sandbox: SandboxProcess) -> None:
    read = sp.read(Q)
    keys = list(read.frame.index)
    assert sp.apply(Q, [Change("delete", "d", keys[1], {}, read.frame.loc[keys[1],
                                                                          "_version"])])[0].ok
    extra = sp.apply(Q, [Change("insert", f"i{n}", None, {"Title": f"Item {n}"})
                         for n in range(40)])
    new_keys = [o.key for o in extra]
    sandbox.control("graph").reset_stats()
    found = sp.lookup(Q, [keys[0], keys[1], "9999", "not-an-id", *new_keys])
    assert sorted(found.index, key=int) == sorted([keys[0], *new_keys], key=int)
    assert list(found.columns) == list(read.frame.columns)
    assert found.loc[keys[0], "Title"] == read.frame.loc[keys[0], "Title"]
    assert found.loc[keys[0], "_version"] == read.frame.loc[keys[0], "_version"]
    batches = sandbox.control("graph").stats()["requests"].get("batch", 0)
    assert batches == 3  # 43 ids with the shape of an id: 20 + 20 + 3, never one GET per id
    assert sp.lookup(Q, []).empty


def test_created_is_called_after_each_batch(sp: SharePointProvider) -> None:
    calls: list[list[Outcome]] = []
    listed: list[int] = []

    def created(outs):
        listed.append(len(sp.read(Q).frame))  # the items exist when we are told
        calls.append(list(outs))

    before = len(sp.read(Q).frame)
    changes = [Change("insert", f"i{n}", None, {"Title": f"New {n}"}) for n in range(45)]
    changes.insert(3, Change("insert", "bad", None, {"Modified": "2024-01-01"}))  # read-only
    out = sp.apply(Q, changes, created=created)
    assert [o.ok for o in out].count(False) == 1 and not out[3].ok
    assert [len(c) for c in calls] == [20, 20, 5]
    assert [o.ref for c in calls for o in c] == [f"i{n}" for n in range(45)]
    assert listed[0] >= before + 20 and listed[-1] == before + 45
    assert sp.apply(Q, [], created=created) == [] and len(calls) == 3


def test_a_failing_created_callback_deletes_the_unrecorded_items(sp: SharePointProvider) -> None:
    before = set(sp.read(Q).frame.index)

    def created(outs):
        raise RuntimeError("journal lost")

    with pytest.raises(RuntimeError, match="journal lost"):
        sp.apply(Q, [Change("insert", f"i{n}", None, {"Title": f"N {n}"}) for n in range(30)],
                 created=created)
    assert set(sp.read(Q).frame.index) == before
