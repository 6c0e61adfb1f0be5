"""Graph delta queries: pages to the ``@odata.deltaLink``, removals, 410 resync.

The delta link is the side's cursor. A 410 Gone (``syncStateNotFound`` / ``resyncRequired``)
while following a stored delta link restarts with a full delta round; the result then says
``resynced`` and holds every item in scope, so the caller reports a complete read instead of
crashing. Items repeated within one delta round keep the last version seen; an ``@removed``
annotation (Outlook) or a ``deleted`` facet (list items, drive items) is a delete.
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from l2sync_dagster.providers.graph.client import GraphError

if TYPE_CHECKING:
    from l2sync_dagster.providers.graph.client import GraphClient

#: 410 is what Graph answers for an expired or unknown delta token
GONE = 410


@dataclass
class DeltaResult:
    """What one delta round returned.

    ``items``: changed (or, when ``full``, all) entities, one per id, last version wins.
    ``removed``: ids reported deleted. ``delta_link``: the cursor for the next round.
    ``full``: the round started from scratch (no cursor given, or ``resynced`` after a 410),
    so ``items`` is everything in scope.
    """

    items: list[dict[str, Any]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    delta_link: str | None = None
    full: bool = True
    resynced: bool = False
    pages: int = 0


def is_removed(entry: dict[str, Any]) -> bool:
    """True for a delta entry that reports a delete."""
    return "@removed" in entry or "deleted" in entry


def run_delta(client: "GraphClient", path: str, *, params: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None, mailbox: str | None = None,
              delta_link: str | None = None) -> DeltaResult:
    """Follow a delta query to its delta link, from ``delta_link`` when given."""
    result = DeltaResult(full=delta_link is None)
    try:
        _collect(client, delta_link or path, None if delta_link else params, headers, mailbox,
                 result)
    except GraphError as exc:
        if exc.status != GONE or delta_link is None:
            raise
        result = DeltaResult(full=True, resynced=True)
        _collect(client, path, params, headers, mailbox, result)
    return result


def _collect(client: "GraphClient", url: str, params: dict[str, Any] | None,
             headers: dict[str, str] | None, mailbox: str | None,
             result: DeltaResult) -> None:
    items: dict[str, dict[str, Any]] = {}
    removed: dict[str, None] = {}
    for page in client.pages(url, params=params, headers=headers, mailbox=mailbox):
        result.pages += 1
        for entry in page.get("value", []):
            key = str(entry.get("id"))
            if is_removed(entry):
                items.pop(key, None)
                removed[key] = None
            else:
                removed.pop(key, None)
                items.pop(key, None)  # re-insert: the last occurrence decides the order too
                items[key] = entry
        if "@odata.deltaLink" in page:
            result.delta_link = page["@odata.deltaLink"]
    if result.delta_link is None:
        raise GraphError(502, "noDeltaLink", "the delta query ended without @odata.deltaLink",
                         method="GET", url=url.split("?", 1)[0], transient=True)
    result.items = list(items.values())
    result.removed = list(removed)
