"""JSON ``$batch``: at most 20 requests per batch, per-request results, ``dependsOn``.

Inner requests answered 429/503/504 were not executed; they are sent again in a later batch
after the longest ``Retry-After`` among them (exponential back-off when none is given). A
batch whose HTTP call fails without an answer is repeated only when every inner request is
idempotent; otherwise its requests get a transient error result (the caller's re-run, with
the archive and ``match_on``, then decides without creating duplicates).
"""

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from l2sync_dagster.providers.base import ProviderError
from l2sync_dagster.providers.graph.client import IDEMPOTENT, error_of
from l2sync_dagster.providers.graph.throttle import RETRY_STATUSES

if TYPE_CHECKING:
    from l2sync_dagster.providers.graph.client import GraphClient

MAX_BATCH = 20


@dataclass
class BatchRequest:
    """One request inside a ``$batch``. ``url`` is relative to GraphURL (``/users/x/contacts``);
    ``depends_on`` names ids of requests in the same call that must succeed first."""

    id: str
    method: str
    url: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    depends_on: list[str] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        """The JSON of this request in the ``requests`` array."""
        out: dict[str, Any] = {"id": self.id, "method": self.method.upper(), "url": self.url}
        headers = dict(self.headers)
        if self.body is not None:
            headers.setdefault("Content-Type", "application/json")
            out["body"] = self.body
        if headers:
            out["headers"] = headers
        if self.depends_on:
            out["dependsOn"] = list(self.depends_on)
        return out


@dataclass
class BatchResult:
    """The answer to one :class:`BatchRequest`."""

    id: str
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300

    def error(self) -> str:
        """Graph's ``code: message`` for a failed request."""
        code, message = error_of(self.status, self.body)
        return f"{self.status} {code}: {message}" if message else f"{self.status} {code}"


def chunks(reqs: list[BatchRequest], size: int = MAX_BATCH) -> list[list[BatchRequest]]:
    """Split into batches of at most ``size``, never separating a request from what it
    depends on (a dependency chain longer than ``size`` is an error)."""
    out: list[list[BatchRequest]] = []
    current: list[BatchRequest] = []
    ids: set[str] = set()
    for req in reqs:
        needs_current = any(dep in ids for dep in req.depends_on)
        if len(current) >= size:
            if needs_current:
                # move the tail that this request depends on into the next batch
                cut = min(i for i, r in enumerate(current) if r.id in req.depends_on)
                if cut == 0:
                    raise ValueError(f"dependency chain longer than {size} requests")
                out.append(current[:cut])
                current = current[cut:]
            else:
                out.append(current)
                current = []
            ids = {r.id for r in current}
        current.append(req)
        ids.add(req.id)
    if current:
        out.append(current)
    return out


def run_batch(client: "GraphClient", reqs: list[BatchRequest], *, mailbox: str | None = None,
              concurrency: int = 4) -> list[BatchResult]:
    """Send ``reqs`` in batches of 20 (up to ``concurrency`` batches in flight); one result
    per request, in the order of ``reqs``."""
    if not reqs:
        return []
    results: dict[str, BatchResult] = {}
    pending = list(reqs)
    by_id = {r.id: r for r in reqs}
    if len(by_id) != len(reqs):
        raise ValueError("batch request ids must be unique")
    for attempt in itertools.count():
        groups = chunks(pending)
        if concurrency > 1 and len(groups) > 1:
            with ThreadPoolExecutor(max_workers=min(concurrency, len(groups))) as pool:
                answers = list(pool.map(lambda g: _send(client, g, mailbox), groups))
        else:
            answers = [_send(client, g, mailbox) for g in groups]
        retry: list[BatchRequest] = []
        waits: list[str | None] = []
        for group, answer in zip(groups, answers, strict=True):
            for req in group:
                res = answer[req.id]
                if res.status in RETRY_STATUSES and attempt < client.retry.max_retries:
                    client.count_throttled()
                    retry.append(req)
                    waits.append(res.headers.get("Retry-After")
                                 or res.headers.get("retry-after"))
                else:
                    results[req.id] = res
        if not retry:
            break
        # dependants of a retried request were answered 424: send them again with it
        retry_ids = {r.id for r in retry}
        for req in reqs:
            if req.id not in retry_ids and any(d in retry_ids for d in req.depends_on) \
                    and results.get(req.id) is not None and results[req.id].status == 424:
                del results[req.id]
                retry.append(req)
                retry_ids.add(req.id)
        order = {r.id: i for i, r in enumerate(reqs)}
        pending = sorted(retry, key=lambda r: order[r.id])
        delay = max(client.retry.delay(attempt, w) for w in waits)
        client.budget.pause(mailbox, delay)
        client.wait(delay)
    return [results[r.id] for r in reqs]


def _send(client: "GraphClient", group: list[BatchRequest],
          mailbox: str | None) -> dict[str, BatchResult]:
    idempotent = all(r.method.upper() in IDEMPOTENT for r in group)
    body = {"requests": [r.payload() for r in group]}
    try:
        resp = client.request("POST", "$batch", body=body, mailbox=mailbox,
                              idempotent=idempotent)
    except ProviderError as exc:
        if not exc.transient:
            raise
        return {r.id: BatchResult(r.id, 599, {"error": {"code": "connectionLost",
                                                        "message": str(exc)}}) for r in group}
    answers: dict[str, BatchResult] = {}
    for item in resp.json().get("responses", []):
        rid = str(item.get("id"))
        headers = {str(k): str(v) for k, v in (item.get("headers") or {}).items()}
        answers[rid] = BatchResult(rid, int(item.get("status", 500)), item.get("body"), headers)
    for r in group:
        if r.id not in answers:
            answers[r.id] = BatchResult(r.id, 502, {"error": {
                "code": "missingResponse", "message": "the $batch answer has no response "
                                                      f"for request {r.id}"}})
    return answers
