"""The cost of an incremental run against the size of the table: the same number of changed
rows against tables of growing size, SQLite -> PostgreSQL one way (issue 15's curve).

For each size: the data of ``sql_sync_bench.py`` in SQLite, an initial sync into a fresh
PostgreSQL table (the state store in the same server), then three incremental runs of
``--changes`` changed rows each (new ``amount`` and ``updated_at``), timed in the process:

- ``follow``: as l2sync runs (``Sync.follow_changes``: the archive loaded for the touched pairs,
  the target read by key);
- ``full``: the same with ``follow_changes`` off (the whole archive loaded and the whole target
  read), the way every run worked before, measured in the same run for the ratio;
- ``nochange``: nothing changed since the last run.

Every run's target is checked: the changed rows carry the new amount.

Usage: python bench/incremental_curve.py [--sizes 100000,300000] [--changes 10000]
"""

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent),
                str(Path(__file__).resolve().parent.parent / "tests")]

from postgres_server import PostgresServer  # noqa: E402
from results_io import save_result  # noqa: E402
from sql_sync_bench import seed_sqlite  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from l2sync_dagster.spec.model import (  # noqa: E402
    ConnectionSpec,
    DeleteSpec,
    EntitySpec,
    FieldPairSpec,
    MappingSpec,
)
from l2sync_dagster.state.store import StateStore  # noqa: E402
from l2sync_dagster.sync.runner import Sync  # noqa: E402


def _spec(tmp: Path, pg_url: str, table: str) -> ConnectionSpec:
    return ConnectionSpec(
        name=table, path=tmp / "connections" / f"{table}.yaml", project_dir=tmp,
        direction="left_to_right",
        left=EntitySpec(provider="sql", connection_string=f"URL=sqlite:///{table}.db",
                        query="customers", key="id", modified="updated_at"),
        right=EntitySpec(provider="sql", connection_string=(
            f"URL={pg_url};Password=env:BENCH_PG_PASSWORD;BatchSize=5000"),
            query=table, key="id"),
        mapping=MappingSpec(auto=True, fields=[FieldPairSpec(left="id", right="id")]),
        deletes=DeleteSpec(propagate=True),
    )


def _change(db: Path, every: int, stamp: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE customers SET amount = amount + 1, updated_at = ? "
                     "WHERE id % ? = 0", (stamp, every))


def _timed(spec: ConnectionSpec, store: StateStore, follow: bool) -> tuple[float, dict]:
    sync = Sync(spec, store)
    sync.follow_changes = follow
    t0 = time.perf_counter()
    report = sync.run()
    seconds = time.perf_counter() - t0
    assert report.status == "succeeded", report.counts()
    return seconds, report.counts()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,300000")
    ap.add_argument("--changes", type=int, default=10_000)
    ap.add_argument("--out", default="bench/results/incremental_curve.json")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="l2sync-curve-"))
    pg = PostgresServer.start()
    points = []
    try:
        os.environ["BENCH_PG_PASSWORD"] = pg.password
        pg_url = pg.url.replace("postgresql://sync@", f"postgresql://sync:{pg.password}@", 1)
        engine = create_engine(pg_url)
        store = StateStore(pg_url)
        for n in sizes:
            table = f"customers_{n}"
            with engine.begin() as c:
                c.execute(text(f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, name TEXT, "
                               "email TEXT, city TEXT, amount DOUBLE PRECISION, since DATE, "
                               "updated_at TIMESTAMP)"))
            seed_sqlite(tmp / f"{table}.db", n)
            spec = _spec(tmp, pg.url, table)
            initial, _ = _timed(spec, store, True)
            every = max(1, n // args.changes)
            point = {"rows": n, "changed_rows": n // every, "initial_s": round(initial, 2)}
            for i, (label, follow) in enumerate((("follow", True), ("full", False),
                                                 ("nochange", True))):
                if label != "nochange":
                    _change(tmp / f"{table}.db", every, f"2026-02-0{i + 1} 00:00:00")
                seconds, counts = _timed(spec, store, follow)
                expected = 0 if label == "nochange" else n // every
                assert counts["right"]["updated"] == expected, counts
                point[f"{label}_s"] = round(seconds, 2)
            with engine.connect() as c:
                bumped = c.execute(text(f"SELECT count(*) FROM {table} "
                                        "WHERE updated_at = '2026-02-02 00:00:00'")).scalar_one()
            assert bumped == n // every, bumped
            point["full_over_follow"] = round(point["full_s"] / point["follow_s"], 2)
            points.append(point)
            print(point, flush=True)
        first = points[0]["follow_s"]
        result = {"changes": args.changes, "points": points,
                  "follow_growth_vs_smallest": [round(p["follow_s"] / first, 2)
                                                for p in points]}
        save_result(result, args.out,
                    f"python bench/incremental_curve.py --sizes {args.sizes} "
                    f"--changes {args.changes}")
        store.close()
        engine.dispose()
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
