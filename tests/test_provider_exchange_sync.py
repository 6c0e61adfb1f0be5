"""The exchange provider (EWS) end to end: through the engine (``Sync``) against SQLite both
ways, through Dagster, with paging beyond 1000 items, recursive and wildcard scopes, a
throttling storm and a crash in the middle of a run."""

import shutil
import sqlite3
from pathlib import Path

import dagster as dg
import pytest
from exchange_helpers import MAILBOX, PASSWORD_ENV, ews_session, items, provider
from project_helpers import REPO

from l2sync_dagster.orchestration.definitions import build_definitions
from l2sync_dagster.providers.base import Change, ProviderError, Query
from l2sync_dagster.spec.loader import load_connection
from l2sync_dagster.sync.runner import Sync

TABLE = """CREATE TABLE contacts (id INTEGER PRIMARY KEY AUTOINCREMENT, first_name TEXT,
  last_name TEXT, company TEXT, job_title TEXT, email TEXT, phone TEXT, city TEXT,
  birthday DATE, categories TEXT, crm_id TEXT, updated_at TIMESTAMP)"""


@pytest.fixture
def ews(sandbox, monkeypatch):
    """The sandbox EWS URL (demo data reset, faults cleared after)."""
    yield from ews_session(sandbox, monkeypatch)


@pytest.fixture
def project(tmp_path, ews, monkeypatch):
    """The example connection in a throw-away project, its SQLite table seeded with Anna
    (also in Exchange, other phone) and Mary (only in SQLite)."""
    (tmp_path / "connections").mkdir()
    shutil.copy(REPO / "connections" / "exchange_contacts_demo.yaml", tmp_path / "connections")
    (tmp_path / "data" / "demo").mkdir(parents=True)
    with sqlite3.connect(tmp_path / "data" / "demo" / "exchange.db") as db:
        db.execute(TABLE)
        db.execute("INSERT INTO contacts (first_name, last_name, email, phone, updated_at) "
                   "VALUES ('Anna', 'Berg', 'anna.berg@example.test', '+41 1', "
                   "'2020-01-01 00:00:00')")
        db.execute("INSERT INTO contacts (first_name, last_name, email, company, birthday, "
                   "categories, crm_id, updated_at) VALUES ('Mary', 'Jackson', "
                   "'mary@example.test', 'NASA', '1921-04-09', '[\"Engineer\"]', 'CRM-7', "
                   "'2020-01-01 00:00:00')")
    monkeypatch.setenv("L2SYNC_SANDBOX_EWS_URL", f"{ews}/EWS/Exchange.asmx")
    monkeypatch.setenv("EWS_PASSWORD", "sandbox")
    monkeypatch.delenv("L2SYNC_STATE_URL", raising=False)
    return tmp_path


def _run(project: Path) -> dict:
    spec = load_connection(project / "connections" / "exchange_contacts_demo.yaml")
    sync = Sync(spec)
    try:
        return sync.run().counts()
    finally:
        sync.close()
        sync.store.close() if hasattr(sync.store, "close") else None


def _rows(project: Path) -> list[tuple]:
    with sqlite3.connect(project / "data" / "demo" / "exchange.db") as db:
        return db.execute("SELECT first_name, last_name, email, phone, city, crm_id "
                          "FROM contacts ORDER BY email").fetchall()


def _quiet(counts: dict) -> bool:
    return all(counts[s][k] == 0 for s in ("left", "right")
               for k in ("inserted", "updated", "deleted", "failed"))


def test_sync_both_ways_then_nothing(project, sandbox):
    first = _run(project)
    assert first["right"]["inserted"] == 11 and first["left"]["inserted"] == 1, first
    rows = _rows(project)
    assert len(rows) == 13 and len({r[2] for r in rows}) == 13
    anna = next(r for r in rows if r[2] == "anna.berg@example.test")
    assert anna[4] == "Zurich" and anna[5] == "CRM-00000"
    contacts = items(sandbox, "contacts")
    mary = [c for c in contacts if c["fields"].get("GivenName") == "Mary"]
    assert len(mary) == 1 and mary[0]["fields"]["CompanyName"] == "NASA"
    assert _quiet(_run(project))  # canonical round trip: nothing ping-pongs

    # edits on both sides, a delete in Exchange
    ben = next(c for c in contacts if c["fields"].get("GivenName") == "Ben")
    eva = next(c for c in contacts if c["fields"].get("GivenName") == "Eva")
    control = sandbox.control("ews")
    control.call("PATCH", f"items/{ben['id']}", {"fields": {"JobTitle": "CEO"}})
    control.call("DELETE", f"items/{eva['id']}")
    with sqlite3.connect(project / "data" / "demo" / "exchange.db") as db:
        db.execute("UPDATE contacts SET city = 'Geneva', updated_at = '2030-01-01 00:00:00' "
                   "WHERE email = 'mary@example.test'")
    third = _run(project)
    assert third["right"]["updated"] == 1 and third["left"]["updated"] == 1, third
    assert third["right"]["deleted"] == 1
    with sqlite3.connect(project / "data" / "demo" / "exchange.db") as db:
        assert db.execute("SELECT job_title FROM contacts WHERE first_name = 'Ben'"
                          ).fetchone()[0] == "CEO"
        assert db.execute("SELECT count(*) FROM contacts WHERE first_name = 'Eva'"
                          ).fetchone()[0] == 0
    mary = [c for c in items(sandbox, "contacts") if c["fields"].get("GivenName") == "Mary"]
    assert mary[0]["fields"]["PhysicalAddresses"]["Business"]["City"] == "Geneva"
    assert _quiet(_run(project))


def test_throttling_storm_ends_correct(project, sandbox):
    control = sandbox.control("ews")
    control.faults(throttle_fraction=0.3, throttle_ms=20, seed=7)
    first = _run(project)
    stats = control.stats()
    assert stats["throttled"] > 0
    control.clear_faults()
    assert first["right"]["inserted"] == 11 and first["left"]["inserted"] == 1
    assert len(_rows(project)) == 13 and len(items(sandbox, "contacts")) == 14
    assert _quiet(_run(project))


def test_throttling_without_back_off_hint_backs_off_exponentially(ews, sandbox):
    control = sandbox.control("ews")
    control.faults(throttle_fraction=0.5, throttle_hint=False, seed=3)
    p = provider(ews, retry_wait_s=0.005)
    frame = p.read(Query("SELECT * FROM Contacts")).frame
    assert len(frame) == 12
    s = p.stats()
    assert s["throttled"] > 0 and s["throttle_wait_s"] > 0
    control.faults(throttle_fraction=1.0, throttle_hint=False)
    p = provider(ews, retry_wait_s=0.01, MaxRetryWait="0.2")
    with pytest.raises(ProviderError, match="kept throttling") as err:
        p.read(Query("SELECT * FROM Contacts"))
    assert err.value.transient


def _add_new_rows(project: Path, n: int) -> None:
    with sqlite3.connect(project / "data" / "demo" / "exchange.db") as db:
        db.executemany("INSERT INTO contacts (first_name, last_name, email, updated_at) "
                       "VALUES (?, 'New', ?, '2020-01-01 00:00:00')",
                       [(f"N{i}", f"n{i}@example.test") for i in range(n)])


def _crash(project: Path, control, drop_after: int) -> None:
    control.clear_faults()
    control.faults(drop_after=drop_after)
    with pytest.raises(ProviderError) as err:
        _run(project)
    assert err.value.transient and "unreachable" in str(err.value)
    control.clear_faults()


def _contact_emails(sandbox) -> list[str]:
    return [c["fields"].get("EmailAddresses", {}).get("EmailAddress1")
            for c in items(sandbox, "contacts") if c["type"] == "Contact"]


# a first run makes 3 requests before it writes (server version, SyncFolderItems, GetItem),
# then CreateItem in batches of 100: dropping after 2 fails a read, after 3 the first
# CreateItem, after 4 the second one (the server may have created the items or not)
@pytest.mark.parametrize("drop_after", [2, 3, 4])
def test_crash_during_inserts_then_rerun(project, sandbox, drop_after):
    control = sandbox.control("ews")
    _add_new_rows(project, 150)
    _crash(project, control, drop_after)
    again = _run(project)
    assert again["failed"] == 0, again
    emails = _contact_emails(sandbox)
    assert len(emails) == len(set(emails)) == 12 + 151  # nobody twice, nobody lost
    rows = _rows(project)
    assert len(rows) == len({r[2] for r in rows}) == 163
    assert _quiet(_run(project))


# an incremental run makes 1 request before it writes (SyncFolderItems), then UpdateItem in
# batches of 100: dropping after 1 fails the first batch, after 2 the second
@pytest.mark.parametrize("drop_after", [1, 2])
def test_crash_during_updates_then_rerun(project, sandbox, drop_after):
    control = sandbox.control("ews")
    _add_new_rows(project, 150)
    _run(project)
    with sqlite3.connect(project / "data" / "demo" / "exchange.db") as db:
        db.execute("UPDATE contacts SET city = 'Oslo', updated_at = '2031-01-01 00:00:00' "
                   "WHERE last_name = 'New'")
    _crash(project, control, drop_after)
    again = _run(project)
    assert again["failed"] == 0, again
    cities = [c["fields"].get("PhysicalAddresses", {}).get("Business", {}).get("City")
              for c in items(sandbox, "contacts") if c["fields"].get("Surname") == "New"]
    assert cities == ["Oslo"] * 150  # no lost update
    emails = _contact_emails(sandbox)
    assert len(emails) == len(set(emails)) == 163
    assert _quiet(_run(project))


def test_dagster_materialize(project):
    defs = build_definitions(project / "connections")
    result = dg.materialize(list(defs.assets or []), resources=defs.resources,
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)
    assert len(_rows(project)) == 13


# --- scale and scope ---------------------------------------------------------------------------
def test_paging_beyond_1000_items(ews, sandbox):
    sandbox.control("ews").call("POST", "items", {"mailbox": MAILBOX, "folder": "contacts",
                                                  "count": 1100})
    p = provider(ews)
    q = Query("SELECT GivenName, EmailAddresses.EmailAddress1 FROM Contacts")
    res = p.read(q)
    assert len(res.frame) == 1112 and res.frame.index.is_unique
    # server version + 3 SyncFolderItems pages (512) + 5 GetItem batches (250)
    assert p.stats()["requests"] == 1 + 3 + 5
    where = p.read(Query("SELECT GivenName FROM Contacts WHERE GivenName = 'Anna'"))
    annas = 1 + len([n for n in range(13, 1113) if n % 12 == 0])  # the demo's name cycle
    assert len(where.frame) == annas  # FindItem pages of 1000 with a restriction
    top = p.read(Query("SELECT TOP 1050 GivenName FROM Contacts ORDER BY GivenName"))
    assert len(top.frame) == 1050 and top.frame["GivenName"].iloc[0] == "Anna"


def test_recursive_and_wildcard_scopes(ews, sandbox):
    control = sandbox.control("ews")
    p = provider(ews, Email="sync@sandbox.test")
    rec = Query("SELECT Subject, FolderPath FROM Inbox/**")
    first = p.read(rec)
    assert list(first.frame["Subject"]) == ["Alpha kickoff"]
    assert list(first.frame["FolderPath"]) == ["Projects/Alpha"]
    wild = p.read(Query("SELECT Subject FROM Inbox/Projects/* "))
    assert list(wild.frame["Subject"]) == ["Alpha kickoff"]
    # a new subfolder with an item appears between runs: read by the next incremental read
    control.call("POST", "folders", {"mailbox": "sync@sandbox.test",
                                     "parent": "Inbox/Projects", "name": "Gamma"})
    control.call("POST", "items", {"mailbox": "sync@sandbox.test",
                                   "folder": "Inbox/Projects/Gamma", "type": "Message",
                                   "items": [{"Subject": "Gamma plan"}]})
    nxt = p.read(rec, cursor=first.cursor)
    assert not nxt.complete and list(nxt.frame["Subject"]) == ["Gamma plan"]
    assert list(nxt.frame["FolderPath"]) == ["Projects/Gamma"]
    (ins,) = p.apply(rec, [Change("insert", "x", values={"Subject": "Into Inbox"})])
    assert ins.ok
    last = p.read(rec, cursor=nxt.cursor)
    assert list(last.frame["Subject"]) == ["Into Inbox"] and list(last.frame["FolderPath"]) == [""]
    assert PASSWORD_ENV
