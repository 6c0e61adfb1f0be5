"""The EWS sandbox through exchangelib, unchanged: discovery, auth, access rights, folders,
items of every synced type (create/update/delete, extended properties), conflicts.

Paging, sync, faults and raw-request validation are in ``test_sandbox_ews_feeds.py``.
"""

import base64
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

import pytest
import requests
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    OAUTH2,
    Account,
    Build,
    CalendarItem,
    Configuration,
    Contact,
    Credentials,
    DistributionList,
    EWSDate,
    EWSDateTime,
    EWSTimeZone,
    ExtendedProperty,
    FolderCollection,
    HTMLBody,
    Message,
    Task,
    Version,
)
from exchangelib.credentials import OAuth2AuthorizationCodeCredentials
from exchangelib.errors import (
    ErrorAccessDenied,
    ErrorFolderNotFound,
    ErrorImpersonateUserDenied,
    ErrorIrresolvableConflict,
    ErrorItemNotFound,
    ErrorNonExistentMailbox,
    UnauthorizedError,
)
from exchangelib.folders import DEEP
from exchangelib.indexed_properties import EmailAddress, PhoneNumber, PhysicalAddress
from exchangelib.items import NEVER_OVERWRITE
from exchangelib.properties import Attendee, Mailbox, Member
from exchangelib.protocol import close_connections
from exchangelib.recurrence import Recurrence, WeeklyPattern
from oauthlib.oauth2 import OAuth2Token
from sandbox_process import SandboxProcess

from l2sync_dagster.sandbox.control import SandboxControl

E2016 = Version(build=Build(15, 1, 2507, 6))
UTC = EWSTimeZone("UTC")


class CrmId(ExtendedProperty):
    """A named string property in PublicStrings (the demo contacts carry it too)."""

    distinguished_property_set_id = "PublicStrings"
    property_name = "CrmId"
    property_type = "String"


class Score(ExtendedProperty):
    """A numbered integer property in a custom property set."""

    property_set_id = "c11ff724-aa03-4555-9952-8fa248a11c3e"
    property_id = 0x8101
    property_type = "Integer"


EXTENDED_CLASSES = (Contact, DistributionList, CalendarItem, Task, Message)


@pytest.fixture
def ews(sandbox: SandboxProcess) -> Iterator[SandboxControl]:
    """The EWS control client; demo data reset before, no invalid response after."""
    control = sandbox.control("ews")
    control.reset()
    close_connections()
    yield control
    control.clear_faults()
    assert control.stats()["invalid_responses"] == []


@pytest.fixture
def extended() -> Iterator[None]:
    """``crm_id`` and ``score`` registered on every item class the provider syncs."""
    for cls in EXTENDED_CLASSES:
        cls.register("crm_id", CrmId)
        cls.register("score", Score)
    yield
    for cls in EXTENDED_CLASSES:
        cls.deregister("crm_id")
        cls.deregister("score")


def endpoint(sandbox: SandboxProcess) -> str:
    """The EWS endpoint URL."""
    return sandbox.urls["ews"] + "/EWS/Exchange.asmx"


def account(sandbox: SandboxProcess, mailbox: str = "sales@sandbox.test", *,
            user: str = "sync@sandbox.test", password: str = "sandbox",
            access: str = DELEGATE, version: Version | None = E2016,
            auth_type: str | None = BASIC) -> Account:
    """An exchangelib account on the sandbox (Basic auth, no autodiscover)."""
    config = Configuration(service_endpoint=endpoint(sandbox),
                           credentials=Credentials(user, password), auth_type=auth_type,
                           version=version)
    return Account(mailbox, config=config, autodiscover=False, access_type=access,
                   default_timezone=UTC)


def test_version_and_auth_discovery(sandbox: SandboxProcess, ews: SandboxControl) -> None:
    # neither auth type nor version given: exchangelib probes both and, offered NTLM and
    # Basic as on-premises Exchange offers them, picks NTLM
    acc = account(sandbox, "sync@sandbox.test", version=None, auth_type=None)
    assert acc.protocol.auth_type == NTLM
    assert acc.version.api_version == "Exchange2016"
    assert acc.version.build.major_version == 15
    assert ews.stats()["requests"]["ConvertId"] >= 1
    assert acc.inbox.name == "Inbox"

    close_connections()
    with pytest.raises(UnauthorizedError):
        account(sandbox, "sync@sandbox.test", password="wrong").root  # noqa: B018
    unauth = requests.post(endpoint(sandbox), data=b"<x/>", timeout=10)
    offered = unauth.headers["WWW-Authenticate"]
    assert unauth.status_code == 401 and "NTLM" in offered and "Basic" in offered


def test_bearer_token_with_impersonation(sandbox: SandboxProcess, ews: SandboxControl,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    token_url = sandbox.urls["token"] + "/sandbox/oauth2/v2.0/token"
    answer = requests.post(token_url, data={
        "grant_type": "client_credentials", "client_id": "l2sync-sandbox",
        "client_secret": "sandbox", "scope": "https://outlook.office365.com/.default"},
        verify=str(sandbox.ca_path), timeout=10).json()
    token = answer["access_token"]
    # exchangelib with an app token (OAuth over the sandbox's plain HTTP needs this switch)
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    creds = OAuth2AuthorizationCodeCredentials(client_id="l2sync-sandbox",
                                               client_secret="sandbox",
                                               access_token=OAuth2Token(answer))
    config = Configuration(service_endpoint=endpoint(sandbox), credentials=creds,
                           auth_type=OAUTH2, version=E2016)
    app = Account("sales@sandbox.test", config=config, autodiscover=False,
                  access_type=IMPERSONATION)
    assert app.contacts.total_count == 13
    body = (
        '<?xml version="1.0" encoding="utf-8"?><s:Envelope '
        'xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Header>'
        '<t:RequestServerVersion Version="Exchange2016"/>{imp}</s:Header><s:Body>'
        '<m:GetFolder><m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape>'
        '<m:FolderIds><t:DistinguishedFolderId Id="contacts"/></m:FolderIds></m:GetFolder>'
        '</s:Body></s:Envelope>')
    imp = ('<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>'
           'alice@sandbox.test</t:PrimarySmtpAddress></t:ConnectingSID>'
           '</t:ExchangeImpersonation>')
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/xml"}
    ok = requests.post(endpoint(sandbox), data=body.format(imp=imp), headers=headers, timeout=10)
    assert ok.status_code == 200 and b"NoError" in ok.content and b"Contacts" in ok.content
    no_imp = requests.post(endpoint(sandbox), data=body.format(imp=""), headers=headers,
                           timeout=10)
    assert no_imp.status_code == 500 and b"ErrorImpersonateUserDenied" in no_imp.content
    bad = requests.post(endpoint(sandbox), data=body.format(imp=imp), timeout=10,
                        headers={**headers, "Authorization": "Bearer nope"})
    assert bad.status_code == 401


def test_impersonation_and_delegate_rights(sandbox: SandboxProcess,
                                           ews: SandboxControl) -> None:
    # sync@ has the ApplicationImpersonation role: it may act as alice
    alice = account(sandbox, "alice@sandbox.test", access=IMPERSONATION)
    assert alice.contacts.total_count == 0
    # alice has no such role
    close_connections()
    denied = account(sandbox, "sales@sandbox.test", user="alice@sandbox.test",
                     access=IMPERSONATION, version=E2016)
    with pytest.raises(ErrorImpersonateUserDenied):
        denied.root.refresh()
    # sync@ is a delegate of sales@, alice is not
    assert account(sandbox, "sales@sandbox.test").contacts.total_count == 13
    close_connections()
    with pytest.raises(ErrorNonExistentMailbox):
        account(sandbox, "nobody@sandbox.test", access=IMPERSONATION).root.refresh()
    close_connections()
    with pytest.raises(ErrorNonExistentMailbox):
        account(sandbox, "nobody@sandbox.test").contacts.refresh()
    close_connections()
    with pytest.raises(ErrorAccessDenied):
        account(sandbox, "sales@sandbox.test", user="alice@sandbox.test").contacts.total_count  # noqa: B018,E501


def test_folder_tree_and_deep_find_folder(sandbox: SandboxProcess, ews: SandboxControl) -> None:
    acc = account(sandbox, "sync@sandbox.test")
    names = {f.name for f in acc.msg_folder_root.children}
    assert {"Inbox", "Sent Items", "Drafts", "Deleted Items", "Calendar", "Contacts", "Tasks",
            "Notes", "Journal"} <= names
    deep = FolderCollection(account=acc, folders=[acc.inbox]).find_folders(depth=DEEP)
    assert sorted(f.name for f in deep) == ["Alpha", "Beta", "Projects"]
    assert sorted(f.name for f in acc.msg_folder_root.glob("Inbox/**")) == [
        "Alpha", "Beta", "Projects"]
    alpha = acc.inbox / "Projects" / "Alpha"
    assert [m.subject for m in alpha.all()] == ["Alpha kickoff"]
    # folders created over EWS show up in the tree
    from exchangelib import Folder

    gamma = Folder(parent=acc.inbox / "Projects", name="Gamma")
    gamma.save()
    gamma_id = gamma.id
    assert "Gamma" in {f.name for f in (acc.inbox / "Projects").children}
    # the hierarchy feed reports folders created and deleted since its state
    list(acc.root.sync_hierarchy())
    state = acc.root.folder_sync_state
    delta = Folder(parent=acc.inbox, name="Delta")
    delta.save()
    gamma.delete()
    changes = [(kind, getattr(f, "name", None) or f.id) for kind, f in
               acc.root.sync_hierarchy(sync_state=state)]
    assert ("create", "Delta") in changes
    assert ("delete", gamma_id) in changes
    assert "Gamma" not in {f.name for f in (acc.inbox / "Projects").children}
    ghost_id = base64.b64encode(b"AAMk:F:sync@sandbox.test:99999999").decode()
    ghost = Folder(root=acc.root, id=ghost_id, changekey="x")
    with pytest.raises(ErrorFolderNotFound):
        list(FolderCollection(account=acc, folders=[ghost]).find_folders())


def test_contact_round_trip_with_extended_properties(sandbox: SandboxProcess,
                                                     ews: SandboxControl,
                                                     extended: None) -> None:
    acc = account(sandbox)
    contact = Contact(
        folder=acc.contacts, given_name="Zoe", surname="Zulu", display_name="Zoe Zulu",
        company_name="Zulu GmbH", job_title="CTO", categories=["Customer", "VIP"],
        birthday=EWSDate(1985, 4, 12),
        email_addresses=[EmailAddress(label="EmailAddress1", email="zoe@zulu.test"),
                         EmailAddress(label="EmailAddress2", email="z@private.test")],
        phone_numbers=[PhoneNumber(label="BusinessPhone", phone_number="+41 1"),
                       PhoneNumber(label="MobilePhone", phone_number="+41 2")],
        physical_addresses=[PhysicalAddress(label="Business", street="Road 1", city="Bern",
                                            zipcode="3000", country="Switzerland")],
        crm_id="CRM-9", score=7)
    contact.save()
    first_key = contact.changekey
    got = acc.contacts.get(id=contact.id)
    assert (got.given_name, got.surname, got.company_name, got.job_title) == (
        "Zoe", "Zulu", "Zulu GmbH", "CTO")
    assert got.complete_name.full_name == "Zoe Zulu"
    assert got.categories == ["Customer", "VIP"]
    assert got.birthday.date() == dt.date(1985, 4, 12) if hasattr(got.birthday, "date") \
        else got.birthday == EWSDate(1985, 4, 12)
    assert {e.label: e.email for e in got.email_addresses} == {
        "EmailAddress1": "zoe@zulu.test", "EmailAddress2": "z@private.test"}
    assert {p.label: p.phone_number for p in got.phone_numbers} == {
        "BusinessPhone": "+41 1", "MobilePhone": "+41 2"}
    assert got.physical_addresses[0].city == "Bern"
    assert (got.crm_id, got.score) == ("CRM-9", 7)

    got.surname = "Zimmer"
    got.crm_id = "CRM-10"
    got.score = None
    got.email_addresses = [EmailAddress(label="EmailAddress1", email="zoe@zimmer.test")]
    got.physical_addresses = [PhysicalAddress(label="Business", street="Lane 2", city="Bern")]
    got.save(update_fields=["surname", "crm_id", "score", "email_addresses",
                            "physical_addresses"])
    assert got.changekey != first_key
    again = acc.contacts.get(id=contact.id)
    assert again.surname == "Zimmer" and again.complete_name.full_name == "Zoe Zimmer"
    assert (again.crm_id, again.score) == ("CRM-10", None)
    assert [e.email for e in again.email_addresses] == ["zoe@zimmer.test"]
    assert again.physical_addresses[0].street == "Lane 2"
    assert again.last_modified_time >= got.last_modified_time

    stored = ews.call("GET", f"items/{contact.id}")
    assert stored["fields"]["Surname"] == "Zimmer"
    assert stored["change_key"] == again.changekey

    again.delete()
    with pytest.raises(ErrorItemNotFound):
        acc.contacts.get(id=contact.id)
    # the demo contacts carry the extended property as well
    crm_ids = {c.crm_id for c in acc.contacts.filter(crm_id="CRM-00003")}
    assert crm_ids == {"CRM-00003"}


def test_contact_group_task_message_and_note(sandbox: SandboxProcess, ews: SandboxControl,
                                             extended: None) -> None:
    acc = account(sandbox)
    group = DistributionList(folder=acc.contacts, display_name="Pilots", crm_id="G-1",
                             members=[Member(mailbox=Mailbox(email_address="a@x.test")),
                                      Member(mailbox=Mailbox(email_address="b@x.test"))])
    group.save()
    got = acc.contacts.get(id=group.id)
    assert sorted(m.mailbox.email_address for m in got.members) == ["a@x.test", "b@x.test"]
    assert got.crm_id == "G-1"
    got.members = [Member(mailbox=Mailbox(email_address="c@x.test"))]
    got.save(update_fields=["members"])
    assert [m.mailbox.email_address for m in acc.contacts.get(id=group.id).members] == [
        "c@x.test"]

    task = Task(folder=acc.tasks, subject="Call back", status="InProgress",
                due_date=EWSDate(2026, 5, 1), percent_complete=Decimal(50), score=3)
    task.save()
    task.status = "Completed"
    task.percent_complete = Decimal(100)
    task.save(update_fields=["status", "percent_complete"])
    got_task = acc.tasks.get(id=task.id)
    assert (got_task.status, got_task.percent_complete, got_task.score) == ("Completed", 100, 3)

    msg = Message(account=acc, folder=acc.inbox, subject="Quote",
                  body=HTMLBody("<p>Price: <b>12</b></p>"), crm_id="M-1")
    msg.save()
    got_msg = acc.inbox.get(id=msg.id)
    assert isinstance(got_msg.body, HTMLBody) and "<b>12</b>" in got_msg.body
    assert got_msg.crm_id == "M-1"

    note = Message(account=acc, folder=acc.notes, subject="Remember",
                   item_class="IPM.StickyNote", body="plain text note")
    note.save()
    notes = list(acc.notes.all())
    assert "IPM.StickyNote" in {n.item_class for n in notes}  # the demo note
    assert "plain text note" in {n.body for n in notes}
    acc.bulk_delete([got_msg, note, got_task, got])
    assert acc.inbox.filter(subject="Quote").count() == 0


def test_calendar_items(sandbox: SandboxProcess, ews: SandboxControl, extended: None) -> None:
    acc = account(sandbox)
    zurich = EWSTimeZone("Europe/Zurich")
    start = EWSDateTime(2026, 6, 1, 9, 0, tzinfo=zurich)
    meeting = CalendarItem(
        folder=acc.calendar, subject="Planning", start=start, end=start + dt.timedelta(hours=1),
        location="Room 7", crm_id="C-1",
        required_attendees=[Attendee(mailbox=Mailbox(email_address="alice@sandbox.test"),
                                     response_type="Unknown")],
        optional_attendees=[Attendee(mailbox=Mailbox(email_address="bob@x.test"),
                                     response_type="Unknown")],
        recurrence=Recurrence(pattern=WeeklyPattern(interval=1, weekdays=[1]),
                              start=EWSDate(2026, 6, 1), number=10))
    meeting.save()
    allday = CalendarItem(folder=acc.calendar, subject="Holiday", is_all_day=True,
                          start=EWSDate(2026, 8, 1), end=EWSDate(2026, 8, 2))
    allday.save()

    got = acc.calendar.get(id=meeting.id)
    assert got.start == start and got.location == "Room 7" and got.crm_id == "C-1"
    # as Exchange reports a series master: IsRecurring false (its occurrences answer true)
    assert not got.is_recurring and got.type == "RecurringMaster"
    assert got.recurrence.boundary.number == 10
    assert [a.mailbox.email_address for a in got.required_attendees] == ["alice@sandbox.test"]
    assert [a.mailbox.email_address for a in got.optional_attendees] == ["bob@x.test"]
    assert got._start_timezone == zurich
    got_allday = acc.calendar.get(id=allday.id)
    assert got_allday.is_all_day and not got_allday.is_recurring

    got.location = "Room 8"
    got.save(update_fields=["location"])
    assert acc.calendar.get(id=meeting.id).location == "Room 8"
    subjects = {i.subject for i in acc.calendar.all()}
    assert {"Planning", "Holiday", "Trade fair", "Weekly sales sync"} <= subjects


def test_series_exceptions_deleted_and_modified_occurrences(sandbox: SandboxProcess,
                                                           ews: SandboxControl) -> None:
    acc = account(sandbox)
    zurich = EWSTimeZone("Europe/Zurich")
    start = EWSDateTime(2026, 6, 1, 9, 0, tzinfo=zurich)
    series = CalendarItem(folder=acc.calendar, subject="Jour fixe", start=start,
                          end=start + dt.timedelta(hours=1),
                          recurrence=Recurrence(pattern=WeeklyPattern(interval=1, weekdays=[1]),
                                                start=EWSDate(2026, 6, 1), number=5))
    series.save()
    master = acc.calendar.get(id=series.id)
    assert master.deleted_occurrences is None and master.modified_occurrences is None
    master.occurrence(index=2).delete()  # DeleteItem with an OccurrenceItemId
    moved = master.occurrence(index=4)
    later = EWSDateTime(2026, 6, 23, 14, 0, tzinfo=zurich)  # Monday 22nd -> Tuesday 23rd
    moved.start, moved.end = later, later + dt.timedelta(minutes=30)
    moved.save(update_fields=["start", "end"])  # UpdateItem with an OccurrenceItemId
    with pytest.raises(Exception, match="out of recurrence range"):
        master.occurrence(index=6).delete()
    with pytest.raises(Exception, match="deleted from the recurrence"):
        master.occurrence(index=2).delete()
    got = acc.calendar.get(id=series.id)
    utc = EWSTimeZone("UTC")
    assert [d.start.astimezone(utc) for d in got.deleted_occurrences] == [
        EWSDateTime(2026, 6, 8, 7, 0, tzinfo=utc)]  # 9:00 in Zurich (summer time)
    (changed,) = got.modified_occurrences
    assert changed.original_start.astimezone(utc) == EWSDateTime(2026, 6, 22, 7, 0, tzinfo=utc)
    assert changed.start.astimezone(utc) == EWSDateTime(2026, 6, 23, 12, 0, tzinfo=utc)
    assert changed.end - changed.start == dt.timedelta(minutes=30) and changed.id
    assert got.changekey != master.changekey  # the master changed: the feed reports it
    # a new series time drops the exceptions (as Outlook warns)
    got.start, got.end = start + dt.timedelta(hours=1), start + dt.timedelta(hours=2)
    got.save(update_fields=["start", "end"])
    again = acc.calendar.get(id=series.id)
    assert again.deleted_occurrences is None and again.modified_occurrences is None


def test_stale_change_key_conflicts_under_never_overwrite(sandbox: SandboxProcess,
                                                          ews: SandboxControl) -> None:
    acc = account(sandbox)
    first = acc.contacts.filter(display_name="Anna Berg").get()
    second = acc.contacts.get(id=first.id)
    first.job_title = "Head of buying"
    first.save(update_fields=["job_title"], conflict_resolution=NEVER_OVERWRITE)
    second.job_title = "Stale"
    with pytest.raises(ErrorIrresolvableConflict):
        second.save(update_fields=["job_title"], conflict_resolution=NEVER_OVERWRITE)
    assert acc.contacts.get(id=first.id).job_title == "Head of buying"
    # a change made by someone else (control API) also makes the client's key stale
    ews.call("PATCH", f"items/{first.id}", {"fields": {"JobTitle": "Changed elsewhere"}})
    first.job_title = "Mine"
    with pytest.raises(ErrorIrresolvableConflict):
        first.save(update_fields=["job_title"], conflict_resolution=NEVER_OVERWRITE)


def test_batches_fail_per_item(sandbox: SandboxProcess, ews: SandboxControl) -> None:
    acc = account(sandbox)
    contacts = list(acc.contacts.filter(item_class="IPM.Contact").only("display_name"))
    ids = [(c.id, c.changekey) for c in contacts]
    results = list(acc.fetch(ids=[*ids, (missing_item_id(), None)]))
    assert len(results) == 13
    assert isinstance(results[-1], ErrorItemNotFound)
    assert [r.display_name for r in results[:-1]] == [c.display_name for c in contacts]
    before = ews.stats()["requests"].get("GetItem", 0)
    assert len(list(acc.fetch(ids=ids, chunk_size=5))) == 12
    assert ews.stats()["requests"]["GetItem"] - before == 3
    created = acc.bulk_create(folder=acc.contacts, items=[
        Contact(display_name=f"Batch {n}", given_name="Batch") for n in range(3)])
    assert all(not isinstance(c, Exception) for c in created)
    deleted = acc.bulk_delete(ids=[(c.id, c.changekey) for c in created] + [
        (missing_item_id(), None)])
    assert deleted[:3] == [True, True, True] and isinstance(deleted[3], Exception)


def missing_item_id() -> str:
    """An id of the sandbox's shape that names no item."""
    return base64.b64encode(b"AAMk:I:sales@sandbox.test:99999999").decode()


def test_read_only_field_refused(sandbox: SandboxProcess, ews: SandboxControl) -> None:
    item = ews.call("GET", "items?mailbox=sales@sandbox.test&folder=contacts")["items"][0]
    body = (
        '<?xml version="1.0" encoding="utf-8"?><s:Envelope '
        'xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Header>'
        '<t:RequestServerVersion Version="Exchange2016"/></s:Header><s:Body>'
        '<m:UpdateItem ConflictResolution="AlwaysOverwrite"><m:ItemChanges><t:ItemChange>'
        f'<t:ItemId Id="{item["id"]}" ChangeKey="{item["change_key"]}"/><t:Updates>'
        '<t:SetItemField><t:FieldURI FieldURI="contacts:CompleteName"/><t:Contact>'
        '<t:CompleteName><t:FullName>X</t:FullName></t:CompleteName></t:Contact>'
        '</t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>'
        '</s:Body></s:Envelope>')
    r = requests.post(endpoint(sandbox), data=body, auth=("sync@sandbox.test", "sandbox"),
                      headers={"Content-Type": "text/xml"}, timeout=10)
    assert r.status_code == 200
    assert b"<m:ResponseCode>ErrorInvalidPropertySet</m:ResponseCode>" in r.content
    after = ews.call("GET", f"items/{item['id']}")
    assert after["change_key"] == item["change_key"]


def test_window_restriction_calendar_view_and_resolve_names(sandbox: SandboxProcess,
                                                            ews: SandboxControl) -> None:
    acc = account(sandbox)
    fresh = Contact(folder=acc.contacts, display_name="Fresh")
    fresh.save()
    edge = acc.contacts.get(id=fresh.id).last_modified_time
    newer = list(acc.contacts.filter(last_modified_time__gte=edge).only("last_modified_time"))
    older = list(acc.contacts.filter(last_modified_time__lt=edge).only("last_modified_time"))
    assert fresh.id in {c.id for c in newer}
    assert all(c.last_modified_time >= edge for c in newer)
    assert all(c.last_modified_time < edge for c in older)
    assert len(newer) + len(older) == 14
    assert acc.contacts.filter(last_modified_time__gt=edge + dt.timedelta(days=1)).count() == 0

    start = EWSDateTime(2026, 2, 1, tzinfo=UTC)
    in_view = list(acc.calendar.view(start=start, end=start + dt.timedelta(days=35)))
    assert {i.subject for i in in_view if i.type == "Single"} == {"Customer visit",
                                                                  "Trade fair"}
    # as on Exchange, the view shows each occurrence of the weekly series (Mondays 08:00)
    weekly = [i for i in in_view if i.subject == "Weekly sales sync"]
    assert [i.start for i in weekly] == [EWSDateTime(2026, 2, d, 8, tzinfo=UTC)
                                         for d in (2, 9, 16, 23)] + [
        EWSDateTime(2026, 3, 2, 8, tzinfo=UTC)]
    assert {i.type for i in weekly} == {"Occurrence"}

    resolved = acc.protocol.resolve_names(["sales"])
    assert [m.email_address for m in resolved] == ["sales@sandbox.test"]


def test_read_flag_changes_in_the_feed(sandbox: SandboxProcess, ews: SandboxControl) -> None:
    acc = account(sandbox)
    inbox = acc.inbox
    list(inbox.sync_items())
    state = inbox.item_sync_state
    welcome = inbox.get(subject="Welcome")
    welcome.is_read = True
    welcome.save(update_fields=["is_read"])
    changes = list(inbox.sync_items(sync_state=state))
    assert len(changes) == 1
    kind, (item_id, is_read) = changes[0]
    assert (kind, item_id.id, is_read) == ("read_flag_change", welcome.id, True)
