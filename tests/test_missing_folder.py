"""A folder the query names that does not exist (issue 14's ``FROM 'Contacts/Company
Directory'  # created when missing``), on both Exchange backends, as users meet it:

- on a side the connection writes to and holds nothing of: ``plan`` writes nothing (the folder
  stays missing), ``verify`` says the run creates it, ``run`` creates it and fills it, the next
  run has nothing to do;
- on a source side: an error, never an empty read (which would delete every copy);
- a target folder the user deleted after a sync (both ways): an error, nothing deleted on the
  other side, the folder not started again empty;
- a wildcard path that matches nothing: not found, nothing created;
- a crash while the new folder is filled, a user edit, then the re-run: nobody twice.
"""

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exchange_users import EWS_PASSWORD_ENV, GRAPH_SECRET_ENV, GraphUser, ews_cs, graph_cs
from sandbox_process import SandboxProcess
from test_sandbox_ews import account

from l2sync_dagster.contract import EntityMissing
from l2sync_dagster.providers.base import ProviderError, Query
from l2sync_dagster.providers.exchange import ExchangeProvider
from l2sync_dagster.spec.errors import LocatedError
from l2sync_dagster.spec.loader import load_connection
from l2sync_dagster.sync.runner import Sync

FOLDER = "Company Directory"
QUERY = f"SELECT GivenName, EmailAddresses.EmailAddress1 FROM 'Contacts/{FOLDER}'"
PEOPLE = [(1, "Ada", "ada@example.test"), (2, "Bo", "bo@example.test"),
          (3, "Cy", "cy@example.test"), (4, "Di", "di@example.test"),
          (5, "Ed", "ed@example.test")]


@pytest.fixture(params=["ews", "graph"])
def backend(request: pytest.FixtureRequest, sandbox: SandboxProcess,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The backend, with the sandbox's demo data (no 'Company Directory' folder)."""
    monkeypatch.setenv(EWS_PASSWORD_ENV, "sandbox")
    monkeypatch.setenv(GRAPH_SECRET_ENV, "sandbox")
    monkeypatch.delenv("L2SYNC_STATE_URL", raising=False)
    sandbox.control(request.param).reset()
    yield request.param
    sandbox.control(request.param).clear_faults()


def connection_string(sandbox: SandboxProcess, backend: str) -> str:
    return ews_cs(sandbox) if backend == "ews" else graph_cs(sandbox)


def project(tmp_path: Path, sandbox: SandboxProcess, backend: str, *,
            direction: str = "left_to_right", query: str = QUERY,
            extra: str = "") -> Path:
    """A project with people.db (five people) and one connection file into ``query``."""
    path = seed_people(tmp_path) / "directory_folder.yaml"
    path.write_text(f"""\
title: people into a folder of their own
direction: {direction}
{PEOPLE_SIDE}right:
  provider: exchange
  connection_string: "{connection_string(sandbox, backend)}"
  query: "{query}"
mapping:
  fields:
    - {{left: given_name, right: GivenName}}
    - {{left: email, right: EmailAddresses.EmailAddress1}}
{extra}""", encoding="utf-8")
    return path


#: the left side of every connection here: the people table
PEOPLE_SIDE = """left:
  provider: sql
  connection_string: "URL=sqlite:///people.db"
  query: "people"
  key: id
"""


def seed_people(tmp_path: Path) -> Path:
    """people.db with the five people; returns the connections folder."""
    (tmp_path / "connections").mkdir(exist_ok=True)
    with sqlite3.connect(tmp_path / "people.db") as db:
        db.execute("CREATE TABLE IF NOT EXISTS people (id INTEGER PRIMARY KEY, "
                   "given_name TEXT, email TEXT)")
        db.executemany("INSERT OR IGNORE INTO people VALUES (?, ?, ?)", PEOPLE)
    return tmp_path / "connections"


def run(path: Path, **options: Any) -> Any:
    sync = Sync(load_connection(path))
    try:
        return sync.run(**options)
    finally:
        sync.close()


def folder(sandbox: SandboxProcess, backend: str, query: str = QUERY) -> list[str] | None:
    """The e-mail addresses in the folder, or None when it does not exist."""
    exo = ExchangeProvider.from_connection_string(connection_string(sandbox, backend))
    try:
        frame = exo.read(Query(query)).frame
    except EntityMissing:
        return None
    finally:
        exo.close()
    return sorted(frame["EmailAddresses.EmailAddress1"])


def sql_rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path.parent.parent / "people.db") as db:
        return db.execute("SELECT id, given_name, email FROM people ORDER BY id").fetchall()


def delete_folder(sandbox: SandboxProcess, backend: str) -> None:
    """The user deletes the folder, in Outlook's way for each backend."""
    if backend == "ews":
        acc = account(sandbox)
        (acc.contacts / FOLDER).delete()
        return
    user = GraphUser(sandbox)
    base = user.base.rsplit("/contacts", 1)[0]
    children = user._ok("GET", f"{base}/contactFolders")["value"]
    [target] = [f for f in children if f["displayName"] == FOLDER]
    user._ok("DELETE", f"{base}/contactFolders/{target['id']}")


def test_plan_writes_nothing_verify_tells_and_run_creates_the_folder(
        tmp_path: Path, sandbox: SandboxProcess, backend: str) -> None:
    path = project(tmp_path, sandbox, backend)
    assert folder(sandbox, backend) is None

    sync = Sync(load_connection(path))
    try:
        said = sync.verify()["right"]
    finally:
        sync.close()
    assert f"folder 'Contacts/{FOLDER}'" in said or f"folder '{FOLDER}'" in said
    assert "first run that writes to it creates it" in said

    plan = run(path, dry_run=True)
    assert plan.counts()["right"]["to_insert"] == 5
    assert any("does not exist; the run creates it" in n for n in plan.prepared.notes)
    assert folder(sandbox, backend) is None  # a dry run never writes, not even a folder

    first = run(path)
    assert first.counts()["right"]["inserted"] == 5 and first.counts()["failed"] == 0
    assert any("created folder" in n for n in first.prepared.notes)
    assert folder(sandbox, backend) == sorted(p[2] for p in PEOPLE)
    again = run(path)
    assert {k: again.counts()["right"][k] for k in ("inserted", "updated", "deleted", "failed")
            } == {"inserted": 0, "updated": 0, "deleted": 0, "failed": 0}


def test_a_missing_source_folder_is_an_error_never_an_empty_read(
        tmp_path: Path, sandbox: SandboxProcess, backend: str) -> None:
    path = project(tmp_path, sandbox, backend, direction="right_to_left",
                   extra="mirror: true\n")
    with pytest.raises(LocatedError, match="a source that is missing is never read as empty"):
        run(path)
    assert sql_rows(path) == PEOPLE  # mirror: an empty read would have removed all five
    assert folder(sandbox, backend) is None


def test_a_target_folder_deleted_after_a_sync_is_not_started_again(
        tmp_path: Path, sandbox: SandboxProcess, backend: str) -> None:
    path = project(tmp_path, sandbox, backend, direction="bidirectional",
                   extra="deletes: {propagate: true}\n")
    assert run(path).counts()["right"]["inserted"] == 5
    delete_folder(sandbox, backend)
    with pytest.raises(LocatedError, match="Earlier runs synced 5 records with it"):
        run(path)
    assert sql_rows(path) == PEOPLE  # read as empty, the folder would have deleted them all
    assert folder(sandbox, backend) is None


def test_a_wildcard_path_that_matches_nothing_is_not_created(
        tmp_path: Path, sandbox: SandboxProcess, backend: str) -> None:
    query = "SELECT GivenName, EmailAddresses.EmailAddress1 FROM 'Contacts/Compa*'"
    path = project(tmp_path, sandbox, backend, query=query)
    with pytest.raises(ProviderError, match="folder not found") as err:
        run(path)
    assert "does not exist; the run creates it" not in str(err.value)
    exo = ExchangeProvider.from_connection_string(connection_string(sandbox, backend))
    with pytest.raises(ProviderError, match="folder not found") as err:
        exo.read(Query(query))
    assert not isinstance(err.value, EntityMissing)


@pytest.mark.parametrize("drop_after", [3, 5, 7])
def test_a_crash_while_the_new_folder_fills_then_a_user_edit(
        tmp_path: Path, sandbox: SandboxProcess, backend: str, drop_after: int) -> None:
    """The connection drops after ``drop_after`` requests (somewhere in reading, creating the
    folder or the inserts, two per batch); the user renames a contact that made it; the
    re-run completes without writing anybody twice or losing the edit's record."""
    path = project(tmp_path, sandbox, backend, extra="batch_size: 2\n")
    control = sandbox.control(backend)
    control.faults(drop_after=drop_after)
    with pytest.raises(ProviderError):
        run(path)
    control.clear_faults()
    exo = ExchangeProvider.from_connection_string(connection_string(sandbox, backend))
    try:
        made = exo.read(Query(QUERY)).frame
    except EntityMissing:
        made = None
    if made is not None and len(made):
        key = made.index[0]
        exo.apply(Query(QUERY), [_rename(key, made.loc[key, "_version"])])
    exo.close()
    again = run(path)
    assert again.counts()["failed"] == 0, again.counts()
    emails = folder(sandbox, backend)
    assert emails is not None and emails == sorted(p[2] for p in PEOPLE)


def _rename(key: str, version: Any) -> Any:
    from l2sync_dagster.providers.base import Change

    return Change("update", "user-edit", key, {"GivenName": "Renamed by the user"}, version)


# --- the same class on the file provider: a CSV that went away -----------------------------
def test_a_csv_source_that_went_away_is_an_error_not_an_empty_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CSV <-> SQLite both ways with deletes propagated: the CSV is moved away (a share not
    mounted); the run refuses instead of deleting the five rows from SQLite. A CSV target the
    connection holds nothing of is written, as before."""
    monkeypatch.delenv("L2SYNC_STATE_URL", raising=False)
    path = seed_people(tmp_path) / "csv_people.yaml"
    path.write_text(f"""\
direction: bidirectional
{PEOPLE_SIDE}right:
  provider: file
  connection_string: "Path=export/people.csv"
  key: id
deletes: {{propagate: true}}
""", encoding="utf-8")
    (tmp_path / "export").mkdir()
    assert run(path).counts()["right"]["inserted"] == 5  # missing target: written
    assert (tmp_path / "export" / "people.csv").is_file()
    (tmp_path / "export" / "people.csv").rename(tmp_path / "people.csv.moved")
    with pytest.raises(LocatedError, match="Earlier runs synced 5 records with it"):
        run(path)
    assert sql_rows(path) == PEOPLE
