"""Change tracking: delta tokens and the changes since one.

A delta token is ``<rowversion>!<MM/dd/yyyy HH:mm:ss>`` like Dataverse's (opaque to clients).
The changes since a token are the rows whose ``versionnumber`` is above it (new or updated,
answered as rows) and the tombstones above it (answered as ``$deletedEntity``), in version
order. A token below the store's floor (after ``expire_tokens``) answers Dataverse's
``0x80044352`` ExpiredVersionStamp; a table without change tracking answers ``0x80072491``.
"""

import datetime as dt
import re
from typing import Any

from l2sync_dagster.sandbox.dataverse.errors import DataverseError, odata_error
from l2sync_dagster.sandbox.dataverse.metadata import Table
from l2sync_dagster.sandbox.dataverse.store import Store

#: query options change tracking accepts besides $select (Dataverse refuses the others)
UNSUPPORTED_WITH_TRACKING = ("$filter", "$orderby", "$expand", "$top", "$count")


def require_tracking(table: Table) -> None:
    """400 ``0x80072491`` unless the table has change tracking enabled."""
    if not table.change_tracking:
        raise DataverseError("ChangeTrackingNotEnabledForEntity",
                             f"Entity {table.logical} isn't enabled for change tracking.")


def check_options(options: dict[str, str]) -> None:
    """400 for query options change tracking does not support."""
    bad = [o for o in UNSUPPORTED_WITH_TRACKING if o in options]
    if bad:
        raise odata_error(f"The query option(s) {', '.join(bad)} cannot be used with change "
                          "tracking; only $select and Prefer: odata.maxpagesize are supported.")


def make_token(version: int) -> str:
    """A delta token for the state at ``version``."""
    return f"{version}!{dt.datetime.now(dt.UTC).strftime('%m/%d/%Y %H:%M:%S')}"


def parse_token(token: str, store: Store) -> int:
    """The version of a delta token; 400 when malformed or expired."""
    m = re.fullmatch(r"(\d+)!\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2}", token)
    if not m:
        raise odata_error(f"The delta token '{token}' is not valid.")
    version = int(m.group(1))
    if version < store.token_floor or version > store.version:
        raise DataverseError("ExpiredVersionStamp", "Version stamp associated with the client "
                             "has expired. Please perform a full sync.")
    return version


def changes_since(store: Store, table: Table, version: int) -> list[tuple[int, str, Any]]:
    """``[(version, "row"|"deleted", row or key)]`` after ``version``, oldest first."""
    out: list[tuple[int, str, Any]] = [
        (row["versionnumber"], "row", row) for row in store.rows[table.entity_set].values()
        if row["versionnumber"] > version]
    out += [(v, "deleted", key) for key, v in store.tombstones[table.entity_set].items()
            if v > version]
    out.sort(key=lambda item: item[0])
    return out
