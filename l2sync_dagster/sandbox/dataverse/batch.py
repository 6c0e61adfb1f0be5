"""``POST /api/data/v9.2/$batch``: multipart/mixed with change sets, and OData JSON batches.

- At most 1000 requests per batch (change set members included): 400 beyond, nothing run.
- Requests run in order; the batch stops at the first failed request unless the ``$batch``
  request has ``Prefer: odata.continue-on-error`` (Dataverse's default).
- A change set (multipart) or an ``atomicityGroup`` (JSON) is atomic: when one of its requests
  fails, every write of the group is rolled back. Multipart: the group answers with the single
  error response of the failed request. JSON: the failed request answers its error, the others
  of the group 424.
- ``Content-ID`` (multipart, change sets) and request ``id`` (JSON) can be referenced as ``$n``
  in a later request's URL or in an ``@odata.bind`` value.
- GET is not allowed inside a change set / atomicity group (400).
"""

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from l2sync_dagster.sandbox.dataverse.api import API, JSON_TYPE, Reply, SubRequest, WebApi
from l2sync_dagster.sandbox.dataverse.errors import DataverseError, odata_error
from l2sync_dagster.sandbox.dataverse.records import parse_prefer
from l2sync_dagster.sandbox.service import CaseInsensitiveDict

MAX_REQUESTS = 1000


class _Rollback(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__("change set failed")
        self.reply = reply


@dataclass
class _Part:
    method: str
    url: str
    headers: CaseInsensitiveDict
    body: bytes
    content_id: str | None = None


def run_batch(api: WebApi, method: str, headers: Any, body: bytes, base_url: str,
              count: Callable[[str], None]) -> Reply:
    """Execute a ``$batch`` request; ``count`` is called with each inner operation."""
    if method != "POST":
        raise DataverseError("MethodNotAllowed", "$batch accepts POST only.")
    ctype = headers.get("content-type") or ""
    continue_on_error = "odata.continue-on-error" in parse_prefer(headers)
    if ctype.lower().startswith("application/json"):
        return _json_batch(api, body, base_url, continue_on_error, count)
    m = re.search(r'boundary="?([^";]+)"?', ctype)
    if not ctype.lower().startswith("multipart/mixed") or not m:
        raise odata_error("A $batch request needs Content-Type multipart/mixed with a boundary "
                          "or application/json.")
    return _multipart_batch(api, body, m.group(1), base_url, continue_on_error, count)


# -- multipart ----------------------------------------------------------------------------------

def _split(body: bytes, boundary: str) -> list[tuple[CaseInsensitiveDict, bytes]]:
    """The parts of a multipart body: (headers, content)."""
    delimiter = b"--" + boundary.encode()
    pieces = body.split(delimiter)
    if len(pieces) < 2:
        raise odata_error(f"The batch body has no part with boundary '{boundary}'.")
    parts = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        head, content = _head_body(piece.lstrip(b"\r\n"))
        parts.append((_headers(head), _strip_crlf(content)))
    return parts


def _head_body(data: bytes) -> tuple[bytes, bytes]:
    m = re.search(rb"\r?\n\r?\n", data)
    if not m:
        return data, b""
    return data[: m.start()], data[m.end():]


def _strip_crlf(data: bytes) -> bytes:
    if data.endswith(b"\r\n"):
        return data[:-2]
    return data[:-1] if data.endswith(b"\n") else data


def _headers(head: bytes) -> CaseInsensitiveDict:
    out = CaseInsensitiveDict()
    for line in re.split(rb"\r?\n", head):
        if b":" in line:
            k, _, v = line.decode("utf-8", "replace").partition(":")
            out[k.strip()] = v.strip()
    return out


def _http_request(headers: CaseInsensitiveDict, content: bytes) -> _Part:
    if "application/http" not in (headers.get("content-type") or "").lower():
        raise odata_error("A batch part must have Content-Type application/http.")
    head, body = _head_body(content)
    lines = re.split(rb"\r?\n", head)
    request_line = lines[0].decode("utf-8", "replace").split()
    if len(request_line) < 2:
        raise odata_error(f"Malformed request line in a batch part: {lines[0]!r}")
    return _Part(request_line[0].upper(), request_line[1], _headers(b"\n".join(lines[1:])),
                 body.rstrip(b"\r\n") if body.strip() else b"", headers.get("content-id"))


def _multipart_batch(api: WebApi, body: bytes, boundary: str, base_url: str,
                     continue_on_error: bool, count: Callable[[str], None]) -> Reply:
    items: list[_Part | list[_Part]] = []
    for headers, content in _split(body, boundary):
        ctype = headers.get("content-type") or ""
        m = re.search(r'boundary="?([^";]+)"?', ctype)
        if ctype.lower().startswith("multipart/mixed") and m:
            members = [_http_request(h, c) for h, c in _split(content, m.group(1))]
            for member in members:
                if member.method == "GET":
                    raise odata_error("GET requests are not allowed inside a change set.")
            items.append(members)
        else:
            items.append(_http_request(headers, content))
    total = sum(len(i) if isinstance(i, list) else 1 for i in items)
    _check_size(total)
    out_boundary = f"batchresponse_{uuid.uuid4()}"
    chunks: list[str] = []
    for item in items:
        if isinstance(item, list):
            ids: dict[str, str] = {}
            replies: list[tuple[_Part, Reply]] = []
            try:
                with api.store.transaction():
                    for part in item:
                        reply = _run(api, part, base_url, ids, count)
                        if reply.status >= 400:
                            raise _Rollback(reply)
                        if part.content_id and reply.entity_id:
                            ids[f"${part.content_id}"] = reply.entity_id
                        replies.append((part, reply))
            except _Rollback as failed:
                chunks.append(_http_part(failed.reply))
                if not continue_on_error:
                    break
                continue
            cs = f"changesetresponse_{uuid.uuid4()}"
            inner = "".join(f"--{cs}\r\n" + _http_part(r, p.content_id) for p, r in replies)
            chunks.append(f"Content-Type: multipart/mixed; boundary={cs}\r\n\r\n"
                          f"{inner}--{cs}--\r\n")
        else:
            reply = _run(api, item, base_url, {}, count)
            chunks.append(_http_part(reply))
            if reply.status >= 400 and not continue_on_error:
                break
    text = "".join(f"--{out_boundary}\r\n{c}" for c in chunks) + f"--{out_boundary}--\r\n"
    return Reply(200, text.encode(), {"Content-Type": f"multipart/mixed; boundary={out_boundary}",
                                      "OData-Version": "4.0"}, "batch")


def _http_part(reply: Reply, content_id: str | None = None) -> str:
    head = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if content_id:
        head += f"Content-ID: {content_id}\r\n"
    try:
        reason = HTTPStatus(reply.status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {reply.status} {reason}"]
    lines += [f"{k}: {v}" for k, v in reply.headers.items()]
    payload = reply.payload().decode("utf-8")
    return f"{head}\r\n" + "\r\n".join(lines) + f"\r\n\r\n{payload}\r\n"


def _check_size(total: int) -> None:
    if total > MAX_REQUESTS:
        raise odata_error(f"The number of requests in the batch ({total}) exceeds the maximum "
                          f"of {MAX_REQUESTS}.")


def _run(api: WebApi, part: _Part, base_url: str, ids: dict[str, str],
         count: Callable[[str], None]) -> Reply:
    url = part.url
    if url.startswith("$"):
        ref, _, rest = url.partition("/")
        if ref not in ids:
            raise odata_error(f"The Content-ID reference '{ref}' is not known.")
        url = ids[ref] + (f"/{rest}" if rest else "")
    split = urlsplit(url)
    path = split.path
    if API in path:
        path = path.split(API, 1)[1]
    req = SubRequest(part.method, path.lstrip("/"), split.query, part.headers, part.body,
                     base_url, content_ids=ids.get)
    reply = api.execute(req)
    count(reply.operation)
    return reply


# -- JSON ---------------------------------------------------------------------------------------

def _json_batch(api: WebApi, body: bytes, base_url: str, continue_on_error: bool,
                count: Callable[[str], None]) -> Reply:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise odata_error(f"The JSON batch body is not valid JSON: {exc}") from None
    requests = doc.get("requests") if isinstance(doc, dict) else None
    if not isinstance(requests, list):
        raise odata_error("A JSON batch body is an object with a 'requests' array.")
    _check_size(len(requests))
    parts: list[tuple[dict[str, Any], _Part]] = []
    seen_groups: list[str] = []
    for i, r in enumerate(requests):
        if not isinstance(r, dict) or not {"id", "method", "url"} <= set(r) or not all(
                isinstance(r[k], str) for k in ("method", "url")) or not isinstance(
                r.get("headers") or {}, dict):
            raise odata_error(f"Batch request #{i} needs 'id', 'method' and 'url' (strings) "
                              "and 'headers' (an object) if any.")
        group = r.get("atomicityGroup")
        if group is not None:
            if seen_groups and seen_groups[-1] != group and group in seen_groups:
                raise odata_error(f"The requests of atomicity group '{group}' must be adjacent.")
            if r["method"].upper() == "GET":
                raise odata_error("GET requests are not allowed inside an atomicity group.")
            seen_groups.append(group)
        headers = CaseInsensitiveDict(r.get("headers") or {})
        payload = b""
        if "body" in r and r["body"] is not None:
            payload = json.dumps(r["body"]).encode()
            if "content-type" not in headers:
                headers["Content-Type"] = "application/json"
        parts.append((r, _Part(r["method"].upper(), r["url"], headers, payload, str(r["id"]))))
    responses: list[dict[str, Any]] = []
    ids: dict[str, str] = {}
    failed: set[str] = set()
    i = 0
    stop = False
    while i < len(parts) and not stop:
        r, part = parts[i]
        group = r.get("atomicityGroup")
        members = [parts[i]]
        if group is not None:
            while i + len(members) < len(parts) and \
                    parts[i + len(members)][0].get("atomicityGroup") == group:
                members.append(parts[i + len(members)])
        i += len(members)
        if any(str(d) in failed for m, _ in members for d in (m.get("dependsOn") or [])):
            for m, _ in members:
                failed.add(str(m["id"]))
                responses.append(_json_response(m, _failed_dependency(str(m["id"]))))
            continue
        if group is None:
            reply = _run(api, part, base_url, ids, count)
            responses.append(_json_response(r, reply))
            if reply.status >= 400:
                failed.add(str(r["id"]))
                stop = not continue_on_error
            elif reply.entity_id:
                ids[f"${r['id']}"] = reply.entity_id
            continue
        done: list[tuple[dict[str, Any], Reply]] = []
        group_ids = dict(ids)
        try:
            with api.store.transaction():
                for m, p in members:
                    reply = _run(api, p, base_url, group_ids, count)
                    if reply.status >= 400:
                        raise _Rollback(reply)
                    if reply.entity_id:
                        group_ids[f"${m['id']}"] = reply.entity_id
                    done.append((m, reply))
        except _Rollback as exc:
            failed_id = str(members[len(done)][0]["id"])
            for m, _ in members:
                failed.add(str(m["id"]))
                own = str(m["id"]) == failed_id
                responses.append(_json_response(m, exc.reply if own else _rolled_back(
                    str(m["id"]), failed_id, group)))
            stop = not continue_on_error
            continue
        ids = group_ids
        responses += [_json_response(m, reply) for m, reply in done]
    return Reply(200, {"responses": responses}, {"Content-Type": JSON_TYPE,
                                                 "OData-Version": "4.0"}, "batch")


def _json_response(r: dict[str, Any], reply: Reply) -> dict[str, Any]:
    out: dict[str, Any] = {"id": str(r["id"]), "status": reply.status,
                           "headers": dict(reply.headers)}
    if r.get("atomicityGroup") is not None:
        out["atomicityGroup"] = r["atomicityGroup"]
    if reply.body is not None:
        out["body"] = reply.body if not isinstance(reply.body, bytes) else \
            reply.body.decode("utf-8")
    return out


def _failed_dependency(rid: str) -> Reply:
    return Reply(424, {"error": {"code": "0x80060888", "message": f"Request {rid} was not "
                                 "executed because a request it depends on failed."}},
                 {"Content-Type": JSON_TYPE}, "batch.skipped")


def _rolled_back(rid: str, failed_id: str, group: str) -> Reply:
    return Reply(424, {"error": {"code": "0x80060888", "message": f"Request {rid} was rolled "
                                 f"back: request {failed_id} of atomicity group '{group}' "
                                 "failed."}}, {"Content-Type": JSON_TYPE}, "batch.skipped")
