"""``FROM Directory`` on ``Backend=ews``: the persons of the global address list through
FindPeople against the EWS sandbox, whose GAL is the Graph sandbox's directory (the mail-enabled
users; the groups are personas of another type): a complete read under the contact field names
(a paged sweep of query strings, WHERE, TOP), an edit and a removal made through the Graph
sandbox's directory control path seen by the next read, a read whose pages end before the total
refused, refusal of the directory as a written side, a one-way run Directory(ews) -> SQLite
through the command line, and the same rows as ``Backend=graph`` for the same people."""

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

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
from exchange_helpers import PASSWORD_ENV, connection_string, provider
from exchangelib.version import EXCHANGE_2010_SP2, Version
from sandbox_process import SandboxProcess

from l2sync_dagster.providers.base import Change, ProviderError, Query
from l2sync_dagster.providers.exchange import ExchangeProvider
from l2sync_dagster.providers.exchange.connection import parse_settings
from l2sync_dagster.providers.exchange.ews_directory import SWEEP, EwsDirectoryReader, GalPeople
from l2sync_dagster.providers.exchange.select import parse_select
from l2sync_dagster.sandbox.graph.groups import ALL_STAFF

DIRECTORY = Query("SELECT * FROM Directory")
ALICE = "alice@sandbox.test"
SALES = "sales@sandbox.test"
SYNC = "sync@sandbox.test"
CONTRACTOR = "contractor@sandbox.test"


@pytest.fixture
def gal(sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch):
    """An EWS provider factory; the Graph sandbox's directory reset before and after."""
    monkeypatch.setenv(PASSWORD_ENV, "sandbox")
    control = sandbox.control("graph")
    control.reset()
    sandbox.control("ews").reset()

    def make(**extra: str) -> ExchangeProvider:
        return provider(sandbox.urls["ews"], **extra)

    yield make
    control.reset()


def test_full_read_of_the_gal_with_the_contact_field_names(
        gal, sandbox: SandboxProcess) -> None:
    exo = gal(PageSize="2")
    ews = sandbox.control("ews")
    ews.reset_stats()
    result = exo.read(DIRECTORY)
    frame = result.frame
    # complete, and no cursor: FindPeople has no change feed
    assert result.complete and result.cursor is None
    # the users with a mailbox; not the contractor (no mail, so not in the GAL) nor the groups
    assert sorted(frame.index) == [ALICE, SALES, SYNC]
    assert ALL_STAFF not in frame.index
    # one query per character of the sweep, "s" in two pages of 2 (sales@, sync@, Sales Desk)
    assert ews.stats()["requests"]["FindPeople"] == len(SWEEP) + 1
    alice = frame.loc[ALICE]
    assert alice["GivenName"] == "Alice" and alice["Surname"] == "Martin"
    assert alice["DisplayName"] == "Alice Martin"
    assert alice["EmailAddresses.EmailAddress1"] == ALICE
    assert alice["CompanyName"] == "Sandbox Ltd"
    assert alice["Department"] == "Sales" and alice["JobTitle"] == "Account Manager"
    assert alice["OfficeLocation"] == "London office"
    assert alice["PhoneNumbers.BusinessPhone"].startswith("+44 20 7946 ")
    assert alice["PhoneNumbers.MobilePhone"] is None
    assert alice["PhysicalAddresses.Business.Street"] == "1 Finsbury Avenue"
    assert alice["PhysicalAddresses.Business.City"] == "London"
    assert alice["PhysicalAddresses.Business.PostalCode"] == "EC2M 2PF"
    assert alice["PhysicalAddresses.Business.CountryOrRegion"] == "United Kingdom"
    assert alice["PhysicalAddresses.Business.State"] is None
    assert frame.loc[SALES, "PhoneNumbers.MobilePhone"].startswith("+44 7700 9")
    # WHERE on a directory field, evaluated on what FindPeople returned
    sales = exo.read(Query("SELECT GivenName, Department FROM Directory "
                           "WHERE Department = 'Sales'")).frame
    assert sorted(sales.index) == [ALICE, SALES]
    assert list(sales.columns[:2]) == ["GivenName", "Department"]
    top = exo.read(Query("SELECT TOP 1 GivenName FROM Directory ORDER BY GivenName DESC"))
    assert list(top.frame.index) == [SYNC]
    assert exo.describe(DIRECTORY).writable is False
    assert "global address list via FindPeople" in exo.verify(DIRECTORY)
    assert not sandbox.invalid_responses()


def test_an_edit_and_a_removed_user_come_through_the_next_read(
        gal, sandbox: SandboxProcess) -> None:
    exo = gal()
    first = exo.read(DIRECTORY)
    assert first.frame.loc[ALICE, "Department"] == "Sales"
    edit_user(sandbox, ALICE, department="Finance", jobTitle="Controller")
    delete_user(sandbox, SALES)
    second = exo.read(DIRECTORY, cursor=first.cursor)
    assert second.complete
    assert sorted(second.frame.index) == [ALICE, SYNC]
    assert second.frame.loc[ALICE, "Department"] == "Finance"
    assert second.frame.loc[ALICE, "JobTitle"] == "Controller"
    assert second.frame.loc[ALICE, "_version"] != first.frame.loc[ALICE, "_version"]
    assert second.frame.loc[SYNC, "_version"] == first.frame.loc[SYNC, "_version"]
    # the fingerprint follows the directory; a lookup finds who is still there
    before = exo.probe(DIRECTORY)
    assert exo.probe(DIRECTORY) == before
    edit_user(sandbox, SYNC, officeLocation="Boston office")
    assert exo.probe(DIRECTORY) != before
    found = exo.lookup(DIRECTORY, [ALICE, SALES, "ALICE@sandbox.test"])
    assert list(found.index) == [ALICE]
    assert found.loc[ALICE, "Department"] == "Finance"
    # the key is the primary SMTP address in lower case: a new address is a new key
    edit_user(sandbox, SYNC, mail="Sync.Service@Sandbox.test")
    third = exo.read(DIRECTORY).frame
    assert sorted(third.index) == [ALICE, "sync.service@sandbox.test"]
    assert third.loc["sync.service@sandbox.test",
                     "EmailAddresses.EmailAddress1"] == "Sync.Service@Sandbox.test"
    assert list(exo.lookup(DIRECTORY, ["SYNC.service@sandbox.test"]).index) == [
        "sync.service@sandbox.test"]
    assert not sandbox.invalid_responses()


def test_pages_that_end_before_the_total_fail_the_read(
        gal, monkeypatch: pytest.MonkeyPatch) -> None:
    exo = gal(PageSize="1")
    original = GalPeople._get_paging_values

    def one_short(self: GalPeople, elem: object) -> tuple[int, int | None]:
        # the server claims one more person than its pages deliver
        total, _following = original(self, elem)
        return total + 1, None

    monkeypatch.setattr(GalPeople, "_get_paging_values", one_short)
    with pytest.raises(ProviderError) as exc:
        exo.read(DIRECTORY)
    assert "was not read whole" in str(exc.value) and "query 'a'" in str(exc.value)


def test_a_server_before_exchange_2013_is_told_to_use_graph(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # FindPeople came with Exchange 2013: exchangelib refuses it before sending anything
    monkeypatch.setenv(PASSWORD_ENV, "unused")
    account = SimpleNamespace(protocol=SimpleNamespace(version=Version(build=EXCHANGE_2010_SP2)))
    reader = EwsDirectoryReader(SimpleNamespace(account=account),  # type: ignore[arg-type]
                                parse_settings(connection_string("https://127.0.0.1:1")))
    with pytest.raises(ProviderError, match="needs Exchange 2013 or later; use Backend=graph"):
        reader.read(parse_select("SELECT * FROM Directory"))


def test_the_directory_is_never_written_on_ews(gal) -> None:
    exo = gal()
    outcomes = exo.apply(DIRECTORY, [Change("insert", "n", None, {"GivenName": "New"}),
                                     Change("update", "u", ALICE, {"Department": "IT"}),
                                     Change("delete", "d", ALICE, {})])
    assert [o.ok for o in outcomes] == [False, False, False]
    assert all("read-only" in (o.error or "") for o in outcomes)
    with pytest.raises(ProviderError, match="read-only"):
        exo.create_entity(DIRECTORY)
    assert exo.find_stamps(DIRECTORY, ["stamp"]) == {}
    assert exo.describe(DIRECTORY).stamps is False


def test_an_app_reads_the_gal_by_impersonation_and_a_bad_password_says_unauthorized(
        gal, sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EWS_DIRECTORY_CLIENT_SECRET", "sandbox")
    app = gal(User=None, Password=None, Authentication="OAuth", TenantId="sandbox",
              ClientId="l2sync-sandbox", ClientSecret="env:EWS_DIRECTORY_CLIENT_SECRET",
              Authority=f"{sandbox.urls['token']}/sandbox", CABundle=str(sandbox.ca_path),
              Impersonation="true")
    assert sorted(app.read(DIRECTORY).frame.index) == [ALICE, SALES, SYNC]
    monkeypatch.setenv("EWS_DIRECTORY_WRONG", "wrong-password")
    with pytest.raises(ProviderError, match="unauthorized") as err:
        gal(Password="env:EWS_DIRECTORY_WRONG").verify(DIRECTORY)
    assert "wrong-password" not in str(err.value)


def _ews_cs(sandbox: SandboxProcess) -> str:
    return connection_string(sandbox.urls["ews"])


def test_directory_on_ews_to_sqlite_one_way_through_the_run_command(
        gal, sandbox: SandboxProcess, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    gal()
    monkeypatch.setenv("L2SYNC_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    folder = people_project(tmp_path, _ews_cs(sandbox), "left_to_right")
    code, first = run_people(folder, capsys)
    assert code == 0, first
    assert first["right"]["inserted"] == 3
    people = people_rows(tmp_path)
    assert people["Alice Martin"] == ("Alice", "Sales")
    assert "Casey Brooks" not in people  # no mailbox: not in the GAL
    # the directory changes: the next run (a full read) brings the edit and the removal
    edit_user(sandbox, ALICE, department="Finance")
    delete_user(sandbox, SALES)
    code, second = run_people(folder, capsys)
    assert code == 0, second
    assert second["right"]["updated"] == 1 and second["right"]["deleted"] == 1
    assert second["right"]["inserted"] == 0
    people = people_rows(tmp_path)
    assert people["Alice Martin"] == ("Alice", "Finance") and "Sales Desk" not in people
    code, third = run_people(folder, capsys)
    assert code == 0 and third["right"]["updated"] == 0 and third["right"]["inserted"] == 0
    assert third["right"]["deleted"] == 0


@pytest.mark.parametrize("direction", ["right_to_left", "bidirectional"])
def test_a_connection_that_writes_to_the_gal_is_refused_when_loaded(
        direction: str, gal, sandbox: SandboxProcess, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    gal()
    monkeypatch.setenv("L2SYNC_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    folder = people_project(tmp_path, _ews_cs(sandbox), direction)
    with sqlite3.connect(tmp_path / "people.db") as conn:
        conn.execute("INSERT INTO people (given_name, surname, department, email) "
                     "VALUES ('New', 'Person', 'Sales', 'new@sandbox.test')")
    sandbox.control("ews").reset_stats()
    code, out = run_people(folder, capsys)
    assert code != 0
    text = json.dumps(out)
    assert "is read-only on the left side" in text and f"direction {direction}" in text, text
    # refused before anything was read from the directory
    assert "FindPeople" not in sandbox.control("ews").stats()["requests"]


def test_the_same_rows_as_graph_for_the_same_people(
        gal, sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "sandbox")
    edit_user(sandbox, ALICE, mobilePhone="+44 7700 900777", state="Greater London")
    graph = ExchangeProvider.from_connection_string(exo_cs(sandbox)).read(DIRECTORY).frame
    ews = gal().read(DIRECTORY).frame
    by_mail = graph.set_index("EmailAddresses.EmailAddress1", drop=False)
    columns = [c for c in graph.columns if not c.startswith("_")]
    assert [c for c in ews.columns if not c.startswith("_")] == columns
    # every person of the GAL is Graph's user of that address, field by field; Graph's user
    # without a mailbox is the one the GAL does not list
    assert sorted(ews.index) == sorted(a for a in by_mail.index if a)
    for address in ews.index:
        assert ews.loc[address, columns].to_dict() == by_mail.loc[address, columns].to_dict()
    assert graph[graph["EmailAddresses.EmailAddress1"].isna()]["GivenName"].tolist() == ["Casey"]
    assert ews.loc[ALICE, "PhysicalAddresses.Business.State"] == "Greater London"


STAFF = 1200


def test_a_directory_of_thousands_is_read_whole_in_pages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1200 generated staff plus the demo users: the staff's addresses all start with "s",
    so that query alone is three pages of 500, and every person arrives once."""
    monkeypatch.setenv("L2SYNC_SANDBOX_STAFF", str(STAFF))
    monkeypatch.setenv(PASSWORD_ENV, "sandbox")
    big = SandboxProcess.start(tmp_path / "state", "--only", "ews", "--only", "graph")
    try:
        exo = provider(big.urls["ews"], PageSize="500")
        frame = exo.read(Query("SELECT EmailAddresses.EmailAddress1, Department "
                               "FROM Directory")).frame
        staff = {f"staff{i:04d}@sandbox.test" for i in range(1, STAFF + 1)}
        assert set(frame.index) == staff | {ALICE, SALES, SYNC}
        assert (frame["EmailAddresses.EmailAddress1"] == frame.index).all()
        assert frame["Department"].notna().all()
        requests = big.control("ews").stats()["requests"]["FindPeople"]
        assert len(SWEEP) + 2 <= requests <= len(SWEEP) * 3, requests
        assert not big.invalid_responses()
    finally:
        big.stop()
