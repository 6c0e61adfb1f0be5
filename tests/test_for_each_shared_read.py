"""``l2sync run NAME --all``: the side that is the same for every mailbox (no ``{mailbox}`` in
its connection string or query, never written) is read once for all of them, and what each
mailbox gets from that one read is what a read of its own would give: updates, inserts and
deletes of the source reach every mailbox, a mirror restores what a user removed, and a
mailbox run on its own afterwards continues from the cursor the shared read left."""

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from l2sync_dagster import cli

MAILBOXES = ["alice@contoso.com", "bob@contoso.com", "carol@contoso.com", "dan@contoso.com"]

COMPANY = """\
direction: {direction}
mirror: {mirror}
deletes: true
for_each:
  mailbox: [{mailboxes}]
left:
  provider: sql
  connection_string: "URL=sqlite:///data/crm.db"
  query: "{source}"
  key: id
right:
  provider: file
  connection_string: "Path=out/{{mailbox}}.csv"
  key: id
"""


def project(tmp: Path, direction: str = "left_to_right", mirror: str = "true",
            source: str = "SELECT id, name FROM people") -> Path:
    (tmp / "connections").mkdir()
    (tmp / "data").mkdir()
    (tmp / "out").mkdir()
    (tmp / "connections" / "company.yaml").write_text(COMPANY.format(
        direction=direction, mirror=mirror, source=source,
        mailboxes=", ".join(MAILBOXES)))
    with sqlite3.connect(tmp / "data" / "crm.db") as db:
        db.execute("CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT)")
        db.executemany("INSERT INTO people VALUES (?, ?)",
                       [(str(i), f"person {i}") for i in range(6)])
    for mailbox in MAILBOXES:
        (tmp / "out" / f"{mailbox}.csv").write_text("id,name\n")
    return tmp / "connections"


def people(tmp: Path, statement: str, *args: object) -> None:
    with sqlite3.connect(tmp / "data" / "crm.db") as db:
        db.execute(statement, args)


def mailbox(tmp: Path, value: str) -> dict[str, str]:
    frame = pd.read_csv(tmp / "out" / f"{value}.csv", dtype=str, keep_default_na=False)
    return dict(zip(frame["id"], frame["name"], strict=True))


def run(folder: Path, capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code = cli.main(["--connections", str(folder), "run", "company", *args, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_the_source_is_read_once_and_every_mailbox_gets_the_same(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], source_reads: list[str]) -> None:
    folder = project(tmp_path)
    result = run(folder, capsys, "--all", "--workers", "3")
    assert len(source_reads) == 1
    expected = {str(i): f"person {i}" for i in range(6)}
    for value in MAILBOXES:
        assert result[value]["right"]["inserted"] == 6
        assert mailbox(tmp_path, value) == expected

    # the source changes (an update, an insert, a delete); a user removes a contact in one
    # mailbox and edits one in another: the mirror restores both
    people(tmp_path, "UPDATE people SET name = 'renamed' WHERE id = '1'")
    people(tmp_path, "INSERT INTO people VALUES ('9', 'newcomer')")
    people(tmp_path, "DELETE FROM people WHERE id = '5'")
    frame = pd.read_csv(tmp_path / "out" / "bob@contoso.com.csv", dtype=str)
    frame[frame["id"] != "2"].to_csv(tmp_path / "out" / "bob@contoso.com.csv", index=False)
    frame = pd.read_csv(tmp_path / "out" / "carol@contoso.com.csv", dtype=str)
    frame.loc[frame["id"] == "3", "name"] = "carol's edit"
    frame.to_csv(tmp_path / "out" / "carol@contoso.com.csv", index=False)
    source_reads.clear()
    run(folder, capsys, "--all", "--workers", "2")
    assert len(source_reads) == 1
    expected = {**{str(i): f"person {i}" for i in range(5)}, "1": "renamed", "9": "newcomer"}
    for value in MAILBOXES:
        assert mailbox(tmp_path, value) == expected, value

    # one mailbox on its own continues from where the shared read left it
    people(tmp_path, "UPDATE people SET name = 'again' WHERE id = '0'")
    source_reads.clear()
    result = run(folder, capsys, "--each", "dan@contoso.com")
    assert len(source_reads) == 1
    assert result["dan@contoso.com"]["right"]["updated"] == 1
    assert mailbox(tmp_path, "dan@contoso.com")["0"] == "again"
    assert mailbox(tmp_path, "alice@contoso.com")["0"] == "person 0"
    # and a pass with nothing changed writes nothing anywhere
    people(tmp_path, "UPDATE people SET name = 'person 0' WHERE id = '0'")
    run(folder, capsys, "--all")
    result = run(folder, capsys, "--all")
    assert all(not any(result[v]["right"].get(k) for k in ("inserted", "updated", "deleted"))
               for v in MAILBOXES)


def test_a_side_the_run_writes_is_read_per_mailbox(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], source_reads: list[str]) -> None:
    """Both ways, one mailbox's run may write the company side: a snapshot taken before it
    would be stale for the next mailbox, so each reads it itself."""
    folder = project(tmp_path, direction="bidirectional", mirror="false", source="people")
    run(folder, capsys, "--all", "--workers", "2")
    assert len(source_reads) == len(MAILBOXES)
