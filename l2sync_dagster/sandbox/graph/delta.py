"""Delta queries: the first round returns every entity in scope, later rounds the changes since
the round's ``@odata.deltaLink``, deletes as ``@removed`` (Outlook), ``@removed`` with reason
``changed`` (directory users: a soft delete) or the ``deleted`` facet (list items). Pages are
linked by ``@odata.nextLink`` (``$skiptoken``), the last page carries
``@odata.deltaLink`` (``$deltatoken``). Both tokens are opaque (base64 JSON: the collection,
the sequence window, the offset and the store epoch); an expired token is a 410."""

from collections.abc import Callable, Iterable
from typing import Any

from l2sync_dagster.sandbox.graph.common import (
    Ctx,
    GraphError,
    Kind,
    decode_token,
    encode_token,
)
from l2sync_dagster.sandbox.graph.store import Collection
from l2sync_dagster.sandbox.service import Response

#: (entity id, entity or None when removed)
Change = tuple[str, dict[str, Any] | None]


def _expired(ctx: Ctx, kind: Kind) -> GraphError:
    if kind.removed_style == "deleted":
        return GraphError(410, "resyncRequired", "Resync required. The delta token is expired "
                          "or no longer valid; replace any local items with the server's "
                          "version and start a new delta query.",
                          {"Location": ctx.url(**{"$deltatoken": None, "deltatoken": None,
                                                  "token": None})})
    return GraphError(410, "syncStateNotFound", "The sync state generation is not found. The "
                      "delta token is expired and data must be synchronized again.")


def delta(ctx: Ctx, kind: Kind, colls: list[Collection], scope: str,
          expand: Callable[[str, dict[str, Any]],
                           Iterable[tuple[str, dict[str, Any] | None]]],
          emit: Callable[[dict[str, Any]], dict[str, Any]], context: str,
          window: dict[str, str] | None = None) -> Response:
    """One delta page over ``colls``. ``expand`` turns a stored entity into the entities the
    feed reports (calendarView occurrences; identity elsewhere); ``window`` is kept in the
    tokens (calendarView start/end)."""
    store = ctx.service.store
    token_text = ctx.opt("deltatoken") or ctx.opt("skiptoken")
    if token_text:
        state = decode_token(token_text, "$deltatoken")
        if state.get("scope") != scope:
            raise GraphError(400, "BadRequest", "The delta token does not belong to this "
                             "resource.")
        if ctx.service.faults.expire_cursors or state.get("epoch") != store.epoch:
            raise _expired(ctx, kind)
        window = state.get("w")
        since, until = int(state["since"]), state.get("until")
        after = tuple(state["a"]) if state.get("a") else None
        size = int(state.get("n", 0)) or _page_size(ctx, kind)
    else:
        since, until, after, size = 0, None, None, _page_size(ctx, kind)
    with store.lock:
        if until is None:
            until = store.counter
        changes: list[tuple[int, Change]] = []
        for coll in colls:
            for item_id, seq in coll.seq.items():
                if since < seq <= until:
                    for eid, e in expand(item_id, coll.items[item_id]):
                        if e is not None or since:  # None: out of scope now (removed)
                            changes.append((seq, (eid, e)))
            if since:  # the first round reports no deletes
                for item_id, (seq, old) in coll.removed.items():
                    if since < seq <= until:
                        for eid, _ in expand(item_id, old):
                            changes.append((seq, (eid, None)))
    # a cursor on (sequence, id), not an offset: an entity changed while the client pages
    # leaves this round (its sequence is now past ``until``) without shifting the others
    changes.sort(key=lambda c: (c[0], c[1][0]))
    if after is not None:
        changes = [c for c in changes if (c[0], c[1][0]) > after]
    page = changes[:size]
    value = []
    for _, (eid, entity) in page:
        if entity is None:
            value.append(_removed(kind, eid))
        else:
            value.append(emit(entity))
    body: dict[str, Any] = {"@odata.context": f"{ctx.base_url}/v1.0/$metadata#{context}",
                            "value": value}
    base = {"scope": scope, "epoch": store.epoch, "w": window}
    clear = {"$deltatoken": None, "deltatoken": None, "$skiptoken": None, "skiptoken": None,
             "startDateTime": None, "enddatetime": None, "endDateTime": None}
    if size < len(changes):
        last = page[-1]
        token = encode_token({**base, "since": since, "until": until,
                              "a": [last[0], last[1][0]], "n": size})
        body["@odata.nextLink"] = ctx.url(**{**clear, "$skiptoken": token})
    else:
        token = encode_token({**base, "since": until})
        body["@odata.deltaLink"] = ctx.url(**{**clear, "$deltatoken": token})
    return Response.json(body, operation=f"{kind.op}.delta")


def _page_size(ctx: Ctx, kind: Kind) -> int:
    pref = ctx.prefer("odata.maxpagesize")
    if pref:
        if not pref.isdigit() or int(pref) < 1:
            raise GraphError(400, "BadRequest", f"Invalid odata.maxpagesize '{pref}'.")
        return min(int(pref), kind.max_page)
    top = ctx.opt("top")
    if top and top.isdigit() and int(top) > 0:
        return min(int(top), kind.max_page)
    return kind.default_page


def _removed(kind: Kind, entity_id: str) -> dict[str, Any]:
    if kind.removed_style == "deleted":
        return {"id": entity_id, "deleted": {"state": "deleted"}}
    if kind.removed_style == "changed":  # directory objects: a soft delete, restorable
        return {"id": entity_id, "@removed": {"reason": "changed"}}
    return {"@odata.type": f"#microsoft.graph.{kind.type}", "id": entity_id,
            "@removed": {"reason": "deleted"}}
