"""The Dataverse sandbox, driven over HTTPS with requests and msal-issued tokens."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import msal
import pytest
import requests
from lxml import etree
from msal_helpers import SandboxSession
from sandbox_process import SandboxProcess

from l2sync_dagster.sandbox import identities
from l2sync_dagster.sandbox.control import SandboxControl

API = "/api/data/v9.2"
FORMATTED = "OData.Community.Display.V1.FormattedValue"


@dataclass
class Dv:
    """The Dataverse sandbox as a test sees it: an authenticated session and helpers."""

    base: str
    session: requests.Session
    control: SandboxControl
    sbx: SandboxProcess

    @property
    def api(self) -> str:
        return self.base + API

    def get(self, path: str, **headers: str) -> requests.Response:
        return self.session.get(f"{self.api}/{path}", headers=headers, timeout=30)

    def send(self, method: str, path: str, body: Any = None, **headers: str
             ) -> requests.Response:
        return self.session.request(method, f"{self.api}/{path}", json=body, headers=headers,
                                    timeout=30)

    def rows(self, entity_set: str) -> list[dict[str, Any]]:
        return self.control.call("GET", f"rows/{entity_set}")["value"]


def _app_token(sbx: SandboxProcess, resource: str) -> str:
    authority = f"{sbx.urls['token']}/{identities.TENANT}"
    app = msal.ConfidentialClientApplication(
        identities.CLIENT_ID, client_credential=identities.CLIENT_SECRET, authority=authority,
        instance_discovery=False, http_client=SandboxSession(authority, str(sbx.ca_path)))
    result = app.acquire_token_for_client([f"{resource}/.default"])
    assert "access_token" in result, result
    return result["access_token"]


def _user_token(sbx: SandboxProcess, resource: str) -> str:
    authority = f"{sbx.urls['token']}/{identities.TENANT}"
    app = msal.PublicClientApplication(
        identities.CLIENT_ID, authority=authority, instance_discovery=False,
        http_client=SandboxSession(authority, str(sbx.ca_path)))
    result = app.acquire_token_by_username_password(
        identities.SERVICE_USER, identities.USERS[identities.SERVICE_USER],
        [f"{resource}/.default"])
    assert "access_token" in result, result
    return result["access_token"]


@pytest.fixture(scope="module")
def dv_session(sandbox: SandboxProcess) -> Dv:
    """One authenticated session (app token from msal) for the module."""
    assert "dataverse" in sandbox.urls and "token" in sandbox.urls, sandbox.urls
    base = sandbox.urls["dataverse"]
    session = requests.Session()
    session.verify = str(sandbox.ca_path)
    session.trust_env = False
    session.headers.update({"Authorization": f"Bearer {_app_token(sandbox, base)}",
                            "OData-Version": "4.0", "OData-MaxVersion": "4.0",
                            "Accept": "application/json"})
    return Dv(base, session, sandbox.control("dataverse"), sandbox)


@pytest.fixture
def dv(dv_session: Dv) -> Iterator[Dv]:
    """Demo data, no faults, zero counters; after the test no invalid response may exist."""
    dv_session.control.reset()
    yield dv_session
    bad = dv_session.control.stats()["invalid_responses"]
    dv_session.control.clear_faults()
    assert not bad, bad


def _error(resp: requests.Response, status: int, code: str) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    return body["error"]["message"]


# -- metadata and auth ------------------------------------------------------------------------

def test_metadata_is_csdl_for_the_entity_sets(dv: Dv) -> None:
    resp = dv.get("$metadata")
    assert resp.status_code == 200 and "xml" in resp.headers["Content-Type"]
    doc = etree.fromstring(resp.content)
    ns = {"e": "http://docs.oasis-open.org/odata/ns/edm"}
    account = doc.find(".//e:EntityType[@Name='account']", ns)
    assert account.find("e:Key/e:PropertyRef", ns).get("Name") == "accountid"
    types = {p.get("Name"): p.get("Type") for p in account.findall("e:Property", ns)}
    assert types["accountid"] == "Edm.Guid" and types["revenue"] == "Edm.Decimal"
    assert types["industrycode"] == "Edm.Int32" and types["creditonhold"] == "Edm.Boolean"
    assert types["modifiedon"] == "Edm.DateTimeOffset"
    assert types["_primarycontactid_value"] == "Edm.Guid"
    contact = doc.find(".//e:EntityType[@Name='contact']", ns)
    assert {p.get("Name"): p.get("Type") for p in contact.findall("e:Property", ns)}[
        "birthdate"] == "Edm.Date"
    nav = contact.find("e:NavigationProperty[@Name='parentcustomerid_account']", ns)
    assert nav.get("Type") == "mscrm.account"
    assert nav.find("e:ReferentialConstraint", ns).get("Property") == "_parentcustomerid_value"
    sets = {s.get("Name") for s in doc.findall(".//e:EntitySet", ns)}
    assert sets == {"accounts", "contacts", "new_projects"}
    annotated = etree.fromstring(dv.get("$metadata?annotations=true").content)
    fullname = annotated.find(".//e:EntityType[@Name='contact']/e:Property[@Name='fullname']",
                              ns)
    assert fullname.find("e:Annotation", ns).get("Term") == "Org.OData.Core.V1.Computed"
    tracking = annotated.find(".//e:EntitySet[@Name='new_projects']/e:Annotation", ns)
    assert tracking.find(".//e:PropertyValue", ns).get("Bool") == "false"


def test_entity_definitions_attributes(dv: Dv) -> None:
    resp = dv.get("EntityDefinitions(LogicalName='contact')/Attributes?$select=LogicalName,"
                  "IsValidForCreate,IsValidForUpdate,AttributeType")
    attrs = {a["LogicalName"]: a for a in resp.json()["value"]}
    assert attrs["fullname"]["IsValidForCreate"] is False
    assert attrs["lastname"]["IsValidForUpdate"] is True
    assert attrs["parentcustomerid"]["AttributeType"] == "Customer"
    entity = dv.get("EntityDefinitions(LogicalName='new_project')").json()
    assert entity["ChangeTrackingEnabled"] is False and entity["EntitySetName"] == "new_projects"


def test_bearer_tokens_user_and_app_and_the_401_challenge(dv: Dv) -> None:
    url = f"{dv.api}/accounts?$top=1"
    anonymous = requests.get(url, verify=str(dv.sbx.ca_path), timeout=10)
    assert anonymous.status_code == 401
    challenge = anonymous.headers["WWW-Authenticate"]
    assert challenge.startswith(f"Bearer authorization_uri={dv.sbx.urls['token']}/")
    assert challenge.endswith(f"resource_id={dv.base}/")
    graph_token = _app_token(dv.sbx, dv.sbx.urls.get("graph", "https://graph.microsoft.com"))
    wrong = requests.get(url, headers={"Authorization": f"Bearer {graph_token}"},
                         verify=str(dv.sbx.ca_path), timeout=10)
    assert wrong.status_code == 401  # a token for another resource
    user = requests.get(url, headers={"Authorization": f"Bearer {_user_token(dv.sbx, dv.base)}"},
                        verify=str(dv.sbx.ca_path), timeout=10)
    assert user.status_code == 200 and len(user.json()["value"]) == 1
    expired = dv.control.call("POST", "token", {"app": identities.CLIENT_ID,
                                                "lifetime_s": -10})["access_token"]
    late = requests.get(url, headers={"Authorization": f"Bearer {expired}"},
                        verify=str(dv.sbx.ca_path), timeout=10)
    assert late.status_code == 401 and "authorization_uri=" in late.headers["WWW-Authenticate"]
    assert dv.get("WhoAmI").json()["UserId"]
    assert dv.control.stats()["rejected_requests"] == 3


# -- reads ------------------------------------------------------------------------------------

def test_paging_honours_maxpagesize(dv: Dv) -> None:
    dv.control.call("POST", "seed", {"set": "accounts", "count": 110})
    seen: list[str] = []
    url: str | None = f"{dv.api}/accounts?$select=name&$orderby=name"
    pages = []
    while url:
        resp = dv.session.get(url, headers={"Prefer": "odata.maxpagesize=50"}, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.headers["Preference-Applied"] == "odata.maxpagesize=50"
        body = resp.json()
        pages.append(len(body["value"]))
        seen += [r["accountid"] for r in body["value"]]
        url = body.get("@odata.nextLink")
    assert pages == [50, 50, 30]
    assert dv.get("accounts/$count").text == "130"
    assert len(set(seen)) == 130 == len(dv.rows("accounts"))
    assert dv.control.stats()["requests"]["accounts.list"] == 3
    capped = dv.get("accounts?$select=name", Prefer="odata.maxpagesize=9000").json()
    assert len(capped["value"]) == 130 and "@odata.nextLink" not in capped
    top = dv.get("accounts?$select=name&$top=60", Prefer="odata.maxpagesize=50").json()
    assert len(top["value"]) == 60 and "@odata.nextLink" not in top
    _error(dv.get("accounts?$skip=10"), 400, "0x80060888")  # Dataverse has no $skip


def test_filter_select_orderby_top_count(dv: Dv) -> None:
    accounts = dv.rows("accounts")
    contacts = dv.rows("contacts")
    obrien = [c for c in contacts if c["lastname"] == "O'Brien"]
    assert obrien, "demo data has an O'Brien"
    body = dv.get("contacts?$select=lastname&$filter=" + quote("lastname eq 'O''Brien'")).json()
    assert {r["contactid"] for r in body["value"]} == {c["contactid"] for c in obrien}
    assert set(body["value"][0]) == {"@odata.etag", "lastname", "contactid"}
    # case-insensitive like Dataverse, functions, and/or/not, parentheses
    q = ("(contains(name,'TOSO') or startswith(name,'fabrikam')) and not "
         "(numberofemployees lt 100) and revenue ge 0 and creditonhold eq false")
    got = {r["accountid"] for r in dv.get("accounts?$filter=" + quote(q)).json()["value"]}
    want = {a["accountid"] for a in accounts
            if ("toso" in a["name"].lower() or a["name"].lower().startswith("fabrikam"))
            and a["numberofemployees"] >= 100 and not a["creditonhold"]}
    assert got == want and got
    some = accounts[3]
    by_id = dv.get(f"accounts?$filter=accountid eq {some['accountid']}").json()["value"]
    assert [r["name"] for r in by_id] == [some["name"]]
    no_contact = dv.get("accounts?$filter=_primarycontactid_value eq null").json()["value"]
    assert len(no_contact) == sum(1 for a in accounts if a["_primarycontactid_value"] is None)
    born = dv.get("contacts?$filter=birthdate ge 1980-01-01 and endswith(emailaddress1,"
                  "'example.com')").json()["value"]
    assert len(born) == sum(1 for c in contacts if c["birthdate"] >= "1980-01-01")
    created = dv.get("accounts?$filter=createdon lt 2026-01-10T00:00:00Z").json()["value"]
    assert len(created) == sum(1 for a in accounts if a["createdon"] < "2026-01-10T00:00:00Z")
    top = dv.get("accounts?$select=name,revenue&$orderby=revenue desc,name&$top=5&$count=true"
                 ).json()
    assert [r["revenue"] for r in top["value"]] == sorted(
        (a["revenue"] for a in accounts), reverse=True)[:5]
    assert top["@odata.count"] == 20
    assert top["@odata.context"] == f"{dv.api}/$metadata#accounts(name,revenue)"


def test_query_errors_have_dataverse_shape(dv: Dv) -> None:
    message = _error(dv.get("accounts?$select=nope"), 400, "0x80060888")
    assert message == "Could not find a property named 'nope' on type " \
                      "'Microsoft.Dynamics.CRM.account'."
    _error(dv.get("accounts?$filter=name eq"), 400, "0x80060888")
    _error(dv.get("accounts?$filter=" + quote("tolower(name) eq 'a'")), 400, "0x80060888")
    message = _error(dv.get("accounts?$filter=numberofemployees eq 'ten'"), 400, "0x80060888")
    assert "incompatible types" in message
    _error(dv.get("accounts?$filter=name eq 'unterminated"), 400, "0x80060888")
    _error(dv.get("accounts?$bogus=1"), 400, "0x80060888")
    _error(dv.get("nothings"), 404, "0x80060888")
    missing = "00000000-0000-0000-0000-000000000001"
    assert _error(dv.get(f"accounts({missing})"), 404, "0x80040217") == \
        f"account With Id = {missing} Does Not Exist"


def test_plus_in_the_query_is_a_space(dv: Dv) -> None:
    created = dv.send("POST", "accounts", {"name": "A+B"})
    assert created.status_code == 204
    encoded = dv.get("accounts?$filter=name%20eq%20'A%2BB'").json()["value"]
    assert [r["name"] for r in encoded] == ["A+B"]
    assert dv.get("accounts?$filter=name+eq+'A+B'").json()["value"] == []  # 'A B'
    dv.send("POST", "accounts", {"name": "A B"})
    assert [r["name"] for r in dv.get("accounts?$filter=name+eq+'A+B'").json()["value"]] == \
        ["A B"]


def test_formatted_values_lookups_and_expand(dv: Dv) -> None:
    accounts = {a["accountid"]: a for a in dv.rows("accounts")}
    prefer = f'odata.include-annotations="{FORMATTED}"'
    resp = dv.get("contacts?$select=fullname,_parentcustomerid_value,gendercode,birthdate",
                  Prefer=prefer)
    assert resp.headers["Preference-Applied"] == prefer
    row = resp.json()["value"][0]
    parent = accounts[row["_parentcustomerid_value"]]
    assert row[f"_parentcustomerid_value@{FORMATTED}"] == parent["name"]
    assert row[f"gendercode@{FORMATTED}"] in ("Male", "Female")
    assert "_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname" not in row
    star = dv.get("contacts?$select=_parentcustomerid_value&$top=1",
                  Prefer='odata.include-annotations="*"').json()["value"][0]
    assert star["_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    assert star["_parentcustomerid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"] \
        == "parentcustomerid_account"
    account = dv.get("accounts?$select=industrycode,revenue,statecode&$top=1",
                     Prefer=prefer).json()["value"][0]
    assert account[f"statecode@{FORMATTED}"] == "Active"
    assert account[f"revenue@{FORMATTED}"].startswith("$")
    plain = dv.get("accounts?$top=1").json()["value"][0]
    assert not [k for k in plain if FORMATTED in k]
    expanded = dv.get("contacts?$select=fullname&$top=3&$expand=parentcustomerid_account("
                      "$select=name)").json()["value"]
    for c in expanded:
        nested = c["parentcustomerid_account"]
        assert set(nested) == {"@odata.etag", "name", "accountid"}


# -- writes -----------------------------------------------------------------------------------

def test_create_204_or_201_client_ids_and_binds(dv: Dv) -> None:
    contact = dv.rows("contacts")[0]["contactid"]
    resp = dv.send("POST", "accounts", {"name": "New Co", "industrycode": 7,
                                        "primarycontactid@odata.bind": f"/contacts({contact})"})
    assert resp.status_code == 204 and resp.content == b""
    entity_id = resp.headers["OData-EntityId"]
    assert entity_id.startswith(f"{dv.api}/accounts(")
    key = entity_id.split("(")[1].rstrip(")")
    got = dv.get(f"accounts({key})?$select=name,_primarycontactid_value")
    assert got.json()["_primarycontactid_value"] == contact
    assert got.headers["ETag"] == got.json()["@odata.etag"]
    own = "5f0c1d0e-1111-4222-8333-444455556666"
    rep = dv.send("POST", "contacts?$select=fullname,contactid,_parentcustomerid_value",
                  {"contactid": own, "firstname": "Ada", "lastname": "Lovelace",
                   "birthdate": "1815-12-10", "parentcustomerid_account@odata.bind":
                   f"accounts({key})"}, Prefer="return=representation")
    assert rep.status_code == 201, rep.text
    assert rep.json()["contactid"] == own and rep.json()["fullname"] == "Ada Lovelace"
    assert rep.json()["_parentcustomerid_value"] == key
    _error(dv.send("POST", "contacts", {"contactid": own, "lastname": "Again"}), 412,
           "0x80040237")
    missing = "00000000-0000-0000-0000-0000000000aa"
    _error(dv.send("POST", "contacts", {"lastname": "X", "parentcustomerid_account@odata.bind":
                                        f"/accounts({missing})"}), 404, "0x80040217")
    stats = dv.control.stats()["requests"]
    assert stats["accounts.create"] == 1 and stats["contacts.create"] == 3


def test_strict_bodies(dv: Dv) -> None:
    message = _error(dv.send("POST", "accounts", {"name": "X", "x": 1}), 400, "0x80060888")
    assert message.startswith("The property 'x' does not exist on type "
                              "'Microsoft.Dynamics.CRM.account'.")
    _error(dv.send("POST", "accounts", {"numberofemployees": "12"}), 400, "0x80060888")
    _error(dv.send("POST", "accounts", {"creditonhold": 1}), 400, "0x80060888")
    _error(dv.send("POST", "contacts", {"birthdate": "1990-02-30"}), 400, "0x80060888")
    _error(dv.send("POST", "contacts", {"fullname": "Read Only"}), 400, "0x80040203")
    _error(dv.send("POST", "accounts", {"createdon": "2020-01-01T00:00:00Z"}), 400, "0x80040203")
    _error(dv.send("POST", "accounts", {"industrycode": 99}), 400, "0x8004431A")
    _error(dv.send("POST", "accounts", {"name": "x" * 161}), 400, "0x80044331")
    _error(dv.send("POST", "contacts", {"_parentcustomerid_value": dv.rows("accounts")[0][
        "accountid"]}), 400, "0x80060888")
    assert len(dv.rows("accounts")) == 20  # nothing was created


def test_etags_412_upsert_and_conditional_get(dv: Dv) -> None:
    key = dv.rows("accounts")[0]["accountid"]
    first = dv.get(f"accounts({key})?$select=name")
    etag = first.headers["ETag"]
    assert etag.startswith('W/"')
    assert dv.get(f"accounts({key})?$select=name", **{"If-None-Match": etag}).status_code == 304
    dv.control.call("PATCH", f"rows/accounts/{key}", {"name": "Changed behind your back"})
    _error(dv.send("PATCH", f"accounts({key})", {"name": "Mine"}, **{"If-Match": etag}), 412,
           "0x80060882")
    fresh = dv.get(f"accounts({key})?$select=name").headers["ETag"]
    ok = dv.send("PATCH", f"accounts({key})", {"name": "Mine"}, **{"If-Match": fresh})
    assert ok.status_code == 204 and ok.headers["ETag"] != fresh
    assert dv.send("PATCH", f"accounts({key})", {"telephone1": "1"},
                   **{"If-Match": "*"}).status_code == 204
    _error(dv.send("PATCH", f"accounts({key})", {"name": "Dup"}, **{"If-None-Match": "*"}), 412,
           "0x80040237")
    new = "7a1b2c3d-0000-4000-8000-000000000001"
    _error(dv.send("PATCH", f"accounts({new})", {"name": "No"}, **{"If-Match": "*"}), 404,
           "0x80040217")
    upsert = dv.send("PATCH", f"accounts({new})", {"name": "Upserted"},
                     Prefer="return=representation")
    assert upsert.status_code == 201 and upsert.json()["name"] == "Upserted"
    updated = dv.send("PATCH", f"accounts({new})?$select=name", {"name": "Again"},
                      Prefer="return=representation")
    assert updated.status_code == 200 and set(updated.json()) == {
        "@odata.context", "@odata.etag", "name", "accountid"}
    stale = updated.json()["@odata.etag"]
    dv.send("PATCH", f"accounts({new})", {"name": "Third"})
    _error(dv.send("DELETE", f"accounts({new})", **{"If-Match": stale}), 412, "0x80060882")
    assert dv.send("DELETE", f"accounts({new})").status_code == 204
    _error(dv.send("DELETE", f"accounts({new})"), 404, "0x80040217")
    stats = dv.control.stats()["requests"]
    assert stats["accounts.upsert"] == 1 and stats["accounts.delete"] == 3


# -- change tracking --------------------------------------------------------------------------

def _track(dv: Dv, url: str, page: int = 7) -> tuple[list[dict[str, Any]], str]:
    """Follow nextLinks to the deltaLink: (all entries, deltaLink)."""
    entries: list[dict[str, Any]] = []
    while True:
        resp = dv.session.get(url, headers={"Prefer": f"odata.track-changes,"
                                            f"odata.maxpagesize={page}"}, timeout=30)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["@odata.context"].endswith("/$delta")
        entries += body["value"]
        if "@odata.deltaLink" in body:
            return entries, body["@odata.deltaLink"]
        url = body["@odata.nextLink"]


def test_change_tracking_with_deletes(dv: Dv) -> None:
    rows, link = _track(dv, f"{dv.api}/accounts?$select=name,revenue")
    assert len(rows) == 20 and "$deltatoken=" in link and "$select=name,revenue" in link
    accounts = dv.rows("accounts")
    gone, changed, behind = (a["accountid"] for a in accounts[:3])
    contact_of_gone = [c["contactid"] for c in dv.rows("contacts")
                       if c["_parentcustomerid_value"] == gone]
    assert dv.send("DELETE", f"accounts({gone})").status_code == 204
    dv.send("PATCH", f"accounts({changed})", {"revenue": 1.5})
    dv.control.call("PATCH", f"rows/accounts/{behind}", {"name": "Behind"})
    created = dv.send("POST", "accounts", {"name": "Fresh"}).headers["OData-EntityId"]
    entries, link2 = _track(dv, link, page=2)
    deleted = [e for e in entries if "reason" in e]
    assert deleted == [{"@odata.context": f"{dv.api}/$metadata#accounts/$deletedEntity",
                        "id": gone, "reason": "deleted"}]
    rows = {e["accountid"]: e for e in entries if "reason" not in e}
    assert set(rows) == {changed, behind, created.split("(")[1].rstrip(")")}
    assert rows[changed]["revenue"] == 1.5 and rows[behind]["name"] == "Behind"
    assert set(rows[changed]) == {"@odata.etag", "name", "revenue", "accountid"}
    assert _track(dv, link2)[0] == []
    # contacts of the deleted account lost their parent: they show up in the contacts feed
    assert contact_of_gone and all(c["_parentcustomerid_value"] is None
                                   for c in dv.rows("contacts") if c["contactid"] in
                                   contact_of_gone)
    _, contacts_link = _track(dv, f"{dv.api}/contacts?$select=fullname")
    children = {c["contactid"] for c in dv.rows("contacts")
                if c["_parentcustomerid_value"] == changed}
    dv.send("DELETE", f"accounts({changed})")
    assert children and {e["contactid"] for e in _track(dv, contacts_link)[0]} == children
    stats = dv.control.stats()["requests"]
    assert stats["accounts.track"] >= 3 and stats["accounts.delta"] >= 2


def test_change_tracking_refusals_and_expiry(dv: Dv) -> None:
    resp = dv.get("new_projects?$select=new_name", Prefer="odata.track-changes")
    assert _error(resp, 400, "0x80072491") == \
        "Entity new_project isn't enabled for change tracking."
    assert dv.get("new_projects?$filter=modifiedon ge 2026-01-01T00:00:00Z").status_code == 200
    _error(dv.get("accounts?$filter=name eq 'x'", Prefer="odata.track-changes"), 400,
           "0x80060888")
    _, link = _track(dv, f"{dv.api}/accounts?$select=name")
    assert dv.session.get(link, timeout=30).status_code == 200
    dv.control.faults(expire_cursors=True)
    message = _error(dv.session.get(link, timeout=30), 400, "0x80044352")
    assert message.startswith("Version stamp associated with the client has expired")
    _, fresh = _track(dv, f"{dv.api}/accounts?$select=name")  # a full sync gets a new token
    assert dv.session.get(fresh, timeout=30).status_code == 200
    dv.control.clear_faults()
    dv.control.call("POST", "expire-delta-tokens")
    _error(dv.session.get(fresh, timeout=30), 400, "0x80044352")
    _error(dv.get("accounts?$deltatoken=garbage"), 400, "0x80060888")
    _, before_reset = _track(dv, f"{dv.api}/accounts?$select=name")
    dv.control.reset()  # the data is new: tokens of the old data are expired
    _error(dv.session.get(before_reset, timeout=30), 400, "0x80044352")


# -- throttling, counters, persistence --------------------------------------------------------

def test_throttling_answers_429_with_retry_after(dv: Dv) -> None:
    dv.control.faults(throttle_fraction=1.0, throttle_ms=1500)
    resp = dv.get("accounts?$top=1")
    assert _error(resp, 429, "0x80072322").startswith("Number of requests exceeded the limit")
    assert resp.headers["Retry-After"] == "2"
    dv.control.faults(throttle_hint=False)
    assert "Retry-After" not in dv.get("accounts?$top=1").headers
    batch = dv.session.post(f"{dv.api}/$batch", json={"requests": [
        {"id": "1", "method": "POST", "url": "accounts", "body": {"name": "T"}}]}, timeout=30)
    assert batch.status_code == 429
    stats = dv.control.stats()
    assert stats["throttled"] == 3 and "accounts.create" not in stats["requests"]
    dv.control.clear_faults()
    assert dv.get("accounts?$top=1").status_code == 200
    assert len(dv.rows("accounts")) == 20


def test_state_survives_a_restart(tmp_path: Any) -> None:
    from l2sync_dagster.sandbox.server import start_sandbox

    state = tmp_path / "state"
    sbx = start_sandbox(state_dir=state, only=["dataverse"])
    control = SandboxControl("dataverse", sbx.urls["dataverse"], sbx.ca_path)
    try:
        token = control.call("POST", "token", {"user": identities.SERVICE_USER})["access_token"]
        resp = requests.post(f"{sbx.urls['dataverse']}{API}/accounts", json={"name": "Kept"},
                             headers={"Authorization": f"Bearer {token}"},
                             verify=str(sbx.ca_path), timeout=10)
        assert resp.status_code == 204, resp.text
    finally:
        sbx.stop()
    saved = json.loads((state / "dataverse.json").read_text())
    assert any(r["name"] == "Kept" for r in saved["rows"]["accounts"].values())
    again = start_sandbox(state_dir=state, only=["dataverse"])
    try:
        rows = SandboxControl("dataverse", again.urls["dataverse"], again.ca_path).call(
            "GET", "rows/accounts")["value"]
        assert len(rows) == 21 and any(r["name"] == "Kept" for r in rows)
    finally:
        again.stop()
