"""JSON batching (``POST /v1.0/$batch``): at most 20 requests, ``dependsOn`` honoured (a failed
dependency answers 424), each inner request counted as its own operation and throttled on its
own (an inner 429 with ``Retry-After``)."""

import json
from typing import TYPE_CHECKING, Any

from l2sync_dagster.sandbox.graph.common import GraphError
from l2sync_dagster.sandbox.service import Request, Response
from l2sync_dagster.sandbox.tokens import Principal

if TYPE_CHECKING:
    from l2sync_dagster.sandbox.graph.service import GraphService

MAX_REQUESTS = 20


def run_batch(svc: "GraphService", request: Request, principal: Principal) -> Response:
    """Answer a ``$batch`` request."""
    try:
        payload = request.json()
    except ValueError as exc:
        raise GraphError(400, "BadRequest", "Invalid batch payload format: not JSON.") from exc
    reqs = payload.get("requests") if isinstance(payload, dict) else None
    if not isinstance(reqs, list) or not reqs:
        raise GraphError(400, "BadRequest", "Invalid batch payload format: 'requests' must be "
                         "a non-empty array.")
    if len(reqs) > MAX_REQUESTS:
        raise GraphError(400, "BadRequest", f"Invalid batch payload format: a batch holds at "
                         f"most {MAX_REQUESTS} requests, got {len(reqs)}.")
    ids = [r.get("id") if isinstance(r, dict) else None for r in reqs]
    if any(not isinstance(i, str) or not i for i in ids) or len(set(ids)) != len(ids):
        raise GraphError(400, "BadRequest", "Invalid batch payload format: every request needs "
                         "a unique string 'id'.")
    for r in reqs:
        deps = r.get("dependsOn") or []
        if not isinstance(deps, list) or any(d not in ids for d in deps):
            raise GraphError(400, "BadRequest", f"Invalid batch payload format: request "
                             f"'{r['id']}' depends on an unknown request.")
        if not isinstance(r.get("method"), str) or not isinstance(r.get("url"), str):
            raise GraphError(400, "BadRequest", f"Invalid batch payload format: request "
                             f"'{r['id']}' needs 'method' and 'url'.")
        if r["method"].upper() in ("POST", "PATCH", "PUT"):
            inner_headers = {k.lower() for k in (r.get("headers") or {})}
            if r.get("body") is None or "content-type" not in inner_headers:
                raise GraphError(400, "BadRequest", f"Write request id : {r['id']} does not "
                                 "contain Content-Type header or body.")
    done: dict[str, int] = {}
    responses: list[dict[str, Any]] = []
    pending = list(reqs)
    while pending:
        progressed = False
        for r in list(pending):
            deps = r.get("dependsOn") or []
            if any(d not in done for d in deps):
                continue
            pending.remove(r)
            progressed = True
            if any(done[d] >= 400 for d in deps):
                status, headers, body = 424, {"Content-Type": "application/json"}, \
                    svc.error_json("FailedDependency", "A request this one depends on failed.")
            else:
                status, headers, body = _inner(svc, request, principal, r)
            done[r["id"]] = status
            entry: dict[str, Any] = {"id": r["id"], "status": status, "headers": headers}
            if body is not None:
                entry["body"] = body
            responses.append(entry)
        if not progressed:
            raise GraphError(400, "BadRequest", "Invalid batch payload format: circular "
                             "dependsOn.")
    return Response.json({"responses": responses}, operation="batch")


def _inner(svc: "GraphService", outer: Request, principal: Principal,
           r: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    url = r["url"]
    if url.startswith("http"):
        raise GraphError(400, "BadRequest", "Invalid batch payload format: inner URLs are "
                         "relative to the version ('/users/...').")
    target = "/v1.0/" + url.lstrip("/")
    headers = dict(outer.headers)
    headers.pop("content-length", None)
    for k, v in (r.get("headers") or {}).items():
        headers[k.lower()] = v
    body = r.get("body")
    raw = b"" if body is None else (body.encode() if isinstance(body, str)
                                     else json.dumps(body).encode())
    inner = Request(r["method"].upper(), target, type(outer.headers)(headers), raw,
                    outer.base_url)
    response = svc.answer(inner, principal)
    if response.operation:
        svc.stats.count(response.operation)
    out_headers = {k: v for k, v in response.headers.items()
                   if k.lower() in ("content-type", "retry-after", "location", "etag")}
    data = json.loads(response.body) if response.body else None
    return response.status, out_headers, data
