"""The ``dataverse`` provider through msal and requests over real HTTPS against the Dataverse
sandbox (``sandbox`` fixture): authentication, queries, paging, formatted values, lookups, the
change feed, $batch writes with ETags, client keys, throttling, crash recovery, end to end."""

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from l2sync_dagster.orchestration.definitions import build_definitions
from l2sync_dagster.providers.base import Change, ProviderError, Query
from l2sync_dagster.providers.dataverse import DataverseProvider
from l2sync_dagster.providers.odata.client import ODataClient
from l2sync_dagster.providers.registry import provider_class
from l2sync_dagster.sandbox.control import SandboxControl
from l2sync_dagster.sandbox.token_service import TENANT_ID
from l2sync_dagster.spec.connection_string import ConnectionStringError
from l2sync_dagster.spec.loader import load_connection
from l2sync_dagster.state.store import StateStore
from l2sync_dagster.sync.runner import Sync

PASSWORD_ENV = "DV_TEST_PASSWORD"
SECRET_ENV = "DV_TEST_SECRET"
ACCOUNTS = Query()


class DV:
    """The sandbox's Dataverse service and a way to open providers against it."""

    def __init__(self, sandbox) -> None:
        self.base = sandbox.urls["dataverse"]
        self.token = sandbox.urls["token"]
        self.ca = sandbox.ca_path
        self.control: SandboxControl = sandbox.control("dataverse")

    def cs(self, entity_set: str = "accounts", extra: str = "", app: bool = False) -> str:
        auth = (f"ClientId=l2sync-sandbox;ClientSecret=env:{SECRET_ENV}" if app else
                f"Authentication=microsoft_modern_crm;User=sync@sandbox.test;"
                f"Password=env:{PASSWORD_ENV};ClientId=l2sync-sandbox")
        return (f"URL={self.base}/api/data/v9.2/{entity_set};{auth};TenantId={TENANT_ID};"
                f"Authority={self.token};CABundle={self.ca}{extra}")

    def open(self, entity_set: str = "accounts", extra: str = "", app: bool = False
             ) -> DataverseProvider:
        return DataverseProvider.from_connection_string(self.cs(entity_set, extra, app))

    def rows(self, entity_set: str = "accounts") -> list[dict]:
        return self.control.call("GET", f"rows/{entity_set}")["value"]

    def edit(self, key: str, entity_set: str = "accounts", **values) -> dict:
        return self.control.call("PATCH", f"rows/{entity_set}/{key}", values)

    def remove(self, key: str, entity_set: str = "accounts") -> None:
        self.control.call("DELETE", f"rows/{entity_set}/{key}")


@pytest.fixture
def dv(sandbox, monkeypatch) -> Iterator[DV]:
    monkeypatch.setenv(PASSWORD_ENV, "sandbox")
    monkeypatch.setenv(SECRET_ENV, "sandbox")
    helper = DV(sandbox)
    helper.control.reset()
    yield helper
    helper.control.clear_faults()
    helper.control.reset()


# --- connection string and authentication -------------------------------------------------
def test_entry_point_finds_the_provider():
    assert provider_class("dataverse") is DataverseProvider


@pytest.mark.parametrize("cs, message", [
    ("URL=https://contoso.crm4.dynamics.com/api/data/v9.2/accounts;Colour=red",
     "unknown key Colour"),
    ("URL=https://contoso.crm4.dynamics.com/api/data/v9.2/accounts;User=a@b.c;"
     "Password=secret;ClientId=x;TenantId=t", "must be a reference like Password=env:"),
    ("URL=https://contoso.crm4.dynamics.com/accounts;ClientId=x;TenantId=t;"
     "ClientSecret=env:X", "must be the Web API URL of a table"),
    ("URL=https://contoso.crm4.dynamics.com/api/data/v9.2/accounts;Batch=json;ClientId=x",
     "multipart only"),
    ("URL=https://contoso.crm4.dynamics.com/api/data/v9.2/accounts;Modified=x",
     "unknown key Modified"),
    ("URL=https://contoso.crm4.dynamics.com/api/data/v9.2/accounts;TenantId=t",
     "missing required key ClientId"),
])
def test_connection_string_errors_name_the_key(cs, message, monkeypatch):
    monkeypatch.setenv("X", "x")
    with pytest.raises(ConnectionStringError) as info:
        DataverseProvider.from_connection_string(cs)
    assert message in str(info.value)


def test_scope_is_derived_from_the_url_host(monkeypatch):
    monkeypatch.setenv("X", "x")
    p = DataverseProvider.from_connection_string(
        "URL=https://contoso.crm4.dynamics.com/api/data/v9.2/accounts;TenantId=t;ClientId=c;"
        "ClientSecret=env:X")
    ms = p.client.auth.__closure__[0].cell_contents  # the MicrosoftAuth behind the hook
    assert ms.scope == "https://contoso.crm4.dynamics.com/.default"
    assert p.service_root == "https://contoso.crm4.dynamics.com/api/data/v9.2"


@pytest.mark.parametrize("app", [False, True], ids=["user-password", "client-credentials"])
def test_both_ways_to_sign_in_read_the_table(dv, app):
    p = dv.open(app=app)
    assert "accounts is readable" in p.verify(ACCOUNTS)
    assert len(p.read(ACCOUNTS).frame) == 20


def test_wrong_password_fails_with_the_sign_in_error(dv, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "not-it")
    with pytest.raises(ProviderError) as info:
        dv.open().verify(ACCOUNTS)
    assert "invalid_grant" in str(info.value) and "not-it" not in str(info.value)


# --- describe and queries -------------------------------------------------------------------
def test_describe_marks_system_columns_read_only_and_exposes_lookups(dv):
    d = dv.open(extra=";KeyGeneration=server").describe(ACCOUNTS)
    f = {x.name: x for x in d.fields}
    assert d.key == "accountid" and d.key_generated and d.modified == "modifiedon"
    for name in ("createdon", "modifiedon", "versionnumber", "primarycontactid.name",
                 "industrycode.label", "statecode.label", "accountid"):
        assert f[name].read_only, name
    for name in ("name", "telephone1", "revenue", "industrycode", "primarycontactid"):
        assert not f[name].read_only, name
    assert (f["revenue"].type, f["numberofemployees"].type, f["creditonhold"].type,
            f["modifiedon"].type) == ("decimal", "integer", "boolean", "datetime")
    # the default: the sync makes the GUID (journaled before the POST, found on a re-run)
    for client_keys in (dv.open().describe(ACCOUNTS),
                        dv.open(extra=";KeyGeneration=client").describe(ACCOUNTS)):
        assert not client_keys.key_generated and not client_keys.field("accountid").read_only
    contact = {x.name: x for x in dv.open("contacts").describe(Query()).fields}
    assert contact["fullname"].read_only and not contact["parentcustomerid"].read_only


def test_the_issue_query_runs_on_the_server(dv):
    rows = sorted(dv.rows(), key=lambda r: r["name"])
    dv.edit(rows[0]["accountid"], statecode=1)  # the first by name is now inactive
    p = dv.open()
    r = p.read(Query("SELECT TOP 5 name, telephone1 FROM accounts WHERE statecode = 0 "
                     "ORDER BY name"))
    assert list(r.frame["name"]) == [x["name"] for x in rows[1:6]]
    assert set(r.frame.columns) == {"accountid", "name", "telephone1", "_modified", "_version"}
    raw = p.read(Query("$select=name&$filter=statecode eq 1"))
    assert list(raw.frame["name"]) == [rows[0]["name"]]


@pytest.mark.parametrize("name", ["O'Brien & Sons + 100% #1", "x' or name ne 'y"])
def test_hostile_values_are_one_literal_on_the_server(dv, name):
    p = dv.open()
    (created,) = p.apply(ACCOUNTS, [Change("insert", "n", None, {"name": name})])
    assert created.ok
    sql = name.replace("'", "''")
    found = p.read(Query(f"SELECT name FROM accounts WHERE name = '{sql}'")).frame
    assert list(found.index) == [created.key]
    nothing = p.read(Query("SELECT name FROM accounts WHERE name = 'x'' or name ne ''y'"))
    assert len(nothing.frame) == (1 if name == "x' or name ne 'y" else 0)
    with pytest.raises(ProviderError, match="unknown WHERE field 'nmae'; did you mean name"):
        dv.open().read(Query("SELECT name FROM accounts WHERE nmae = 'a'"))


def test_paging_with_maxpagesize_and_next_links(dv):
    dv.control.reset_stats()
    p = dv.open(extra=";MaxPageSize=7")
    r = p.read(ACCOUNTS)
    assert len(r.frame) == 20 and r.frame.index.is_unique
    assert dv.control.stats()["requests"]["accounts.track"] == 3  # 7 + 7 + 6


def test_formatted_values_of_option_sets_and_lookups(dv):
    p = dv.open()
    frame = p.read(ACCOUNTS).frame
    contacts = {c["contactid"]: c["fullname"] for c in dv.rows("contacts")}
    with_contact = frame[frame["primarycontactid"].notna()]
    assert len(with_contact) == 15
    for key, row in with_contact.iterrows():
        assert row["primarycontactid.name"] == contacts[row["primarycontactid"]], key
    assert set(frame["statecode.label"]) == {"Active"}
    assert frame["industrycode.label"].notna().all()
    assert frame["_version"].str.startswith('W/"').all()
    assert str(frame["_modified"].dt.tz) == "UTC"


def test_lookups_are_written_with_odata_bind(dv):
    p = dv.open()
    contact = dv.rows("contacts")[3]
    values = {"name": "Bound", "primarycontactid": contact["contactid"]}
    (ins,) = p.apply(ACCOUNTS, [Change("insert", "i", None, values)])
    assert ins.ok
    row = p.read(ACCOUNTS).frame.loc[ins.key]
    assert row["primarycontactid"] == contact["contactid"]
    assert row["primarycontactid.name"] == contact["fullname"]
    (upd,) = p.apply(ACCOUNTS, [Change("update", "u", ins.key, {"primarycontactid": None},
                                       ins.version)])
    assert upd.ok
    assert pd.isna(p.read(ACCOUNTS).frame.loc[ins.key, "primarycontactid"])


# --- change feed ------------------------------------------------------------------------------
def test_delta_link_reports_changes_and_deletes(dv):
    p = dv.open()
    first = p.read(ACCOUNTS)
    assert first.complete and json.loads(first.cursor)["delta"].count("$deltatoken=") == 1
    keys = list(first.frame.index)
    dv.edit(keys[0], name="Changed in Dynamics")
    dv.remove(keys[1])
    (ins,) = p.apply(ACCOUNTS, [Change("insert", "i", None, {"name": "Brand new"})])
    nxt = p.read(ACCOUNTS, cursor=first.cursor)
    assert not nxt.complete
    assert sorted(nxt.frame.index) == sorted([keys[0], ins.key])
    assert nxt.frame.loc[keys[0], "name"] == "Changed in Dynamics"
    assert nxt.deleted == [keys[1]]
    assert p.stats()["change_feed"] == "track-changes"
    empty = p.read(ACCOUNTS, cursor=nxt.cursor)
    assert empty.frame.empty and empty.deleted == [] and not empty.complete


def test_expired_delta_link_falls_back_to_a_complete_read(dv):
    p = dv.open()
    first = p.read(ACCOUNTS)
    dv.control.call("POST", "expire-delta-tokens")
    again = p.read(ACCOUNTS, cursor=first.cursor)
    assert again.complete and len(again.frame) == 20
    assert p.stats()["delta_expired"] is True
    assert p.read(ACCOUNTS, cursor=again.cursor).frame.empty  # the new link works


def test_table_without_change_tracking_uses_modifiedon_and_says_so(dv):
    p = dv.open("new_projects")
    first = p.read(Query())
    assert first.complete and len(first.frame) == 5
    assert "no change tracking" in p.stats()["change_feed"]
    assert "watermark" in json.loads(first.cursor)
    key = first.frame.index[2]
    (upd,) = p.apply(Query(), [Change("update", "u", key, {"new_name": "Renamed"},
                                      first.frame.loc[key, "_version"])])
    assert upd.ok
    nxt = p.read(Query(), cursor=first.cursor)
    assert not nxt.complete and key in nxt.frame.index
    assert len(nxt.present_keys) == 5


def test_probe_is_stable_until_something_changes(dv):
    p = dv.open()
    cursor = p.read(ACCOUNTS).cursor
    before = p.probe(ACCOUNTS, cursor)
    assert p.probe(ACCOUNTS, cursor) == before
    dv.edit(dv.rows()[0]["accountid"], telephone1="+1 000")
    assert p.probe(ACCOUNTS, cursor) != before
    assert p.probe(ACCOUNTS) != p.probe(Query("SELECT name FROM accounts WHERE statecode = 1"))


def test_window_is_pushed_down_as_a_filter(dv):
    p = dv.open()
    frame = p.read(ACCOUNTS).frame
    start, end = sorted(frame["createdon"])[5], sorted(frame["createdon"])[10]
    w = p.read(Query(window_field="createdon"), window=(start, end))
    assert len(w.frame) == 5 and ((w.frame["createdon"] >= start) &
                                  (w.frame["createdon"] < end)).all()


# --- writes -------------------------------------------------------------------------------------
def test_batch_writes_understand_204_with_entity_id_and_201_with_body(dv):
    dv.control.reset_stats()
    for representation in (False, True):
        p = dv.open(extra=";BatchSize=10")
        p.prefer_representation = representation
        out = p.apply(ACCOUNTS, [Change("insert", f"i{n}", None,
                                        {"name": f"Rep {representation} {n}", "revenue": 1234.5})
                                 for n in range(12)])
        assert all(o.ok for o in out)
        assert all(uuid.UUID(o.key) and o.version.startswith('W/"') for o in out)
    rows = {r["accountid"]: r for r in dv.rows()}
    assert len(rows) == 44
    assert dv.control.stats()["requests"]["batch"] == 4  # 12 changes in 10 + 2, twice


def test_concurrent_edit_becomes_a_conflict_through_the_etag(dv):
    p = dv.open()
    frame = p.read(ACCOUNTS).frame
    a, b, c = frame.index[:3]
    dv.edit(a, name="Edited in Dynamics meanwhile")
    dv.edit(b, name="Also edited")
    out = p.apply(ACCOUNTS, [
        Change("update", "ua", a, {"name": "Mine"}, frame.loc[a, "_version"]),
        Change("delete", "db", b, {}, frame.loc[b, "_version"]),
        Change("update", "uc", c, {"name": "Fine"}, frame.loc[c, "_version"]),
    ])
    assert [o.ok for o in out] == [False, False, True]
    assert out[0].error.startswith("conflict:") and "412" in out[0].error
    assert out[1].error.startswith("conflict:")
    rows = {r["accountid"]: r for r in dv.rows()}
    assert rows[a]["name"] == "Edited in Dynamics meanwhile" and b in rows
    assert rows[c]["name"] == "Fine"


def test_bad_record_fails_alone(dv):
    p = dv.open()
    out = p.apply(ACCOUNTS, [Change("insert", "ok", None, {"name": "Good"}),
                             Change("insert", "bad", None, {"name": "x" * 200}),
                             Change("update", "gone", str(uuid.uuid4()), {"name": "y"}, None)])
    assert [o.ok for o in out] == [True, False, False]
    assert "exceeded the maximum allowed length" in out[1].error
    assert "does not exist" in out[2].error
    assert sum(r["name"] == "Good" for r in dv.rows()) == 1


def test_client_generated_key_makes_a_repeated_insert_harmless(dv):
    p = dv.open(extra=";KeyGeneration=client")
    planned = uuid.uuid4().hex
    change = Change("insert", "i", planned, {"accountid": planned, "name": "Replicated"})
    (first,) = p.apply(ACCOUNTS, [change])
    assert first.ok and first.key == str(uuid.UUID(planned))
    (again,) = p.apply(ACCOUNTS, [change])  # the answer was lost; the re-run sends it again
    assert again.ok and again.key == first.key
    assert sum(r["name"] == "Replicated" for r in dv.rows()) == 1


@pytest.mark.parametrize("hint", [True, False], ids=["retry-after", "no-hint"])
def test_throttling_storm_is_ridden_out(dv, hint):
    p = dv.open(extra=";MaxPageSize=7;BatchSize=10;Concurrency=3")
    dv.control.faults(throttle_fraction=0.25, throttle_ms=1000, throttle_hint=hint, seed=3)
    frame = p.read(ACCOUNTS).frame
    out = p.apply(ACCOUNTS, [Change("insert", f"t{n}", None, {"name": f"Storm {n}"})
                             for n in range(30)])
    dv.control.clear_faults()
    assert len(frame) == 20 and all(o.ok for o in out)
    stats = p.stats()
    assert stats["throttled"] >= 2 and stats["throttle_wait_s"] > 0
    assert dv.control.stats()["throttled"] == stats["throttled"]
    names = [r["name"] for r in dv.rows() if r["name"].startswith("Storm")]
    assert sorted(names) == sorted(f"Storm {n}" for n in range(30))


# --- through the sync ---------------------------------------------------------------------------
ONE_WAY = """
title: SQLite -> Dataverse accounts
direction: left_to_right
left:
  provider: sql
  connection_string: "URL=sqlite:///crm.db"
  query: companies
  key: id
right:
  provider: dataverse
  connection_string: "{cs}"
  query: "SELECT name, telephone1, address1_city FROM accounts"
mapping:
  auto: true
batch_size: 200
"""

BOTH_WAYS = """
title: Dataverse accounts <-> SQLite
direction: bidirectional
left:
  provider: dataverse
  connection_string: "{cs}"
  query: "SELECT name, telephone1, address1_city FROM accounts"
right:
  provider: sql
  connection_string: "URL=sqlite:///crm.db"
  query: companies
  key: id
mapping:
  auto: true
match_on: [name]
conflicts: {{policy: left_wins}}
"""


def project(tmp_path: Path, text: str, rows: int) -> Path:
    with sqlite3.connect(tmp_path / "crm.db") as db:
        db.execute("CREATE TABLE companies (id INTEGER PRIMARY KEY, name TEXT, "
                   "telephone1 TEXT, address1_city TEXT)")
        db.executemany("INSERT INTO companies (name, telephone1, address1_city) VALUES (?,?,?)",
                       [(f"Company {n:04d}", f"+49 {n}", "Köln") for n in range(rows)])
    (tmp_path / "connections").mkdir()
    path = tmp_path / "connections" / "dv.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("keys", ["server", "client"])
def test_crash_mid_batch_leaves_no_duplicate_after_the_rerun(dv, tmp_path, monkeypatch, keys):
    monkeypatch.delenv("L2SYNC_STATE_URL", raising=False)
    cs = dv.cs(extra=f";BatchSize=50;Concurrency=1;KeyGeneration={keys}")
    path = project(tmp_path, ONE_WAY.format(cs=cs), 250)
    spec = load_connection(path)
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    real: Callable = ODataClient.batch
    calls = {"n": 0}

    def crash_after_second(self, items, fmt, headers=None):
        replies = real(self, items, fmt, headers)  # the server applied the batch...
        calls["n"] += 1
        if calls["n"] == 2:  # ...but the answer never arrives: the process dies here
            raise ProviderError("connection lost while reading the $batch answer",
                                transient=True)
        return replies

    monkeypatch.setattr(ODataClient, "batch", crash_after_second)
    with pytest.raises(ProviderError, match="connection lost"):
        Sync(spec, store).run()
    assert len(dv.rows()) == 20 + 100  # two batches of 50 were applied
    monkeypatch.setattr(ODataClient, "batch", real)
    rerun = Sync(spec, store).run()
    assert rerun.status == "succeeded", rerun.counts()
    names = [r["name"] for r in dv.rows() if r["name"].startswith("Company")]
    assert len(names) == 250 and len(set(names)) == 250
    assert rerun.counts()["right"]["inserted"] == 150
    last = Sync(spec, store).run()
    assert last.counts()["right"]["inserted"] == 0 and last.counts()["right"]["updated"] == 0


def test_sync_both_ways_then_a_second_run_writes_nothing(dv, tmp_path, monkeypatch):
    monkeypatch.delenv("L2SYNC_STATE_URL", raising=False)
    path = project(tmp_path, BOTH_WAYS.format(cs=dv.cs()), 3)
    spec = load_connection(path)
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    first = Sync(spec, store).run()
    counts = first.counts()
    assert first.status == "succeeded", counts
    assert counts["right"]["inserted"] == 20 and counts["left"]["inserted"] == 3
    second = Sync(spec, store).run()
    for side in ("left", "right"):
        assert all(second.counts()[side][k] == 0 for k in ("inserted", "updated", "deleted"))
    key = next(r["accountid"] for r in dv.rows() if r["name"] == "Company 0001")
    dv.edit(key, telephone1="+49 999")
    third = Sync(spec, store).run()
    assert third.counts()["right"]["updated"] == 1 and third.counts()["left"]["updated"] == 0
    with sqlite3.connect(tmp_path / "crm.db") as db:
        assert db.execute("SELECT telephone1 FROM companies WHERE name = 'Company 0001'"
                          ).fetchone()[0] == "+49 999"
        assert db.execute("SELECT count(*) FROM companies").fetchone()[0] == 23


def test_materialize_through_dagster(dv, tmp_path, monkeypatch):
    monkeypatch.delenv("L2SYNC_STATE_URL", raising=False)
    path = project(tmp_path, BOTH_WAYS.format(cs=dv.cs()), 2)
    defs = build_definitions(path.parent)
    result = dg.materialize(list(defs.assets or []), resources=defs.resources,
                            instance=dg.DagsterInstance.ephemeral(),
                            raise_on_error=False)
    assert result.success
    mats = {m.asset_key.to_user_string(): {k: v.value for k, v in m.metadata.items()}
            for m in result.asset_materializations_for_node("dv_sync")}
    assert mats["dv/apply_right"]["inserted"] == 20 and mats["dv/apply_left"]["inserted"] == 2
    assert all(c.passed for c in result.get_asset_check_evaluations())
    assert sum(r["name"].startswith("Company") for r in dv.rows()) == 2


def test_web_link_opens_the_record_form_in_dynamics(dv):
    p = dv.open()
    key = dv.rows()[0]["accountid"]
    assert p.web_link(key) is None  # the table's logical name comes with $metadata
    p.read(Query("SELECT name FROM accounts"))
    assert p.web_link(key) == f"{dv.base}/main.aspx?pagetype=entityrecord&etn=account&id={key}"
