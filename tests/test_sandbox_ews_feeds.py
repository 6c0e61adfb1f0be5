"""The EWS sandbox's limits and faults through exchangelib: FindItem paging past the find
count limit, SyncFolderItems pages and states, throttling, dropped connections, strict
request validation."""

import time
from collections.abc import Iterator

import pytest
import requests
from exchangelib import (
    BASIC,
    DELEGATE,
    Account,
    Build,
    Configuration,
    Contact,
    Credentials,
    EWSTimeZone,
    FaultTolerance,
    Version,
)
from exchangelib.errors import ErrorInvalidSyncStateData, ErrorServerBusy, ErrorTimeoutExpired
from exchangelib.protocol import close_connections
from sandbox_process import SandboxProcess

from l2sync_dagster.sandbox.control import SandboxControl

E2016 = Version(build=Build(15, 1, 2507, 6))
ALICE = "alice@sandbox.test"


@pytest.fixture
def ews(sandbox: SandboxProcess) -> Iterator[SandboxControl]:
    """The EWS control client; demo data reset before and after, no invalid response."""
    control = sandbox.control("ews")
    control.reset()
    close_connections()
    yield control
    control.clear_faults()
    assert control.stats()["invalid_responses"] == []
    control.reset()


def account(sandbox: SandboxProcess, mailbox: str = ALICE, *, retry: bool = False) -> Account:
    """alice's (or a delegated) mailbox through exchangelib, optionally retrying."""
    config = Configuration(
        service_endpoint=sandbox.urls["ews"] + "/EWS/Exchange.asmx",
        credentials=Credentials("sync@sandbox.test" if mailbox != ALICE else ALICE, "sandbox"),
        auth_type=BASIC, version=E2016,
        retry_policy=FaultTolerance(max_wait=30) if retry else None)
    return Account(mailbox, config=config, autodiscover=False, access_type=DELEGATE,
                   default_timezone=EWSTimeZone("UTC"))


def seed(ews: SandboxControl, count: int, mailbox: str = ALICE) -> list[str]:
    """``count`` demo contacts in the mailbox's Contacts folder."""
    return ews.call("POST", "items", {"mailbox": mailbox, "folder": "contacts",
                                      "count": count})["ids"]


def test_find_item_pages_beyond_the_find_count_limit(sandbox: SandboxProcess,
                                                     ews: SandboxControl) -> None:
    ids = seed(ews, 2500)
    acc = account(sandbox)
    ews.reset_stats()
    qs = acc.contacts.all().only("display_name")
    qs.page_size = 5000  # asks for more than EWSFindCountLimit allows
    found = list(qs)
    assert sorted(c.id for c in found) == sorted(ids)
    assert ews.stats()["requests"]["FindItem"] == 3  # 1000 + 1000 + 500
    # a lower limit (as an admin may configure) is honoured too
    ews.call("POST", "find-limit", {"limit": 400})
    ews.reset_stats()
    assert len(list(qs)) == 2500
    assert ews.stats()["requests"]["FindItem"] == 7
    # sorting and restrictions are applied before paging
    newest = acc.contacts.all().order_by("-display_name").only("display_name")[:3]
    names = [c.display_name for c in newest]
    assert names == sorted(names, reverse=True) and len(names) == 3
    assert acc.contacts.filter(display_name__startswith="Anna").count() >= 1


def test_sync_folder_items_across_calls(sandbox: SandboxProcess, ews: SandboxControl) -> None:
    seed(ews, 1200)
    acc = account(sandbox)
    folder = acc.contacts
    ews.reset_stats()
    first = list(folder.sync_items(max_changes_returned=512, only_fields=["display_name"]))
    assert len(first) == 1200 and {kind for kind, _ in first} == {"create"}
    assert ews.stats()["requests"]["SyncFolderItems"] == 3  # 512 + 512 + 176
    state = folder.item_sync_state
    assert state

    # nothing changed: an empty page
    assert list(folder.sync_items(sync_state=state)) == []
    state = folder.item_sync_state

    contacts = list(folder.all().only("display_name", "given_name")[:3])
    contacts[0].given_name = "Renamed"
    contacts[0].save(update_fields=["given_name"])
    deleted_id = contacts[1].id
    contacts[1].delete()
    made = Contact(folder=folder, display_name="Newcomer", given_name="New")
    made.save()
    gone = Contact(folder=folder, display_name="Ephemeral")
    gone.save()
    gone.delete()  # created and deleted between two syncs: not reported at all
    changes = list(folder.sync_items(sync_state=state))
    kinds = {(kind, obj.id) for kind, obj in changes}
    assert kinds == {("update", contacts[0].id), ("delete", deleted_id),
                     ("create", made.id)}
    updated = next(obj for kind, obj in changes if kind == "update")
    assert updated.given_name == "Renamed"
    assert updated.changekey == acc.contacts.get(id=contacts[0].id).changekey

    # a state the server has expired: ErrorInvalidSyncStateData, a full resync recovers
    state = folder.item_sync_state
    ews.faults(expire_cursors=True)
    with pytest.raises(ErrorInvalidSyncStateData):
        list(folder.sync_items(sync_state=state))
    ews.clear_faults()
    folder.item_sync_state = None
    full = list(folder.sync_items())
    stored = ews.call("GET", f"items?mailbox={ALICE}&folder=contacts")["items"]
    assert sorted(obj.id for _, obj in full) == sorted(i["id"] for i in stored)
    assert len(stored) == 1200
    # garbage is refused the same way
    with pytest.raises(ErrorInvalidSyncStateData):
        list(folder.sync_items(sync_state="bm90IGEgc3RhdGU="))


def test_sync_pages_are_capped_at_512(ews_schema: None, sandbox: SandboxProcess,
                                      ews: SandboxControl) -> None:
    seed(ews, 600)
    body = _soap(
        '<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>'
        '<m:SyncFolderId><t:DistinguishedFolderId Id="contacts"/></m:SyncFolderId>'
        '<m:MaxChangesReturned>{n}</m:MaxChangesReturned></m:SyncFolderItems>')
    ok = _post(sandbox, body.format(n=512))
    assert ok.status_code == 200 and ok.content.count(b"<t:Create>") == 512
    assert b"<m:IncludesLastItemInRange>false</m:IncludesLastItemInRange>" in ok.content
    too_many = _post(sandbox, body.format(n=513))
    assert too_many.status_code == 500 and b"ErrorSchemaValidation" in too_many.content


def test_throttling_with_a_retrying_client(sandbox: SandboxProcess, ews: SandboxControl) -> None:
    seed(ews, 300)
    acc = account(sandbox, retry=True)
    ews.faults(throttle_fraction=0.5, throttle_ms=20, seed=7)
    names = [c.display_name for c in acc.contacts.all().only("display_name")]
    made = Contact(folder=acc.contacts, display_name="Throttled", given_name="T")
    made.save()
    stats = ews.stats()
    assert stats["throttled"] > 0
    ews.clear_faults()
    assert len(names) == 300
    assert acc.contacts.get(id=made.id).display_name == "Throttled"

    # the fault carries BackOffMilliseconds the way Exchange sends it
    ews.faults(throttle_fraction=1.0, throttle_ms=1234)
    r = _post(sandbox, _soap('<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape>'
                             '</m:FolderShape><m:FolderIds><t:DistinguishedFolderId '
                             'Id="inbox"/></m:FolderIds></m:GetFolder>'))
    assert r.status_code == 500
    assert b'<t:Value Name="BackOffMilliseconds">1234</t:Value>' in r.content
    assert b"<e:ResponseCode" in r.content and b"ErrorServerBusy" in r.content
    close_connections()
    with pytest.raises(ErrorServerBusy):  # a fail-fast client sees the error
        list(account(sandbox).contacts.all()[:1])


def test_dropped_connection(sandbox: SandboxProcess, ews: SandboxControl) -> None:
    acc = account(sandbox, retry=True)
    acc.contacts.refresh()
    ews.reset_stats()
    ews.faults(drop_after=0, drop_count=1)
    # exchangelib retries a dropped connection only while it holds more than one session;
    # a sequential client sees ErrorTimeoutExpired and must retry itself
    with pytest.raises(ErrorTimeoutExpired):
        Contact(folder=acc.contacts, display_name="Lost").save()
    made = Contact(folder=acc.contacts, display_name="After drop")
    made.save()
    stats = ews.stats()
    assert stats["dropped"] == 1 and stats["requests"]["CreateItem"] == 1
    ews.clear_faults()
    stored = ews.call("GET", f"items?mailbox={ALICE}&folder=contacts")["items"]
    assert [i["fields"]["DisplayName"] for i in stored] == ["After drop"]
    # slow answers: the injected latency is added to every EWS request
    ews.faults(latency_ms=400)
    started = time.monotonic()
    acc.contacts.refresh()
    assert time.monotonic() - started >= 0.4


def test_invalid_request_gets_schema_validation_fault(ews_schema: None, sandbox: SandboxProcess,
                                                      ews: SandboxControl) -> None:
    bad = _soap('<m:GetFolder><m:FolderShape><t:BaseShape>Everything</t:BaseShape>'
                '</m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="inbox"/>'
                '</m:FolderIds></m:GetFolder>')
    r = _post(sandbox, bad)
    assert r.status_code == 500
    assert b"a:ErrorSchemaValidation</faultcode>" in r.content
    assert b"<t:Violation>" in r.content and b"<t:LineNumber>" in r.content
    unknown_element = _soap('<m:GetFolder><m:Bogus/></m:GetFolder>')
    assert b"ErrorSchemaValidation" in _post(sandbox, unknown_element).content
    bad_header = _soap('<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape>'
                       '</m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="inbox"/>'
                       '</m:FolderIds></m:GetFolder>',
                       header='<t:ExchangeImpersonation><t:Nobody/></t:ExchangeImpersonation>')
    assert b"ErrorSchemaValidation" in _post(sandbox, bad_header).content
    assert ews.stats()["rejected_requests"] == 3
    good = _post(sandbox, _soap('<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape>'
                                '</m:FolderShape><m:FolderIds><t:DistinguishedFolderId '
                                'Id="inbox"/></m:FolderIds></m:GetFolder>'))
    assert good.status_code == 200 and b'ResponseClass="Success"' in good.content
    assert good.headers["Content-Type"].startswith("text/xml")


def test_state_survives_a_restart(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    from pathlib import Path

    from l2sync_dagster.sandbox.ews import EwsService
    from l2sync_dagster.sandbox.server import start_sandbox

    monkeypatch.setattr("l2sync_dagster.sandbox.server.available_services",
                        lambda: {"ews": EwsService})
    state = Path(str(tmp_path)) / "state"
    first = start_sandbox(state_dir=state)
    try:
        control = SandboxControl("ews", first.urls["ews"])
        ids = control.call("POST", "items", {"mailbox": ALICE, "folder": "contacts",
                                             "count": 5})["ids"]
    finally:
        first.stop()  # saves ews.json, as ``l2sync sandbox`` does on SIGTERM
    assert (state / "ews.json").is_file()
    second = start_sandbox(state_dir=state)
    try:
        items = SandboxControl("ews", second.urls["ews"]).call(
            "GET", f"items?mailbox={ALICE}&folder=contacts")
        assert [i["id"] for i in items["items"]] == ids
        acc_cfg = Configuration(
            service_endpoint=second.urls["ews"] + "/EWS/Exchange.asmx",
            credentials=Credentials(ALICE, "sandbox"), auth_type=BASIC, version=E2016)
        close_connections()
        acc = Account(ALICE, config=acc_cfg, autodiscover=False, access_type=DELEGATE)
        assert sorted(c.id for c in acc.contacts.all()) == sorted(ids)
        new = Contact(folder=acc.contacts, display_name="After restart")
        new.save()
        assert new.id not in ids  # id counter restored too
    finally:
        second.stop()
        close_connections()


def _soap(body: str, header: str = "") -> str:
    return ('<?xml version="1.0" encoding="utf-8"?><s:Envelope '
            'xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
            'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Header>'
            f'<t:RequestServerVersion Version="Exchange2016"/>{header}</s:Header><s:Body>'
            f'{body}</s:Body></s:Envelope>')


def _post(sandbox: SandboxProcess, body: str) -> requests.Response:
    return _post_to(sandbox.urls["ews"], body)


def _post_to(base_url: str, body: str) -> requests.Response:
    return requests.post(base_url + "/EWS/Exchange.asmx", data=body.encode(),
                         auth=(ALICE, "sandbox"), headers={"Content-Type": "text/xml"},
                         timeout=30)


def test_serves_without_schema_files(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    from pathlib import Path

    import l2sync_dagster.sandbox.ews.endpoint as endpoint
    from l2sync_dagster.sandbox.ews import EwsService
    from l2sync_dagster.sandbox.server import start_sandbox

    monkeypatch.setattr(endpoint, "schema_dir_or_notice",
                        lambda kind: (None, f"{kind}: schema files not found"))
    monkeypatch.setattr("l2sync_dagster.sandbox.server.available_services",
                        lambda: {"ews": EwsService})
    sbx = start_sandbox(state_dir=Path(str(tmp_path)))
    try:
        service = sbx.services["ews"]
        assert service.notice() == "ews: schema files not found"
        close_connections()
        config = Configuration(service_endpoint=sbx.urls["ews"] + "/EWS/Exchange.asmx",
                               credentials=Credentials("sales@sandbox.test", "sandbox"),
                               auth_type=BASIC, version=E2016)
        acc = Account("sales@sandbox.test", config=config, autodiscover=False,
                      access_type=DELEGATE)
        names = {c.display_name for c in acc.contacts.all() if isinstance(c, Contact)}
        assert "Anna Berg" in names and len(names) == 12
        assert service.stats.as_dict()["invalid_responses"] == []
    finally:
        sbx.stop()
        close_connections()


def test_an_invalid_response_is_recorded(ews_schema: None, monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: object) -> None:
    """Own sandbox: data seeded past the schema makes GetItem's answer invalid, and the
    service records it (the session fixture fails on any such record)."""
    from pathlib import Path

    from l2sync_dagster.sandbox.ews import EwsService
    from l2sync_dagster.sandbox.server import start_sandbox

    monkeypatch.setattr("l2sync_dagster.sandbox.server.available_services",
                        lambda: {"ews": EwsService})
    sbx = start_sandbox(state_dir=Path(str(tmp_path)))
    try:
        control = SandboxControl("ews", sbx.urls["ews"])
        [bad] = control.call("POST", "items", {"mailbox": ALICE, "folder": "contacts", "items": [
            {"DisplayName": "Broken", "Birthday": "not a date"}]})["ids"]
        assert control.stats()["invalid_responses"] == []
        r = _post_to(sbx.urls["ews"], _soap(
            '<m:GetItem><m:ItemShape><t:BaseShape>AllProperties</t:BaseShape></m:ItemShape>'
            f'<m:ItemIds><t:ItemId Id="{bad}"/></m:ItemIds></m:GetItem>'))
        assert r.status_code == 200 and b"not a date" in r.content
        problems = control.stats()["invalid_responses"]
        assert len(problems) == 1 and "Birthday" in problems[0]
    finally:
        sbx.stop()
