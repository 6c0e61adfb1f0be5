"""Temporary: a SQLite case to develop the suite (replaced by case_sql.py)."""
import sqlite3
from pathlib import Path

import pytest

try:
    from contract.harness import SideCase
except ImportError:  # pragma: no cover
    from harness import SideCase  # type: ignore[no-redef]


class _User:
    def __init__(self, db: Path) -> None:
        self.db = db

    def _c(self):
        return sqlite3.connect(self.db)

    def create(self, name, city):
        with self._c() as c:
            return str(c.execute("INSERT INTO t (name, city, updated_at) VALUES (?, ?, "
                                 "CURRENT_TIMESTAMP)", (name, city)).lastrowid)

    def update(self, key, *, name=None, city=None):
        with self._c() as c:
            if name is not None:
                c.execute("UPDATE t SET name=?, updated_at=datetime('now', '+1 hour') WHERE id=?", (name, int(key)))
            if city is not None:
                c.execute("UPDATE t SET city=?, updated_at=datetime('now', '+1 hour') WHERE id=?", (city, int(key)))

    def delete(self, key):
        with self._c() as c:
            c.execute("DELETE FROM t WHERE id=?", (int(key),))

    def records(self):
        with self._c() as c:
            return {str(r[0]): (r[1], r[2]) for r in c.execute("SELECT id, name, city FROM t")}


def make(request: pytest.FixtureRequest, tmp_path: Path) -> SideCase:
    db = tmp_path / "case.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, city TEXT, updated_at TIMESTAMP)")
    return SideCase("tmp-sqlite", "sql", f"URL=sqlite:///{db}", "t",
                    "SELECT id, name, city, updated_at FROM t WHERE city = 'in'",
                    "SELECT id, name, city, updated_at FROM t LIMIT 2", "name", "city",
                    _User(db), key="id", modified="updated_at")


CASES = {"tmp-sqlite": make}
