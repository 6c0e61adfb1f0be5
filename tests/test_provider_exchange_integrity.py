"""Integrity capabilities of the exchange provider on both backends (EWS and Graph) against
the sandbox: read scope and restriction, lookup by key whatever WHERE/TOP say (a deleted
item and an item outside the WHERE), hidden stamps that survive a user editing every visible
field, the created callback of apply, fields a backend lacks refused at describe, and one
WHERE semantics (the same statement selects the same contacts on both backends)."""

from collections.abc import Iterator
from typing import Any

import pytest
from exchange_users import (
    EWS_PASSWORD_ENV,
    GRAPH_SECRET_ENV,
    EwsUser,
    GraphUser,
    ews_cs,
    graph_cs,
)
from sandbox_process import SandboxProcess

from l2sync_dagster.providers.base import Change, Outcome, ProviderError, Query
from l2sync_dagster.providers.exchange import ExchangeProvider
from l2sync_dagster.providers.exchange.ews_values import ACCESSORS, EWS_UNAVAILABLE, EWS_VIRTUAL
from l2sync_dagster.providers.exchange.fields import ITEM_TYPES
from l2sync_dagster.providers.exchange.graph_fields import (
    GRAPH_FIELDS,
    GRAPH_NO_API,
    GRAPH_UNAVAILABLE,
    GRAPH_VIRTUAL,
)
from l2sync_dagster.providers.graph.throttle import RetryPolicy

FAST = RetryPolicy(max_retries=10, base_s=0.02, cap_s=0.2, max_retry_after_s=0.05)
ALL = Query("SELECT GivenName, CompanyName FROM Contacts")
FILTERED = Query("SELECT GivenName, CompanyName FROM Contacts WHERE CompanyName = 'in'")
LIMITED = Query("SELECT TOP 1 GivenName, CompanyName FROM Contacts ORDER BY GivenName")
BACKENDS = ("ews", "graph")
FOLDER_OF = {"Contact": "Contacts", "CalendarItem": "Calendar", "Task": "Tasks",
             "Message": "Inbox", "ContactGroup": "ContactGroups", "Note": "Notes",
             "DirectoryUser": "Directory"}


def open_provider(sandbox: SandboxProcess, backend: str, **extra: str) -> ExchangeProvider:
    """A provider of the sales mailbox (no request made yet)."""
    if backend == "ews":
        return ExchangeProvider.from_connection_string(ews_cs(sandbox, **extra))
    provider = ExchangeProvider.from_connection_string(graph_cs(sandbox))
    provider.backend.client.retry = FAST  # type: ignore[attr-defined]
    return provider


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox secrets the connection strings reference."""
    monkeypatch.setenv(EWS_PASSWORD_ENV, "sandbox")
    monkeypatch.setenv(GRAPH_SECRET_ENV, "sandbox")


@pytest.fixture(params=BACKENDS)
def mailbox(request: pytest.FixtureRequest, sandbox: SandboxProcess
            ) -> Iterator[tuple[str, Any]]:
    """(backend, user) with an empty default Contacts folder."""
    backend = request.param
    sandbox.control(backend).reset()
    user = EwsUser(sandbox) if backend == "ews" else GraphUser(sandbox)
    user.empty()
    yield backend, user
    sandbox.control(backend).clear_faults()


# --- read scope -------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_describe_reports_scope_and_restriction(sandbox: SandboxProcess, backend: str) -> None:
    exo = open_provider(sandbox, backend)
    plain = exo.describe(ALL)
    assert (plain.scope, plain.restriction, plain.stamps) == ("all", None, True)
    where = exo.describe(FILTERED)
    assert (where.scope, where.restriction) == ("filtered", "WHERE CompanyName = 'in'")
    top = exo.describe(LIMITED)
    assert (top.scope, top.restriction) == ("limited", "TOP 1")
    both = exo.describe(Query("SELECT TOP 2 GivenName FROM Contacts WHERE "
                              "CompanyName   =  'in' ORDER BY GivenName"))
    assert (both.scope, both.restriction) == ("limited", "TOP 2 WHERE CompanyName = 'in'")
    assert exo.describe(Query("SELECT GivenName FROM 'Contacts/**'")).scope == "all"
    long = exo.describe(Query("SELECT GivenName FROM Contacts WHERE CompanyName IN ("
                              + ", ".join(f"'company number {i}'" for i in range(20)) + ")"))
    assert long.scope == "filtered" and len(long.restriction or "") <= 80
    calendar = exo.describe(Query("SELECT Subject FROM Calendar"))
    if backend == "graph":  # a calendarView window: events outside it are not in the read
        assert calendar.scope == "filtered" and "window" in (calendar.restriction or "")
    else:
        assert calendar.scope == "all"


# --- lookup -----------------------------------------------------------------------------------
def test_lookup_ignores_where_and_top_and_skips_deleted(mailbox: tuple[str, Any],
                                                        sandbox: SandboxProcess) -> None:
    backend, user = mailbox
    exo = open_provider(sandbox, backend)
    inside = user.create("Ann", "in")
    outside = user.create("Bob", "out")
    gone = user.create("Cid", "in")
    user.delete(gone)
    read = exo.read(FILTERED)
    assert list(read.frame.index) == [inside]
    found = exo.lookup(FILTERED, [inside, outside, gone])
    assert set(found.index) == {inside, outside}
    assert list(found.columns) == list(read.frame.columns)
    assert found.loc[outside, "CompanyName"] == "out"
    assert found.loc[inside, "_version"] == read.frame.loc[inside, "_version"]
    assert set(exo.lookup(LIMITED, [inside, outside]).index) == {inside, outside}
    assert exo.lookup(FILTERED, []).empty


# --- stamps -----------------------------------------------------------------------------------
def test_stamps_survive_a_user_editing_every_visible_field(mailbox: tuple[str, Any],
                                                           sandbox: SandboxProcess) -> None:
    backend, user = mailbox
    exo = open_provider(sandbox, backend)
    out = exo.apply(ALL, [
        Change("insert", "a", None, {"GivenName": "Stamped", "CompanyName": "in"},
               stamp="pair-0001"),
        Change("insert", "b", None, {"GivenName": "Other", "CompanyName": "out"},
               stamp="pair-0002"),
        Change("insert", "c", None, {"GivenName": "Plain"})])
    assert all(o.ok for o in out), out
    user.edit_everything(out[0].key)
    assert user.records()[out[0].key] == ("Edited", "Elsewhere Ltd")
    # the stamp is no column: a read shows only what the statement selects
    assert "_l2sync_stamp" not in exo.read(Query("SELECT * FROM Contacts")).frame.columns
    found = exo.find_stamps(FILTERED, ["pair-0001", "pair-0002", "pair-9999"])
    assert found == {"pair-0001": out[0].key, "pair-0002": out[1].key}
    user.delete(out[1].key)
    assert open_provider(sandbox, backend).find_stamps(ALL, ["pair-0002", "pair-0001"]) == {
        "pair-0001": out[0].key}


# --- created callback -------------------------------------------------------------------------
def test_created_is_called_after_each_response_before_anything_else(
        mailbox: tuple[str, Any], sandbox: SandboxProcess) -> None:
    backend, user = mailbox
    exo = open_provider(sandbox, backend, BatchSize="2")
    existing = user.create("Old", "before")
    calls: list[list[Outcome]] = []
    seen: list[dict[str, tuple[str | None, str | None]]] = []

    def created(outcomes: Any) -> None:
        calls.append(list(outcomes))
        seen.append(user.records())

    changes = [Change("insert", f"n{i}", None, {"GivenName": f"New{i}"}) for i in range(3)]
    changes.insert(1, Change("update", "u", existing, {"CompanyName": "after"}))
    changes.append(Change("insert", "bad", None, {"GivenName": "Bad", "Birthday": "soon"}))
    out = exo.apply(ALL, changes, created=created)
    assert [o.ok for o in out] == [True, True, True, True, False]
    made = [o for c in calls for o in c]
    assert sorted(o.ref for o in made) == ["n0", "n1", "n2"]
    assert all(o.key and o.ok for o in made)
    # EWS: one CreateItem per BatchSize (2); Graph: one $batch of up to 20
    assert len(calls) == (2 if backend == "ews" else 1)
    for batch, records in zip(calls, seen, strict=True):
        assert all(o.key in records for o in batch)  # the items exist when reported
        assert records[existing] == ("Old", "before")  # and nothing else was sent yet
    assert user.records()[existing] == ("Old", "after")


def test_created_raising_removes_what_it_could_not_record(mailbox: tuple[str, Any],
                                                          sandbox: SandboxProcess) -> None:
    backend, user = mailbox
    exo = open_provider(sandbox, backend)

    def created(outcomes: Any) -> None:
        raise KeyboardInterrupt("killed while recording")

    with pytest.raises(KeyboardInterrupt, match="killed while recording"):
        exo.apply(ALL, [Change("insert", "n", None, {"GivenName": "Lost"})], created=created)
    assert user.records() == {}


# --- fields a backend lacks -------------------------------------------------------------------
def test_every_catalog_field_is_bound_or_marked_unavailable_on_each_backend() -> None:
    for name, itype in ITEM_TYPES.items():
        names = set(itype.names())
        if "ews" in itype.no_api:
            assert name not in ACCESSORS and name not in EWS_UNAVAILABLE
        else:
            ews_bound = (set(ACCESSORS[name]) | EWS_VIRTUAL) & names
            ews_off = set(EWS_UNAVAILABLE.get(name, {}))
            assert ews_bound | ews_off == names and not ews_bound & ews_off, name
        if name in GRAPH_NO_API:
            assert name not in GRAPH_FIELDS
            continue
        graph_bound = (set(GRAPH_FIELDS[name]) | GRAPH_VIRTUAL) & names
        graph_off = set(GRAPH_UNAVAILABLE.get(name, {}))
        assert graph_bound | graph_off == names, (name, names - graph_bound - graph_off)
        assert not graph_bound & graph_off, (name, graph_bound & graph_off)
        assert set(GRAPH_FIELDS[name]) <= names, name


@pytest.mark.parametrize("backend", BACKENDS)
def test_describe_refuses_fields_the_backend_lacks(sandbox: SandboxProcess,
                                                   backend: str) -> None:
    exo = open_provider(sandbox, backend)
    table = GRAPH_UNAVAILABLE if backend == "graph" else EWS_UNAVAILABLE
    refused = 0
    for type_name, itype in ITEM_TYPES.items():
        folder = FOLDER_OF[type_name]
        if backend == "graph" and type_name in GRAPH_NO_API:
            with pytest.raises(ProviderError, match="not available through Microsoft Graph"):
                exo.describe(Query(f"SELECT * FROM {folder}"))
            continue
        if backend in itype.no_api:  # the directory on EWS
            with pytest.raises(ProviderError, match=r"not available through .*use Backend=graph"):
                exo.describe(Query(f"SELECT * FROM {folder}"))
            continue
        missing = table.get(type_name, {})
        star = {f.name for f in exo.describe(Query(f"SELECT * FROM {folder}")).fields}
        assert not star & set(missing), type_name
        for f in itype.fields:
            query = Query(f"SELECT [{f.name}] FROM {folder}")
            if f.name in missing:
                with pytest.raises(ProviderError) as err:
                    exo.describe(query)
                text = str(err.value)
                assert f.name in text and "Microsoft Graph (Backend=graph)" in text
                assert "remove it from the select statement or use Backend=ews" in text
                refused += 1
            else:
                assert exo.describe(query).field(f.name) is not None
    assert refused == sum(len(v) for v in table.values())
    if backend == "graph":
        with pytest.raises(ProviderError, match="PercentComplete is not available through "
                                                "Microsoft Graph"):
            exo.describe(Query("SELECT Subject, PercentComplete FROM Tasks"))
        with pytest.raises(ProviderError, match="PercentComplete"):  # in WHERE too
            exo.describe(Query("SELECT Subject FROM Tasks WHERE PercentComplete > 50"))


# --- one WHERE semantics ----------------------------------------------------------------------
PEOPLE = (("Ann", "in"), ("Bob", None), ("Cid", "IN"), ("Dan", "out"), ("Eve", ""),
          ("Fay", "inside"))


@pytest.mark.parametrize(("where", "expected"), [
    ("CompanyName = 'in'", {"Ann", "Cid"}),
    ("CompanyName <> 'in'", {"Dan", "Fay"}),          # NULL <> 'in' is not true (SQL)
    ("CompanyName IS NULL", {"Bob", "Eve"}),          # an empty text is NULL in Exchange
    ("CompanyName IS NOT NULL", {"Ann", "Cid", "Dan", "Fay"}),
    ("CompanyName IN ('out', 'nowhere')", {"Dan"}),
    ("CompanyName STARTSWITH 'in'", {"Ann", "Cid", "Fay"}),
    ("CompanyName CONTAINS 'u'", {"Dan"}),
    ("CompanyName > 'in'", {"Fay", "Dan"}),
    ("CompanyName <> 'in' AND GivenName <> 'Dan'", {"Fay"}),
])
def test_the_same_where_selects_the_same_contacts_on_both_backends(
        mailbox: tuple[str, Any], sandbox: SandboxProcess, where: str,
        expected: set[str]) -> None:
    backend, user = mailbox
    for name, company in PEOPLE:
        if backend == "ews" and company == "":
            user.create(name, None, CompanyName="")  # an empty element, as stored
        else:
            user.create(name, company)
    exo = open_provider(sandbox, backend)
    query = Query(f"SELECT GivenName, CompanyName FROM Contacts WHERE {where}")
    assert set(exo.read(query).frame["GivenName"]) == expected
    top = exo.read(Query(f"SELECT TOP 2 GivenName FROM Contacts WHERE {where} "
                         "ORDER BY GivenName DESC"))
    assert list(top.frame["GivenName"]) == sorted(expected, reverse=True)[:2]


# --- the contract cases -----------------------------------------------------------------------
@pytest.mark.parametrize("case_id", ["exchange-ews", "exchange-graph"])
def test_contract_cases_start_empty_and_their_users_bypass_the_provider(
        request: pytest.FixtureRequest, tmp_path: Any, case_id: str) -> None:
    from contract.case_exchange import CASES

    # the factory resets the service (demo contacts come back) and must empty the folder
    case = CASES[case_id](request, tmp_path)
    assert case.id == case_id and case.stamps and case.user.records() == {}
    exo = ExchangeProvider.from_connection_string(case.connection_string)
    assert exo.read(Query(case.query)).frame.empty
    key = case.user.create("Ann", "in")
    other = case.user.create("Bob", "out")
    case.user.update(other, city="in")
    filtered = exo.read(Query(case.filtered_query)).frame
    assert set(filtered.index) == {key, other}
    assert len(exo.read(Query(case.limited_query)).frame) == 2
    assert exo.describe(Query(case.limited_query)).scope == "limited"
    desc = exo.describe(Query(f"SELECT {case.read_only_field}, {case.writable_alternative} "
                              "FROM Contacts"))
    assert desc.field(case.read_only_field).read_only  # type: ignore[union-attr]
    assert not desc.field(case.writable_alternative).read_only  # type: ignore[union-attr]
    case.user.delete(key)
    assert set(case.user.records()) == {other}
    assert list(exo.lookup(Query(case.query), [key, other]).index) == [other]
