"""The ``odata`` provider through requests over real HTTP against ``odata_test_server``: an OData
v4 service that is deliberately unlike the Dataverse sandbox (Basic auth, relative next links,
small pages, 201 with body, 204 with ETag, no $count, $batch absent or JSON only, '+' refused)."""

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from odata_test_server import PASSWORD, ODataTestServer

from l2sync_dagster.providers.base import Change, ProviderError, Query
from l2sync_dagster.providers.odata import ODataProvider
from l2sync_dagster.providers.registry import provider_class
from l2sync_dagster.spec.connection_string import ConnectionStringError
from l2sync_dagster.spec.loader import load_connection
from l2sync_dagster.state.store import StateStore
from l2sync_dagster.sync.runner import Sync

ENV = "ODATA_TEST_PASSWORD"


@pytest.fixture(scope="module")
def server() -> Iterator[ODataTestServer]:
    srv = ODataTestServer()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def json_server() -> Iterator[ODataTestServer]:
    srv = ODataTestServer(batch="json")
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, PASSWORD)


def provider(srv: ODataTestServer, entity_set: str = "People", extra: str = "") -> ODataProvider:
    srv.reset()
    cs = (f"URL={srv.url(entity_set)};Authentication=Basic;User=tester;Password=env:{ENV};"
          f"Modified=LastModified{extra}")
    return ODataProvider.from_connection_string(cs)


def queries(srv: ODataTestServer) -> list[str]:
    return [target for _, target in srv.log]


# --- connection string ---------------------------------------------------------------------
def test_entry_point_finds_the_provider():
    assert provider_class("odata") is ODataProvider


@pytest.mark.parametrize("cs, message", [
    ("URL=http://127.0.0.1:1/svc/People;Colour=red", "unknown key Colour"),
    ("Authentication=None", "missing required key URL"),
    ("URL=http://127.0.0.1:1/svc/People;Authentication=Basic", "missing required key User"),
    ("URL=http://127.0.0.1:1/svc/People;Authentication=Basic;User=x;Password=hunter2",
     "must be a reference like Password=env:VARIABLE"),
    ("URL=http://127.0.0.1:1/svc/People;Authentication=Bearer", "missing required key Token"),
    ("URL=http://127.0.0.1:1/svc/People;Authentication=Kerberos",
     "Authentication must be one of None, Basic, Bearer, OAuth"),
    ("URL=http://127.0.0.1:1/svc/People;Authentication=None;User=x", "key User is not used"),
    ("URL=ftp://127.0.0.1/svc/People", "must be an http(s) URL"),
    ("URL=http://127.0.0.1:1/svc/People?$top=1", "must not contain a query"),
    ("URL=http://127.0.0.1:1/", "must end with the entity set"),
    ("URL=http://127.0.0.1:1/svc/People;Batch=xml", "Batch must be one of"),
    ("URL=http://127.0.0.1:1/svc/People;BatchSize=5000", "BatchSize must be a whole number"),
    ("URL=http://127.0.0.1:1/svc/People;KeyGeneration=random", "KeyGeneration must be"),
    ("URL=http://127.0.0.1:1/svc/People;Authentication=OAuth", "missing required key ClientId"),
])
def test_connection_string_errors_name_the_key(cs, message):
    with pytest.raises(ConnectionStringError) as info:
        ODataProvider.from_connection_string(cs)
    assert message in str(info.value)


def test_wrong_password_is_a_clear_error_without_the_password(server, monkeypatch):
    monkeypatch.setenv(ENV, "wrong-one")
    p = provider(server)
    with pytest.raises(ProviderError) as info:
        p.verify(Query())
    assert "HTTP 401" in str(info.value) and "check the credentials" in str(info.value)
    assert "wrong-one" not in str(info.value)


# --- describe and read ---------------------------------------------------------------------
def test_describe_from_metadata(server):
    d = provider(server).describe(Query())
    types = {f.name: (f.type, f.read_only) for f in d.fields}
    assert d.key == "Id" and d.key_generated and d.modified == "LastModified"
    assert types["Id"] == ("integer", True)  # computed key
    assert types["LastModified"] == ("datetime", True)
    assert types["Score"] == ("decimal", False) and types["Birthday"] == ("date", False)
    assert types["Name"] == ("string", False) and types["Active"] == ("boolean", False)


def test_full_read_follows_relative_next_links_and_never_sends_plus(server):
    p = provider(server)
    r = p.read(Query("SELECT Id, Name, Age FROM People WHERE Name <> 'nobody here'"))
    assert r.complete and len(r.frame) == 60
    assert list(r.frame.columns) == ["Id", "Name", "Age", "_modified", "_version"]
    assert r.frame.loc["2", "Name"] == "Bob O'Brien" and r.frame.loc["2", "_version"] == '"2"'
    reads = [q for q in queries(server) if q.startswith("/svc/v1/People")]
    assert len(reads) == 3  # 25 + 25 + 10 rows: the server caps pages at 25
    assert all("+" not in q and " " not in q for q in reads)
    assert "$filter=Name%20ne%20'nobody%20here'" in reads[0]
    assert p.stats()["requests"] == 4  # $metadata + 3 pages


@pytest.mark.parametrize("value, expected", [
    ("Bob O'Brien", ["2"]),
    ("Cara + Co", ["3"]),
    ("Dan & Sons", ["4"]),
    ("Eve 50%", ["5"]),
    ("x' or Name ne 'y", []),
    ("Ann Smith' or Id gt '0", []),
])
def test_hostile_values_match_exactly_on_the_server(server, value, expected):
    p = provider(server)
    sql = value.replace("'", "''")
    r = p.read(Query(f"SELECT Id, Name FROM People WHERE Name = '{sql}'"))
    assert sorted(r.frame.index) == expected


def test_raw_query_options_and_unknown_fields(server):
    p = provider(server)
    r = p.read(Query("$select=Name,Age&$filter=Age ge 58&$orderby=Age desc"))
    assert list(r.frame["Age"]) == [59, 58]
    with pytest.raises(ProviderError, match="unknown field 'Nmae'; did you mean Name"):
        provider(server).read(Query("SELECT Nmae FROM People"))
    with pytest.raises(ProviderError, match="the query reads 'Items' but URL= names"):
        provider(server).read(Query("SELECT Title FROM Items"))


def test_window_read_is_pushed_down(server):
    p = provider(server)
    r = p.read(Query(window_field="Age"), window=(30, 32))
    assert sorted(set(r.frame["Age"])) == [30, 31] and len(r.frame) == 4
    assert any("Age%20ge%2030%20and%20Age%20lt%2032" in q for q in queries(server))


def test_incremental_read_by_watermark_and_deletes_through_present_keys(server):
    p = provider(server)
    first = p.read(Query())
    server.touch("People", 7, Name="Changed elsewhere")
    etag = first.frame.loc["9", "_version"]
    assert p.apply(Query(), [Change("delete", "d", "9", version=etag)])[0].ok
    nxt = p.read(Query(), cursor=first.cursor)
    assert not nxt.complete
    assert "7" in nxt.frame.index and nxt.frame.loc["7", "Name"] == "Changed elsewhere"
    assert len(nxt.frame) <= 2  # the changed record (and the newest one, at the watermark)
    assert "9" not in nxt.present_keys and len(nxt.present_keys) == 59
    assert nxt.cursor != first.cursor


def test_probe_changes_when_a_record_changes(server):
    p = provider(server)
    before = p.probe(Query())
    assert p.probe(Query()) == before
    server.touch("People", 3, Age=99)
    assert p.probe(Query()) != before


def test_throttling_is_honoured_with_and_without_retry_after(server):
    p = provider(server)
    server.throttle(2, "1")
    t0 = time.monotonic()
    assert len(p.read(Query()).frame) == 60
    assert time.monotonic() - t0 >= 2.0
    assert p.stats()["throttle_wait_s"] >= 2.0 and p.stats()["throttled"] == 2
    server.throttle(3, None)  # no hint: exponential back-off
    assert len(p.read(Query()).frame) == 60
    assert p.stats()["throttled"] == 5


# --- writes --------------------------------------------------------------------------------
def test_writes_without_batch_201_with_body_and_204_with_etag(server):
    p = provider(server)
    frame = p.read(Query()).frame
    out = p.apply(Query(), [
        Change("insert", "i", None, {"Name": "New Person", "Age": 41, "Score": "2.25",
                                     "Active": True, "Birthday": "1983-04-05"}),
        Change("update", "u", "1", {"Name": "Ann Changed"}, frame.loc["1", "_version"]),
        Change("delete", "d", "2", {}, frame.loc["2", "_version"]),
        Change("delete", "gone", "999", {}, None),
    ])
    assert [o.ok for o in out] == [True, True, True, True], out
    assert out[0].key == "61" and out[0].version == '"64"'  # from the 201 body
    assert out[1].version == '"65"'  # from the 204's ETag header
    row = server.rows["People"][61]
    assert (row["Name"], row["Age"], row["Score"], row["Active"], row["Birthday"]) == \
        ("New Person", 41, 2.25, True, "1983-04-05")
    assert 2 not in server.rows["People"]
    assert p.stats()["batch_format"] == "none"  # $batch answered 404: single requests
    assert ("POST", "/svc/v1/$batch") in server.log


def test_etag_mismatch_is_a_conflict_not_a_lost_update(server):
    p = provider(server)
    frame = p.read(Query()).frame
    server.touch("People", 5, Name="Edited concurrently")
    server.touch("People", 6, Name="Edited concurrently")
    out = p.apply(Query(), [
        Change("update", "u", "5", {"Name": "Mine"}, frame.loc["5", "_version"]),
        Change("delete", "d", "6", {}, frame.loc["6", "_version"]),
        Change("update", "x", "12345", {"Name": "Nobody"}, None),
        Change("update", "bad", "7", {"Nope": 1}, None),
    ])
    assert not any(o.ok for o in out)
    assert out[0].error.startswith("conflict:") and "412" in out[0].error
    assert out[1].error.startswith("conflict:")
    assert "does not exist" in out[2].error
    assert "'Nope' is not a field" in out[3].error
    assert server.rows["People"][5]["Name"] == "Edited concurrently"
    assert 6 in server.rows["People"]


def test_json_batch_with_atomic_groups_and_per_record_fallback(json_server):
    p = provider(json_server, extra=";BatchSize=3;Concurrency=2")
    frame = p.read(Query()).frame
    json_server.touch("People", 8, Age=1)  # makes the update of record 8 a conflict
    changes = [Change("insert", f"i{n}", None, {"Name": f"Batch {n}", "Age": n})
               for n in range(5)]
    changes.append(Change("update", "u8", "8", {"Name": "Mine"}, frame.loc["8", "_version"]))
    out = p.apply(Query(), changes)
    assert [o.ok for o in out] == [True] * 5 + [False]
    assert out[5].error.startswith("conflict:")
    names = sorted(r["Name"] for r in json_server.rows["People"].values()
                   if r["Name"].startswith("Batch"))
    assert names == [f"Batch {n}" for n in range(5)]  # each insert exactly once
    assert p.stats()["batch_format"] == "json"  # multipart answered 415, JSON used
    batches = [t for m, t in json_server.log if t.endswith("$batch")]
    # multipart try, then 2 JSON batches of independent requests (no atomicity groups: a
    # server may report success for a rolled-back member of a failed group)
    assert len(batches) == 3


def test_client_generated_keys_survive_a_lost_answer(server):
    p = provider(server, "Items", ";KeyGeneration=client")
    d = p.describe(Query())
    assert d.key == "ItemId" and not d.key_generated
    planned = str(uuid.uuid4())  # the engine journals keys like this
    change = Change("insert", "i", planned, {"ItemId": planned, "Title": "Replicated", "Qty": 2})
    (first,) = p.apply(Query(), [change])
    assert first.ok and first.key == str(uuid.UUID(planned))
    (again,) = p.apply(Query(), [change])  # a re-run after the answer was lost
    assert again.ok and again.key == first.key
    assert sum(r["Title"] == "Replicated" for r in server.rows["Items"].values()) == 1


def test_concurrency_is_bounded(json_server, monkeypatch):
    p = provider(json_server, extra=";BatchSize=2;Concurrency=2;Batch=json")
    active = 0
    peak = 0
    lock = threading.Lock()
    real = requests.Session.request

    def counting(self, *args, **kwargs):
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            time.sleep(0.05)
            return real(self, *args, **kwargs)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(requests.Session, "request", counting)
    out = p.apply(Query(), [Change("insert", f"c{n}", None, {"Name": f"C {n}"})
                            for n in range(10)])
    assert all(o.ok for o in out)
    assert peak == 2


# --- end to end ----------------------------------------------------------------------------
CONNECTION = """
title: People (OData) -> SQLite
direction: left_to_right
left:
  provider: odata
  connection_string: "URL={url};Authentication=Basic;User=tester;Password=env:{env};\\
    Modified=LastModified"
  query: "SELECT Id, Name, Email, Age FROM People WHERE Age >= 30"
right:
  provider: sql
  connection_string: "URL=sqlite:///people.db"
  query: people
  key: id
mapping:
  auto: true
deletes: {{propagate: true, max_fraction: 0.5}}
"""


def test_sync_odata_to_sqlite_then_nothing_to_write(server, tmp_path, monkeypatch):
    monkeypatch.delenv("L2SYNC_STATE_URL", raising=False)
    server.reset()
    with sqlite3.connect(tmp_path / "people.db") as db:
        db.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, Name TEXT, Email TEXT, "
                   "Age INTEGER)")
    (tmp_path / "connections").mkdir()
    path = tmp_path / "connections" / "people.yaml"
    path.write_text(CONNECTION.format(url=server.url("People"), env=ENV))
    spec = load_connection(path)
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    first = Sync(spec, store).run()
    assert first.status == "succeeded" and first.counts()["right"]["inserted"] == 40
    server.touch("People", 51, Name="Renamed")  # Age 30: in scope
    second = Sync(spec, store).run()
    assert second.counts()["right"]["updated"] == 1
    third = Sync(spec, store).run()
    assert all(third.counts()["right"].get(k, 0) == 0 for k in ("inserted", "updated",
                                                                   "deleted"))
    with sqlite3.connect(tmp_path / "people.db") as db:
        assert db.execute("SELECT count(*) FROM people").fetchone()[0] == 40
        assert db.execute("SELECT Name FROM people WHERE Email = 'p50@example.test'"
                          ).fetchone()[0] == "Renamed"
