"""Tenant scale: one for_each connection fanning a company directory out into every mailbox.

A directory of ``--people`` people (a SQL table the connection only reads) is synced one way
into the default contacts folder of each of ``--mailboxes`` staff mailboxes of the Graph
sandbox (``L2SYNC_SANDBOX_STAFF``, 20 ms latency per request), with
``l2sync run company --all --workers W`` timed from outside as a whole process: the initial
pass, then a pass with nothing changed. HTTP requests are the client's own count per
mailbox; the sandbox counts every operation (inner requests of a ``$batch`` too); writes are
the ``$batch`` requests (20 contacts each). Peak RSS is the l2sync process's.

Targets (issue 14): at most 30 writes per mailbox initially (500 contacts in $batch of 20 plus
the probes), at most 1 request per mailbox plus the directory read with nothing changed, 16
workers at least 6x faster than 1, memory not growing with the number of mailboxes.

Usage: ``python bench/fanout_bench.py [--mailboxes 1000] [--people 500] [--workers 1,4,16]
[--latency-ms 20]`` -> ``bench/results/fanout.json``.
"""

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import graph_bench  # noqa: E402
from results_io import save_result  # noqa: E402

from l2sync_dagster.sandbox.control import SandboxControl  # noqa: E402
from l2sync_dagster.sandbox.identities import staff_mailboxes  # noqa: E402

SECRET_ENV = "L2SYNC_BENCH_SECRET"
WRITE_OPERATIONS = ("batch",)


def start_sandbox(state: Path, latency_ms: int, staff: int
                  ) -> tuple[subprocess.Popen, dict[str, str]]:
    """The Graph sandbox of ``graph_bench`` with ``staff`` generated mailboxes."""
    return graph_bench.start_sandbox(state, latency_ms, {"L2SYNC_SANDBOX_STAFF": str(staff)})


def make_project(tmp: Path, urls: dict[str, str], mailboxes: list[str], people: int) -> Path:
    """connections/company.yaml and data/company.db (the directory and the staff list)."""
    (tmp / "connections").mkdir(parents=True)
    (tmp / "data").mkdir()
    with sqlite3.connect(tmp / "data" / "company.db") as db:
        db.execute("CREATE TABLE people (id TEXT PRIMARY KEY, given TEXT, surname TEXT, "
                   "email TEXT, company TEXT, department TEXT)")
        db.executemany("INSERT INTO people VALUES (?, ?, ?, ?, ?, ?)", [
            (f"p{i}", f"Given{i}", f"Surname{i}", f"person{i}@contoso.test", "Contoso",
             f"Department {i % 12}") for i in range(people)])
        db.execute("CREATE TABLE staff (email TEXT)")
        db.executemany("INSERT INTO staff VALUES (?)", [(m,) for m in mailboxes])
    common = (f"Authority={urls['token']}/sandbox;ClientId=l2sync-sandbox;"
              f"ClientSecret=env:{SECRET_ENV};CABundle={urls['ca']}")
    (tmp / "connections" / "company.yaml").write_text(f"""\
direction: left_to_right
for_each:
  mailbox: {{provider: sql, connection_string: "URL=sqlite:///data/company.db",
            query: "SELECT email FROM staff"}}
left:
  provider: sql
  connection_string: "URL=sqlite:///data/company.db"
  query: "SELECT id, given, surname, email, company, department FROM people"
  key: id
right:
  provider: exchange
  connection_string: "Backend=graph;URL={urls['graph']}/v1.0;{common};Email={{mailbox}}"
  query: "SELECT GivenName, Surname, EmailAddresses.EmailAddress1, CompanyName, Department
    FROM Contacts"
mapping:
  fields:
    - {{left: given, right: GivenName}}
    - {{left: surname, right: Surname}}
    - {{left: email, right: EmailAddresses.EmailAddress1}}
    - {{left: company, right: CompanyName}}
    - {{left: department, right: Department}}
""")
    return tmp / "connections"


def run_all(folder: Path, workers: int, store_url: str) -> dict[str, Any]:
    """``l2sync run company --all --workers N --json`` as a process: seconds, peak RSS, and
    the per-mailbox results."""
    cmd = [sys.executable, "-m", "l2sync_dagster.cli", "--connections", str(folder), "run",
           "company", "--all", "--workers", str(workers), "--json"]
    env = {**os.environ, SECRET_ENV: "sandbox", "L2SYNC_STATE_URL": store_url}
    out_path = folder.parent / "run.json"
    err_path = folder.parent / "run.err"
    t0 = time.perf_counter()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=folder.parent, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own peak RSS
    seconds = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"l2sync exited {code}: {err_path.read_text()[-3000:]}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "results": json.loads(out_path.read_text())}


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_setting(mailbox_count: int, people: int, workers: int, latency_ms: int
                ) -> dict[str, Any]:
    """A fresh tenant and project; the initial pass and the no-change pass with ``workers``."""
    tmp = Path(tempfile.mkdtemp(prefix="l2sync-fanout-bench-"))
    proc, urls = start_sandbox(tmp / "sandbox", latency_ms, mailbox_count)
    try:
        mailboxes = list(staff_mailboxes(mailbox_count))
        folder = make_project(tmp / "project", urls, mailboxes, people)
        control = SandboxControl("graph", urls["graph"], urls["ca"])
        store_url = f"sqlite:///{tmp / 'state.db'}"
        row: dict[str, Any] = {"mailboxes": mailbox_count, "people": people,
                               "workers": workers}
        for name in ("initial", "no_change"):
            control.reset_stats()
            sandbox_cpu = cpu_seconds(proc.pid)
            run = run_all(folder, workers, store_url)
            sandbox_cpu = cpu_seconds(proc.pid) - sandbox_cpu
            stats = control.stats()
            requests = stats["requests"]
            total = stats["total"]
            writes = sum(n for op, n in requests.items() if op in WRITE_OPERATIONS)
            results = run["results"]
            failed = [m for m, r in results.items() if "error" in r]
            inserted = sum(int(r.get("right", {}).get("inserted", 0)) for r in results.values()
                           if "error" not in r)
            written = sum(int(r.get("right", {}).get(k, 0)) for r in results.values()
                          if "error" not in r for k in ("inserted", "updated", "deleted"))
            # HTTP requests as the client made them (a $batch is one; the sandbox counts its
            # inner requests too, as Graph throttles them one by one)
            http = sum(int(r.get("requests", {}).get(side, {}).get("requests", 0))
                       for r in results.values() for side in ("left", "right"))
            row[name] = {
                "seconds": run["seconds"], "peak_rss_mb": run["peak_rss_mb"],
                "l2sync_cpu_s": run["cpu_s"], "sandbox_cpu_s": round(sandbox_cpu, 2),
                "http_requests": http, "requests_per_mailbox": round(http / mailbox_count, 2),
                "sandbox_operations": total,
                "writes_per_mailbox": round(writes / mailbox_count, 2),
                "contacts_written": written, "inserted": inserted, "failed": len(failed),
                "throttled": stats["throttled"],
                "by_operation": dict(sorted(requests.items())),
            }
            print(json.dumps({name: row[name], "workers": workers,
                              "mailboxes": mailbox_count}), file=sys.stderr, flush=True)
            if failed:
                raise RuntimeError(f"{len(failed)} mailboxes failed, e.g. "
                                   f"{failed[0]}: {results[failed[0]]['error']}")
        if row["initial"]["inserted"] != people * mailbox_count:
            raise RuntimeError(f"expected {people * mailbox_count} contacts written, got "
                               f"{row['initial']['inserted']}")
        if row["no_change"]["contacts_written"]:
            raise RuntimeError("the no-change pass wrote contacts")
        if stats["invalid_responses"]:
            raise RuntimeError(f"the sandbox produced invalid responses: "
                               f"{stats['invalid_responses'][:3]}")
        return row
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    """Run every setting and save ``bench/results/fanout.json``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mailboxes", type=int, default=1000)
    ap.add_argument("--people", type=int, default=500)
    ap.add_argument("--workers", default="1,4,16")
    ap.add_argument("--memory-mailboxes", type=int, default=100,
                    help="a smaller tenant run with the most workers, to compare peak RSS")
    ap.add_argument("--latency-ms", type=int, default=20)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "fanout.json"))
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    rows = [one_setting(args.mailboxes, args.people, w, args.latency_ms) for w in workers]
    small = one_setting(args.memory_mailboxes, args.people, max(workers), args.latency_ms)
    by_workers = {r["workers"]: r for r in rows}
    speedup = {}
    if 1 in by_workers:
        for w, r in by_workers.items():
            speedup[str(w)] = {p: round(by_workers[1][p]["seconds"] / r[p]["seconds"], 2)
                               for p in ("initial", "no_change")}
    widest = by_workers[max(workers)]
    result = {
        "benchmark": (f"for_each fan-out: {args.people} people into each of {args.mailboxes} "
                      "mailboxes (Graph sandbox)"),
        "latency_ms_per_request": args.latency_ms,
        "targets": {"initial_writes_per_mailbox": 30,
                    "no_change_requests_per_mailbox": "1 plus the directory read",
                    "speedup_16_vs_1": 6, "memory": "not growing with the mailboxes"},
        "rows": rows,
        "memory_check": {"mailboxes": [small["mailboxes"], args.mailboxes],
                         "peak_rss_mb_initial": [small["initial"]["peak_rss_mb"],
                                                 widest["initial"]["peak_rss_mb"]]},
        "speedup_vs_1_worker": speedup,
    }
    save_result(result, args.out, f"python bench/fanout_bench.py --mailboxes {args.mailboxes} "
                f"--people {args.people} --workers {args.workers} --latency-ms "
                f"{args.latency_ms}")


if __name__ == "__main__":
    main()
