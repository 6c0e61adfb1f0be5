"""The ``sql`` provider's writes alone on PostgreSQL: N inserts with their keys, then N/10 updates
(``SqlProvider.apply``, BatchSize 5000), without the engine and the state store that
``sql_sync_bench.py`` times too.

Starts its own PostgreSQL server (Debian's package, loopback, temp dir; see
tests/postgres_server.py).

Usage: python bench/sql_apply_bench.py [--rows N] [--out bench/results/sql_apply.json]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import sqlalchemy as sa  # noqa: E402
from postgres_server import PostgresServer  # noqa: E402
from results_io import save_result  # noqa: E402

from l2sync_dagster.providers.base import Change, Query  # noqa: E402
from l2sync_dagster.providers.sql import SqlProvider  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--out", default="bench/results/sql_apply.json")
    args = ap.parse_args()
    n = args.rows
    pg = PostgresServer.start()
    try:
        url = sa.make_url(pg.url).set(password=pg.password)
        engine = sa.create_engine(url)
        with engine.begin() as c:
            c.exec_driver_sql("CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT, email TEXT, "
                              "city TEXT, amount DOUBLE PRECISION, since DATE, "
                              "updated_at TIMESTAMP)")
        p = SqlProvider(url, batch_size=5000)
        query = Query("t", modified="updated_at")
        inserts = [Change("insert", f"r{i}", key=str(i), values={
            "id": i, "name": f"Customer {i}", "email": f"c{i}@example.com", "city": "Oslo",
            "amount": 1.5, "since": "2020-01-11"}) for i in range(1, n + 1)]
        t0 = time.perf_counter()
        out = p.apply(query, inserts)
        inserted = time.perf_counter() - t0
        assert all(o.ok for o in out)
        updates = [Change("update", f"r{i}", key=str(i), values={"amount": 2.5})
                   for i in range(1, n + 1, 10)]
        t0 = time.perf_counter()
        out = p.apply(query, updates)
        updated = time.perf_counter() - t0
        assert all(o.ok for o in out)
        with engine.connect() as c:
            assert c.exec_driver_sql("SELECT count(*) FROM t WHERE amount = 2.5").scalar_one() \
                == len(updates)
        save_result({
            "rows": n,
            "insert_seconds": round(inserted, 2),
            "insert_rows_per_second": round(n / inserted),
            "updated_rows": len(updates),
            "update_seconds": round(updated, 2),
            "update_rows_per_second": round(len(updates) / updated),
        }, args.out, "python bench/sql_apply_bench.py")
        p.close()
        engine.dispose()
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
