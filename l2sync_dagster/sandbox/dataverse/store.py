"""The rows of every table, their row versions, tombstones of deleted rows, and transactions.

Every write takes the next value of one organisation-wide counter as the row's
``versionnumber`` (Dataverse's rowversion): ETags are ``W/"<versionnumber>"`` and change
tracking asks "which rows have a version above the token's". A deleted row leaves a tombstone
with the version of its deletion. Callers hold the service lock.
"""

import json
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from l2sync_dagster.sandbox.dataverse.metadata import (
    BY_LOGICAL,
    INDUSTRY,
    TABLES,
    Table,
    utc_now,
)

Row = dict[str, Any]
_FIRST_VERSION = 1_000_000


class Store:
    """In-memory tables with an undo log for atomic change sets."""

    def __init__(self, first_version: int = _FIRST_VERSION) -> None:
        self.rows: dict[str, dict[str, Row]] = {s: {} for s in TABLES}
        self.tombstones: dict[str, dict[str, int]] = {s: {} for s in TABLES}
        self.version = first_version
        #: delta tokens below this version are expired (tokens of an earlier store included)
        self.token_floor = first_version
        self._undo: list[tuple[str, str, Row | None, int | None]] | None = None

    # -- versions and transactions ------------------------------------------------------

    def next_version(self) -> int:
        """The next row version."""
        self.version += 1
        return self.version

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes inside are undone when the block raises (nested blocks join the outer one)."""
        if self._undo is not None:
            yield
            return
        self._undo = []
        version = self.version
        try:
            yield
        except BaseException:
            for entity_set, key, row, tomb in reversed(self._undo):
                if row is None:
                    self.rows[entity_set].pop(key, None)
                else:
                    self.rows[entity_set][key] = row
                if tomb is None:
                    self.tombstones[entity_set].pop(key, None)
                else:
                    self.tombstones[entity_set][key] = tomb
            self.version = version
            raise
        finally:
            self._undo = None

    def _remember(self, entity_set: str, key: str) -> None:
        if self._undo is not None:
            row = self.rows[entity_set].get(key)
            self._undo.append((entity_set, key, dict(row) if row is not None else None,
                               self.tombstones[entity_set].get(key)))

    # -- writes ---------------------------------------------------------------------------

    def insert(self, table: Table, key: str, values: Row, *, when: str | None = None) -> Row:
        """A new row with ``values`` (already validated); system columns are filled in."""
        key = key.lower()
        self._remember(table.entity_set, key)
        now = when or utc_now()
        row: Row = {c.name: None for c in table.columns}
        row.update(values)
        row[table.key] = key
        row.setdefault("statecode", 0)
        if row.get("statecode") is None:
            row["statecode"] = 0
        if row.get("statuscode") is None:
            row["statuscode"] = 1 if row["statecode"] == 0 else 2
        row["createdon"] = row["modifiedon"] = now
        row["versionnumber"] = self.next_version()
        _computed(table, row)
        self.rows[table.entity_set][key] = row
        self.tombstones[table.entity_set].pop(key, None)
        return row

    def update(self, table: Table, key: str, values: Row) -> Row:
        """Change columns of an existing row; bumps its version and ``modifiedon``."""
        self._remember(table.entity_set, key)
        row = dict(self.rows[table.entity_set][key])
        row.update(values)
        row["modifiedon"] = utc_now()
        row["versionnumber"] = self.next_version()
        _computed(table, row)
        self.rows[table.entity_set][key] = row
        return row

    def delete(self, table: Table, key: str) -> None:
        """Remove a row, leave a tombstone, and clear lookups that pointed to it (the
        relationships are RemoveLink, so referencing rows change and get new versions)."""
        self._remember(table.entity_set, key)
        del self.rows[table.entity_set][key]
        self.tombstones[table.entity_set][key] = self.next_version()
        for other in TABLES.values():
            for c in other.columns:
                if c.kind == "lookup" and c.target == table.logical:
                    for okey, orow in list(self.rows[other.entity_set].items()):
                        if orow.get(c.name) == key:
                            self.update(other, okey, {c.name: None})

    def get(self, table: Table, key: str) -> Row | None:
        """The row with primary key ``key`` (None when there is none)."""
        return self.rows[table.entity_set].get(key.lower())

    def expire_tokens(self) -> None:
        """Every delta token handed out so far expires."""
        self.token_floor = self.next_version()

    # -- persistence and demo data --------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Everything, for ``--state``."""
        return {"rows": self.rows, "tombstones": self.tombstones, "version": self.version,
                "token_floor": self.token_floor}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Store":
        """A store saved by :meth:`to_json` (tables it does not know start empty)."""
        store = cls()
        for s in TABLES:
            store.rows[s] = data.get("rows", {}).get(s, {})
            store.tombstones[s] = data.get("tombstones", {}).get(s, {})
        store.version = int(data.get("version", _FIRST_VERSION))
        store.token_floor = int(data.get("token_floor", _FIRST_VERSION))
        return store

    def save(self, path: Path) -> None:
        """Write the store to ``path`` atomically."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json()))
        tmp.replace(path)

    @classmethod
    def demo(cls, first_version: int = _FIRST_VERSION) -> "Store":
        """20 accounts, 30 contacts linked to them, 5 projects (the same data every time);
        versions start above ``first_version`` so that a reset store refuses older tokens."""
        store = cls(first_version)
        rng = random.Random(20261125)
        accounts = store.seed("accounts", 20, rng=rng)
        contacts = []
        for i in range(30):
            first, last = FIRST[i % len(FIRST)], LAST[(i * 7) % len(LAST)]
            values = {"firstname": first, "lastname": last,
                      "emailaddress1": f"{first}.{last}@example.com".lower().replace("'", ""),
                      "telephone1": f"+1 555 01{i:02d}", "jobtitle": rng.choice(JOBS),
                      "birthdate": f"{1960 + i}-{1 + i % 12:02d}-{1 + i % 28:02d}",
                      "gendercode": 1 + i % 2, "donotemail": i % 5 == 0,
                      "_parentcustomerid_value": accounts[i % len(accounts)]}
            contacts.append(store.insert(BY_LOGICAL["contact"], _uuid(rng), values,
                                         when=_created(i + 20))["contactid"])
        account_table = BY_LOGICAL["account"]
        for i, key in enumerate(accounts[:15]):
            store.update(account_table, key, {"_primarycontactid_value": contacts[i]})
        for i in range(5):
            store.insert(BY_LOGICAL["new_project"], _uuid(rng), {
                "new_name": f"Project {i + 1}", "new_budget": 10000 * (i + 1) + 0.5,
                "new_startdate": f"2026-0{i + 1}-15", "new_status": 100000000 + i % 3,
                "_new_accountid_value": accounts[i]}, when=_created(60 + i))
        return store

    def seed(self, entity_set: str, count: int, *, rng: random.Random | None = None
             ) -> list[str]:
        """``count`` generated rows in ``entity_set``; returns their keys."""
        rng = rng or random.Random(len(self.rows[entity_set]) + self.version)
        table = TABLES[entity_set]
        start = len(self.rows[entity_set])
        keys = []
        for n in range(start, start + count):
            if entity_set == "accounts":
                values: Row = {
                    "name": f"{COMPANY[n % len(COMPANY)]} {n + 1}",
                    "accountnumber": f"AC-{n + 1:05d}", "telephone1": f"+1 555 1{n:05d}",
                    "emailaddress1": f"info{n + 1}@example.com",
                    "websiteurl": f"https://www{n + 1}.example.com",
                    "address1_city": CITY[n % len(CITY)][0],
                    "address1_country": CITY[n % len(CITY)][1],
                    "revenue": float(rng.randrange(10_000, 50_000_000, 1000)),
                    "numberofemployees": rng.randrange(1, 5000),
                    "creditonhold": n % 7 == 0,
                    "industrycode": rng.choice(list(INDUSTRY)),
                }
            elif entity_set == "contacts":
                values = {"firstname": FIRST[n % len(FIRST)], "lastname": f"{LAST[n % len(LAST)]}"
                          f" {n + 1}", "emailaddress1": f"contact{n + 1}@example.com"}
            else:
                values = {"new_name": f"Project {n + 1}", "new_status": 100000000}
            keys.append(self.insert(table, _uuid(rng), values, when=_created(n))[table.key])
        return keys


def _computed(table: Table, row: Row) -> None:
    if table.logical == "contact":
        full = " ".join(p for p in (row.get("firstname"), row.get("lastname")) if p)
        row["fullname"] = full or None


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _created(n: int) -> str:
    return f"2026-{1 + n // 28 % 12:02d}-{1 + n % 28:02d}T{8 + n % 10:02d}:{n % 60:02d}:00Z"


COMPANY = ("Contoso", "Fabrikam", "Northwind Traders", "Adventure Works", "Litware",
           "Tailspin Toys", "Wingtip Toys", "Proseware", "Alpine Ski House", "Blue Yonder")
CITY = (("Seattle", "United States"), ("Redmond", "United States"), ("London", "United Kingdom"),
        ("Berlin", "Germany"), ("Paris", "France"), ("Zürich", "Switzerland"),
        ("Toronto", "Canada"), ("Sydney", "Australia"))
FIRST = ("Nancy", "Andrew", "Janet", "Margaret", "Steven", "Michael", "Robert", "Laura", "Anne",
         "Sean", "Zoë", "José")
LAST = ("Davolio", "Fuller", "Leverling", "Peacock", "Buchanan", "Suyama", "King", "Callahan",
        "Dodsworth", "O'Brien", "Müller")
JOBS = ("Purchasing Manager", "CEO", "Sales Representative", "Accountant", "Engineer")
