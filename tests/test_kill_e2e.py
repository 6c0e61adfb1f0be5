"""`kill -9` of `l2sync run` at random moments of a 3,000-contact Exchange (EWS) <-> SQLite sync,
with people editing and deleting on both sides between the kill and the re-run. No match_on:
only the journal, the recorded keys and the stamps keep the sync from duplicating.
"""

import base64
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from exchange_users import EWS_PASSWORD_ENV, EwsUser, ews_cs
from sandbox_process import SandboxProcess

N = 3000
NAME = "kill_test"


def _contacts(user: EwsUser) -> dict[str, dict]:
    got = user.control.call("GET", f"items?mailbox={user.mailbox}&folder={user.folder}")
    return {i["id"]: i["fields"] for i in got["items"] if i["type"] == "Contact"}


def _created_order(item_id: str) -> int:
    """The sandbox's ids count up as items are created (base64 of ``AAMk:kind:mailbox:n``)."""
    return int(base64.b64decode(item_id).decode().rsplit(":", 1)[1])


def _email(fields: dict) -> str | None:
    return (fields.get("EmailAddresses") or {}).get("EmailAddress1")


def _rows(db: Path) -> dict[int, tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, first_name, email "
                                                         "FROM contacts")}


def test_kill_9_at_random_moments_then_edits(sandbox: SandboxProcess, tmp_path: Path) -> None:
    rng = random.Random(20261202)
    sandbox.control("ews").reset()
    user = EwsUser(sandbox)
    user.empty()
    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE contacts (id INTEGER PRIMARY KEY, first_name TEXT, "
                     "email TEXT, updated_at TIMESTAMP)")
        conn.executemany("INSERT INTO contacts (first_name, email, updated_at) VALUES "
                         "(?, ?, CURRENT_TIMESTAMP)",
                         [(f"P{i}", f"p{i}@example.test") for i in range(N)])
    (tmp_path / "connections").mkdir()
    (tmp_path / "connections" / f"{NAME}.yaml").write_text(f"""
direction: bidirectional
left:
  provider: exchange
  connection_string: "{ews_cs(sandbox)}"
  query: "SELECT GivenName, EmailAddresses.EmailAddress1 FROM Contacts"
right:
  provider: sql
  connection_string: "URL=sqlite:///{db}"
  query: contacts
  key: id
  modified: updated_at
mapping:
  auto: false
  fields:
    - {{left: GivenName, right: first_name}}
    - {{left: EmailAddresses.EmailAddress1, right: email}}
conflicts: {{policy: left_wins}}
deletes: {{propagate: true, max_fraction: 1.0}}
""")
    env = {**os.environ, EWS_PASSWORD_ENV: "sandbox"}
    cmd = [sys.executable, "-m", "l2sync_dagster.cli", "--connections",
           str(tmp_path / "connections"), "run", NAME]
    edited: dict[str, str] = {}
    deleted: set[str] = set()
    for _ in range(4):
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(1.5, 6.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # people at work between the kill and the re-run: enough edits that some land on
        # records the killed run had just created
        contacts = _contacts(user)
        # Outlook lists the newest contacts first: people edit those (the ones the killed run
        # had just created), and some others
        newest = sorted(contacts, key=_created_order)[-20:]
        others = rng.sample(sorted(contacts), min(20, len(contacts)))
        for key in dict.fromkeys(newest + others):
            email = _email(contacts[key])
            if email and email not in deleted:
                user.update(key, name=f"Outlook {email}")
                edited[email] = f"Outlook {email}"
        rows = _rows(db)
        with sqlite3.connect(db) as conn:
            for rid in rng.sample(sorted(rows), 20):
                email = rows[rid][1]
                if email not in deleted and email not in edited:
                    conn.execute("UPDATE contacts SET first_name = ?, updated_at = "
                                 "datetime('now', '+1 minute') WHERE id = ?",
                                 (f"Db {email}", rid))
                    edited[email] = f"Db {email}"
            for rid in rng.sample(sorted(rows), 5):
                email = rows[rid][1]
                if email not in edited and email not in deleted:
                    conn.execute("DELETE FROM contacts WHERE id = ?", (rid,))
                    deleted.add(email)
    for _ in range(2):
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    contacts = _contacts(user)
    ex = Counter(_email(f) for f in contacts.values())
    sq = Counter(e for _, e in _rows(db).values())
    assert max(ex.values()) == 1, [e for e, c in ex.items() if c > 1][:5]
    assert max(sq.values()) == 1, [e for e, c in sq.items() if c > 1][:5]
    assert set(ex) == set(sq)
    assert len(sq) == N - len(deleted)
    assert not deleted & set(sq)
    names = {_email(f): f.get("GivenName") for f in contacts.values()}
    for email, name in edited.items():
        assert names[email] == name, email
