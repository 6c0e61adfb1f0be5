"""The provider contract suite's harness: one :class:`SideCase` per provider configuration.

A case module (``tests/contract/case_<provider>.py``) exposes ``CASES``: a dict from a case id
(``"sql-sqlite"``, ``"exchange-ews"``...) to a factory ``make(request, tmp_path) -> SideCase``.
The factory may use session fixtures through ``request.getfixturevalue`` (``sandbox``,
``postgres``) and must leave the entity empty (no records) when it returns.

Every case describes the same small entity: records with two writable text fields, ``name``
and ``city`` (the case says what the provider calls them), so that the suite can pair the side
with a SQLite table and run real syncs through the runner. ``user`` changes the system the way a
person would (Outlook, the SharePoint web UI, another application), never through our provider.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest


class UserEdits(Protocol):
    """Changes made to the system by a person, bypassing the provider under test."""

    def create(self, name: str, city: str) -> str:
        """Create a record; return its native key as the provider reports it."""
        ...

    def update(self, key: str, *, name: str | None = None, city: str | None = None) -> None:
        """Change fields of a record."""
        ...

    def delete(self, key: str) -> None:
        """Delete a record."""
        ...

    def records(self) -> dict[str, tuple[str | None, str | None]]:
        """Every record of the entity (no filter, no limit): key -> (name, city)."""
        ...


@dataclass
class SideCase:
    """One side of a connection for the contract suite.

    ``query`` selects the whole entity and is writable. ``filtered_query`` selects, from the
    same entity, only records whose city is ``'in'`` (the provider's own WHERE / $filter
    syntax); ``limited_query`` at most 2 records (TOP 2 or the provider's syntax). None means
    the provider has no such syntax.
    """

    id: str
    provider: str
    connection_string: str
    query: str | None
    filtered_query: str | None
    limited_query: str | None
    name_field: str
    city_field: str
    user: UserEdits
    key: str | None = None
    modified: str | None = None
    #: environment variables the connection string references (env:NAME)
    env: dict[str, str] = field(default_factory=dict)
    #: a field of the entity that the system does not let clients write (None: no such field)
    read_only_field: str | None = None
    #: a writable field that should pair with ``read_only_field`` in messages ("did you mean")
    writable_alternative: str | None = None
    #: records created by the sync carry a stamp that survives user edits (``find_stamps``)
    stamps: bool = False


CaseFactory = Callable[[pytest.FixtureRequest, Path], SideCase]
