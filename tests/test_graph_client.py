"""GraphClient with the real msal and requests against the sandbox Graph server: paging, delta
(deletes, 410 resync), $batch (20 per call, per-request results, dependsOn), throttling,
dropped connections, token refresh, error codes, the per-mailbox concurrency limit."""

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sandbox_process import SandboxProcess

from l2sync_dagster.providers.base import ProviderError
from l2sync_dagster.providers.graph import BatchRequest, GraphClient, GraphError
from l2sync_dagster.providers.graph.throttle import AppBudget, RetryPolicy, parse_retry_after
from l2sync_dagster.spec.connection_string import ConnectionString

SECRET_ENV = "GRAPH_CLIENT_TEST_SECRET"
MAILBOX = "alice@sandbox.test"
FAST = RetryPolicy(max_retries=8, base_s=0.02, cap_s=0.2)


def graph_cs(sandbox: SandboxProcess, extra: str = "") -> ConnectionString:
    """Client credentials for the sandbox's Graph server."""
    return ConnectionString(
        f"GraphURL={sandbox.urls['graph']}/v1.0;Authority={sandbox.urls['token']}/sandbox;"
        f"ClientId=l2sync-sandbox;ClientSecret=env:{SECRET_ENV};CABundle={sandbox.ca_path}"
        + (";" + extra if extra else ""))


@pytest.fixture
def client(sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphClient]:
    monkeypatch.setenv(SECRET_ENV, "sandbox")
    control = sandbox.control("graph")
    control.reset()
    c = GraphClient.from_connection_string(graph_cs(sandbox), retry=FAST)
    c.budget = AppBudget()  # no pause another test's throttled answers left in the process
    yield c
    control.clear_faults()


def _folder(client: GraphClient, name: str) -> str:
    folder = client.request("POST", f"/users/{MAILBOX}/contactFolders",
                            body={"displayName": name}).json()
    return str(folder["id"])


def _create_contacts(client: GraphClient, folder: str, n: int, prefix: str = "c"
                     ) -> list[dict[str, Any]]:
    reqs = [BatchRequest(f"{i}", "POST", f"/users/{MAILBOX}/contactFolders/{folder}/contacts",
                         body={"givenName": f"{prefix}{i}", "surname": "Test"})
            for i in range(n)]
    results = client.batch(reqs, mailbox=MAILBOX)
    assert all(r.status == 201 for r in results), [r.error() for r in results if not r.ok]
    return [r.body for r in results]


def test_token_scope_and_stats(client: GraphClient, sandbox: SandboxProcess) -> None:
    assert client.auth.scope == f"{sandbox.urls['graph']}/.default"
    me = client.get(f"/users/{MAILBOX}")
    assert me["userPrincipalName"] == MAILBOX
    assert client.stats()["requests"] == 1


def test_paging_follows_next_link(client: GraphClient) -> None:
    folder = _folder(client, "Paging")
    created = _create_contacts(client, folder, 45)
    client.reset_stats()
    pages = list(client.pages(f"/users/{MAILBOX}/contactFolders/{folder}/contacts",
                              headers={"Prefer": "odata.maxpagesize=10"}, mailbox=MAILBOX))
    assert [len(p["value"]) for p in pages] == [10, 10, 10, 10, 5]
    ids = [c["id"] for p in pages for c in p["value"]]
    assert sorted(ids) == sorted(c["id"] for c in created)
    assert client.stats()["requests"] == 5


def test_batch_chunks_of_20_with_per_request_results(graph_schema: None, client: GraphClient,
                                                     sandbox: SandboxProcess) -> None:
    folder = _folder(client, "Batch")
    base = f"/users/{MAILBOX}/contactFolders/{folder}/contacts"
    control = sandbox.control("graph")
    control.reset_stats()
    client.reset_stats()
    created = _create_contacts(client, folder, 41)
    assert client.stats()["requests"] == 3  # 20 + 20 + 1
    assert control.stats()["requests"].get("batch", 0) == 3
    # one bad request does not fail the others
    reqs = [BatchRequest("ok", "PATCH", f"{base}/{created[0]['id']}",
                         body={"jobTitle": "Boss"}),
            BatchRequest("missing", "PATCH", f"{base}/AAMkNoSuchItem",
                         body={"jobTitle": "Nobody"}),
            BatchRequest("unknown", "PATCH", f"{base}/{created[1]['id']}",
                         body={"noSuchProperty": 1})]
    ok, missing, unknown = client.batch(reqs, mailbox=MAILBOX)
    assert ok.ok and ok.body["jobTitle"] == "Boss"
    assert missing.status == 404 and "ErrorItemNotFound" in missing.error()
    assert unknown.status == 400 and not unknown.ok
    assert client.get(f"{base}/{created[0]['id']}")["jobTitle"] == "Boss"


def test_batch_depends_on(client: GraphClient) -> None:
    folder = _folder(client, "Depends")
    (first,) = _create_contacts(client, folder, 1)
    base = f"/users/{MAILBOX}/contactFolders/{folder}/contacts"
    url = f"{base}/{first['id']}"
    reqs = [BatchRequest("a", "PATCH", url, body={"jobTitle": "one"}),
            BatchRequest("b", "PATCH", url, body={"department": "two"}, depends_on=["a"]),
            BatchRequest("c", "PATCH", f"{base}/AAMkGone",
                         body={"department": "x"}),
            BatchRequest("d", "PATCH", url, body={"department": "never"}, depends_on=["c"])]
    a, b, c, d = client.batch(reqs, mailbox=MAILBOX)
    assert a.ok and b.ok
    assert c.status == 404
    assert d.status == 424  # failed dependency: not executed
    got = client.get(url)
    assert (got["jobTitle"], got["department"]) == ("one", "two")


def test_delta_changes_deletes_and_last_version_wins(client: GraphClient) -> None:
    folder = _folder(client, "Delta")
    created = _create_contacts(client, folder, 30)
    path = f"/users/{MAILBOX}/contactFolders/{folder}/contacts/delta"
    first = client.delta(path, params={"$select": "givenName,surname"},
                         headers={"Prefer": "odata.maxpagesize=7"}, mailbox=MAILBOX)
    assert first.full and not first.resynced and first.pages == 5
    assert len(first.items) == 30 and first.delta_link
    # nothing changed: an empty round
    again = client.delta(path, delta_link=first.delta_link, mailbox=MAILBOX)
    assert not again.full and again.items == [] and again.removed == []
    # update one twice, delete two (one of them updated first), create one
    c0, c1, c2 = created[0]["id"], created[1]["id"], created[2]["id"]
    base = f"/users/{MAILBOX}/contactFolders/{folder}/contacts"
    client.request("PATCH", f"{base}/{c0}", body={"givenName": "first"})
    client.request("PATCH", f"{base}/{c0}", body={"givenName": "second"})
    client.request("PATCH", f"{base}/{c1}", body={"givenName": "gone"})
    client.request("DELETE", f"{base}/{c1}")
    client.request("DELETE", f"{base}/{c2}")
    (new,) = _create_contacts(client, folder, 1, prefix="new")
    changes = client.delta(path, delta_link=again.delta_link, mailbox=MAILBOX)
    assert not changes.full
    by_id = {i["id"]: i for i in changes.items}
    assert set(by_id) == {c0, new["id"]}
    assert by_id[c0]["givenName"] == "second"
    assert sorted(changes.removed) == sorted([c1, c2])


def test_expired_delta_link_resyncs_instead_of_crashing(client: GraphClient,
                                                        sandbox: SandboxProcess) -> None:
    folder = _folder(client, "Expire")
    _create_contacts(client, folder, 5)
    path = f"/users/{MAILBOX}/contactFolders/{folder}/contacts/delta"
    first = client.delta(path, mailbox=MAILBOX)
    sandbox.control("graph").faults(expire_cursors=True)
    with pytest.raises(GraphError) as info:
        client.get(first.delta_link or "", mailbox=MAILBOX)
    assert info.value.status == 410
    sandbox.control("graph").clear_faults()
    sandbox.control("graph").faults(expire_cursors=True)
    result = client.delta(path, delta_link=first.delta_link, mailbox=MAILBOX)
    sandbox.control("graph").clear_faults()
    assert result.resynced and result.full and len(result.items) == 5
    after = client.delta(path, delta_link=result.delta_link, mailbox=MAILBOX)
    assert not after.resynced and after.items == [] and after.removed == []


def test_errors_carry_graph_code_and_message(client: GraphClient) -> None:
    with pytest.raises(GraphError) as info:
        client.get(f"/users/{MAILBOX}/contacts/AAMkNoSuchItem")
    err = info.value
    assert err.status == 404 and err.code == "ErrorItemNotFound"
    assert "ErrorItemNotFound" in str(err) and err.graph_message
    assert err.transient is False


def test_throttling_storm_ends_correct(client: GraphClient, sandbox: SandboxProcess) -> None:
    folder = _folder(client, "Storm")
    # Retry-After is whole seconds; cap each wait so the storm stays fast (the honouring of
    # Retry-After itself is test_retry_after_is_honoured)
    client.retry = RetryPolicy(max_retries=10, base_s=0.02, cap_s=0.2, max_retry_after_s=0.05)
    control = sandbox.control("graph")
    control.faults(throttle_fraction=0.4, throttle_ms=50, seed=7)
    control.reset_stats()
    created = _create_contacts(client, folder, 40)
    listed = list(client.items(f"/users/{MAILBOX}/contactFolders/{folder}/contacts",
                               headers={"Prefer": "odata.maxpagesize=9"}, mailbox=MAILBOX))
    control.clear_faults()
    assert sorted(c["id"] for c in listed) == sorted(c["id"] for c in created)
    assert len({c["givenName"] for c in listed}) == 40  # no duplicates from retried creates
    throttled = control.stats()["throttled"]
    assert throttled > 0
    stats = client.stats()
    assert stats["throttled"] >= 1 and stats["throttle_wait_s"] > 0


def test_throttling_without_retry_after_backs_off_exponentially(
        client: GraphClient, sandbox: SandboxProcess) -> None:
    waits: list[float] = []
    client._sleep = waits.append  # record instead of sleeping
    control = sandbox.control("graph")
    control.faults(throttle_fraction=1.0, throttle_hint=False)
    with pytest.raises(GraphError) as info:
        client.get(f"/users/{MAILBOX}")
    control.clear_faults()
    assert info.value.status == 429 and info.value.transient
    assert len(waits) == FAST.max_retries
    assert waits[0] < waits[2] < waits[4]  # doubling up to the cap
    assert max(waits) <= FAST.cap_s * 1.2


def test_retry_after_is_honoured(client: GraphClient, sandbox: SandboxProcess) -> None:
    waits: list[float] = []
    client._sleep = waits.append
    control = sandbox.control("graph")
    control.faults(throttle_fraction=1.0, throttle_ms=2000)
    with pytest.raises(GraphError):
        client.get(f"/users/{MAILBOX}")
    control.clear_faults()
    assert waits and all(w == 2.0 for w in waits)
    assert parse_retry_after("3") == 3.0 and parse_retry_after(None) is None


def test_dropped_connection_retries_reads_not_creates(client: GraphClient,
                                                      sandbox: SandboxProcess) -> None:
    control = sandbox.control("graph")
    client.get(f"/users/{MAILBOX}")  # token fetched before counting
    control.faults(drop_after=0, drop_count=1)
    assert client.get(f"/users/{MAILBOX}")["userPrincipalName"] == MAILBOX
    control.faults(drop_after=0, drop_count=1)
    with pytest.raises(ProviderError) as info:
        client.request("POST", f"/users/{MAILBOX}/contactFolders", body={"displayName": "X"})
    assert info.value.transient
    control.clear_faults()


def test_expired_token_is_refreshed(client: GraphClient, sandbox: SandboxProcess) -> None:
    client.get(f"/users/{MAILBOX}")
    first = client.auth.token()
    sandbox.control("token").call("POST", "expire")
    assert client.get(f"/users/{MAILBOX}")["userPrincipalName"] == MAILBOX
    assert client.auth.token() != first


def test_at_most_four_requests_in_flight_per_mailbox(client: GraphClient,
                                                     sandbox: SandboxProcess) -> None:
    client.get(f"/users/{MAILBOX}")
    sandbox.control("graph").faults(latency_ms=150)
    session = client._session
    real = session.request
    lock = threading.Lock()
    flight = {"now": 0, "max": 0}

    def counting(*args: Any, **kwargs: Any) -> Any:
        with lock:
            flight["now"] += 1
            flight["max"] = max(flight["max"], flight["now"])
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                flight["now"] -= 1

    session.request = counting  # type: ignore[method-assign]
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client.get, args=(f"/users/{MAILBOX}",),
                                kwargs={"mailbox": MAILBOX}) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sandbox.control("graph").clear_faults()
    assert flight["max"] == 4
    assert time.perf_counter() - t0 >= 0.15 * 3  # 10 requests, 4 at a time: 3 waves


class _Pages:
    """Stands in for GraphClient.pages: a delta round whose pages repeat an item (Graph may
    return an entity more than once in one round when it changes while the round is read)."""

    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self._pages = pages

    def pages(self, url: str, **_: Any) -> Iterator[dict[str, Any]]:
        yield from self._pages


def test_repeated_items_in_one_round_last_one_wins() -> None:
    from l2sync_dagster.providers.graph.delta import run_delta

    pages = [{"value": [{"id": "a", "v": 1}, {"id": "b", "v": 1}, {"id": "c", "v": 1}],
              "@odata.nextLink": "next"},
             {"value": [{"id": "a", "v": 2}, {"id": "b", "@removed": {"reason": "deleted"}},
                        {"id": "d", "deleted": {"state": "deleted"}}, {"id": "d", "v": 3}],
              "@odata.deltaLink": "delta"}]
    result = run_delta(_Pages(pages), "x", delta_link="old")  # type: ignore[arg-type]
    assert {i["id"]: i["v"] for i in result.items} == {"a": 2, "c": 1, "d": 3}
    assert result.removed == ["b"] and result.delta_link == "delta" and not result.full


def test_the_clients_of_one_app_share_its_budget(sandbox: SandboxProcess,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "sandbox")
    one, two = (GraphClient.from_connection_string(graph_cs(sandbox)) for _ in range(2))
    other = GraphClient.from_connection_string(ConnectionString(
        f"GraphURL={sandbox.urls['graph']}/v1.0;Authority={sandbox.urls['token']}/sandbox;"
        f"ClientId=another-app;ClientSecret=env:{SECRET_ENV};CABundle={sandbox.ca_path}"))
    assert one.budget is two.budget and other.budget is not one.budget


def test_a_throttled_mailbox_holds_the_other_workers_requests_for_it(
        client: GraphClient, sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry-After is honoured per mailbox by every worker of the app, not only by the one
    that drew the 429 (the others would draw more and be throttled longer)."""
    monkeypatch.setenv(SECRET_ENV, "sandbox")
    worker = GraphClient.from_connection_string(graph_cs(sandbox), retry=FAST)
    worker.budget = client.budget  # what app_budget gives the workers of one process
    first: list[float] = []
    client._sleep = first.append
    control = sandbox.control("graph")
    control.faults(throttle_fraction=1.0, throttle_ms=3000)
    with pytest.raises(GraphError):
        client.get(f"/users/{MAILBOX}", mailbox=MAILBOX)
    control.clear_faults()
    assert first and all(w == 3.0 for w in first)
    waits: list[float] = []
    worker._sleep = waits.append
    worker.get("/users/sales@sandbox.test", mailbox="sales@sandbox.test")
    assert waits == []  # another mailbox goes at once
    worker.get(f"/users/{MAILBOX}", mailbox=MAILBOX)
    assert len(waits) == 1 and 2.0 < waits[0] <= 3.0  # the rest of the announced pause
    assert worker.stats()["throttle_wait_s"] == pytest.approx(waits[0], abs=0.01)


@pytest.mark.parametrize(("app_limit", "mailboxes", "most"), [
    (3, 3, 3),  # the app's budget over three mailboxes
    (16, 1, 4),  # Outlook's 4 per mailbox, whichever client of the app sends
])
def test_the_app_never_has_more_requests_in_flight_than_its_budget(
        client: GraphClient, sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch,
        app_limit: int, mailboxes: int, most: int) -> None:
    monkeypatch.setenv(SECRET_ENV, "sandbox")
    client.budget = AppBudget(limit=app_limit)
    workers = [client]
    for _ in range(3):
        w = GraphClient.from_connection_string(graph_cs(sandbox), retry=FAST)
        w.budget = client.budget
        workers.append(w)
    lock = threading.Lock()
    flying = [0, 0]  # now, most

    def slow(send):
        def request(*a, **kw):
            with lock:
                flying[0] += 1
                flying[1] = max(flying[1], flying[0])
            try:
                time.sleep(0.05)
                return send(*a, **kw)
            finally:
                with lock:
                    flying[0] -= 1
        return request

    for w in workers:
        w.get(f"/users/{MAILBOX}")  # the token first, outside the count
        w._session.request = slow(w._session.request)  # type: ignore[method-assign]
    users = [MAILBOX, "sync@sandbox.test", "sales@sandbox.test"][:mailboxes]
    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(lambda i: workers[i % 4].get(f"/users/{users[i % len(users)]}",
                                                   mailbox=users[i % len(users)]), range(36)))
    assert flying[1] == most
