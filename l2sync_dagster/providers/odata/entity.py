"""What an ``odata`` query side resolves to: the entity set, its fields (:class:`Field`:
where each RecordFrame column comes from) and the translated query options (:class:`Entity`)."""

import re
from dataclasses import dataclass, field
from typing import Any

from l2sync_dagster.providers.base import EntityDescription
from l2sync_dagster.providers.odata.select import ODataQuery

#: the key inside an entity URL: ``People(42)`` -> ``42``, ``Items('a')`` -> ``'a'``
KEY_IN_URL_RE = re.compile(r"\(([^()]*)\)\s*$")


@dataclass
class Field:
    """One column of the RecordFrame and where it comes from.

    ``prop`` is the service property read; ``annotation`` reads ``prop@annotation`` instead
    (a formatted value); ``nav``/``target_set`` bind a lookup on write.
    """

    name: str
    prop: str
    ftype: str
    read_only: bool = False
    nullable: bool = True
    annotation: str | None = None
    nav: str | None = None
    target_set: str | None = None

    @property
    def engine_type(self) -> str:
        """The type the engine sees (a GUID is a string)."""
        return "string" if self.ftype == "guid" else self.ftype


@dataclass
class Entity:
    """A resolved query: the entity set, its fields, the translated options."""

    entity_set: str
    key: Field
    fields: dict[str, Field]
    query: ODataQuery
    modified: Field | None = None
    props: list[str] = field(default_factory=list)
    description: EntityDescription | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def field_of(self, name: str) -> Field | None:
        """A field by frame name, exact first, then case-insensitively."""
        f = self.fields.get(name)
        if f is not None:
            return f
        low = name.lower()
        return next((f for n, f in self.fields.items() if n.lower() == low), None)



def find_field(fields: dict[str, Field], name: str) -> Field | None:
    """A field by frame name or service property, exact first, then case-insensitively."""
    if name in fields:
        return fields[name]
    low = name.lower()
    for f in fields.values():
        if f.name.lower() == low or f.prop.lower() == low:
            return f
    return None
