"""Exceptions of recurring series on both backends (EWS and Graph) against the sandbox: an
occurrence deleted and one moved in Outlook show on the series master as the read-only
fields DeletedOccurrences and ModifiedOccurrences, identical on both backends, in a complete
read, in the change feed and in a lookup; they cannot be written; a calendar synced to SQLite
carries them."""

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from exchange_users import EWS_PASSWORD_ENV, GRAPH_SECRET_ENV, MAILBOX, GraphUser, ews_cs, graph_cs
from sandbox_process import SandboxProcess

from l2sync_dagster.providers.base import Change, Query
from l2sync_dagster.providers.exchange import ExchangeProvider
from l2sync_dagster.providers.graph.throttle import RetryPolicy

FAST = RetryPolicy(max_retries=10, base_s=0.02, cap_s=0.2, max_retry_after_s=0.05)
BACKENDS = ("ews", "graph")
ZONE = "W. Europe Standard Time"
BERLIN = ZoneInfo("Europe/Berlin")
Q = Query("SELECT Subject, Start, End, Recurrence, DeletedOccurrences, ModifiedOccurrences "
          "FROM Calendar")

WRITE = Query("SELECT Subject, Start, End, StartTimeZone, Recurrence FROM Calendar")


def _utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Outlook:
    """Deletes and moves occurrences of a series as Outlook does (not through the provider)."""

    def __init__(self, sandbox: SandboxProcess, backend: str) -> None:
        self.backend = backend
        self.control = sandbox.control("ews")
        if backend == "graph":
            user = GraphUser(sandbox, MAILBOX)
            self.session = user.session
            self.events = user.base.rsplit("/contacts", 1)[0] + "/events"

    def _graph(self, method: str, url: str, **kw: Any) -> Any:
        resp = self.session.request(method, url, timeout=30, **kw)
        assert resp.status_code < 300, (resp.status_code, resp.text[:300])
        return resp.json() if resp.content else None

    def _instance(self, key: str, original: dt.datetime) -> str:
        """The id of the instance that was first at ``original`` (Outlook on the web lists
        the series' instances and picks one)."""
        now = dt.datetime.now(dt.UTC)
        window = {"startDateTime": _utc(now - dt.timedelta(days=30)),
                  "endDateTime": _utc(now + dt.timedelta(days=90))}
        found = self._graph("GET", f"{self.events}/{key}/instances", params=window)["value"]
        (hit,) = [i for i in found if i["originalStart"] == _utc(original)]
        return str(hit["id"])

    def delete(self, key: str, index: int, original: dt.datetime) -> None:
        """Delete occurrence ``index`` (1-based, originally at ``original``) of ``key``."""
        if self.backend == "ews":
            self.control.call("POST", f"items/{key}/occurrences", {"index": index,
                                                                   "delete": True})
        else:
            self._graph("DELETE", f"{self.events}/{self._instance(key, original)}")

    def move(self, key: str, index: int, original: dt.datetime, start: dt.datetime,
             end: dt.datetime) -> None:
        """Move occurrence ``index`` (originally at ``original``) of ``key`` to [start, end)."""
        if self.backend == "ews":
            self.control.call("POST", f"items/{key}/occurrences",
                              {"index": index, "Start": _utc(start), "End": _utc(end)})
        else:
            self._graph("PATCH", f"{self.events}/{self._instance(key, original)}", json={
                "start": {"dateTime": _utc(start)[:-1], "timeZone": "UTC"},
                "end": {"dateTime": _utc(end)[:-1], "timeZone": "UTC"}})


@pytest.fixture(params=BACKENDS)
def mailbox(request: pytest.FixtureRequest, sandbox: SandboxProcess,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ExchangeProvider, Outlook]]:
    """(a provider of the sales mailbox, Outlook) on fresh demo data."""
    backend = request.param
    monkeypatch.setenv(EWS_PASSWORD_ENV, "sandbox")
    monkeypatch.setenv(GRAPH_SECRET_ENV, "sandbox")
    sandbox.control(backend).reset()
    if backend == "ews":
        provider = ExchangeProvider.from_connection_string(ews_cs(sandbox))
    else:
        provider = ExchangeProvider.from_connection_string(graph_cs(sandbox))
        provider.backend.client.retry = FAST  # type: ignore[attr-defined]
    yield provider, Outlook(sandbox, backend)
    sandbox.control(backend).clear_faults()


def _series(provider: ExchangeProvider) -> tuple[str, dt.datetime]:
    """A daily series of 5 at 09:00 Berlin time, starting in a week: (key, first start)."""
    day = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).date()
    first = dt.datetime.combine(day, dt.time(9, 0), tzinfo=BERLIN)
    (ins,) = provider.apply(WRITE, [Change("insert", "s", values={
        "Subject": "Daily standup", "Start": first.astimezone(dt.UTC),
        "End": (first + dt.timedelta(minutes=15)).astimezone(dt.UTC), "StartTimeZone": ZONE,
        "Recurrence": json.dumps({"Pattern": "Daily", "Interval": 1,
                                  "StartDate": day.isoformat(), "EndDate": None,
                                  "Occurrences": 5})})])
    assert ins.ok, ins
    return str(ins.key), first


def _nth(first: dt.datetime, n: int) -> dt.datetime:
    """The original start of occurrence ``n``: the same Berlin time of day, n-1 days on."""
    return dt.datetime.combine(first.date() + dt.timedelta(days=n - 1), dt.time(9, 0),
                               tzinfo=BERLIN)


def test_deleted_and_moved_occurrences_show_on_the_master(
        mailbox: tuple[ExchangeProvider, Outlook]) -> None:
    provider, outlook = mailbox
    key, first = _series(provider)
    (single,) = provider.apply(WRITE, [Change("insert", "x", values={
        "Subject": "One-off", "Start": first + dt.timedelta(hours=3),
        "End": first + dt.timedelta(hours=4)})])
    assert single.ok, single
    before = provider.read(Q)
    master = before.frame.loc[key]
    assert master["DeletedOccurrences"] is None and master["ModifiedOccurrences"] is None
    outlook.delete(key, 2, _nth(first, 2))
    moved_to = _nth(first, 4).replace(hour=14)
    outlook.move(key, 4, _nth(first, 4), moved_to, moved_to + dt.timedelta(minutes=30))
    deleted = json.dumps([_utc(_nth(first, 2))], separators=(",", ":"))
    modified = json.dumps([{"OriginalStart": _utc(_nth(first, 4)), "Start": _utc(moved_to),
                            "End": _utc(moved_to + dt.timedelta(minutes=30))}],
                          separators=(",", ":"))
    # the change feed reports the master with its exceptions
    feed = provider.read(Q, cursor=before.cursor)
    assert not feed.complete and key in feed.frame.index
    assert feed.frame.loc[key, "DeletedOccurrences"] == deleted
    assert feed.frame.loc[key, "ModifiedOccurrences"] == modified
    assert feed.frame.loc[key, "Start"] == first.astimezone(dt.UTC)  # the series unchanged
    # a complete read and a lookup say the same
    full = provider.read(Q)
    assert full.frame.loc[key, "DeletedOccurrences"] == deleted
    assert full.frame.loc[key, "ModifiedOccurrences"] == modified
    found = provider.lookup(Q, [key])
    assert found.loc[key, "DeletedOccurrences"] == deleted
    assert found.loc[key, "ModifiedOccurrences"] == modified
    # a single event has none
    assert full.frame.loc[single.key, "DeletedOccurrences"] is None
    assert full.frame.loc[single.key, "ModifiedOccurrences"] is None


def test_exceptions_are_read_only_and_part_of_select_star(
        mailbox: tuple[ExchangeProvider, Outlook]) -> None:
    provider, _ = mailbox
    described = {f.name: f for f in provider.describe(Query("SELECT * FROM Calendar")).fields}
    assert described["DeletedOccurrences"].read_only
    assert described["ModifiedOccurrences"].read_only
    key, _ = _series(provider)
    for name in ("DeletedOccurrences", "ModifiedOccurrences"):
        (out,) = provider.apply(Q, [Change("update", "u", key, {name: "[]"})])
        assert not out.ok and out.error == f"{name} is read-only"


CALENDAR_TO_SQLITE = """
title: calendar -> SQLite
direction: left_to_right
left:
  provider: exchange
  connection_string: "{cs}"
  query: "SELECT Subject, Start, DeletedOccurrences, ModifiedOccurrences FROM Calendar"
right:
  provider: sql
  connection_string: "URL=sqlite:///events.db"
  query: events
  key: id
deletes: {{propagate: true, max_fraction: 0.9}}
"""


def test_a_calendar_synced_to_sqlite_shows_the_real_series(
        mailbox: tuple[ExchangeProvider, Outlook], sandbox: SandboxProcess, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from l2sync_dagster.spec.loader import load_connection
    from l2sync_dagster.state.store import StateStore
    from l2sync_dagster.sync.runner import Sync

    monkeypatch.delenv("L2SYNC_STATE_URL", raising=False)
    provider, outlook = mailbox
    key, first = _series(provider)
    outlook.delete(key, 3, _nth(first, 3))
    with sqlite3.connect(tmp_path / "events.db") as db:
        db.execute('CREATE TABLE events (id INTEGER PRIMARY KEY, "Subject" TEXT, '
                   '"Start" TIMESTAMP, "DeletedOccurrences" TEXT, "ModifiedOccurrences" TEXT)')
    cs = ews_cs(sandbox) if outlook.backend == "ews" else graph_cs(sandbox)
    (tmp_path / "connections").mkdir()
    path = tmp_path / "connections" / "calendar.yaml"
    path.write_text(CALENDAR_TO_SQLITE.format(cs=cs))
    spec = load_connection(path)
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")

    def row() -> tuple[Any, Any]:
        with sqlite3.connect(tmp_path / "events.db") as db:
            return db.execute('SELECT "DeletedOccurrences", "ModifiedOccurrences" FROM events '
                              'WHERE "Subject" = ?', ("Daily standup",)).fetchone()

    first_run = Sync(spec, store).run()
    assert first_run.status == "succeeded", first_run.counts()
    deleted, modified = row()
    assert json.loads(deleted) == [_utc(_nth(first, 3))] and modified is None
    # one more deleted and one moved in Outlook: the next run brings both (through the change
    # feed, which on Graph reports the deleted occurrence as removed: the series stays)
    outlook.delete(key, 2, _nth(first, 2))
    moved_to = _nth(first, 5).replace(hour=16)
    outlook.move(key, 5, _nth(first, 5), moved_to, moved_to + dt.timedelta(minutes=15))
    second = Sync(spec, store).run()
    assert second.status == "succeeded", second.counts()
    assert second.counts()["right"]["updated"] == 1, second.counts()
    assert second.counts()["right"].get("deleted", 0) == 0, second.counts()
    deleted, modified = row()
    assert json.loads(deleted) == [_utc(_nth(first, 2)), _utc(_nth(first, 3))]
    assert json.loads(modified) == [{"OriginalStart": _utc(_nth(first, 5)),
                                     "Start": _utc(moved_to),
                                     "End": _utc(moved_to + dt.timedelta(minutes=15))}]
    third = Sync(spec, store).run()
    assert third.status == "succeeded" and not any(
        third.counts()["right"].get(k, 0) for k in ("inserted", "updated", "deleted"))
