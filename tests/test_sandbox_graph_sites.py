"""The Graph sandbox's SharePoint part: sites by path, lists, columns, items with fields checked
against the columns, paging, item delta; and persistence with ``--state``."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_process import SandboxProcess
from test_sandbox_graph import Graph, _error, msal_app_token

SITE_PATH = "/sites/sandbox.sharepoint.com:/sites/sales"


@pytest.fixture(scope="module")
def app_token(sandbox: SandboxProcess) -> str:
    """One app token for the module."""
    if "graph" not in sandbox.urls or "token" not in sandbox.urls:
        pytest.fail("the sandbox has no graph or token service")
    return msal_app_token(sandbox, sandbox.urls["graph"])


@pytest.fixture
def graph(sandbox: SandboxProcess, app_token: str) -> Iterator[Graph]:
    """A client; Graph reset around the test; no invalid response allowed during it."""
    client = Graph(sandbox, app_token)
    # a reset clears the counters: fail rather than hide what earlier tests left behind
    earlier = client.control.stats()["invalid_responses"]
    assert not earlier, f"invalid Graph responses recorded before this test: {earlier}"
    client.control.reset()
    yield client
    bad = client.control.stats()["invalid_responses"]
    client.control.reset()
    assert not bad, bad


@pytest.fixture
def customers(graph: Graph) -> str:
    """Path of the demo ``Customers`` list, found the way a provider finds it."""
    site = graph.ok("GET", SITE_PATH)
    lists = graph.ok("GET", f"/sites/{site['id']}/lists?$filter=displayName eq 'Customers'")
    assert [x["displayName"] for x in lists["value"]] == ["Customers"]
    return f"/sites/{site['id']}/lists/{lists['value'][0]['id']}"


def test_site_by_path_lists_and_columns(graph: Graph, customers: str) -> None:
    site = graph.ok("GET", SITE_PATH)
    assert site["webUrl"] == "https://sandbox.sharepoint.com/sites/sales"
    assert site["id"].startswith("sandbox.sharepoint.com,")
    by_name = graph.ok("GET", f"/sites/{site['id']}/lists/Customers")
    assert customers.endswith(by_name["id"])
    via_path = graph.ok("GET", f"{SITE_PATH}:/lists/Customers")
    assert via_path["id"] == by_name["id"]
    _error(graph.call("GET", "/sites/sandbox.sharepoint.com:/sites/nowhere"), 404, "itemNotFound")
    columns = {c["name"]: c for c in graph.ok("GET", f"{customers}/columns")["value"]}
    kinds = {name: next(k for k in ("text", "number", "boolean", "dateTime", "choice",
                                    "personOrGroup", "currency", "lookup") if k in col)
             for name, col in columns.items()}
    assert {k: kinds[k] for k in ("Title", "Revenue", "Active", "Since", "Tier", "Owner")} == {
        "Title": "text", "Revenue": "currency", "Active": "boolean", "Since": "dateTime",
        "Tier": "choice", "Owner": "personOrGroup"}
    assert columns["Tier"]["choice"]["choices"] == ["Gold", "Silver", "Bronze"]
    assert all(columns[n]["readOnly"] for n in ("ID", "Created", "Modified", "Author", "Editor"))
    assert columns["ContentType"]["hidden"] and not columns["Title"]["readOnly"]


def test_item_create_update_delete_and_field_checks(graph_schema: None, graph: Graph,
                                                    customers: str) -> None:
    created = graph.ok("POST", f"{customers}/items", 201, json={"fields": {
        "Title": "Contoso", "City": "Oslo", "Revenue": 1250.5, "Active": True,
        "Since": "2020-05-01T00:00:00Z", "Tier": "Gold", "OwnerLookupId": 8}})
    item_id = created["id"]
    fields = created["fields"]
    assert fields["Title"] == "Contoso" and fields["OwnerLookupId"] == "8"
    assert fields["AuthorLookupId"] and fields["Created"] and item_id == "6"
    patched = graph.ok("PATCH", f"{customers}/items/{item_id}/fields", json={"City": "Bergen"},
                       headers={"If-Match": created["@odata.etag"]})
    assert patched["City"] == "Bergen" and patched["Title"] == "Contoso"
    stale = graph.call("PATCH", f"{customers}/items/{item_id}/fields", json={"City": "x"},
                       headers={"If-Match": created["@odata.etag"]})
    _error(stale, 412, "resourceModified")
    one = graph.ok("GET", f"{customers}/items/{item_id}?expand=fields(select=City,Title)")
    assert {k for k in one["fields"] if not k.startswith("@")} == {"City", "Title"}
    assert one["lastModifiedDateTime"] >= created["lastModifiedDateTime"]
    before = graph.control.stats()["rejected_requests"]
    for bad, message in (({"Nope": 1}, "Field 'Nope' is not recognized"),
                         ({"Created": "2020-01-01T00:00:00Z"}, "Field 'Created' is read-only"),
                         ({"Revenue": "lots"}, "not a valid currency"),
                         ({"Tier": "Platinum"}, "not a valid choice"),
                         ({"Active": "yes"}, "not a valid boolean")):
        resp = graph.call("PATCH", f"{customers}/items/{item_id}/fields", json=bad)
        assert message in _error(resp, 400, "invalidRequest")
    unknown_prop = graph.call("POST", f"{customers}/items", json={"fieldz": {"Title": "x"}})
    assert "fieldz" in _error(unknown_prop, 400, "invalidRequest")
    assert graph.control.stats()["rejected_requests"] == before + 6
    graph.ok("DELETE", f"{customers}/items/{item_id}", 204)
    _error(graph.call("GET", f"{customers}/items/{item_id}"), 404, "itemNotFound")
    ops = graph.control.stats()["requests"]
    assert ops["listItems.create"] == 2 and ops["listItems.delete"] == 1
    assert ops["listItems.update"] == 7


def test_item_paging_and_filters(graph: Graph, customers: str) -> None:
    graph.control.call("POST", "seed/items", {"list": "Customers", "count": 445})
    items, pages = graph.all_pages(f"{customers}/items")
    assert len(items) == 450 and pages == 3  # 200 per page by default
    assert len({i["id"] for i in items}) == 450 and "fields" not in items[0]
    items, pages = graph.all_pages(f"{customers}/items?$top=5000&expand=fields")
    assert pages == 1 and all("Title" in i["fields"] for i in items)
    _error(graph.call("GET", f"{customers}/items?$top=5001"), 400, "BadRequest")
    oslo = graph.ok("GET", f"{customers}/items?$filter=fields/City eq 'London'"
                    "&expand=fields(select=City)")["value"]
    assert oslo and all(i["fields"]["City"] == "London" for i in oslo)
    not_indexed = graph.call("GET", f"{customers}/items?$filter=fields/Tier eq 'Gold'")
    assert "not indexed" in _error(not_indexed, 400, "invalidRequest")
    gold = graph.ok("GET", f"{customers}/items?$filter=fields/Tier eq 'Gold' and "
                    "fields/Revenue ge 100000&expand=fields",
                    headers={"Prefer": "HonorNonIndexedQueriesWarningMayFailRandomly"})
    assert gold["value"] and all(i["fields"]["Tier"] == "Gold" and i["fields"]["Revenue"]
                                 >= 100000 for i in gold["value"])
    since = graph.ok("GET", f"{customers}/items?$filter=fields/Since ge '2017-01-01T00:00:00Z' "
                     "and fields/Since lt '2019-01-01T00:00:00Z'&expand=fields&$top=5000",
                     headers={"Prefer": "HonorNonIndexedQueriesWarningMayFailRandomly"})
    years = {i["fields"]["Since"][:4] for i in since["value"]}
    assert years == {"2017", "2018"}


def test_item_delta_with_deleted_facet_and_resync(graph: Graph, customers: str) -> None:
    prefer = {"Prefer": "odata.maxpagesize=2"}
    first, link, pages = graph.delta_round(f"{customers}/items/delta", headers=prefer)
    assert len(first) == 5 and pages == 3 and all("fields" in i for i in first)
    graph.ok("PATCH", f"{customers}/items/1/fields", json={"Title": "Renamed"})
    graph.ok("DELETE", f"{customers}/items/2", 204)
    changes, link2, _ = graph.delta_round(link)
    by_id = {c["id"]: c for c in changes}
    assert by_id["1"]["fields"]["Title"] == "Renamed"
    assert by_id["2"]["deleted"] == {"state": "deleted"}
    graph.control.call("POST", "expire-delta")
    resp = graph.call("GET", link2)
    _error(resp, 410, "resyncRequired")
    assert "/items/delta" in resp.headers["Location"]


def test_create_list_with_columns_via_graph(graph: Graph) -> None:
    site = graph.ok("GET", SITE_PATH)
    created = graph.ok("POST", f"/sites/{site['id']}/lists", 201, json={
        "displayName": "Projects", "list": {"template": "genericList"},
        "columns": [{"name": "Budget", "number": {}}, {"name": "Lead", "personOrGroup": {}},
                    {"name": "Phase", "choice": {"choices": ["Plan", "Build"]}}]})
    path = f"/sites/{site['id']}/lists/{created['id']}"
    item = graph.ok("POST", f"{path}/items", 201, json={
        "fields": {"Title": "Apollo", "Budget": 12, "LeadLookupId": 7, "Phase": "Build"}})
    assert item["fields"]["LeadLookupId"] == "7"
    bad = graph.call("POST", f"{path}/items", json={"fields": {"Lead": "someone"}})
    assert "LookupId" in _error(bad, 400, "invalidRequest")
    _error(graph.call("POST", f"/sites/{site['id']}/lists", json={"displayName": "Projects"}),
           409, "nameAlreadyExists")


def test_state_survives_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = SandboxProcess.start(state, "--only", "token", "--only", "graph")
    try:
        client = Graph(first, msal_app_token(first, first.urls["graph"]))
        created = client.ok("POST", "/users/sync@sandbox.test/contacts", 201,
                            json={"givenName": "Persistent", "surname": "Person"})
    finally:
        assert first.stop() == 0
    old_auth = client.session.headers["Authorization"]
    second = SandboxProcess.start(state, "--only", "token", "--only", "graph")
    try:
        client = Graph(second, msal_app_token(second, second.urls["graph"]))
        again = client.ok("GET", f"/users/sync@sandbox.test/contacts/{created['id']}")
        assert again["givenName"] == "Persistent"
        # tokens are not persisted; expiring them (control API) makes Graph answer 401
        stale = client.call("GET", "/users", headers={"Authorization": old_auth})
        _error(stale, 401, "InvalidAuthenticationToken")
        second.control("token").call("POST", "expire")
        _error(client.call("GET", "/users"), 401, "InvalidAuthenticationToken")
        assert second.invalid_responses() == {}
    finally:
        second.stop()


def test_control_api_sites_lists_seed_and_inspect(graph: Graph) -> None:
    site = graph.control.call("POST", "sites", {"hostname": "sandbox.sharepoint.com",
                                                "path": "/sites/hr", "displayName": "HR"})
    created = graph.control.call("POST", "lists", {
        "site": "sandbox.sharepoint.com:/sites/hr", "displayName": "Staff",
        "columns": [{"name": "Salary", "type": "number", "indexed": True},
                    {"name": "Grade", "type": "choice", "choices": ["A", "B"]}]})
    seeded = graph.control.call("POST", "seed/items", {"site": "sandbox.sharepoint.com:/sites/hr",
                                                       "list": "Staff", "count": 12})
    assert seeded == {"created": 12, "list": created["id"]}
    fetched = graph.ok("GET", "/sites/sandbox.sharepoint.com:/sites/hr")
    assert fetched["id"] == site["id"] and fetched["displayName"] == "HR"
    items = graph.control.call("POST", "inspect", {
        "path": f"/sites/{site['id']}/lists/Staff/items?expand=fields&$top=5"})
    assert len(items) == 12 and all(set(i["fields"]) >= {"Title", "ID"} for i in items)
    assert "listItems.list" not in graph.control.stats()["requests"]  # inspect is not counted
