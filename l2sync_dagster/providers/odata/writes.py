"""The write path of the ``odata`` provider: one request per change (POST, PATCH with
``If-Match``, DELETE), sent in ``$batch`` requests of ``BatchSize`` with ``Concurrency`` batches
in flight; multipart change sets retried as independent requests when they fail, the ``$batch``
format downgraded once when the service refuses it, and records created but not recorded
deleted again when the ``created`` callback raises."""

import logging
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from l2sync_dagster.providers.base import Change, CreatedCallback, Outcome, ProviderError, Query
from l2sync_dagster.providers.odata.batch import BatchItem, BatchReply
from l2sync_dagster.providers.odata.client import ODataClient, ODataHTTPError, error_text
from l2sync_dagster.providers.odata.entity import KEY_IN_URL_RE, Entity, Field
from l2sync_dagster.providers.odata.select import QueryError
from l2sync_dagster.providers.odata.values import is_null, json_key, json_value, key_text, url_key

log = logging.getLogger("l2sync.providers.odata")


class ODataWrites:
    """``apply`` of :class:`~l2sync_dagster.providers.odata.provider.ODataProvider`.

    Mixed into the provider, which supplies the client, the resolved entity of a query and the
    write options (``batch_size``, ``concurrency``, ``batch_format``, ``key_generation``)."""

    name: str
    client: ODataClient
    batch_size: int
    concurrency: int
    batch_format: str
    key_generation: str
    prefer_representation: bool
    #: what the provider learnt about the service (``batch_format``)
    notes: dict[str, Any]

    entity: Callable[[Query], Entity]

    def apply(self, query: Query, changes: Sequence[Change], *,
              created: CreatedCallback | None = None) -> list[Outcome]:
        """Write in batches (several in flight); one outcome per change, in order.

        ``created`` is called (in the calling thread) with the successful inserts of each batch
        as soon as its answer is read. If it raises, the batches still in flight are awaited,
        the records they and the failed call created are deleted again (best effort: they
        were never recorded) and the exception propagates."""
        ent = self.entity(query)
        prepared: list[tuple[Change, BatchItem | Outcome, str | None]] = []
        for ch in changes:
            try:
                item, key = self._item(ent, ch)
                prepared.append((ch, item, key))
            except (ProviderError, QueryError, ValueError, TypeError) as exc:
                prepared.append((ch, Outcome(ch.ref, False, ch.key, None, str(exc)), ch.key))
        todo = [(i, p) for i, p in enumerate(prepared) if isinstance(p[1], BatchItem)]
        outcomes: list[Outcome | None] = [p[1] if isinstance(p[1], Outcome) else None
                                          for p in prepared]
        chunks = [todo[i:i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        Chunk = list[tuple[int, tuple[Change, Any, str | None]]]

        def run(chunk: Chunk) -> list[tuple[int, Outcome]]:
            items = [p[1] for _, p in chunk]
            replies = self._send_items(items)
            return [(i, self._outcome(ent, ch, key, reply))
                    for (i, (ch, _item, key)), reply in zip(chunk, replies, strict=True)]

        def settle(done: list[tuple[int, Outcome]]) -> None:
            for i, out in done:
                outcomes[i] = out
            if created is not None:
                new = [out for i, out in done if out.ok and prepared[i][0].op == "insert"]
                if new:
                    try:
                        created(new)
                    except BaseException:
                        self._undo_inserts(ent, new)
                        raise

        if chunks and self.batch_format == "auto" and "batch_format" not in self.notes:
            settle(run(chunks.pop(0)))  # learn which $batch format the service takes, once
        if len(chunks) <= 1 or self.concurrency <= 1:
            for c in chunks:
                settle(run(c))
        else:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(chunks))) as pool:
                futures = [pool.submit(run, c) for c in chunks]
                first_error: BaseException | None = None
                for fut in futures:
                    # in submission order, in this thread: the callback never runs concurrently
                    try:
                        done = fut.result()
                    except BaseException as exc:  # a lost connection: settle the others first
                        first_error = first_error or exc
                        continue
                    if first_error is not None and isinstance(first_error, _CallbackFailed):
                        self._undo_inserts(ent, [o for i, o in done if o.ok and
                                                 prepared[i][0].op == "insert"])
                        continue
                    try:
                        settle(done)
                    except BaseException as exc:
                        for f in futures:
                            f.cancel()
                        first_error = _CallbackFailed(exc)
                if isinstance(first_error, _CallbackFailed):
                    raise first_error.cause
                if first_error is not None:
                    raise first_error
        return [o for o in outcomes if o is not None]

    def _undo_inserts(self, ent: Entity, new: Sequence[Outcome]) -> None:
        """Delete records this call created but could not record (best effort, logged)."""
        # If-Match with the version we created: a record someone changed since is kept
        items = [BatchItem("DELETE", f"{quote(ent.entity_set)}("
                           f"{url_key(o.key, ent.key.ftype)})", {"If-Match": o.version or "*"})
                 for o in new if o.key]
        if not items:
            return
        try:
            for i in range(0, len(items), self.batch_size):
                part = items[i:i + self.batch_size]
                fmt = self._batch_mode()
                replies = (self.client.batch(part, fmt, {"Prefer": "odata.continue-on-error"})
                           if fmt != "none" and len(part) > 1
                           else [self._send_one(it) for it in part])
                for it, reply in zip(part, replies, strict=True):
                    if reply.status >= 300 and reply.status != 404:
                        log.error("%s: could not delete %s again (HTTP %s); it was created "
                                  "but not recorded", self.name, it.url, reply.status)
        except ProviderError as exc:
            log.error("%s: could not delete %d created records again: %s", self.name,
                      len(items), exc)

    def _item(self, ent: Entity, ch: Change) -> tuple[BatchItem, str | None]:
        """The request for one change and the key it writes."""
        prefer = {"Prefer": "return=representation"} if self.prefer_representation else {}
        if ch.op == "insert":
            body = self._body(ent, ch.values, creating=True)
            key = None
            if self.key_generation == "client":
                key = self._client_key(ent, ch.key)
                body[ent.key.prop] = json_key(key, ent.key.ftype)
            else:
                body.pop(ent.key.prop, None)
            return BatchItem("POST", quote(ent.entity_set), dict(prefer), body), key
        if not ch.key:
            raise ProviderError(f"{ch.op} without a key")
        url = f"{quote(ent.entity_set)}({url_key(ch.key, ent.key.ftype)})"
        headers = {"If-Match": ch.version or "*"}
        if ch.op == "update":
            body = self._body(ent, ch.values, creating=False)
            body.pop(ent.key.prop, None)
            return BatchItem("PATCH", url, {**headers, **prefer}, body), ch.key
        if ch.op == "delete":
            if not ch.version:
                headers = {}
            return BatchItem("DELETE", url, headers), ch.key
        raise ProviderError(f"unknown operation {ch.op!r}")

    def _client_key(self, ent: Entity, planned: str | None) -> str:
        if ent.key.ftype == "guid":
            if planned:
                try:
                    return str(uuid.UUID(planned))
                except ValueError:
                    raise ProviderError(f"key {planned!r} is not a GUID") from None
            return str(uuid.uuid4())
        if planned is None:
            return str(uuid.uuid4()) if ent.key.ftype == "string" else ""
        return planned

    def _body(self, ent: Entity, values: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for name, value in values.items():
            f = ent.field_of(name)
            if f is None:
                raise ProviderError(f"{name!r} is not a field of {ent.entity_set}")
            if f is ent.key:
                continue
            if f.read_only or f.annotation:
                raise ProviderError(f"{f.name} is read-only in {ent.entity_set}")
            if f.nav:
                self._bind(body, f, value)
                continue
            body[f.prop] = json_value(value, f.ftype, f.name)
        return body

    def _bind(self, body: dict[str, Any], f: Field, value: Any) -> None:
        """Set a lookup through ``nav@odata.bind`` (or clear it)."""
        value = None if is_null(value) else value
        if value is None:
            body[f"{f.nav}@odata.bind"] = None
            return
        try:
            guid = str(uuid.UUID(str(value)))
        except ValueError:
            raise ProviderError(f"{f.name}: {value!r} is not a GUID") from None
        body[f"{f.nav}@odata.bind"] = f"/{f.target_set}({guid})"

    def _send_items(self, items: list[BatchItem]) -> list[BatchReply]:
        """Send requests in one ``$batch``. Multipart: as one atomic change set; if it fails,
        send them again as independent requests so that each gets its own outcome. JSON: as
        independent requests (``odata.continue-on-error``) from the start, because a server
        may answer success for a request of a failed atomicity group that it rolled back
        (SAP CAP does), and neither trusting nor re-sending such a request is safe."""
        fmt = self._batch_mode()
        if fmt != "none" and len(items) > 1:
            group = f"g{uuid.uuid4().hex[:8]}" if fmt == "multipart" else None
            grouped = [BatchItem(i.method, i.url, i.headers, i.body, group) for i in items]
            try:
                if group is None:
                    return self.client.batch(grouped, fmt, {"Prefer": "odata.continue-on-error"})
                replies = self.client.batch(grouped, fmt)
            except ODataHTTPError as exc:
                if self.batch_format == "auto" and exc.status in (400, 404, 405, 415, 501):
                    self._downgrade_batch(fmt, exc)
                    return self._send_items(items)
                raise
            failed = [n for n, r in enumerate(replies) if r.status >= 300]
            if not failed:
                return replies
            # a failed change set is rolled back and every request in it answers an error; a
            # request that still answered success was applied and is not sent again
            loose = [BatchItem(items[n].method, items[n].url, items[n].headers,
                               items[n].body, None) for n in failed]
            again = self.client.batch(loose, fmt, {"Prefer": "odata.continue-on-error"})
            for n, reply in zip(failed, again, strict=True):
                replies[n] = reply
            return replies
        return [self._send_one(i) for i in items]

    def _send_one(self, item: BatchItem) -> BatchReply:
        resp = self.client.send(item.method, item.url, headers=item.headers,
                                json_body=item.body, retry_dropped=False)
        body: Any = None
        if resp.content:
            try:
                body = resp.json()
            except ValueError:
                body = resp.text
        return BatchReply(resp.status_code, dict(resp.headers), body)

    def _batch_mode(self) -> str:
        if self.batch_format != "auto":
            return self.batch_format
        return self.notes.get("batch_format", "multipart")

    def _downgrade_batch(self, failed: str, exc: ODataHTTPError) -> None:
        nxt = "json" if failed == "multipart" and exc.status in (400, 415) else "none"
        if failed == "json":
            nxt = "none"
        log.info("%s: $batch in %s refused (HTTP %s); using %s", self.name, failed,
                 exc.status, nxt)
        self.notes["batch_format"] = nxt

    def _outcome(self, ent: Entity, ch: Change, key: str | None, reply: BatchReply) -> Outcome:
        status = reply.status
        body = reply.body if isinstance(reply.body, dict) else {}
        if status < 300:
            version = body.get("@odata.etag") or reply.header("ETag")
            if ch.op == "insert":
                new_key = body.get(ent.key.prop)
                if new_key is None:
                    loc = reply.header("OData-EntityId") or reply.header("Location") or ""
                    m = KEY_IN_URL_RE.search(loc)
                    new_key = m.group(1).strip("'") if m else key
                if new_key is None or new_key == "":
                    return Outcome(ch.ref, False, None, None,
                                   "created, but the service returned no key (no body, no "
                                   "OData-EntityId header)")
                return Outcome(ch.ref, True, key_text(new_key, ent.key.ftype), version)
            if ch.op == "delete":
                return Outcome(ch.ref, True, ch.key, None)
            return Outcome(ch.ref, True, ch.key, version)
        code, msg = error_text(reply.body if reply.body is not None else "")
        if ch.op == "delete" and status == 404:
            return Outcome(ch.ref, True, ch.key, None)
        if ch.op == "insert" and key and self._is_duplicate(status, code, msg):
            # the record with our client-made key exists: an earlier attempt created it
            return Outcome(ch.ref, True, key_text(key, ent.key.ftype), None)
        if status == 412 and ch.op in ("update", "delete"):
            return Outcome(ch.ref, False, ch.key, None,
                           f"conflict: {ent.entity_set}({ch.key}) was changed since it was "
                           f"read (ETag mismatch, HTTP 412): {msg}")
        if status == 404 and ch.op == "update":
            return Outcome(ch.ref, False, ch.key, None,
                           f"{ent.entity_set}({ch.key}) does not exist (HTTP 404)")
        return Outcome(ch.ref, False, ch.key, None,
                       f"HTTP {status}{f' {code}' if code else ''}: {msg}")

    def _is_duplicate(self, status: int, code: str | None, msg: str) -> bool:
        low = msg.lower()
        return status in (409, 412) and ("already exists" in low or "duplicate" in low)


# --- helpers ---------------------------------------------------------------------------------


class _CallbackFailed(Exception):
    """The ``created`` callback raised ``cause`` (kept apart from a failed request)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause
