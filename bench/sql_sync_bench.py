"""SQLite -> PostgreSQL: initial sync of N rows (default 1,000,000), then a 1% incremental sync.

Starts its own PostgreSQL server (Debian's package, loopback, temp dir; see
tests/postgres_server.py), uses PostgreSQL as the state store too, and reports rows per second.

Usage: python bench/sql_sync_bench.py [--rows N] [--out bench/results/sql_sync.json]
"""

import argparse
import datetime as dt
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from postgres_server import PostgresServer  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from l2sync_dagster.spec.model import ConnectionSpec, DeleteSpec, EntitySpec  # noqa: E402
from l2sync_dagster.state.store import StateStore  # noqa: E402
from l2sync_dagster.sync.runner import Sync  # noqa: E402


def seed_sqlite(path: Path, n: int) -> None:
    rng = np.random.default_rng(1)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT, "
                   "city TEXT, amount REAL, since DATE, updated_at TIMESTAMP)")
        cities = ["Oslo", "Rome", "Riga", "Kyiv", "Bern", "Lima", "Pune"]
        amounts = rng.normal(1000, 300, n).round(2)
        rows = ((i, f"Customer {i}", f"c{i}@example.com", cities[i % 7], float(amounts[i]),
                 f"20{10 + i % 15}-0{1 + i % 9}-1{i % 9}", "2026-01-01 00:00:00")
                for i in range(1, n + 1))
        db.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--out", default="bench/results/sql_sync.json")
    args = ap.parse_args()
    n = args.rows
    tmp = Path(tempfile.mkdtemp(prefix="l2sync-bench-"))
    pg = PostgresServer.start()
    try:
        os.environ["BENCH_PG_PASSWORD"] = pg.password
        pg_url = pg.url.replace("postgresql://sync@", f"postgresql://sync:{pg.password}@", 1)
        engine = create_engine(pg_url)
        with engine.begin() as c:
            c.execute(text("CREATE TABLE customers_copy (id BIGINT PRIMARY KEY, name TEXT, "
                           "email TEXT, city TEXT, amount DOUBLE PRECISION, since DATE, "
                           "updated_at TIMESTAMP)"))
        seed_sqlite(tmp / "source.db", n)
        spec = ConnectionSpec(
            name="bench", path=tmp / "connections" / "bench.yaml", project_dir=tmp,
            direction="left_to_right",
            left=EntitySpec(provider="sql", connection_string="URL=sqlite:///source.db",
                            query="customers", key="id", modified="updated_at"),
            right=EntitySpec(provider="sql", connection_string=(
                f"URL={pg.url};Password=env:BENCH_PG_PASSWORD;BatchSize=5000"),
                query="customers_copy", key="id"),
            deletes=DeleteSpec(propagate=True),
        )
        store = StateStore(pg_url)
        sync = Sync(spec, store)
        t0 = time.perf_counter()
        first = sync.run()
        initial = time.perf_counter() - t0
        assert first.status == "succeeded", first.counts()
        with engine.connect() as c:
            assert c.execute(text("SELECT count(*) FROM customers_copy")).scalar_one() == n

        changed = n // 100
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        with sqlite3.connect(tmp / "source.db") as db:
            db.execute("UPDATE customers SET amount = amount + 1, updated_at = ? "
                       "WHERE id % 100 = 0", (now,))
        sync = Sync(spec, store)
        t0 = time.perf_counter()
        second = sync.run()
        incremental = time.perf_counter() - t0
        counts = second.counts()
        assert counts["right"]["updated"] == changed, counts
        result = {
            "rows": n,
            "initial_seconds": round(initial, 2),
            "initial_rows_per_second": round(n / initial),
            "incremental_changed_rows": changed,
            "incremental_seconds": round(incremental, 2),
            "incremental_changed_rows_per_second": round(changed / incremental),
            "incremental_read_was_incremental": second.prepared.reads["left"].cursor_used
            is not None,
            "left_rows_read_incrementally": counts["left"]["read"],
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                       f"{platform.python_version()}",
            "command": "python bench/sql_sync_bench.py",
        }
        print(json.dumps(result, indent=2))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        store.close()
        engine.dispose()
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
