"""The exchange provider's EWS backend through real exchangelib against the EWS sandbox:
every item type read, inserted, updated, deleted; verify() messages; the change feed."""

import datetime as dt
import json

import pytest
from exchange_helpers import MAILBOX, ews_session, items, provider

from l2sync_dagster.providers.base import Change, ProviderError, Query

UTC = dt.UTC


@pytest.fixture
def ews(sandbox, monkeypatch):
    """The sandbox EWS URL (demo data reset, faults cleared after)."""
    yield from ews_session(sandbox, monkeypatch)


def _by(frame, column, value):
    rows = frame[frame[column] == value]
    assert len(rows) == 1, (column, value, frame[column].tolist())
    return rows.iloc[0]


# --- verify ----------------------------------------------------------------------------------
def test_verify_opens_mailbox_and_folder(ews):
    p = provider(ews)
    assert "opened mailbox sales@sandbox.test" in p.verify(Query("SELECT * FROM Contacts"))
    msg = p.verify(Query("SELECT Subject FROM Inbox/Projects/*"))
    # sales@ has Inbox/Projects/{Alpha,Beta}
    assert "2 folder(s)" in msg and "Projects/Alpha" in msg


@pytest.mark.parametrize(("extra", "query", "message"), [
    ({"URL": "http://127.0.0.1:9/EWS/Exchange.asmx"}, "SELECT * FROM Contacts", "unreachable"),
    ({"User": "alice@sandbox.test", "Password": "env:NO_SUCH_PW_X"}, None, "not set"),
    ({"Email": "nobody@sandbox.test"}, "SELECT * FROM Contacts", "mailbox not found"),
    ({"Email": "alice@sandbox.test"}, "SELECT * FROM Contacts", "access denied"),
    ({"User": "alice@sandbox.test", "Impersonation": "true"}, "SELECT * FROM Contacts",
     "impersonation denied"),
    ({}, "SELECT Subject FROM Inbox/Projekts/Alpha", "did you mean Projects/Alpha"),
    ({}, "SELECT Subject FROM MsgFolderRoot/Nowhere", "folder not found"),
])
def test_verify_says_what_failed(ews, monkeypatch, extra, query, message):
    if query is None:
        with pytest.raises(ValueError, match=message):
            provider(ews, **extra)
        return
    with pytest.raises(ProviderError) as err:
        provider(ews, **extra).verify(Query(query))
    assert message in str(err.value), str(err.value)


def test_verify_unauthorized(ews, monkeypatch):
    monkeypatch.setenv("EWS_WRONG_PW", "wrong")
    p = provider(ews, Password="env:EWS_WRONG_PW")
    with pytest.raises(ProviderError, match="unauthorized") as err:
        p.verify(Query("SELECT * FROM Contacts"))
    assert "wrong" not in str(err.value)


@pytest.mark.parametrize("user", ["sync@sandbox.test", "SANDBOX\\sync"])
def test_ntlm_sign_in_the_default_on_premises(ews, sandbox, user):
    """Authentication=NTLM (the default with User/Password): exchangelib's NTLM handshake
    against the sandbox, then reads and a write on the signed-in connection."""
    p = provider(ews, Authentication="NTLM", User=user)
    assert "opened mailbox sales@sandbox.test" in p.verify(Query("SELECT * FROM Contacts"))
    frame = p.read(Query("SELECT GivenName FROM Contacts")).frame
    assert "Anna" in set(frame["GivenName"])
    out = p.apply(Query("SELECT GivenName, Surname FROM Contacts"),
                  [Change("insert", "n", None, {"GivenName": "Nora", "Surname": "Ntlm"})])
    assert out[0].ok, out[0].error
    assert "Nora" in {i["fields"].get("GivenName") for i in items(sandbox, "contacts")}


def test_ntlm_wrong_password_is_unauthorized(ews, monkeypatch):
    monkeypatch.setenv("EWS_WRONG_PW", "wrong")
    p = provider(ews, Authentication="NTLM", Password="env:EWS_WRONG_PW")
    with pytest.raises(ProviderError, match="unauthorized") as err:
        p.verify(Query("SELECT * FROM Contacts"))
    assert "wrong" not in str(err.value)


def test_impersonation_opens_another_mailbox(ews):
    p = provider(ews, Email="alice@sandbox.test", Impersonation="true")
    assert "alice@sandbox.test" in p.verify(Query("SELECT * FROM Contacts"))


# --- contacts --------------------------------------------------------------------------------
CONTACTS = "SELECT *, CompleteName.FullName, PhoneNumbers.MobilePhone, Ext.CrmId FROM Contacts"


def test_contacts_read_insert_update_delete_and_feed(ews, sandbox):
    p = provider(ews)
    q = Query(CONTACTS)
    first = p.read(q)
    assert first.complete and len(first.frame) == 12  # the contact group is not a contact
    anna = _by(first.frame, "GivenName", "Anna")
    assert anna["EmailAddresses.EmailAddress1"] == "anna.berg@example.test"
    assert anna["PhysicalAddresses.Business.City"] == "Zurich"
    assert anna["Birthday"] == dt.date(1960, 1, 10)
    assert json.loads(anna["Categories"]) == ["Customer"]
    assert anna["Ext.CrmId"] == "CRM-00000"
    assert anna["CompleteName.FullName"] == "Anna Berg"
    assert anna["_version"] and anna["_modified"].tzinfo is not None

    new = {"GivenName": "Zoë", "Surname": "Ångström", "DisplayName": "Zoë Ångström",
           "EmailAddresses.EmailAddress1": "zoe@example.test",
           "EmailAddresses.EmailAddress3": "z@example.test",
           "PhoneNumbers.MobilePhone": "+41 79 000 00 00",
           "PhysicalAddresses.Business.Street": "Bahnhofstrasse 1\nFloor 3",
           "PhysicalAddresses.Business.City": "Zürich", "Birthday": dt.date(1999, 12, 31),
           "Categories": '["VIP","Partner"]', "Ext.CrmId": "CRM-99999",
           "Body.Plaintext": "Met at the fair.\nLikes <tags> & ampersands."}
    bad = {"GivenName": "X", "Birthday": "not a date"}
    out = p.apply(q, [Change("insert", "r1", values=new), Change("insert", "r2", values=bad),
                      Change("insert", "r3", values={"CompleteName.FullName": "x"})])
    assert out[0].ok and out[0].key and out[0].version
    assert not out[1].ok and "Birthday" in out[1].error
    assert not out[2].ok and "read-only" in out[2].error

    changes = p.read(q, cursor=first.cursor)
    assert not changes.complete and list(changes.frame.index) == [out[0].key]
    row = changes.frame.iloc[0]
    for name, value in new.items():
        if name in row:
            assert row[name] == value, name
    # canonical round trip: the JSON list reads back equal after canonicalisation
    assert json.loads(row["Categories"]) == ["VIP", "Partner"]

    # update: one phone label, drop the third address, change an address part and the ext prop
    upd = {"PhoneNumbers.MobilePhone": "+41 79 111 11 11",
           "EmailAddresses.EmailAddress3": None, "PhysicalAddresses.Business.City": "Bern",
           "Ext.CrmId": "CRM-1", "Surname": None}
    (res,) = p.apply(q, [Change("update", "u1", out[0].key, upd, out[0].version)])
    assert res.ok and res.version != out[0].version
    stale = p.apply(q, [Change("update", "u2", out[0].key, {"GivenName": "Old"},
                               out[0].version)])
    assert not stale[0].ok and "ErrorIrresolvableConflict" in stale[0].error
    after = p.read(q, cursor=changes.cursor)
    row = after.frame.loc[out[0].key]
    assert row["PhoneNumbers.MobilePhone"] == "+41 79 111 11 11"
    assert row["EmailAddresses.EmailAddress3"] is None
    assert row["EmailAddresses.EmailAddress1"] == "zoe@example.test"
    assert row["PhysicalAddresses.Business.City"] == "Bern"
    assert row["PhysicalAddresses.Business.Street"] == "Bahnhofstrasse 1\nFloor 3"
    assert row["Ext.CrmId"] == "CRM-1" and row["Surname"] is None
    assert row["GivenName"] == "Zoë"

    # another client deletes Anna; we delete Zoë and an id that no longer exists
    sandbox.control("ews").call("DELETE", f"items/{anna.name}")
    gone = p.apply(q, [Change("delete", "d1", out[0].key),
                       Change("delete", "d2", anna.name)])
    assert all(o.ok for o in gone)
    feed = p.read(q, cursor=after.cursor)
    assert set(feed.deleted) >= {anna.name, out[0].key} and feed.frame.empty
    assert p.read(q, cursor=feed.cursor).frame.empty  # nothing changed: nothing read
    assert len(p.read(q).frame) == 11


def test_incremental_run_with_nothing_changed_costs_one_request(ews):
    p = provider(ews)
    q = Query("SELECT * FROM Contacts")
    cursor = p.read(q).cursor
    q2 = provider(ews)  # a new run: a fresh provider, the server version comes from the cursor
    before = q2.stats()["requests"]
    result = q2.read(q, cursor=cursor)
    assert result.frame.empty and not result.complete
    assert q2.stats()["requests"] - before == 1


# --- contact groups --------------------------------------------------------------------------
def test_contact_groups(ews):
    p = provider(ews)
    q = Query("SELECT * FROM ContactGroups")
    first = p.read(q)
    assert list(first.frame["DisplayName"]) == ["Key accounts"]
    assert json.loads(first.frame.iloc[0]["Members"]) == [
        "Anna Berg <anna.berg@example.test>", "Ben Schmidt <ben.schmidt@example.test>"]
    members = '["a@example.test","b@example.test","c@example.test"]'
    (ins,) = p.apply(q, [Change("insert", "g", values={"DisplayName": "Newsletter",
                                                       "Members": members})])
    assert ins.ok
    (upd,) = p.apply(q, [Change("update", "g", ins.key,
                                {"Members": '["b@example.test"]'}, ins.version)])
    assert upd.ok
    bad = p.apply(q, [Change("update", "g2", ins.key, {"Members": '["not-an-address"]'})])
    assert not bad[0].ok and "SMTP" in bad[0].error
    feed = p.read(q, cursor=first.cursor)
    assert json.loads(feed.frame.loc[ins.key, "Members"]) == ["b@example.test"]
    (d,) = p.apply(q, [Change("delete", "g", ins.key)])
    assert d.ok and ins.key in p.read(q, cursor=feed.cursor).deleted


def test_contact_display_name_is_written_and_composed_when_missing(ews, sandbox):
    p = provider(ews)
    q = Query("SELECT GivenName, Surname, DisplayName FROM Contacts")
    named, composed = p.apply(q, [
        Change("insert", "a", values={"GivenName": "Ada", "Surname": "Lovelace",
                                      "DisplayName": "Countess of Lovelace"}),
        Change("insert", "b", values={"GivenName": "Alan", "Surname": "Turing"})])
    assert named.ok and composed.ok, (named, composed)
    stored = {k: sandbox.control("ews").call("GET", f"items/{k}")["fields"]["DisplayName"]
              for k in (named.key, composed.key)}
    assert stored == {named.key: "Countess of Lovelace", composed.key: "Alan Turing"}
    (upd,) = p.apply(q, [Change("update", "u", composed.key, {"DisplayName": "A. M. Turing"})])
    assert upd.ok, upd
    assert p.read(q).frame.loc[composed.key, "DisplayName"] == "A. M. Turing"


def test_contact_group_members_keep_their_display_names(ews, sandbox):
    p = provider(ews)
    q = Query("SELECT DisplayName, Members FROM ContactGroups")
    group = p.read(q).frame.index[0]

    def stored(key):
        member = sandbox.control("ews").call("GET", f"items/{key}")["fields"]["Members"]["Member"]
        return [(m["Mailbox"].get("Name"), m["Mailbox"]["EmailAddress"])
                for m in (member if isinstance(member, list) else [member])]

    # SQL holds bare addresses: members who stay keep the names Outlook gave them
    (upd,) = p.apply(q, [Change("update", "u", group, {
        "Members": '["ben.schmidt@example.test","carl@example.test"]'})])
    assert upd.ok, upd
    assert stored(group) == [("Ben Schmidt", "ben.schmidt@example.test"),
                             (None, "carl@example.test")]
    # a name given as "Name <address>" is written, and read back the same way
    members = json.dumps(["Ben Schmidt <ben.schmidt@example.test>",
                          '"Meyer, Carl" <carl@example.test>'])
    (upd,) = p.apply(q, [Change("update", "u", group, {"Members": members})])
    assert upd.ok, upd
    assert stored(group) == [("Ben Schmidt", "ben.schmidt@example.test"),
                             ("Meyer, Carl", "carl@example.test")]
    assert json.loads(p.read(q).frame.loc[group, "Members"]) == json.loads(members)
    (ins,) = p.apply(q, [Change("insert", "g", values={
        "DisplayName": "Board", "Members": '["Dora Diaz <dora@example.test>"]'})])
    assert ins.ok, ins
    assert stored(ins.key) == [("Dora Diaz", "dora@example.test")]
    bad = p.apply(q, [Change("update", "b", group, {"Members": '["Dora Diaz"]'})])
    assert not bad[0].ok and "SMTP" in bad[0].error


# --- calendar --------------------------------------------------------------------------------
CAL = ("SELECT *, Start.Date, End.Date, IsRecurring, Organizer, EndTimeZone "
       "FROM Calendar")


def test_calendar_all_day_recurring_time_zones(ews):
    p = provider(ews)
    q = Query(CAL)
    first = p.read(q)
    assert len(first.frame) == 3
    fair = _by(first.frame, "Subject", "Trade fair")
    assert fair["IsAllDayEvent"] is True or fair["IsAllDayEvent"] == True  # noqa: E712
    assert fair["Start"] == dt.datetime(2026, 3, 2, tzinfo=UTC)
    assert fair["End"] == dt.datetime(2026, 3, 4, tzinfo=UTC)
    assert fair["Start.Date"] == dt.date(2026, 3, 2) and fair["End.Date"] == dt.date(2026, 3, 4)
    weekly = _by(first.frame, "Subject", "Weekly sales sync")
    assert json.loads(weekly["Recurrence"]) == {
        "DaysOfWeek": ["Monday"], "EndDate": None, "Interval": 1, "Occurrences": None,
        "Pattern": "Weekly", "StartDate": "2026-01-05"}
    assert json.loads(weekly["RequiredAttendees"]) == ["alice@sandbox.test"]

    allday = {"Subject": "Holiday", "IsAllDayEvent": True,
              "StartTimeZone": "W. Europe Standard Time",
              "Start": dt.datetime(2026, 7, 31, 22, tzinfo=UTC),  # 1 Aug, midnight in Zurich
              "End": dt.datetime(2026, 8, 2, 22, tzinfo=UTC)}
    meeting = {"Subject": "Board", "Start": dt.datetime(2026, 5, 4, 7, 30, tzinfo=UTC),
               "End": dt.datetime(2026, 5, 4, 9, tzinfo=UTC),
               "StartTimeZone": "Pacific Standard Time", "Location": "HQ",
               "RequiredAttendees": '["alice@sandbox.test","bob@example.test"]',
               "Recurrence": json.dumps({"Pattern": "RelativeMonthly", "Interval": 1,
                                         "DaysOfWeek": ["Monday"], "DayOfWeekIndex": "First",
                                         "StartDate": "2026-05-04", "EndDate": None,
                                         "Occurrences": 6}),
               "Categories": '["Board"]', "Body": "<p>Agenda</p>"}
    out = p.apply(q, [Change("insert", "a", values=allday),
                      Change("insert", "m", values=meeting)])
    assert all(o.ok for o in out), out
    feed = p.read(q, cursor=first.cursor)
    hol = feed.frame.loc[out[0].key]
    assert hol["Start"] == allday["Start"] and hol["End"] == allday["End"]
    assert hol["Start.Date"] == dt.date(2026, 8, 1) and hol["End.Date"] == dt.date(2026, 8, 3)
    assert hol["StartTimeZone"] == "W. Europe Standard Time"
    board = feed.frame.loc[out[1].key]
    for name, value in meeting.items():
        if name in ("Recurrence",):
            assert json.loads(board[name]) == json.loads(value)
        elif name in ("RequiredAttendees", "Categories"):
            assert json.loads(board[name]) == json.loads(value)
        else:
            assert board[name] == value, name
    assert board["IsRecurring"] is True or board["IsRecurring"] == True  # noqa: E712

    moved = dt.datetime(2026, 5, 4, 8, tzinfo=UTC)  # still before its End
    (u,) = p.apply(q, [Change("update", "m", out[1].key, {"Location": "Online",
                                                          "Recurrence": None,
                                                          "Start": moved}, out[1].version)])
    assert u.ok
    feed2 = p.read(q, cursor=feed.cursor)
    assert feed2.frame.loc[out[1].key, "Location"] == "Online"
    assert feed2.frame.loc[out[1].key, "Recurrence"] is None
    assert feed2.frame.loc[out[1].key, "Start"] == moved
    # the item keeps its own time zone when only Start changes
    assert feed2.frame.loc[out[1].key, "StartTimeZone"] == "Pacific Standard Time"
    assert p.apply(q, [Change("delete", "a", out[0].key)])[0].ok
    assert out[0].key in p.read(q, cursor=feed2.cursor).deleted


def test_calendar_window_pushdown(ews):
    p = provider(ews)
    q = Query("SELECT Subject, Start FROM Calendar", window_field="Start")
    res = p.read(q, window=(dt.datetime(2026, 2, 1, tzinfo=UTC),
                            dt.datetime(2026, 4, 1, tzinfo=UTC)))
    assert sorted(res.frame["Subject"]) == ["Customer visit", "Trade fair"]


# --- tasks, messages, notes ------------------------------------------------------------------
@pytest.mark.parametrize(("query", "demo_subject", "new", "change"), [
    ("SELECT *, CompleteDate, IsComplete FROM Tasks", "Send price list",
     {"Subject": "Call back", "DueDate": dt.date(2026, 3, 1), "StartDate": dt.date(2026, 2, 1),
      "Status": "InProgress", "PercentComplete": 50.0, "Body.Plaintext": "Ring ring"},
     {"Status": "Completed", "PercentComplete": 100.0, "DueDate": None}),
    ("SELECT * FROM Drafts", None,
     {"Subject": "Offer", "Body": "<p>Dear <b>Anna</b></p>",
      "ToRecipients": '["anna.berg@example.test"]', "IsRead": False, "Importance": "High"},
     {"IsRead": True, "CcRecipients": '["ben@example.test"]'}),
    ("SELECT * FROM Notes", "Call Anna back",
     {"Subject": "Idea", "Body.Plaintext": "Sticky\nnote"},
     {"Body.Plaintext": "Edited note", "Categories": '["Yellow"]'}),
])
def test_tasks_messages_notes(ews, query, demo_subject, new, change):
    p = provider(ews)
    q = Query(query)
    first = p.read(q)
    if demo_subject:
        assert demo_subject in set(first.frame["Subject"])
    (ins,) = p.apply(q, [Change("insert", "i", values=new)])
    assert ins.ok, ins.error
    feed = p.read(q, cursor=first.cursor)
    row = feed.frame.loc[ins.key]
    for name, value in new.items():
        if isinstance(value, str) and value.startswith("["):
            assert json.loads(row[name]) == json.loads(value)
        else:
            assert row[name] == value, name
    (upd,) = p.apply(q, [Change("update", "i", ins.key, change, ins.version)])
    assert upd.ok, upd.error
    row = p.read(q, cursor=feed.cursor).frame.loc[ins.key]
    for name, value in change.items():
        if isinstance(value, str) and value.startswith("["):
            assert json.loads(row[name]) == json.loads(value)
        else:
            assert row[name] == value, name
    full = p.read(q)
    assert ins.key in full.frame.index
    assert p.apply(q, [Change("delete", "i", ins.key)])[0].ok
    assert ins.key not in p.read(q).frame.index


def test_messages_body_html_and_plaintext(ews):
    p = provider(ews)
    frame = p.read(Query("SELECT Subject, Body, Body.Plaintext, From, IsRead FROM Inbox")).frame
    welcome = _by(frame, "Subject", "Welcome")
    assert welcome["Body"] == "<p>Hello <b>sales</b></p>"
    assert welcome["Body.Plaintext"] == "Hello sales"
    assert welcome["From"] == "alice@sandbox.test" and welcome["IsRead"] == False  # noqa: E712
    order = _by(frame, "Subject", "Order 4711")
    assert order["Body.Plaintext"] == "Please confirm." and order["IsRead"] == True  # noqa: E712
    notes = p.read(Query("SELECT Subject FROM Notes")).frame
    assert list(notes["Subject"]) == ["Call Anna back"]


def test_where_top_and_order(ews):
    p = provider(ews)
    res = p.read(Query("SELECT TOP 3 GivenName, Surname, JobTitle FROM Contacts "
                       "WHERE JobTitle = 'Buyer' ORDER BY GivenName DESC"))
    assert list(res.frame["GivenName"]) == ["Lukas", "Jonas", "Hugo"]
    assert set(res.frame["JobTitle"]) == {"Buyer"} and res.cursor is None
    res = p.read(Query("SELECT GivenName, Categories FROM Contacts "
                       "WHERE Categories CONTAINS 'customer' AND GivenName STARTSWITH 'a'"))
    assert list(res.frame["GivenName"]) == ["Anna"]


def test_probe_is_cheap_and_does_not_advance(ews, sandbox):
    p = provider(ews)
    q = Query("SELECT * FROM Contacts")
    cursor = p.read(q).cursor
    a = p.probe(q, cursor)
    before = p.stats()["requests"]
    assert p.probe(q, cursor) == a and p.stats()["requests"] - before == 1
    sandbox.control("ews").call("POST", "items", {"mailbox": MAILBOX, "folder": "contacts",
                                                  "items": [{"GivenName": "New"}]})
    b = p.probe(q, cursor)
    assert b != a and p.probe(q, cursor) == b
    assert len(p.read(q, cursor=cursor).frame) == 1  # the cursor itself did not move
    assert items(sandbox, "contacts")


def test_oauth_client_credentials_through_msal(ews, sandbox, monkeypatch):
    monkeypatch.setenv("EWS_TEST_CLIENT_SECRET", "sandbox")
    p = provider(ews, User=None, Password=None, Authentication="OAuth", TenantId="sandbox",
                 ClientId="l2sync-sandbox", ClientSecret="env:EWS_TEST_CLIENT_SECRET",
                 Authority=f"{sandbox.urls['token']}/sandbox", CABundle=str(sandbox.ca_path),
                 Impersonation="true")
    assert "sales@sandbox.test" in p.verify(Query("SELECT * FROM Contacts"))
    assert len(p.read(Query("SELECT * FROM Contacts")).frame) == 12
    monkeypatch.setenv("EWS_TEST_CLIENT_SECRET", "wrong")
    bad = provider(ews, User=None, Password=None, Authentication="OAuth", TenantId="sandbox",
                   ClientId="l2sync-sandbox", ClientSecret="env:EWS_TEST_CLIENT_SECRET",
                   Authority=f"{sandbox.urls['token']}/sandbox", CABundle=str(sandbox.ca_path),
                   Impersonation="true")
    with pytest.raises(ProviderError) as err:
        bad.verify(Query("SELECT * FROM Contacts"))
    assert "wrong" not in str(err.value)


def test_extended_properties_of_every_kind_round_trip(ews):
    p = provider(ews)
    q = Query("SELECT Subject, Ext.Rank:Integer, Ext.Score:Double, Ext.Done:Boolean, "
              "Ext.Seen:SystemTime, Ext.Tags:StringArray, "
              "ExtendedProperty:{c11ff724-aa03-4555-9952-8fa248a11c3e}/Code:String AS Code, "
              "ExtendedProperty:{PSETID_Task}/0x8104:SystemTime AS TaskStart FROM Tasks")
    first = p.read(q)
    values = {"Subject": "Ext", "Ext.Rank": 7, "Ext.Score": 2.5, "Ext.Done": True,
              "Ext.Seen": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
              "Ext.Tags": '["a","b"]', "Code": "X-1",
              "TaskStart": dt.datetime(2026, 2, 1, tzinfo=UTC)}
    (ins,) = p.apply(q, [Change("insert", "e", values=values)])
    assert ins.ok, ins.error
    feed = p.read(q, cursor=first.cursor)
    row = feed.frame.loc[ins.key]
    for name, value in values.items():
        if name == "Ext.Tags":
            assert json.loads(row[name]) == ["a", "b"]
        else:
            assert row[name] == value, name
    (upd,) = p.apply(q, [Change("update", "e", ins.key, {"Ext.Rank": 8, "Code": None},
                                ins.version)])
    assert upd.ok
    row = p.read(q, cursor=feed.cursor).frame.loc[ins.key]
    assert row["Ext.Rank"] == 8 and row["Code"] is None and row["Ext.Score"] == 2.5


@pytest.mark.parametrize("where", ["", " WHERE Surname <> 'nobody'"])
def test_page_size_pages_the_ews_reads(ews, where):
    """PageSize sizes SyncFolderItems (a full read) and FindItem (a WHERE) pages on EWS as
    documented: 12 contacts in pages of 5 take two more requests than in one page of 1000,
    and read the same records."""
    q = Query(f"SELECT GivenName, Surname FROM Contacts{where}")
    one_page, paged = provider(ews), provider(ews, PageSize="5")
    whole = one_page.read(q).frame
    in_pages = paged.read(q).frame
    assert len(whole) == 12
    assert sorted(in_pages.index) == sorted(whole.index)
    assert paged.stats()["requests"] - one_page.stats()["requests"] >= 2
