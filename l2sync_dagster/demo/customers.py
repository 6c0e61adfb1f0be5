"""The offline part of ``make demo``: a CSV file and a SQLite CRM synced both ways, edited on both
sides, synced again (with the conflicts it resolved), and synced a third time (nothing to do).

It needs no server and no credentials; it resets its own data and state each time it runs.
"""

import csv
import sqlite3
from pathlib import Path

from l2sync_dagster.cli import main as l2sync
from l2sync_dagster.spec.loader import find_connection
from l2sync_dagster.state.store import StateStore, default_state_url

CSV_ROWS = [
    ("C-1001", "Ada Lovelace", "ada@example.com", "+44 20 1234", "London", "2021-03-01"),
    ("C-1002", "Grace Hopper", "grace@example.com", "+1 212 5550", "New York", "2020-11-15"),
    ("C-1003", "Alan Turing", "alan@example.com", "", "Manchester", "2022-01-10"),
    ("C-1004", "Édith Piaf", "edith@example.com", "+33 1 4000", "Paris", ""),
]
CRM_ROWS = [
    # the same Grace (matched by email) with an older phone number
    ("C-1002", "Grace Hopper", "grace@example.com", "+1 212 0000", "New York", "2020-11-15"),
    ("C-2001", "Katherine Johnson", "katherine@example.com", "+1 757 5551", "Hampton",
     "2019-06-30"),
]


def _seed(project: Path) -> tuple[Path, Path]:
    data = project / "data" / "demo"
    data.mkdir(parents=True, exist_ok=True)
    csv_path, db_path = data / "customers.csv", data / "crm.db"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["customer_no", "name", "email", "phone", "city", "since"])
        w.writerows(CSV_ROWS)
    db_path.unlink(missing_ok=True)
    with sqlite3.connect(db_path) as db:
        db.execute(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY AUTOINCREMENT, customer_no TEXT "
            "UNIQUE, name TEXT NOT NULL, email_address TEXT, phone TEXT, city TEXT, "
            "customer_since DATE, updated_at TIMESTAMP)")
        db.executemany(
            "INSERT INTO customers (customer_no, name, email_address, phone, city, "
            "customer_since, updated_at) VALUES (?, ?, ?, ?, ?, ?, '2026-01-01 00:00:00')",
            CRM_ROWS)
    return csv_path, db_path


def _edit(csv_path: Path, db_path: Path) -> None:
    rows = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    for r in rows:
        if r["customer_no"] == "C-1001":
            r["phone"] = "+44 20 9999"          # only the CSV changes Ada's phone
        if r["customer_no"] == "C-1002":
            r["city"] = "Arlington"              # both sides change Grace's city: conflict
    rows.append({"customer_no": "C-1005", "name": "Hedy Lamarr", "email": "hedy@example.com",
                 "phone": "", "city": "Vienna", "since": "2023-05-05"})
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with sqlite3.connect(db_path) as db:
        now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
        db.execute(f"UPDATE customers SET name = 'Ada King-Lovelace', updated_at = {now} "
                   "WHERE customer_no = 'C-1001'")  # ...and the CRM changes her name: merged
        db.execute(f"UPDATE customers SET city = 'Washington', updated_at = {now} "
                   "WHERE customer_no = 'C-1002'")
        db.execute("DELETE FROM customers WHERE customer_no = 'C-1003'")  # deleted in the CRM


def run_demo(connections: Path) -> int:
    """Seed, sync, edit both sides, sync, sync again; returns the exit code."""
    spec = find_connection("customers_demo", connections)
    project = Path(spec.project_dir)
    csv_path, db_path = _seed(project)
    store = StateStore(default_state_url(project))
    store.reset(spec.name, history=True)
    store.force_unlock(spec.name)
    store.close()
    args = ["--connections", str(connections)]
    steps = [
        ("1. first sync: pairs Grace by e-mail, copies the others both ways", None),
        ("2. after edits on both sides: merge, conflict, insert, delete", _edit),
        ("3. nothing changed since: nothing to do", None),
    ]
    for title, edit in steps:
        if edit is not None:
            edit(csv_path, db_path)
        print(f"\n=== {title}")
        code = l2sync([*args, "run", "customers_demo"])
        if code != 0:
            return code
    print(f"\nCSV now:\n{csv_path.read_text(encoding='utf-8')}")
    with sqlite3.connect(db_path) as db:
        print("CRM now:")
        for row in db.execute("SELECT id, customer_no, name, email_address, phone, city, "
                              "customer_since FROM customers ORDER BY customer_no"):
            print("  ", row)
    print("\nstatus:")
    return l2sync([*args, "status", "customers_demo"])
