"""``FROM Directory`` (exchange provider, ``Backend=graph``): the organisation's people from
Graph ``/users`` under the contact field names, with ``/users/delta`` as the change feed,
against the Graph sandbox: a complete read (paged, WHERE), a department edit and a deleted
user through the delta link alone, the missing permission, refusal of the directory as a
written side, and a one-way run Directory -> SQLite through the command line. The same on
``Backend=ews``: ``test_provider_exchange_directory_ews.py``."""

import json
import sqlite3
from pathlib import Path

import pytest
from directory_helpers import (
    SECRET_ENV,
    delete_user,
    edit_user,
    exo_cs,
    people_project,
    people_rows,
    run_people,
)
from sandbox_process import SandboxProcess

from l2sync_dagster.providers.base import Change, ProviderError, Query
from l2sync_dagster.providers.exchange import ExchangeProvider
from l2sync_dagster.providers.exchange.graph_directory import DirectoryReader
from l2sync_dagster.providers.exchange.select import SelectError, parse_select
from l2sync_dagster.providers.graph.batch import BatchRequest, BatchResult
from l2sync_dagster.providers.graph.delta import DeltaResult
from l2sync_dagster.providers.graph.throttle import RetryPolicy
from l2sync_dagster.sandbox.graph.directory import person
from l2sync_dagster.sandbox.token_service import object_id

DIRECTORY = Query("SELECT * FROM Directory")
ALICE = "alice@sandbox.test"
CONTRACTOR = "contractor@sandbox.test"
FAST = RetryPolicy(max_retries=10, base_s=0.02, cap_s=0.2, max_retry_after_s=0.05)


@pytest.fixture
def directory(sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(SECRET_ENV, "sandbox")
    control = sandbox.control("graph")
    control.reset()

    def make(extra: str = "") -> ExchangeProvider:
        provider = ExchangeProvider.from_connection_string(exo_cs(sandbox, extra))
        provider.backend.client.retry = FAST  # type: ignore[attr-defined]
        return provider

    yield make
    control.reset()


def test_full_read_of_the_directory_with_the_contact_field_names(
        directory, sandbox: SandboxProcess) -> None:
    exo = directory(";PageSize=2")
    sandbox.control("graph").reset_stats()
    result = exo.read(DIRECTORY)
    frame = result.frame
    assert result.complete and result.cursor
    # the demo users and the contractor without a mailbox, in pages of 2
    assert len(frame) == 4
    assert sandbox.control("graph").stats()["requests"]["users.delta"] == 2
    alice = frame.loc[object_id(ALICE)]
    assert alice["GivenName"] == "Alice" and alice["Surname"] == "Martin"
    assert alice["DisplayName"] == "Alice Martin"
    assert alice["EmailAddresses.EmailAddress1"] == ALICE
    assert alice["CompanyName"] == "Sandbox Ltd"
    assert alice["Department"] == "Sales" and alice["JobTitle"] == "Account Manager"
    assert alice["OfficeLocation"] == "London office"
    assert alice["PhoneNumbers.BusinessPhone"].startswith("+44 20 7946 ")
    assert alice["PhysicalAddresses.Business.City"] == "London"
    assert alice["PhysicalAddresses.Business.Street"] == "1 Finsbury Avenue"
    assert alice["PhysicalAddresses.Business.PostalCode"] == "EC2M 2PF"
    assert alice["PhysicalAddresses.Business.CountryOrRegion"] == "United Kingdom"
    contractor = frame.loc[object_id(CONTRACTOR)]
    assert contractor["EmailAddresses.EmailAddress1"] is None
    assert contractor["PhysicalAddresses.Business.State"] == "Berlin"
    sales = exo.read(Query("SELECT GivenName, Department FROM Directory "
                           "WHERE Department = 'Sales'")).frame
    assert set(sales.index) == {object_id(ALICE), object_id("sales@sandbox.test")}
    assert list(sales.columns[:2]) == ["GivenName", "Department"]
    assert exo.describe(DIRECTORY).writable is False
    assert "Graph directory" in exo.verify(DIRECTORY)
    assert not sandbox.invalid_responses()


def test_an_edit_and_a_deleted_user_come_through_the_delta_link_alone(
        directory, sandbox: SandboxProcess) -> None:
    exo = directory()
    first = exo.read(DIRECTORY)
    sales_only = Query("SELECT GivenName, Department FROM Directory WHERE Department = 'Sales'")
    sales_first = exo.read(sales_only)
    edit_user(sandbox, ALICE, department="Finance")
    delete_user(sandbox, CONTRACTOR)
    control = sandbox.control("graph")
    control.reset_stats()
    changes = exo.read(DIRECTORY, cursor=first.cursor)
    requests = control.stats()["requests"]
    assert requests == {"users.delta": 1}, requests
    assert not changes.complete
    assert list(changes.frame.index) == [object_id(ALICE)]
    assert changes.frame.loc[object_id(ALICE), "Department"] == "Finance"
    assert changes.deleted == [object_id(CONTRACTOR)]
    # a user that no longer matches WHERE leaves the scope as a deletion
    moved = exo.read(sales_only, cursor=sales_first.cursor)
    assert moved.frame.empty and set(moved.deleted) == {object_id(ALICE),
                                                        object_id(CONTRACTOR)}
    # nothing changed since: an empty round, and the looked-up user is gone
    again = exo.read(DIRECTORY, cursor=changes.cursor)
    assert again.frame.empty and again.deleted == []
    found = exo.lookup(DIRECTORY, [object_id(ALICE), object_id(CONTRACTOR)])
    assert list(found.index) == [object_id(ALICE)]
    assert not sandbox.invalid_responses()


def test_without_user_read_all_graph_refuses_and_the_error_says_so(
        directory, sandbox: SandboxProcess) -> None:
    exo = directory()
    sandbox.control("graph").call("POST", "app-roles", {"roles": ["Contacts.ReadWrite"]})
    with pytest.raises(ProviderError) as exc:
        exo.read(DIRECTORY)
    message = str(exc.value)
    assert "Authorization_RequestDenied" in message and "User.Read.All" in message
    assert "ClientSecret" not in message and "sandbox\"" not in message


def test_the_directory_is_never_written(directory) -> None:
    exo = directory()
    outcomes = exo.apply(DIRECTORY, [Change("insert", "n", None, {"GivenName": "New"}),
                                     Change("delete", "d", object_id(ALICE), {})])
    assert [o.ok for o in outcomes] == [False, False]
    assert all("read-only" in (o.error or "") for o in outcomes)


def test_directory_to_sqlite_one_way_through_the_run_command(
        directory, sandbox: SandboxProcess, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    directory()
    monkeypatch.setenv("L2SYNC_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    folder = people_project(tmp_path, exo_cs(sandbox), "left_to_right")
    code, first = run_people(folder, capsys)
    assert code == 0, first
    assert first["right"]["inserted"] == 4
    people = people_rows(tmp_path)
    assert people["Alice Martin"] == ("Alice", "Sales")
    assert people["Casey Brooks"] == ("Casey", "Engineering")
    # the directory changes: the next run brings the edit and the delete (and nothing else)
    edit_user(sandbox, ALICE, department="Finance")
    delete_user(sandbox, CONTRACTOR)
    code, second = run_people(folder, capsys)
    assert code == 0, second
    assert second["right"]["updated"] == 1 and second["right"]["deleted"] == 1
    assert second["right"]["inserted"] == 0
    people = people_rows(tmp_path)
    assert people["Alice Martin"] == ("Alice", "Finance") and "Casey Brooks" not in people
    code, third = run_people(folder, capsys)
    assert code == 0 and third["right"]["updated"] == 0 and third["right"]["inserted"] == 0


@pytest.mark.parametrize("direction", ["right_to_left", "bidirectional"])
def test_a_connection_that_writes_to_the_directory_is_refused_when_loaded(
        direction: str, directory, sandbox: SandboxProcess, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    directory()
    monkeypatch.setenv("L2SYNC_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    folder = people_project(tmp_path, exo_cs(sandbox), direction)
    with sqlite3.connect(tmp_path / "people.db") as conn:
        conn.execute("INSERT INTO people (given_name, surname, department, email) "
                     "VALUES ('New', 'Person', 'Sales', 'new@sandbox.test')")
    sandbox.control("graph").reset_stats()
    code, out = run_people(folder, capsys)
    assert code != 0
    text = json.dumps(out)
    # the mapping check names the field, the side and the direction (every directory field
    # is read-only, so the first mapped one is refused)
    assert "is read-only on the left side" in text and f"direction {direction}" in text, text
    # refused before anything was read from or written to the directory
    assert "users.delta" not in sandbox.control("graph").stats()["requests"]


class _PartialDeltaClient:
    """A Graph client whose later delta round names a changed user with only the property
    that changed (as Graph may): the reader must read that user whole."""

    def __init__(self) -> None:
        self.batched: list[str] = []

    def delta(self, path: str, **kw: object) -> DeltaResult:
        full = {"id": "u1", "givenName": "Alice", "surname": "Martin", "department": "Sales"}
        if kw.get("delta_link") is None:
            return DeltaResult(items=[full], delta_link="link-1", full=True)
        return DeltaResult(items=[{"id": "u1", "department": "Finance"}],
                           delta_link="link-2", full=False)

    def batch(self, reqs: list[BatchRequest], **kw: object) -> list[BatchResult]:
        self.batched += [r.url for r in reqs]
        return [BatchResult(r.id, 200, {"id": "u1", "givenName": "Alice", "surname": "Martin",
                                        "department": "Finance"}) for r in reqs]


def test_a_changed_user_named_with_only_its_changed_property_is_read_whole() -> None:
    client = _PartialDeltaClient()
    reader = DirectoryReader(client, 100, "https://graph.test/v1.0")  # type: ignore[arg-type]
    stmt = parse_select("SELECT GivenName, Surname, Department FROM Directory")
    first = reader.read(stmt, None)
    assert first.complete and not client.batched
    changed = reader.read(stmt, first.cursor)
    assert client.batched and client.batched[0].startswith("/users/u1?$select=")
    row = changed.frame.loc["u1"]
    assert (row["GivenName"], row["Surname"], row["Department"]) == ("Alice", "Martin",
                                                                     "Finance")


def test_the_generated_staff_have_varied_deterministic_profiles() -> None:
    staff = [f"staff{i:04d}@sandbox.test" for i in range(1, 61)]
    profiles = [person(upn) for upn in staff]
    assert profiles == [person(upn) for upn in staff]
    assert len({p["department"] for p in profiles}) == 6
    assert len({p["city"] for p in profiles}) == 4
    assert len({(p["givenName"], p["surname"]) for p in profiles}) == 60
    assert all(p["jobTitle"] and p["businessPhones"] and p["officeLocation"] for p in profiles)


@pytest.mark.parametrize("text, message", [
    ("SELECT * FROM Directory/Sales", "the directory has no folders"),
    ("SELECT * FROM Contacts AS DirectoryUser", "read FROM Directory, not from 'Contacts'"),
    ("SELECT Subject FROM Directory AS Message", "holds DirectoryUser items, not Message"),
    ("SELECT Birthday FROM Directory", "unknown field 'Birthday' for DirectoryUser items"),
])
def test_directory_statements_that_make_no_sense_are_refused(text: str, message: str) -> None:
    with pytest.raises(SelectError, match=message):
        parse_select(text)
