"""The floor of the peer benchmark: a plain Python read of the SQLite rows and one psycopg 3
``COPY`` into PostgreSQL (``cursor.copy`` / ``write_row``), nothing else.

``initial``: creates ``customers_copy`` and copies every row. ``incremental``: reads the rows
whose ``updated_at`` is past the target's newest, copies them into a temporary table and
applies them with one ``INSERT ... ON CONFLICT (id) DO UPDATE``.

Usage: python bench/peers/floor_copy.py SQLITE MODE, with ``FLOOR_PG_DSN`` in the environment.
"""

import os
import sqlite3
import sys

import psycopg

COLUMNS = "id, name, email, city, amount, since, updated_at"
TABLE = ("(id BIGINT PRIMARY KEY, name TEXT, email TEXT, city TEXT, amount DOUBLE PRECISION, "
         "since DATE, updated_at TIMESTAMP)")


def copy_rows(cur: psycopg.Cursor, table: str, rows: sqlite3.Cursor) -> int:
    """COPY ``rows`` into ``table``; the number of rows copied."""
    n = 0
    with cur.copy(f"COPY {table} ({COLUMNS}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


def main() -> None:
    sqlite_path, mode = sys.argv[1:3]
    source = sqlite3.connect(sqlite_path)
    with psycopg.connect(os.environ["FLOOR_PG_DSN"]) as pg, pg.cursor() as cur:
        if mode == "initial":
            cur.execute(f"CREATE TABLE customers_copy {TABLE}")
            n = copy_rows(cur, "customers_copy",
                          source.execute(f"SELECT {COLUMNS} FROM customers"))
        elif mode == "incremental":
            cur.execute("SELECT to_char(max(updated_at), 'YYYY-MM-DD HH24:MI:SS') "
                        "FROM customers_copy")
            (watermark,) = cur.fetchone()
            cur.execute(f"CREATE TEMPORARY TABLE changed {TABLE} ON COMMIT DROP")
            n = copy_rows(cur, "changed", source.execute(
                f"SELECT {COLUMNS} FROM customers WHERE updated_at > ?", (watermark,)))
            updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS.split(", ")[1:])
            cur.execute(f"INSERT INTO customers_copy SELECT * FROM changed "
                        f"ON CONFLICT (id) DO UPDATE SET {updates}")
        else:
            raise SystemExit(f"mode must be initial or incremental, not {mode!r}")
    print(f"{mode}: {n} rows")


if __name__ == "__main__":
    main()
