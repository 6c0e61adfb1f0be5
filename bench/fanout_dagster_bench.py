"""Fan-out through Dagster: a ``for_each`` connection's partitions materialized as a backfill
makes its runs, one partition per run (``for_each.per_run: 1``, what every run was before) or
ranges of ``per_run`` mailboxes, each run reading the directory once.

The tenant and the connection of ``fanout_bench.py`` (the Graph sandbox with latency, a SQLite
directory, the mailboxes of generated staff). Each setting is a fresh tenant; its runs execute
in one process timed from outside (``execute_in_process`` on an ephemeral instance, one run
after the other, as a backfill with one run worker would), the initial pass and a no-change
pass. Reported: wall time, runs, directory reads (SELECTs on the directory), partitions
materialized.

Usage: ``python bench/fanout_dagster_bench.py [--mailboxes 200] [--people 100]
[--per-run 1,50] [--latency-ms 20]``; writes ``bench/results/fanout_dagster.json``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout_bench import SECRET_ENV, make_project, start_sandbox  # noqa: E402
from results_io import save_result  # noqa: E402

from l2sync_dagster.sandbox.identities import staff_mailboxes  # noqa: E402

#: the runs of one pass, in a process of their own
PASS = """
import json, sys, time
import dagster as dg
from l2sync_dagster.orchestration.assets import asset_keys, partition_range_request, run_tags_of
from l2sync_dagster.orchestration.definitions import build_definitions
from l2sync_dagster.orchestration.partitions import for_each_partitions_name
from l2sync_dagster.providers.sql import SqlProvider
from l2sync_dagster.spec.loader import load_connection
from l2sync_dagster.sync.for_each import for_each_values

folder, store_url = sys.argv[1], sys.argv[2]
reads = []
real = SqlProvider.read
def counting(self, query, cursor=None, **kwargs):
    if "FROM people" in query.text:
        reads.append(1)
    return real(self, query, cursor=cursor, **kwargs)
SqlProvider.read = counting
spec = load_connection(f"{folder}/company.yaml")
values = for_each_values(spec).values
job = build_definitions(folder, store_url).resolve_job_def(f"{spec.dagster_name}_job")
quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
per_run = spec.for_each.per_run
t0 = time.perf_counter()
runs = failed = 0
with dg.DagsterInstance.ephemeral() as instance:
    instance.add_dynamic_partitions(for_each_partitions_name(spec), values)
    for start in range(0, len(values), per_run):
        request = partition_range_request(values[start:start + per_run], "bench",
                                          run_tags_of(spec))
        result = job.execute_in_process(instance=instance, tags=request.tags,
                                        partition_key=request.partition_key,
                                        run_config=quiet, raise_on_error=False)
        runs += 1
        failed += not result.success
    done = instance.get_materialized_partitions(asset_keys(spec)["apply_right"])
print(json.dumps({"seconds": round(time.perf_counter() - t0, 2), "runs": runs,
                  "failed_runs": failed, "directory_reads": len(reads),
                  "partitions_materialized": len(done)}))
"""


def one_pass(folder: Path, store_url: str) -> dict[str, Any]:
    """One pass over every partition, in a process; its wall time measured from outside."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PASS, str(folder), store_url],
        capture_output=True, text=True, env={**os.environ, SECRET_ENV: "sandbox"},
        check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_seconds"] = round(time.perf_counter() - t0, 2)
    return out


def one_setting(mailboxes: int, people: int, per_run: int, latency_ms: int) -> dict[str, Any]:
    """A fresh tenant; the initial and the no-change pass in runs of ``per_run``."""
    tmp = Path(tempfile.mkdtemp(prefix="l2sync-fanout-dagster-"))
    proc, urls = start_sandbox(tmp / "sandbox", latency_ms, mailboxes)
    try:
        folder = make_project(tmp / "project", urls, list(staff_mailboxes(mailboxes)), people)
        path = folder / "company.yaml"
        path.write_text(path.read_text().replace(
            "for_each:\n", f"for_each:\n  per_run: {per_run}\n  workers: 4\n"))
        store_url = f"sqlite:///{tmp / 'state.db'}"
        row: dict[str, Any] = {"mailboxes": mailboxes, "people": people, "per_run": per_run}
        for name in ("initial", "no_change"):
            row[name] = one_pass(folder, store_url)
            print(json.dumps({name: row[name], "per_run": per_run}), file=sys.stderr,
                  flush=True)
            if row[name]["partitions_materialized"] != mailboxes or row[name]["failed_runs"]:
                raise RuntimeError(f"{name}: not every partition materialized: {row[name]}")
        return row
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    """Run every setting and save ``bench/results/fanout_dagster.json``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mailboxes", type=int, default=200)
    ap.add_argument("--people", type=int, default=100)
    ap.add_argument("--per-run", default="1,50")
    ap.add_argument("--latency-ms", type=int, default=20)
    args = ap.parse_args()
    rows = [one_setting(args.mailboxes, args.people, int(n), args.latency_ms)
            for n in args.per_run.split(",")]
    base = rows[0]
    for row in rows:
        for name in ("initial", "no_change"):
            row[name]["speedup_vs_first"] = round(
                base[name]["process_seconds"] / row[name]["process_seconds"], 2)
    command = ("python bench/fanout_dagster_bench.py "
               + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()))
    save_result({"settings": rows},
                Path(__file__).resolve().parent / "results" / "fanout_dagster.json", command)


if __name__ == "__main__":
    main()
