"""Graph providers: 10,000 contacts and 10,000 SharePoint list items, read and written through
the real msal + requests client against the sandbox with 20 ms latency per request.

Measures HTTP requests per 1,000 items (targets: reads at most 2 with page size 1,000, writes
at most 51 with 20 per $batch) and wall time, for:

- a complete read of 10,000 contacts (Graph backend of ``exchange``, contact delta) and an
  incremental read with nothing changed;
- 10,000 contact inserts (``apply``), then 1% updates;
- a complete read of 10,000 list items (``sharepoint``, list-item delta) and an incremental one;
- 10,000 list item inserts, then 1% updates;
- a whole ``Sync`` of the 10,000 contacts into an empty SharePoint list (engine included).

Usage: ``python bench/graph_bench.py [--count 10000] [--latency-ms 20]``
-> ``bench/results/graph.json``.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_io import save_result  # noqa: E402

from l2sync_dagster.providers.base import Change, Query  # noqa: E402
from l2sync_dagster.providers.exchange import ExchangeProvider  # noqa: E402
from l2sync_dagster.providers.graph.client import GraphClient  # noqa: E402
from l2sync_dagster.providers.sharepoint import SharePointProvider  # noqa: E402
from l2sync_dagster.sandbox.control import SandboxControl  # noqa: E402
from l2sync_dagster.spec.loader import load_connection  # noqa: E402
from l2sync_dagster.state.store import StateStore  # noqa: E402
from l2sync_dagster.sync.runner import Sync  # noqa: E402

SECRET_ENV = "L2SYNC_BENCH_SECRET"
SITE = "https://sandbox.sharepoint.com/sites/sales"
COLUMNS = [{"name": "Email", "type": "text"}, {"name": "City", "type": "text"},
           {"name": "Phone", "type": "text"}]


def start_sandbox(state: Path, latency_ms: int, env: dict[str, str] | None = None
                  ) -> tuple[subprocess.Popen, dict[str, str]]:
    """``l2sync sandbox --only token --only graph`` with latency (and ``env`` added to its
    environment); its URLs and CA path."""
    cmd = [sys.executable, "-m", "l2sync_dagster.cli", "sandbox", "--only", "token", "--only",
           "graph", "--latency-ms", str(latency_ms), "--state", str(state)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    urls: dict[str, str] = {}
    for line in proc.stdout or ():
        name, _, value = line.strip().partition(" ")
        if name == "ready":
            return proc, urls
        urls[name] = value
    raise RuntimeError("the sandbox did not start")


HTTP_REQUESTS = {"n": 0}


def _counting(count_request: Any) -> Any:
    """Wrap GraphClient.count_request to also count every client's requests (for Sync)."""
    def wrapper(self: GraphClient) -> None:
        HTTP_REQUESTS["n"] += 1
        count_request(self)
    return wrapper


def per_1000(requests: float, items: int) -> float:
    """Requests per 1,000 items."""
    return round(requests * 1000 / max(items, 1), 2)


def measure(provider: Any, what: str, count: int, fn: Any) -> tuple[dict[str, Any], Any]:
    """Run ``fn`` and report requests, requests per 1,000 items and seconds."""
    client = provider.backend.client if hasattr(provider, "backend") else provider.client
    client.reset_stats()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    stats = client.stats()
    row = {"what": what, "items": count, "requests": stats["requests"],
           "requests_per_1000": per_1000(stats["requests"], count),
           "seconds": round(seconds, 2), "throttle_wait_s": stats["throttle_wait_s"]}
    print(row, file=sys.stderr, flush=True)
    return row, out


def main() -> None:
    """Run the benchmark and save ``bench/results/graph.json``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--latency-ms", type=int, default=20)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "graph.json"))
    args = ap.parse_args()
    n = args.count
    os.environ[SECRET_ENV] = "sandbox"
    GraphClient.count_request = _counting(GraphClient.count_request)  # type: ignore[method-assign]
    tmp = Path(tempfile.mkdtemp(prefix="l2sync-graph-bench-"))
    proc, urls = start_sandbox(tmp / "state", args.latency_ms)
    try:
        common = (f"Authority={urls['token']}/sandbox;ClientId=l2sync-sandbox;"
                  f"ClientSecret=env:{SECRET_ENV};CABundle={urls['ca']}")
        control = SandboxControl("graph", urls["graph"], urls["ca"])
        control.call("POST", "lists", {"site": "sandbox.sharepoint.com:/sites/sales",
                                       "displayName": "BenchRead", "columns": COLUMNS})
        control.call("POST", "lists", {"site": "sandbox.sharepoint.com:/sites/sales",
                                       "displayName": "BenchWrite", "columns": COLUMNS})
        control.call("POST", "lists", {"site": "sandbox.sharepoint.com:/sites/sales",
                                       "displayName": "BenchSync", "columns": COLUMNS})
        control.call("POST", "seed/contacts", {"user": "alice@sandbox.test", "count": n})
        control.call("POST", "seed/items", {"list": "BenchRead", "count": n})

        def exo(email: str) -> ExchangeProvider:
            return ExchangeProvider.from_connection_string(
                f"Backend=graph;URL={urls['graph']}/v1.0;{common};Email={email}")

        def sp(list_name: str) -> SharePointProvider:
            return SharePointProvider.from_connection_string(
                f"URL={SITE}/Lists/{list_name};GraphURL={urls['graph']}/v1.0;{common}")

        rows = []
        contacts = Query("SELECT GivenName, Surname, EmailAddresses.EmailAddress1, CompanyName, "
                         "PhoneNumbers.BusinessPhone, PhysicalAddresses.Business.City "
                         "FROM Contacts")
        reader = exo("alice@sandbox.test")
        row, full = measure(reader, "contacts: complete read", n, lambda: reader.read(contacts))
        assert len(full.frame) == n, len(full.frame)
        rows.append(row)
        row, _ = measure(reader, "contacts: incremental read, nothing changed", n,
                         lambda: reader.read(contacts, cursor=full.cursor))
        rows.append(row)

        writer = exo("sales@sandbox.test")
        writer.read(contacts)  # folder resolved before counting
        inserts = [Change("insert", f"c{i}", None, {
            "GivenName": f"Bench{i}", "Surname": "Contact",
            "EmailAddresses.EmailAddress1": f"bench{i}@example.test",
            "PhysicalAddresses.Business.City": "Leeds"}) for i in range(n)]

        def apply_all(provider: Any, q: Query, changes: list[Change]) -> list[Any]:
            out: list[Any] = []
            size = provider.max_batch_size()
            for start in range(0, len(changes), size):
                out += provider.apply(q, changes[start:start + size])
            return out

        row, outs = measure(writer, "contacts: insert", n,
                            lambda: apply_all(writer, contacts, inserts))
        assert all(o.ok for o in outs)
        rows.append(row)
        upd = [Change("update", f"u{i}", o.key, {"CompanyName": "Changed Ltd"}, o.version)
               for i, o in enumerate(outs[: n // 100])]
        row, outs2 = measure(writer, "contacts: update 1%", len(upd),
                             lambda: apply_all(writer, contacts, upd))
        assert all(o.ok for o in outs2)
        rows.append(row)

        q = Query()
        list_reader = sp("BenchRead")
        list_reader.verify(q)
        row, items = measure(list_reader, "list items: complete read", n,
                             lambda: list_reader.read(q))
        assert len(items.frame) == n
        rows.append(row)
        row, _ = measure(list_reader, "list items: incremental read, nothing changed", n,
                         lambda: list_reader.read(q, cursor=items.cursor))
        rows.append(row)
        list_writer = sp("BenchWrite")
        list_writer.verify(q)
        item_inserts = [Change("insert", f"i{i}", None, {"Title": f"Item {i}",
                                                         "Email": f"i{i}@example.test",
                                                         "City": "York"}) for i in range(n)]
        row, outs3 = measure(list_writer, "list items: insert", n,
                             lambda: apply_all(list_writer, q, item_inserts))
        assert all(o.ok for o in outs3)
        rows.append(row)
        item_upd = [Change("update", f"v{i}", o.key, {"City": "Hull"}, o.version)
                    for i, o in enumerate(outs3[: n // 100])]
        row, outs4 = measure(list_writer, "list items: update 1%", len(item_upd),
                             lambda: apply_all(list_writer, q, item_upd))
        assert all(o.ok for o in outs4)
        rows.append(row)

        conn = tmp / "connections"
        conn.mkdir()
        (conn / "bench.yaml").write_text(f"""
title: bench contacts -> list
direction: left_to_right
left:
  provider: exchange
  connection_string: "Backend=graph;URL={urls['graph']}/v1.0;{common};Email=alice@sandbox.test"
  query: "SELECT GivenName, Surname, EmailAddresses.EmailAddress1, PhysicalAddresses.Business.City
    FROM Contacts"
right:
  provider: sharepoint
  connection_string: "URL={SITE}/Lists/BenchSync;GraphURL={urls['graph']}/v1.0;{common}"
mapping:
  fields:
    - {{left: Surname, right: Title}}
    - {{left: EmailAddresses.EmailAddress1, right: Email}}
    - {{left: PhysicalAddresses.Business.City, right: City}}
""")
        store = StateStore(f"sqlite:///{tmp / 'state.db'}")
        spec = load_connection(conn / "bench.yaml")
        HTTP_REQUESTS["n"] = 0
        t0 = time.perf_counter()
        report = Sync(spec, store).run()
        seconds = time.perf_counter() - t0
        total = HTTP_REQUESTS["n"]
        assert report.status == "succeeded" and report.counts()["right"]["inserted"] == n
        sync_row = {"what": f"Sync: {n} contacts -> empty SharePoint list (engine included, "
                            "both reads and all writes)",
                    "items": n, "requests": total, "requests_per_1000": per_1000(total, n),
                    "seconds": round(seconds, 2)}
        print(sync_row, file=sys.stderr)
        rows.append(sync_row)
        t0 = time.perf_counter()
        HTTP_REQUESTS["n"] = 0
        again = Sync(spec, store).run()
        rows.append({"what": "Sync again, nothing changed", "items": n,
                     "requests": HTTP_REQUESTS["n"],
                     "seconds": round(time.perf_counter() - t0, 2),
                     "written": sum(again.counts()["right"].get(k, 0)
                                    for k in ("inserted", "updated", "deleted"))})
        reads = [r for r in rows if "complete read" in r["what"]]
        writes = [r for r in rows if r["what"].endswith(": insert")]
        result = {
            "benchmark": f"graph providers: {n} contacts and {n} list items",
            "latency_ms_per_request": args.latency_ms,
            "targets": {"read_requests_per_1000": 2, "write_requests_per_1000": 51},
            "met": {"reads": all(r["requests_per_1000"] <= 2 for r in reads),
                    "writes": all(r["requests_per_1000"] <= 51 for r in writes)},
            "rows": rows,
        }
        save_result(result, args.out, "python bench/graph_bench.py "
                    f"--count {n} --latency-ms {args.latency_ms}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
