"""Helpers of the ``FROM Directory`` tests on both backends: the Graph connection string, the
Graph sandbox's directory control path (edit and delete a user), and a one-way connection
Directory -> SQLite run through the command line."""

import json
import sqlite3
from pathlib import Path

import pytest
from sandbox_process import SandboxProcess

from l2sync_dagster import cli

SECRET_ENV = "EXO_DIRECTORY_TEST_SECRET"


def exo_cs(sandbox: SandboxProcess, extra: str = "") -> str:
    """``Backend=graph`` against the sandbox, app credentials, mailbox sync@."""
    return (f"Backend=graph;URL={sandbox.urls['graph']}/v1.0;"
            f"Authority={sandbox.urls['token']}/sandbox;ClientId=l2sync-sandbox;"
            f"ClientSecret=env:{SECRET_ENV};CABundle={sandbox.ca_path};"
            f"Email=sync@sandbox.test{extra}")


def edit_user(sandbox: SandboxProcess, user: str, **properties: object) -> None:
    """Change a directory user's profile properties (Graph names) as an admin would."""
    sandbox.control("graph").call("POST", "directory/update",
                                  {"user": user, "properties": properties})


def delete_user(sandbox: SandboxProcess, user: str) -> None:
    """Delete a directory user."""
    sandbox.control("graph").call("POST", "directory/delete", {"user": user})


PEOPLE = """
direction: {direction}
left:
  provider: exchange
  connection_string: "{exo}"
  query: "SELECT GivenName, Surname, Department, EmailAddresses.EmailAddress1 FROM Directory"
right:
  provider: sql
  connection_string: "URL=sqlite:///{db}"
  query: people
  key: id
mapping:
  fields:
    - {{left: GivenName, right: given_name}}
    - {{left: Surname, right: surname}}
    - {{left: Department, right: department}}
    - {{left: EmailAddresses.EmailAddress1, right: email}}
deletes: {{propagate: true, max_fraction: 0.5}}
"""


def people_project(tmp_path: Path, exo: str, direction: str) -> Path:
    """A connections folder with ``people.yaml`` (Directory on ``exo`` -> people.db)."""
    db = tmp_path / "people.db"
    if not db.exists():
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, given_name TEXT, "
                         "surname TEXT, department TEXT, email TEXT)")
    folder = tmp_path / "connections"
    folder.mkdir(exist_ok=True)
    (folder / "people.yaml").write_text(PEOPLE.format(direction=direction, exo=exo, db=db))
    return folder


def run_people(folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    """``l2sync run people --json``: the exit code and the JSON report."""
    code = cli.main(["--connections", str(folder), "run", "people", "--json"])
    captured = capsys.readouterr()
    try:
        return code, json.loads(captured.out)
    except ValueError:
        return code, {"output": captured.out, "error": captured.err}


def people_rows(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """{"Given Surname": (given, department)} of people.db."""
    with sqlite3.connect(tmp_path / "people.db") as conn:
        rows = conn.execute("SELECT given_name, surname, department FROM people").fetchall()
    return {f"{g} {s}": (g, d) for g, s, d in rows}
