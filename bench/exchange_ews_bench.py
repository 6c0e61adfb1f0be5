"""Exchange (EWS, exchangelib) <-> SQLite: 10,000 contacts into an empty table, then 1% of the
rows changed in SQLite and written back to Exchange, then a run with nothing changed.

Starts ``l2sync sandbox`` (the strict EWS sandbox) with 20 ms latency injected per request,
seeds the Contacts folder of sales@sandbox.test, and runs the example connection's shape
(bidirectional, explicit mapping) through the engine (``Sync``). Requests are counted by the
sandbox per EWS operation (server side) and by the provider (client side, ``stats()``).

Targets: reads <= 12 requests per 1,000 items, writes <= 11 per 1,000, an incremental run with
nothing changed <= 2 requests per folder.

Usage: python bench/exchange_ews_bench.py [--contacts N] [--latency-ms 20]
       [--out bench/results/exchange_ews.json]
"""

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from results_io import save_result  # noqa: E402
from sandbox_process import SandboxProcess  # noqa: E402

from l2sync_dagster.spec.model import (  # noqa: E402
    ConnectionSpec,
    DeleteSpec,
    EntitySpec,
    FieldPairSpec,
    MappingSpec,
)
from l2sync_dagster.state.store import StateStore  # noqa: E402
from l2sync_dagster.sync.runner import Sync  # noqa: E402

MAILBOX = "sales@sandbox.test"
QUERY = ("SELECT GivenName, Surname, CompanyName, JobTitle, EmailAddresses.EmailAddress1, "
         "PhoneNumbers.BusinessPhone, PhysicalAddresses.Business.City, Birthday, Categories, "
         "Ext.CrmId FROM Contacts")
PAIRS = [("GivenName", "first_name"), ("Surname", "last_name"), ("CompanyName", "company"),
         ("JobTitle", "job_title"), ("EmailAddresses.EmailAddress1", "email"),
         ("PhoneNumbers.BusinessPhone", "phone"), ("PhysicalAddresses.Business.City", "city"),
         ("Birthday", "birthday"), ("Categories", "categories"), ("Ext.CrmId", "crm_id")]
WRITE_OPS = ("CreateItem", "UpdateItem", "DeleteItem")


def spec(project: Path, ews_url: str) -> ConnectionSpec:
    """The connection: Exchange contacts (left) <-> SQLite table ``contacts`` (right)."""
    return ConnectionSpec(
        name="exchange_bench", title="Exchange contacts <-> SQLite (bench)",
        path=project / "exchange_bench.yaml",
        direction="bidirectional", project_dir=str(project),
        left=EntitySpec(provider="exchange", connection_string=(
            f"URL={ews_url}/EWS/Exchange.asmx;User=sync@sandbox.test;"
            f"Password=env:EWS_BENCH_PASSWORD;Email={MAILBOX};Authentication=Basic"),
            query=QUERY),
        right=EntitySpec(provider="sql", connection_string=f"URL=sqlite:///{project}/bench.db",
                         query="contacts", key="id", modified="updated_at"),
        mapping=MappingSpec(auto=False, fields=[
            FieldPairSpec(left=a, right=b, type="date" if b == "birthday" else
                          "json" if b == "categories" else None) for a, b in PAIRS]),
        match_on=["email"], deletes=DeleteSpec(propagate=True, max_fraction=0.5),
    )


def run(sync_spec: ConnectionSpec, store: StateStore, control: Any) -> dict[str, Any]:
    """One run: counts, seconds, server-side requests per operation, client-side stats."""
    control.reset_stats()
    sync = Sync(sync_spec, store)
    t0 = time.perf_counter()
    try:
        report = sync.run()
        counts = report.counts()
        client = sync.provider("left").stats()  # type: ignore[attr-defined]
    finally:
        sync.close()
    seconds = time.perf_counter() - t0
    server = control.stats()
    reads = report.prepared.reads if report.prepared else {}
    return {"seconds": round(seconds, 2),
            "exchange_read_seconds": round(reads["left"].seconds, 2) if reads else None,
            "sqlite_read_seconds": round(reads["right"].seconds, 2) if reads else None,
            "apply_seconds": round(report.applied.seconds, 2) if report.applied else None,
            "counts": counts, "server": server["requests"], "server_total": server["total"],
            "client": client}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=10_000)
    ap.add_argument("--latency-ms", type=int, default=20)
    ap.add_argument("--out", default="bench/results/exchange_ews.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="l2sync-exbench-"))
    os.environ["EWS_BENCH_PASSWORD"] = "sandbox"
    os.environ.pop("L2SYNC_STATE_URL", None)
    sandbox = SandboxProcess.start(tmp / "sandbox", "--latency-ms", str(args.latency_ms))
    try:
        control = sandbox.control("ews")
        control.reset()
        control.call("POST", "items", {"mailbox": MAILBOX, "folder": "contacts",
                                       "count": args.contacts - 12})
        n = args.contacts
        with sqlite3.connect(tmp / "bench.db") as db:
            db.execute("CREATE TABLE contacts (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                       "first_name TEXT, last_name TEXT, company TEXT, job_title TEXT, "
                       "email TEXT, phone TEXT, city TEXT, birthday DATE, categories TEXT, "
                       "crm_id TEXT, updated_at TIMESTAMP)")
        s = spec(tmp, sandbox.urls["ews"])
        store = StateStore(f"sqlite:///{tmp / 'state.db'}")

        first = run(s, store, control)
        assert first["counts"]["right"]["inserted"] == n, first["counts"]

        changed = n // 100
        with sqlite3.connect(tmp / "bench.db") as db:
            db.execute("UPDATE contacts SET city = 'Oslo', phone = '+47 000', "
                       "updated_at = '2031-01-01 00:00:00' WHERE id <= ?", (changed,))
        second = run(s, store, control)
        assert second["counts"]["left"]["updated"] == changed, second["counts"]
        third = run(s, store, control)
        assert third["counts"]["left"]["updated"] == 0 and third["counts"]["right"][
            "inserted"] == 0, third["counts"]

        reads = first["server_total"]
        writes = sum(second["server"].get(op, 0) for op in WRITE_OPS)
        result = {
            "benchmark": "exchange_ews",
            "contacts": n,
            "latency_ms_per_request": args.latency_ms,
            "initial_sync": first,
            "one_percent_back": second,
            "nothing_changed": third,
            "reads_requests_per_1000_items": round(reads * 1000 / n, 2),
            "writes_requests_per_1000_items": round(writes * 1000 / changed, 2),
            "incremental_run_requests_per_folder": third["server_total"],
            "targets": {"reads_per_1000": 12, "writes_per_1000": 11,
                        "incremental_requests_per_folder": 2},
        }
        result["targets_met"] = (result["reads_requests_per_1000_items"] <= 12
                                 and result["writes_requests_per_1000_items"] <= 11
                                 and third["server_total"] <= 2)
        bad = sandbox.invalid_responses()
        result["sandbox_invalid_responses"] = bad
    finally:
        sandbox.stop()
    save_result(result, args.out,
                f"python bench/exchange_ews_bench.py --contacts {args.contacts} "
                f"--latency-ms {args.latency_ms}")


if __name__ == "__main__":
    main()
