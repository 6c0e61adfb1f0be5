"""The strict Graph sandbox: Outlook resources, auth, paging, delta, $batch, throttling and the
CSDL checks, through msal tokens and ``requests`` over HTTPS."""

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msal
import pytest
import requests
from msal_helpers import sandbox_session
from sandbox_process import SandboxProcess

from l2sync_dagster.sandbox import identities
from l2sync_dagster.sandbox.control import SandboxControl
from l2sync_dagster.sandbox.server import start_sandbox

SYNC, SALES, ALICE = "sync@sandbox.test", "sales@sandbox.test", "alice@sandbox.test"
EXT_ID = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name L2SyncKey"


class Graph:
    """A thin ``requests`` client of the sandbox (what a provider does, minus the provider)."""

    def __init__(self, sbx: SandboxProcess, token: str) -> None:
        self.base = sbx.urls["graph"]
        self.session = requests.Session()
        self.session.verify = str(sbx.ca_path)
        self.session.trust_env = False
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.control: SandboxControl = sbx.control("graph")

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        """``path`` relative to ``/v1.0`` or an absolute link from the server."""
        url = path if path.startswith("https://") else f"{self.base}/v1.0{path}"
        return self.session.request(method, url, timeout=30, **kw)

    def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        """Call and insist on ``status``; the JSON body (None for 204)."""
        resp = self.call(method, path, **kw)
        assert resp.status_code == status, (resp.status_code, resp.text[:1000])
        return resp.json() if resp.content else None

    def all_pages(self, path: str, **kw: Any) -> tuple[list[dict[str, Any]], int]:
        """Every entity following ``@odata.nextLink``; and the number of pages."""
        out, pages, link = [], 0, path
        while link:
            body = self.ok("GET", link, **kw)
            out += body["value"]
            pages += 1
            link = body.get("@odata.nextLink")
        return out, pages

    def delta_round(self, link: str, **kw: Any) -> tuple[list[dict[str, Any]], str, int]:
        """Follow a delta round to its deltaLink: (entries, deltaLink, pages)."""
        out, pages = [], 0
        while True:
            body = self.ok("GET", link, **kw)
            out += body["value"]
            pages += 1
            if "@odata.deltaLink" in body:
                return out, body["@odata.deltaLink"], pages
            link = body["@odata.nextLink"]


def msal_app_token(sbx: SandboxProcess, resource: str) -> str:
    """An app token from the token service through msal (client credentials)."""
    app = msal.ConfidentialClientApplication(
        identities.CLIENT_ID, client_credential=identities.CLIENT_SECRET,
        authority=f"{sbx.urls['token']}/{identities.TENANT}", instance_discovery=False,
        http_client=sandbox_session(sbx))
    result = app.acquire_token_for_client([f"{resource}/.default"])
    assert "access_token" in result, result
    return result["access_token"]


def msal_user_token(sbx: SandboxProcess, user: str) -> str:
    """A user token through msal ROPC."""
    app = msal.PublicClientApplication(
        identities.CLIENT_ID, authority=f"{sbx.urls['token']}/{identities.TENANT}",
        instance_discovery=False, http_client=sandbox_session(sbx))
    result = app.acquire_token_by_username_password(user, identities.USERS[user],
                                                    [f"{sbx.urls['graph']}/.default"])
    assert "access_token" in result, result
    return result["access_token"]


@pytest.fixture(scope="module")
def app_token(sandbox: SandboxProcess) -> str:
    """One app token for the module (tokens survive a Graph reset)."""
    if "graph" not in sandbox.urls or "token" not in sandbox.urls:
        pytest.fail("the sandbox has no graph or token service")
    return msal_app_token(sandbox, sandbox.urls["graph"])


@pytest.fixture
def graph(sandbox: SandboxProcess, app_token: str) -> Iterator[Graph]:
    """A client with an app token; the Graph service reset around the test, and no response
    it produced during the test may have failed its CSDL check."""
    client = Graph(sandbox, app_token)
    # a reset clears the counters: fail rather than hide what earlier tests left behind
    earlier = client.control.stats()["invalid_responses"]
    assert not earlier, f"invalid Graph responses recorded before this test: {earlier}"
    client.control.reset()
    yield client
    bad = client.control.stats()["invalid_responses"]
    client.control.reset()
    assert not bad, bad


def _error(resp: requests.Response, status: int, code: str) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    err = resp.json()["error"]
    assert err["code"] == code, err
    assert set(err["innerError"]) >= {"date", "request-id", "client-request-id"}
    return err["message"]


# ---------------------------------------------------------------------- auth
def test_csdl_is_loaded(graph_schema: None, sandbox: SandboxProcess) -> None:
    assert any(n.startswith("graph: validating against") for n in sandbox.notices), \
        sandbox.notices


def test_authentication_and_audiences(sandbox: SandboxProcess, graph: Graph) -> None:
    anonymous = requests.get(f"{graph.base}/v1.0/users", verify=str(sandbox.ca_path),
                             timeout=10)
    assert "Access token is empty" in _error(anonymous, 401, "InvalidAuthenticationToken")
    other = msal_app_token(sandbox, "https://outlook.office365.com")
    resp = graph.call("GET", "/users", headers={"Authorization": f"Bearer {other}"})
    assert "Invalid audience" in _error(resp, 401, "InvalidAuthenticationToken")
    public = msal_app_token(sandbox, "https://graph.microsoft.com")
    users = graph.ok("GET", "/users", headers={"Authorization": f"Bearer {public}"})
    # the directory: every mailbox and the contractor without one
    assert {u["userPrincipalName"] for u in users["value"]} == {*identities.MAILBOXES,
                                                                "contractor@sandbox.test"}
    assert graph.control.stats()["requests"]["users.list"] == 1


def test_user_token_opens_own_and_delegated_mailboxes(sandbox: SandboxProcess,
                                                      graph: Graph) -> None:
    token = msal_user_token(sandbox, SYNC)
    auth = {"Authorization": f"Bearer {token}"}
    me = graph.ok("GET", "/me", headers=auth)
    assert me["userPrincipalName"] == SYNC
    assert graph.ok("GET", f"/users/{SALES}/contacts", headers=auth)["value"]
    _error(graph.call("GET", f"/users/{ALICE}/contacts", headers=auth), 403, "ErrorAccessDenied")
    _error(graph.call("GET", "/me"), 400, "BadRequest")  # /me needs a user token


# ---------------------------------------------------------------------- contacts
def test_contact_crud_with_etags(graph: Graph) -> None:
    created = graph.ok("POST", f"/users/{SYNC}/contacts", 201, json={
        "givenName": "Katherine", "surname": "Johnson",
        "emailAddresses": [{"address": "kj@example.test", "name": "Katherine Johnson"}],
        "businessAddress": {"city": "Hampton"}})
    cid, etag = created["id"], created["@odata.etag"]
    assert created["displayName"] == "Katherine Johnson" and etag.startswith('W/"')
    assert created["changeKey"] and created["parentFolderId"]
    got = graph.ok("GET", f"/users/{SYNC}/contacts/{cid}?$select=surname")
    assert got["surname"] == "Johnson" and "givenName" not in got
    updated = graph.ok("PATCH", f"/users/{SYNC}/contacts/{cid}", json={"jobTitle": "Mathematician"},
                       headers={"If-Match": etag})
    assert updated["jobTitle"] == "Mathematician" and updated["@odata.etag"] != etag
    assert updated["lastModifiedDateTime"] >= created["lastModifiedDateTime"]
    stale = graph.call("PATCH", f"/users/{SYNC}/contacts/{cid}", json={"jobTitle": "x"},
                       headers={"If-Match": etag})
    _error(stale, 412, "ErrorIrresolvableConflict")
    graph.ok("DELETE", f"/users/{SYNC}/contacts/{cid}", 204)
    _error(graph.call("GET", f"/users/{SYNC}/contacts/{cid}"), 404, "ErrorItemNotFound")
    ops = graph.control.stats()["requests"]
    assert ops["contacts.create"] == 1 and ops["contacts.update"] == 2
    assert ops["contacts.delete"] == 1 and ops["contacts.get"] == 2


def test_csdl_rejects_unknown_and_mistyped_properties(graph_schema: None, graph: Graph) -> None:
    before = graph.control.stats()["rejected_requests"]
    unknown = graph.call("POST", f"/users/{SYNC}/contacts", json={"givenName": "A", "foo": 1})
    assert "'foo' does not exist on type 'microsoft.graph.contact'" in \
        _error(unknown, 400, "invalidRequest")
    mistyped = graph.call("POST", f"/users/{SYNC}/contacts", json={"givenName": 42})
    assert "Edm.String" in _error(mistyped, 400, "invalidRequest")
    nested = graph.call("POST", f"/users/{SYNC}/contacts",
                        json={"emailAddresses": [{"address": "a@b", "mail": "x"}]})
    assert "emailAddresses[0].mail" in _error(nested, 400, "invalidRequest")
    bad_enum = graph.call("POST", f"/users/{SYNC}/todo/lists", json={"displayName": "L",
                                                                   "wellknownListName": "x"})
    _error(bad_enum, 400, "invalidRequest")
    select = graph.call("GET", f"/users/{SYNC}/contacts?$select=nickname2")
    _error(select, 400, "BadRequest")
    assert graph.control.stats()["rejected_requests"] == before + 4
    assert len(graph.all_pages(f"/users/{SYNC}/contacts")[0]) == 3  # nothing was stored


def test_paging_with_opaque_skip_tokens(graph: Graph) -> None:
    folder = graph.ok("POST", f"/users/{SYNC}/contactFolders", 201,
                      json={"displayName": "Bulk"})["id"]
    graph.control.call("POST", "seed/contacts", {"user": SYNC, "folder": folder, "count": 25})
    path = f"/users/{SYNC}/contactFolders/{folder}/contacts"
    first = graph.ok("GET", path)
    assert len(first["value"]) == 10  # Outlook's default page size
    link = first["@odata.nextLink"]
    assert "$skiptoken=" in link and "$skip=" not in link
    _, pages = graph.all_pages(path, headers={"Prefer": "odata.maxpagesize=20"})
    assert pages == 2
    items, pages = graph.all_pages(f"{path}?$top=7&$select=displayName")
    assert pages == 4 and len({i["id"] for i in items}) == 25
    assert all(set(i) <= {"id", "displayName", "@odata.etag"} for i in items)
    _error(graph.call("GET", f"{path}?$skiptoken=garbage!"), 400, "BadRequest")
    _error(graph.call("GET", f"{path}?$top=1001"), 400, "BadRequest")
    skipped = graph.ok("GET", f"{path}?$skip=20&$top=3")["value"]
    assert [c["id"] for c in skipped] == [c["id"] for c in items[20:23]]
    assert "$count" in _error(graph.call("GET", f"{path}?$count=true"), 400, "BadRequest")


def test_users_delta_pages_selects_and_reports_edits_and_deletes(graph: Graph) -> None:
    prefer = {"Prefer": "odata.maxpagesize=3"}
    first, link, pages = graph.delta_round("/users/delta?$select=givenName,department,city",
                                           headers=prefer)
    assert len(first) == 4 and pages == 2
    assert all(set(u) == {"id", "givenName", "department", "city"} for u in first)
    alice = next(u for u in first if u["givenName"] == "Alice")
    assert alice["department"] == "Sales" and alice["city"] == "London"
    graph.control.call("POST", "directory/update",
                       {"user": ALICE, "properties": {"department": "Finance"}})
    gone = graph.control.call("POST", "directory/delete", {"user": "contractor@sandbox.test"})
    changes, link2, _ = graph.delta_round(link)
    assert changes == [{"id": alice["id"], "givenName": "Alice", "department": "Finance",
                        "city": "London"},
                       {"id": gone["id"], "@removed": {"reason": "changed"}}]
    assert graph.delta_round(link2)[0] == []
    got = graph.ok("GET", f"/users/{alice['id']}?$select=department")
    assert got["department"] == "Finance" and set(got) - {"id", "department"} <= {
        "@odata.context"}
    # a profile property of the wrong type or an unknown one is refused by the control API
    for props in ({"department": 7}, {"accountEnabled": False}):
        with pytest.raises(RuntimeError, match="400"):
            graph.control.call("POST", "directory/update", {"user": ALICE, "properties": props})
    # without User.Read.All (or Directory.Read.All) an app reads no users
    graph.control.call("POST", "app-roles", {"roles": ["Contacts.ReadWrite"]})
    _error(graph.call("GET", "/users/delta"), 403, "Authorization_RequestDenied")
    _error(graph.call("GET", "/users"), 403, "Authorization_RequestDenied")
    graph.control.call("POST", "app-roles", {"roles": ["Directory.Read.All"]})
    assert len(graph.ok("GET", "/users")["value"]) == 3


def test_contact_delta_with_deletes_and_expiry(graph: Graph) -> None:
    folder = graph.ok("POST", f"/users/{SALES}/contactFolders", 201,
                      json={"displayName": "Delta"})["id"]
    graph.control.call("POST", "seed/contacts", {"user": SALES, "folder": folder, "count": 5})
    path = f"/users/{SALES}/contactFolders/{folder}/contacts"
    prefer = {"Prefer": "odata.maxpagesize=2"}
    first, delta_link, pages = graph.delta_round(f"{path}/delta", headers=prefer)
    assert len(first) == 5 and pages == 3
    ids = [c["id"] for c in first]
    graph.ok("PATCH", f"{path}/{ids[0]}", json={"nickName": "Changed"})
    graph.ok("DELETE", f"{path}/{ids[1]}", 204)
    new = graph.ok("POST", path, 201, json={"givenName": "New", "surname": "Contact"})
    changes, delta_link2, _ = graph.delta_round(delta_link, headers=prefer)
    by_id = {c["id"]: c for c in changes}
    assert set(by_id) == {ids[0], ids[1], new["id"]}
    assert by_id[ids[0]]["nickName"] == "Changed"
    assert by_id[ids[1]]["@removed"] == {"reason": "deleted"}
    empty, _, _ = graph.delta_round(delta_link2)
    assert empty == []
    graph.control.faults(expire_cursors=True)
    _error(graph.call("GET", delta_link2), 410, "syncStateNotFound")
    graph.control.clear_faults()
    graph.ok("GET", delta_link2)
    graph.control.call("POST", "expire-delta")
    _error(graph.call("GET", delta_link2), 410, "syncStateNotFound")
    assert graph.control.stats()["requests"]["contacts.delta"] >= 7


def test_extended_properties_and_filters(graph: Graph) -> None:
    path = f"/users/{SYNC}/contacts"
    created = graph.ok("POST", path, 201, json={
        "givenName": "Ext", "surname": "Prop",
        "singleValueExtendedProperties": [{"id": EXT_ID, "value": "row-17"}]})
    assert "singleValueExtendedProperties" not in created
    plain = graph.ok("GET", f"{path}/{created['id']}")
    assert "singleValueExtendedProperties" not in plain
    expanded = graph.ok("GET", f"{path}/{created['id']}?$expand=singleValueExtendedProperties"
                        f"($filter=id eq '{EXT_ID}')")
    assert expanded["singleValueExtendedProperties"] == [{"id": EXT_ID, "value": "row-17"}]
    graph.ok("PATCH", f"{path}/{created['id']}", json={
        "singleValueExtendedProperties": [{"id": EXT_ID, "value": "row-18"}]})
    found = graph.ok("GET", f"{path}?$filter=singleValueExtendedProperties/Any(ep: ep/id eq "
                     f"'{EXT_ID}' and ep/value eq 'row-18')")["value"]
    assert [c["id"] for c in found] == [created["id"]]
    starts = graph.ok("GET", f"{path}?$filter=startswith(givenName,'Ad') and surname ne 'x'"
                      "&$orderby=displayName desc")["value"]
    assert [c["givenName"] for c in starts] == ["Ada"]
    _error(graph.call("GET", f"{path}?$filter=contains(givenName,'a')"), 400, "BadRequest")
    _error(graph.call("GET", f"{path}?$filter=givenName eq"), 400, "BadRequest")


# ---------------------------------------------------------------------- calendar
def test_events_time_zones_all_day_and_recurrence(graph: Graph) -> None:
    path = f"/users/{SYNC}/events"
    event = graph.ok("POST", path, 201, json={
        "subject": "Berlin meeting",
        "start": {"dateTime": "2031-03-03T10:00:00", "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": "2031-03-03T11:00:00", "timeZone": "W. Europe Standard Time"}})
    assert event["start"] == {"dateTime": "2031-03-03T09:00:00.0000000", "timeZone": "UTC"}
    assert event["type"] == "singleInstance"
    assert event["originalStartTimeZone"] == "W. Europe Standard Time"
    moved = graph.ok("PATCH", f"{path}/{event['id']}", json={
        "start": {"dateTime": "2031-03-03T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2031-03-03T11:00:00", "timeZone": "UTC"}})
    assert moved["originalStartTimeZone"] == "UTC"
    graph.ok("PATCH", f"{path}/{event['id']}", json={
        "start": {"dateTime": "2031-03-03T10:00:00", "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": "2031-03-03T11:00:00", "timeZone": "W. Europe Standard Time"}})
    pacific = graph.ok("GET", f"{path}/{event['id']}",
                       headers={"Prefer": 'outlook.timezone="Pacific Standard Time"'})
    assert pacific["start"] == {"dateTime": "2031-03-03T01:00:00.0000000",
                                "timeZone": "Pacific Standard Time"}
    all_day = graph.ok("POST", path, 201, json={
        "subject": "Holiday", "isAllDay": True,
        "start": {"dateTime": "2031-03-05T00:00:00", "timeZone": "Pacific Standard Time"},
        "end": {"dateTime": "2031-03-06T00:00:00", "timeZone": "Pacific Standard Time"}})
    shown = graph.ok("GET", f"{path}/{all_day['id']}",
                     headers={"Prefer": 'outlook.timezone="Tokyo Standard Time"'})
    assert shown["start"]["dateTime"].startswith("2031-03-05T00:00:00")
    bad = graph.call("POST", path, json={
        "subject": "x", "isAllDay": True,
        "start": {"dateTime": "2031-03-05T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2031-03-06T00:00:00", "timeZone": "UTC"}})
    assert bad.status_code == 400
    series = graph.ok("POST", path, 201, json={
        "subject": "Standup",
        "start": {"dateTime": "2031-03-03T08:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2031-03-03T08:15:00", "timeZone": "UTC"},
        "recurrence": {"pattern": {"type": "weekly", "interval": 1,
                                   "daysOfWeek": ["monday", "wednesday"]},
                       "range": {"type": "numbered", "numberOfOccurrences": 4,
                                 "startDate": "2031-03-03"}}})
    assert series["type"] == "seriesMaster"
    view = f"/users/{SYNC}/calendarView?startDateTime=2031-03-01T00:00:00Z" \
           "&endDateTime=2031-03-31T00:00:00Z"
    instances, _ = graph.all_pages(view)
    occurrences = [i for i in instances if i.get("seriesMasterId") == series["id"]]
    assert [o["start"]["dateTime"][:10] for o in occurrences] == \
        ["2031-03-03", "2031-03-05", "2031-03-10", "2031-03-12"]
    assert {i["subject"] for i in instances} == {"Berlin meeting", "Holiday", "Standup"}
    window = "startDateTime=2031-03-04T00:00:00Z&endDateTime=2031-03-11T00:00:00Z"
    series_instances = graph.ok("GET", f"{path}/{series['id']}/instances?{window}")["value"]
    assert [i["start"]["dateTime"][:10] for i in series_instances] == ["2031-03-05",
                                                                        "2031-03-10"]
    via_calendar = graph.ok("GET", f"/users/{SYNC}/calendar/calendarView?{window}")["value"]
    assert {i["id"] for i in via_calendar} == {i["id"] for i in series_instances} | \
        {all_day["id"]}
    assert graph.ok("GET", f"/users/{SYNC}/calendar")["isDefaultCalendar"] is True
    # a series keeps its local time across the DST change (Berlin: 2031-03-30)
    berlin = graph.ok("POST", path, 201, json={
        "subject": "Berlin daily",
        "start": {"dateTime": "2031-03-28T10:00:00", "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": "2031-03-28T10:30:00", "timeZone": "W. Europe Standard Time"},
        "recurrence": {"pattern": {"type": "daily", "interval": 1},
                       "range": {"type": "endDate", "startDate": "2031-03-28",
                                 "endDate": "2031-03-31"}}})
    days = graph.ok("GET", f"{path}/{berlin['id']}/instances?startDateTime=2031-03-27T00:00:00Z"
                    "&endDateTime=2031-04-05T00:00:00Z")["value"]
    assert [d["start"]["dateTime"][:16] for d in days] == [
        "2031-03-28T09:00", "2031-03-29T09:00", "2031-03-30T08:00", "2031-03-31T08:00"]
    _error(graph.call("GET", f"/users/{SYNC}/calendarView"), 400, "ErrorInvalidParameter")
    # calendarView delta: the series' occurrences, then their removal
    first, link, _ = graph.delta_round(view.replace("calendarView?", "calendarView/delta?"))
    assert len(first) == 9  # 1 + 1 + 4 Standup + 3 Berlin occurrences in March
    graph.ok("DELETE", f"{path}/{series['id']}", 204)
    changes, _, _ = graph.delta_round(link)
    assert len(changes) == 4 and all(c["@removed"] == {"reason": "deleted"} for c in changes)


def test_series_exceptions_cancelled_and_changed_occurrences(graph_schema: None,
                                                            graph: Graph) -> None:
    path = f"/users/{SYNC}/events"
    series = graph.ok("POST", path, 201, json={
        "subject": "Standup",
        "start": {"dateTime": "2031-05-05T09:00:00", "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": "2031-05-05T09:15:00", "timeZone": "W. Europe Standard Time"},
        "recurrence": {"pattern": {"type": "daily", "interval": 1},
                       "range": {"type": "numbered", "numberOfOccurrences": 5,
                                 "startDate": "2031-05-05"}}})
    window = "startDateTime=2031-05-01T00:00:00Z&endDateTime=2031-05-31T00:00:00Z"
    view = f"/users/{SYNC}/calendarView/delta?{window}"
    _, link, _ = graph.delta_round(view)
    instances = graph.ok("GET", f"{path}/{series['id']}/instances?{window}")["value"]
    assert [i["originalStart"] for i in instances] == [
        f"2031-05-0{d}T07:00:00Z" for d in range(5, 10)]
    second, third = instances[1]["id"], instances[2]["id"]
    assert graph.ok("GET", f"{path}/{second}")["type"] == "occurrence"
    graph.ok("DELETE", f"{path}/{second}", 204)
    moved = graph.ok("PATCH", f"{path}/{third}", json={
        "subject": "Standup (moved)",
        "start": {"dateTime": "2031-05-07T11:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2031-05-07T11:30:00", "timeZone": "UTC"}})
    assert moved["type"] == "exception" and moved["originalStart"] == "2031-05-07T07:00:00Z"
    _error(graph.call("GET", f"{path}/{second}"), 404, "ErrorItemNotFound")
    _error(graph.call("PATCH", f"{path}/{third}", json={"recurrence": None}), 400,
           "ErrorInvalidRequest")
    now = graph.ok("GET", f"{path}/{series['id']}/instances?{window}")["value"]
    assert [(i["type"], i["start"]["dateTime"][:16]) for i in now] == [
        ("occurrence", "2031-05-05T07:00"), ("exception", "2031-05-07T11:00"),
        ("occurrence", "2031-05-08T07:00"), ("occurrence", "2031-05-09T07:00")]
    # the master: cancelledOccurrences only when selected, exceptions by $expand
    master = graph.ok("GET", f"{path}/{series['id']}")
    assert "cancelledOccurrences" not in master
    master = graph.ok("GET", f"{path}/{series['id']}?$select=subject,cancelledOccurrences"
                      "&$expand=exceptionOccurrences($select=start,end,originalStart)")
    assert master["cancelledOccurrences"] == [f"OID.{series['id']}.2031-05-06"]
    (exc,) = master["exceptionOccurrences"]
    assert exc["originalStart"] == "2031-05-07T07:00:00Z"
    assert exc["start"]["dateTime"].startswith("2031-05-07T11:00")
    _error(graph.call("GET", f"/users/{SYNC}/contacts?$expand=exceptionOccurrences"), 400,
           "BadRequest")
    # the feed: the cancelled occurrence removed, the series' instances again
    changes, _, _ = graph.delta_round(link)
    removed = [c["id"] for c in changes if "@removed" in c]
    assert removed == [second]
    assert {c["type"] for c in changes if "@removed" not in c} == {"occurrence", "exception"}
    # a new pattern drops the exceptions, as in Outlook
    graph.ok("PATCH", f"{path}/{series['id']}", json={"recurrence": {
        "pattern": {"type": "daily", "interval": 1},
        "range": {"type": "numbered", "numberOfOccurrences": 3, "startDate": "2031-05-05"}}})
    again = graph.ok("GET", f"{path}/{series['id']}?$select=cancelledOccurrences"
                     "&$expand=exceptionOccurrences")
    assert again["cancelledOccurrences"] == [] and again["exceptionOccurrences"] == []


def test_todo_lists_tasks_and_delta(graph_schema: None, graph: Graph) -> None:
    lists = graph.ok("GET", f"/users/{SYNC}/todo/lists")["value"]
    # every mailbox has the default list "Tasks"; it cannot be deleted
    assert [(x["displayName"], x["wellknownListName"]) for x in lists] == [
        ("Tasks", "defaultList"), ("Follow-ups", "none")]
    _error(graph.call("DELETE", f"/users/{SYNC}/todo/lists/{lists[0]['id']}"), 400,
           "invalidRequest")
    tasks_path = f"/users/{SYNC}/todo/lists/{lists[1]['id']}/tasks"
    _, link, _ = graph.delta_round(f"{tasks_path}/delta")
    due = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
    task = graph.ok("POST", tasks_path, 201, json={
        "title": "Write report", "dueDateTime": {"dateTime": due, "timeZone": "UTC"}})
    assert task["status"] == "notStarted"
    graph.ok("PATCH", f"{tasks_path}/{task['id']}", json={"status": "completed"})
    _error(graph.call("PATCH", f"{tasks_path}/{task['id']}", json={"status": "finished"}),
           400, "invalidRequest")
    changes, _, _ = graph.delta_round(link)
    assert [(c["id"], c["status"]) for c in changes] == [(task["id"], "completed")]
    assert graph.control.stats()["requests"]["todoTasks.delta"] == 2


# ---------------------------------------------------------------------- mail
def test_messages_folders_text_body_and_delta(graph: Graph) -> None:
    inbox = graph.ok("GET", f"/users/{SYNC}/mailFolders/inbox")
    assert inbox["displayName"] == "Inbox" and inbox["totalItemCount"] == 3
    html = graph.ok("GET", f"/users/{SYNC}/mailFolders/inbox/messages?$top=1")["value"][0]
    assert html["body"]["contentType"] == "html" and "<p>" in html["body"]["content"]
    text = graph.ok("GET", f"/users/{SYNC}/messages/{html['id']}",
                    headers={"Prefer": 'outlook.body-content-type="text"'})
    assert text["body"]["contentType"] == "text" and "<" not in text["body"]["content"]
    assert "Hello," in text["body"]["content"]
    _, link, _ = graph.delta_round(f"/users/{SYNC}/mailFolders/{inbox['id']}/messages/delta")
    graph.control.call("POST", "seed/messages", {"user": SYNC, "folder": "inbox", "count": 2})
    graph.ok("PATCH", f"/users/{SYNC}/messages/{html['id']}", json={"isRead": True})
    changes, _, _ = graph.delta_round(link)
    assert len(changes) == 3
    all_mail, _ = graph.all_pages(f"/users/{SYNC}/messages?$select=subject,receivedDateTime")
    received = [m["receivedDateTime"] for m in all_mail]
    # every folder's messages (Inbox/Projects/Alpha holds one)
    assert len(all_mail) == 6 and received == sorted(received, reverse=True)


# ---------------------------------------------------------------------- $batch and throttling
def test_batch_limits_dependencies_and_counters(graph_schema: None, graph: Graph) -> None:
    too_many = {"requests": [{"id": str(i), "method": "GET", "url": "/users"}
                             for i in range(21)]}
    assert "at most 20" in _error(graph.call("POST", "/$batch", json=too_many), 400,
                                  "BadRequest")
    body = {"requests": [
        {"id": "a", "method": "POST", "url": f"/users/{SYNC}/contacts",
         "headers": {"Content-Type": "application/json"},
         "body": {"givenName": "Batch", "surname": "One"}},
        {"id": "b", "method": "POST", "url": f"/users/{SYNC}/contacts",
         "headers": {"Content-Type": "application/json"}, "body": {"bogus": True}},
        {"id": "c", "method": "GET", "url": "/users", "dependsOn": ["b"]},
        {"id": "d", "method": "GET", "url": f"/users/{SYNC}/contacts?$top=1",
         "dependsOn": ["a"]},
    ]}
    no_type = {"requests": [{"id": "w", "method": "POST", "url": f"/users/{SYNC}/contacts",
                             "body": {"givenName": "X"}}]}
    assert "does not contain Content-Type header or body" in \
        _error(graph.call("POST", "/$batch", json=no_type), 400, "BadRequest")
    answer = graph.ok("POST", "/$batch", json=body)
    status = {r["id"]: r["status"] for r in answer["responses"]}
    assert status == {"a": 201, "b": 400, "c": 424, "d": 200}
    by_id = {r["id"]: r for r in answer["responses"]}
    assert by_id["a"]["body"]["surname"] == "One"
    assert by_id["b"]["body"]["error"]["code"] == "invalidRequest"
    ops = graph.control.stats()["requests"]
    assert ops["batch"] == 3 and ops["contacts.create"] == 2 and ops["contacts.list"] == 1


def test_throttling_with_retry_after(graph: Graph) -> None:
    graph.control.faults(throttle_fraction=1.0, throttle_ms=1500)
    resp = graph.call("GET", f"/users/{SYNC}/contacts")
    _error(resp, 429, "TooManyRequests")
    assert resp.headers["Retry-After"] == "2"
    graph.control.faults(throttle_hint=False)
    resp = graph.call("GET", f"/users/{SYNC}/contacts")
    assert resp.status_code == 429 and "Retry-After" not in resp.headers
    graph.control.clear_faults()
    # inner requests are throttled one by one: find a seed whose first draw (the $batch
    # itself) passes and whose second (the first inner request) is throttled
    seed = next(s for s in range(1000)
                if (r := random.Random(s)).random() >= 0.5 and r.random() < 0.5)
    graph.control.faults(throttle_fraction=0.5, throttle_ms=200, seed=seed)
    answer = graph.ok("POST", "/$batch", json={"requests": [
        {"id": "1", "method": "GET", "url": f"/users/{SYNC}/contacts"}]})
    inner = answer["responses"][0]
    assert inner["status"] == 429 and inner["headers"]["Retry-After"] == "1"
    graph.control.clear_faults()
    assert graph.control.stats()["throttled"] == 3


def test_folder_trees_of_mail_and_contacts(graph_schema: None, graph: Graph) -> None:
    mail = f"/users/{SYNC}/mailFolders"
    # the mailbox root holds the well-known folders; the demo has Inbox/Projects/{Alpha,Beta}
    root = graph.ok("GET", f"{mail}/msgfolderroot")
    tops = graph.ok("GET", f"{mail}?$top=50")["value"]
    assert {f["displayName"] for f in tops} >= {"Inbox", "Drafts", "Sent Items"}
    assert all(f["parentFolderId"] == root["id"] for f in tops)
    assert [f["id"] for f in graph.ok("GET", f"{mail}/msgfolderroot/childFolders?$top=50")
            ["value"]] == [f["id"] for f in tops]
    inbox = graph.ok("GET", f"{mail}/inbox")
    assert inbox["childFolderCount"] == 1
    (projects,) = graph.ok("GET", f"{mail}/inbox/childFolders")["value"]
    assert projects["displayName"] == "Projects" and projects["childFolderCount"] == 2
    sub = f"{mail}/inbox/childFolders/{projects['id']}/childFolders"
    assert sorted(f["displayName"] for f in graph.ok("GET", sub)["value"]) == ["Alpha", "Beta"]
    gamma = graph.ok("POST", sub, 201, json={"displayName": "Gamma"})
    assert gamma["parentFolderId"] == projects["id"] and gamma["childFolderCount"] == 0
    _error(graph.call("POST", sub, json={"displayName": "gamma"}), 409, "ErrorFolderExists")
    _error(graph.call("POST", sub, json={"displayName": "X", "colour": "red"}), 400,
           "invalidRequest")
    graph.ok("POST", f"{mail}/{gamma['id']}/childFolders", 201, json={"displayName": "Deep"})
    msg = graph.ok("POST", f"{mail}/{gamma['id']}/messages", 201, json={"subject": "In Gamma"})
    assert msg["parentFolderId"] == gamma["id"]
    assert graph.ok("GET", f"/users/{SYNC}/messages/{msg['id']}")["subject"] == "In Gamma"
    _error(graph.call("DELETE", f"{mail}/inbox"), 403, "ErrorDeleteDistinguishedFolder")
    graph.ok("DELETE", f"{mail}/{gamma['id']}", 204)  # with its subfolder and messages
    _error(graph.call("GET", f"/users/{SYNC}/messages/{msg['id']}"), 404, "ErrorItemNotFound")
    assert len(graph.ok("GET", sub)["value"]) == 2
    # a folder is a child of its parent only
    alpha = next(f for f in graph.ok("GET", sub)["value"] if f["displayName"] == "Alpha")
    _error(graph.call("GET", f"{mail}/drafts/childFolders/{alpha['id']}"), 404,
           "ErrorItemNotFound")
    # contact folders: /contactFolders lists those of the default folder, childFolders nest
    folders = f"/users/{SYNC}/contactFolders"
    partners = graph.ok("POST", folders, 201, json={"displayName": "Partners"})
    eu = graph.ok("POST", f"{folders}/{partners['id']}/childFolders", 201,
                  json={"displayName": "EU"})
    assert eu["parentFolderId"] == partners["id"]
    assert [f["displayName"] for f in graph.ok("GET", folders)["value"]] == ["Partners"]
    assert [f["id"] for f in graph.ok("GET", f"{folders}/{partners['id']}/childFolders")
            ["value"]] == [eu["id"]]
    nested = f"{folders}/{partners['id']}/childFolders/{eu['id']}/contacts"
    contact = graph.ok("POST", nested, 201, json={"givenName": "Elena"})
    assert contact["parentFolderId"] == eu["id"]
    graph.ok("DELETE", f"{folders}/{partners['id']}", 204)
    _error(graph.call("GET", f"{folders}/{eu['id']}"), 404, "ErrorItemNotFound")
    # childFolders is no navigation property of a To Do list (CSDL)
    lists = graph.ok("GET", f"/users/{SYNC}/todo/lists")["value"]
    _error(graph.call("GET", f"/users/{SYNC}/todo/lists/{lists[0]['id']}/childFolders"), 400,
           "BadRequest")


def _todo_tasks(graph: Graph) -> str:
    lists = graph.ok("GET", f"/users/{SYNC}/todo/lists")["value"]
    return f"/users/{SYNC}/todo/lists/{lists[0]['id']}/tasks"


def _folder_contacts(graph: Graph) -> str:
    folder = graph.ok("POST", f"/users/{SYNC}/contactFolders", 201, json={"displayName": "F"})
    return f"/users/{SYNC}/contactFolders/{folder['id']}/contacts"


_WHEN = {"dateTime": "2032-01-01T10:00:00", "timeZone": "UTC"}
_LATER = {"dateTime": "2032-01-01T11:00:00", "timeZone": "UTC"}
CRUD_CASES = {
    "contacts": (lambda g: f"/users/{SYNC}/contacts", {"givenName": "A"}, "jobTitle", "Dev"),
    "folder contacts": (_folder_contacts, {"surname": "B"}, "nickName", "Bee"),
    "contactFolders": (lambda g: f"/users/{SYNC}/contactFolders", {"displayName": "X"},
                       "displayName", "Y"),
    "events": (lambda g: f"/users/{SYNC}/events", {"subject": "S", "start": _WHEN,
                                                   "end": _LATER}, "subject", "T"),
    "todo lists": (lambda g: f"/users/{SYNC}/todo/lists", {"displayName": "L"},
                   "displayName", "M"),
    "todo tasks": (_todo_tasks, {"title": "T"}, "importance", "high"),
    "messages": (lambda g: f"/users/{SYNC}/mailFolders/drafts/messages",
                 {"subject": "Draft", "body": {"contentType": "text", "content": "hi"}},
                 "isRead", True),
}


@pytest.mark.parametrize("case", list(CRUD_CASES))
def test_resource_crud(graph: Graph, case: str) -> None:
    make_path, body, prop, value = CRUD_CASES[case]
    path = make_path(graph)
    created = graph.ok("POST", path, 201, json=body)
    item = f"{path}/{created['id']}"
    assert graph.ok("GET", item)["id"] == created["id"]
    listed, _ = graph.all_pages(path)
    assert created["id"] in {x["id"] for x in listed}
    graph.ok("PATCH", item, json={prop: value}, headers={"If-Match": created["@odata.etag"]})
    assert graph.ok("GET", item)[prop] == value
    graph.ok("DELETE", item, 204)
    assert graph.call("GET", item).status_code == 404
    assert created["id"] not in {x["id"] for x in graph.all_pages(path)[0]}


def test_without_csdl_serves_unchecked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    notice = "graph: Microsoft's schema files not found; serving without validation"
    monkeypatch.setattr("l2sync_dagster.sandbox.graph.service.schema_dir_or_notice",
                        lambda kind: (None, notice))
    running = start_sandbox(state_dir=tmp_path, only=["token", "graph"])
    try:
        service = running.services["graph"]
        assert service.notice() == notice
        session = requests.Session()
        session.verify = str(running.ca_path)
        session.trust_env = False
        token = session.post(f"{running.urls['token']}/sandbox/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": identities.CLIENT_ID,
            "client_secret": identities.CLIENT_SECRET,
            "scope": f"{running.urls['graph']}/.default"}, timeout=10).json()["access_token"]
        resp = session.post(f"{running.urls['graph']}/v1.0/users/{SYNC}/contacts",
                            json={"givenName": "A", "notAGraphProperty": 1},
                            headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert resp.status_code == 201 and resp.json()["notAGraphProperty"] == 1
        assert service.stats.as_dict()["rejected_requests"] == 0
    finally:
        running.stop()
