"""Contract case for the ``file`` provider: a CSV file with columns ``id``, ``name``, ``city``.

A file has no query syntax, so there is no filtered or limited query; the sync makes the keys
(the file provider does not generate them). ``user`` rewrites the CSV as a person with a
spreadsheet would (new file content, new modification time).
"""

import csv
import io
import uuid
from pathlib import Path

import pytest
from harness import CaseFactory, SideCase

HEADER = ["id", "name", "city"]


class CsvUser:
    """Edits the CSV file directly (never through the provider)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _rows(self) -> list[dict[str, str]]:
        with self.path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def _write(self, rows: list[dict[str, str]]) -> None:
        fieldnames = list(rows[0]) if rows else HEADER
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fieldnames, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        self.path.write_text(buf.getvalue(), encoding="utf-8")

    def create(self, name: str, city: str) -> str:
        """Append a row with a new key of the user's choosing."""
        key = f"u-{uuid.uuid4().hex[:12]}"
        rows = self._rows()
        row = dict.fromkeys(rows[0] if rows else HEADER, "")
        row.update({"id": key, "name": name, "city": city})
        self._write([*rows, row])
        return key

    def update(self, key: str, *, name: str | None = None, city: str | None = None) -> None:
        """Change fields of the row with this key."""
        rows = self._rows()
        for row in rows:
            if row["id"] == key:
                if name is not None:
                    row["name"] = name
                if city is not None:
                    row["city"] = city
        self._write(rows)

    def delete(self, key: str) -> None:
        """Remove the row with this key."""
        self._write([r for r in self._rows() if r["id"] != key])

    def records(self) -> dict[str, tuple[str | None, str | None]]:
        """Every row: empty cells are None."""
        return {r["id"]: (r.get("name") or None, r.get("city") or None) for r in self._rows()}


def csv_case(request: pytest.FixtureRequest, tmp_path: Path) -> SideCase:
    """An empty CSV file (header only) in ``tmp_path``."""
    path = tmp_path / f"towns-{uuid.uuid4().hex[:8]}.csv"
    path.write_text(",".join(HEADER) + "\n", encoding="utf-8")
    return SideCase(
        id="file-csv",
        provider="file",
        connection_string=f"Path={path}",
        query=None,
        filtered_query=None,
        limited_query=None,
        name_field="name",
        city_field="city",
        user=CsvUser(path),
        key="id",
    )


CASES: dict[str, CaseFactory] = {"file-csv": csv_case}
