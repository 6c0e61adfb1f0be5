"""Dataverse accounts <-> SQLite: 20,000 accounts into an empty table, then 1% changed back.

Starts ``l2sync sandbox`` with 20 ms latency added to every request, seeds the Dataverse sandbox
to N accounts (default 20,000), and runs a bidirectional connection through ``Sync``:

1. initial run: every account read from Dataverse (5000-row pages, change tracking on) and
   inserted into an empty SQLite table;
2. 1% of the SQLite rows edited, second run: Dataverse is read through its delta link, the
   edits are written back as PATCHes in ``$batch`` change sets (If-Match with the ETag);
3. batch-size sweep: 2,000 updates written straight through the provider with several batch
   sizes, to choose the default by measurement.

Requests are counted by the sandbox per operation (server side) and by the provider (client
side, including throttling retries).

Usage: python bench/dataverse_bench.py [--accounts N] [--latency-ms 20]
       [--out bench/results/dataverse.json]
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

from l2sync_dagster.providers.base import Change, Query  # noqa: E402
from l2sync_dagster.providers.dataverse import DataverseProvider  # noqa: E402
from l2sync_dagster.sandbox.token_service import TENANT_ID  # noqa: E402
from l2sync_dagster.spec.loader import load_connection  # noqa: E402
from l2sync_dagster.state.store import StateStore  # noqa: E402
from l2sync_dagster.sync.runner import Sync  # noqa: E402

CONNECTION = """
title: Dataverse accounts <-> SQLite (benchmark)
direction: bidirectional
left:
  provider: dataverse
  connection_string: "{cs}"
  query: "SELECT name, accountnumber, telephone1, address1_city FROM accounts"
right:
  provider: sql
  connection_string: "URL=sqlite:///crm.db"
  query: accounts
  key: id
mapping:
  auto: true
conflicts: {{policy: left_wins}}
"""


def connection_string(sb: SandboxProcess, extra: str = "") -> str:
    """The sandbox's accounts as a Layer2-style connection string (user and password)."""
    return (f"URL={sb.urls['dataverse']}/api/data/v9.2/accounts;"
            "Authentication=microsoft_modern_crm;User=sync@sandbox.test;"
            f"Password=env:BENCH_DV_PASSWORD;ClientId=l2sync-sandbox;TenantId={TENANT_ID};"
            f"Authority={sb.urls['token']};CABundle={sb.ca_path}{extra}")


def server_requests(sb: SandboxProcess) -> dict[str, int]:
    """Requests per operation the Dataverse sandbox answered since the last reset."""
    return dict(sb.control("dataverse").stats()["requests"])


def per_thousand(requests: int, records: int) -> float:
    """Requests per 1,000 records."""
    return round(requests * 1000 / records, 2) if records else 0.0


def phases(report: Any) -> dict[str, Any]:
    """Where a run's time went: each side's read and the whole apply step."""
    prep = report.prepared
    return {"read_dataverse_s": round(prep.reads["left"].seconds, 2),
            "read_sqlite_s": round(prep.reads["right"].seconds, 2),
            "apply_s": round(report.applied.seconds, 2)}


def sync_runs(sb: SandboxProcess, tmp: Path, n: int) -> dict[str, Any]:
    """The initial run and the 1% run back, through Sync."""
    ctl = sb.control("dataverse")
    with sqlite3.connect(tmp / "crm.db") as db:
        db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT, "
                   "accountnumber TEXT, telephone1 TEXT, address1_city TEXT)")
    (tmp / "connections").mkdir()
    path = tmp / "connections" / "accounts.yaml"
    path.write_text(CONNECTION.format(cs=connection_string(sb)))
    spec = load_connection(path)
    store = StateStore(f"sqlite:///{tmp / 'state.db'}")
    out: dict[str, Any] = {}

    ctl.reset_stats()
    sync = Sync(spec, store)
    t0 = time.perf_counter()
    first = sync.run()
    wall = time.perf_counter() - t0
    reqs = server_requests(sb)
    pages = reqs.get("accounts.track", 0)
    assert first.counts()["right"]["inserted"] == n, first.counts()
    out["initial"] = {
        "accounts": n, "seconds": round(wall, 2),
        "dataverse_requests": reqs, "client": sync.provider("left").stats(),  # type: ignore[attr-defined]
        "read_requests_per_1000": per_thousand(pages, n),
        "read_requests_per_1000_with_metadata": per_thousand(sum(reqs.values()), n),
        **phases(first),
    }
    sync.close()

    changed = n // 100
    with sqlite3.connect(tmp / "crm.db") as db:
        db.execute("UPDATE accounts SET telephone1 = '+49 221 ' || id WHERE id % 100 = 0")
        assert db.total_changes == changed
    ctl.reset_stats()
    sync = Sync(spec, store)
    t0 = time.perf_counter()
    second = sync.run()
    wall = time.perf_counter() - t0
    reqs = server_requests(sb)
    counts = second.counts()
    assert counts["left"]["updated"] == changed and counts["left"]["failed"] == 0, counts
    writes = reqs.get("batch", 0)
    out["one_percent_back"] = {
        "changed": changed, "seconds": round(wall, 2), "dataverse_requests": reqs,
        "client": sync.provider("left").stats(),  # type: ignore[attr-defined]
        "write_requests_per_1000": per_thousand(writes, changed),
        "delta_read_requests": reqs.get("accounts.delta", 0),
        **phases(second),
    }
    sync.close()
    ctl.reset_stats()
    third = Sync(spec, store).run()
    c = third.counts()
    out["third_run_writes"] = sum(c[s][k] for s in ("left", "right")
                                  for k in ("inserted", "updated", "deleted"))
    return out


def batch_sweep(sb: SandboxProcess, updates: int) -> list[dict[str, Any]]:
    """``updates`` PATCHes through the provider for several batch sizes (4 in flight)."""
    rows: list[dict[str, Any]] = []
    for size in (10, 50, 100, 200, 500, 1000):
        p = DataverseProvider.from_connection_string(
            connection_string(sb, f";BatchSize={size};Concurrency=4"))
        frame = p.read(Query("SELECT name, telephone1 FROM accounts")).frame.head(updates)
        changes = [Change("update", k, k, {"telephone1": f"+1 {size} {i}"}, v)
                   for i, (k, v) in enumerate(frame["_version"].items())]
        sb.control("dataverse").reset_stats()
        t0 = time.perf_counter()
        out = []
        for start in range(0, len(changes), p.max_batch_size()):
            out += p.apply(Query("SELECT name, telephone1 FROM accounts"),
                           changes[start:start + p.max_batch_size()])
        wall = time.perf_counter() - t0
        assert all(o.ok for o in out), [o.error for o in out if not o.ok][:3]
        reqs = server_requests(sb).get("batch", 0)
        rows.append({"batch_size": size, "updates": updates, "seconds": round(wall, 2),
                     "updates_per_second": round(updates / wall), "batch_requests": reqs,
                     "requests_per_1000": per_thousand(reqs, updates)})
        p.close()
    return rows


def main() -> None:
    """Run the benchmark and save the result."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=20_000)
    ap.add_argument("--latency-ms", type=int, default=20)
    ap.add_argument("--sweep-updates", type=int, default=2_000)
    ap.add_argument("--out", default="bench/results/dataverse.json")
    args = ap.parse_args()
    os.environ["BENCH_DV_PASSWORD"] = "sandbox"
    os.environ.pop("L2SYNC_STATE_URL", None)
    tmp = Path(tempfile.mkdtemp(prefix="l2sync-dv-bench-"))
    sb = SandboxProcess.start(tmp / "sandbox", "--latency-ms", str(args.latency_ms))
    try:
        existing = len(sb.control("dataverse").call("GET", "rows/accounts")["value"])
        sb.control("dataverse").call("POST", "seed", {"set": "accounts",
                                                      "count": args.accounts - existing})
        result: dict[str, Any] = {"benchmark": "dataverse accounts <-> SQLite",
                                  "latency_ms_per_request": args.latency_ms}
        result.update(sync_runs(sb, tmp, args.accounts))
        result["batch_size_sweep"] = batch_sweep(sb, args.sweep_updates)
        result["invalid_responses"] = sb.invalid_responses()
    finally:
        sb.stop()
    save_result(result, args.out, "python bench/dataverse_bench.py "
                f"--accounts {args.accounts} --latency-ms {args.latency_ms}")


if __name__ == "__main__":
    main()
