"""OData ``$batch`` bodies: multipart/mixed (OData 4.0) and JSON (OData 4.01).

A batch is a list of :class:`BatchItem`. Items with the same ``group`` travel in one change
set (multipart) or atomicity group (JSON): the service applies them all or none. Items whose
``group`` is None are independent requests. Responses come back as :class:`BatchReply`, one per
item in item order; a failed change set answers with one error that applies to all its items.

Request URLs inside a batch are sent relative to the service root (``People(1)``, not
``https://host/svc/People(1)``): OData v4 allows absolute URLs, absolute paths and relative
URLs, but only the relative form is read the same way by every server (some take an absolute
URL inside a batch for a resource path and answer 404). A ``$n`` Content-ID reference stays as
it is. :func:`relative_url` makes an item's URL relative and refuses one of another service.
"""

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


class BatchFormatError(RuntimeError):
    """The service answered a ``$batch`` with a body this module cannot read."""


def relative_url(url: str, service_root: str) -> str:
    """``url`` relative to ``service_root`` (no leading slash), as a batch part carries it.

    ``url`` may already be relative (returned as is, without a leading ``/``), a ``$n``
    Content-ID reference (kept), an absolute URL under the service root or an absolute path
    under the root's path. Anything else (another host, a path outside the service) is a
    ValueError: it cannot be written relative to the service root.
    """
    if url.startswith("$"):
        return url
    root = urlsplit(service_root.rstrip("/") + "/")
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        if (parts.scheme.lower(), parts.netloc.lower()) != (root.scheme.lower(),
                                                           root.netloc.lower()):
            raise ValueError(f"{url!r} is not a URL of the service {service_root!r}")
    elif not url.startswith("/"):
        return url
    if not parts.path.startswith(root.path):
        raise ValueError(f"{url!r} is outside the service root {service_root!r}")
    rest = parts.path[len(root.path):]
    return rest + (f"?{parts.query}" if parts.query else "")


@dataclass
class BatchItem:
    """One request inside a batch. ``url`` is relative to the service root (an absolute URL
    under the root is made relative when the batch is built)."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    group: str | None = None


@dataclass
class BatchReply:
    """The answer to one :class:`BatchItem`."""

    status: int
    headers: dict[str, str]
    body: Any = None

    def header(self, name: str) -> str | None:
        """A header, looked up case-insensitively."""
        low = name.lower()
        for k, v in self.headers.items():
            if k.lower() == low:
                return v
        return None


# --- multipart ---------------------------------------------------------------------------------
def build_multipart(items: Sequence[BatchItem], service_root: str) -> tuple[str, bytes]:
    """(Content-Type, body) of a multipart/mixed batch; each change set is one nested part."""
    boundary = f"batch_{uuid.uuid4().hex}"
    root = service_root.rstrip("/") + "/"
    out: list[str] = []
    i = 0
    content_id = 0
    while i < len(items):
        item = items[i]
        if item.group is None:
            content_id += 1
            out.append(f"--{boundary}\r\n" + _http_part(item, root, content_id))
            i += 1
            continue
        cs = f"changeset_{uuid.uuid4().hex}"
        out.append(f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={cs}\r\n\r\n")
        group = item.group
        while i < len(items) and items[i].group == group:
            content_id += 1
            out.append(f"--{cs}\r\n" + _http_part(items[i], root, content_id))
            i += 1
        out.append(f"--{cs}--\r\n")
    out.append(f"--{boundary}--\r\n")
    return f"multipart/mixed; boundary={boundary}", "".join(out).encode("utf-8")


def _http_part(item: BatchItem, root: str, content_id: int) -> str:
    url = relative_url(item.url, root)
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary",
             f"Content-ID: {content_id}", "", f"{item.method} {url} HTTP/1.1"]
    body = ""
    headers = dict(item.headers)
    if item.body is not None:
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        body = json.dumps(item.body, ensure_ascii=False)
    lines.extend(f"{k}: {v}" for k, v in headers.items())
    lines.append("")
    return "\r\n".join(lines) + "\r\n" + body + "\r\n"


def _boundary(content_type: str) -> str:
    for part in content_type.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "boundary":
            return value.strip().strip('"')
    raise BatchFormatError(f"batch response without boundary: {content_type!r}")


def _split_parts(body: bytes, boundary: str) -> list[bytes]:
    delim = b"--" + boundary.encode()
    chunks = body.split(delim)
    parts: list[bytes] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        parts.append(chunk.lstrip(b"\r\n") if chunk.startswith(b"\r\n") else chunk.lstrip(b"\n"))
    return parts


def _headers_and_body(part: bytes) -> tuple[dict[str, str], bytes]:
    sep = b"\r\n\r\n" if b"\r\n\r\n" in part else b"\n\n"
    head, _, rest = part.partition(sep)
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").splitlines():
        if ":" in line:
            k, _, v = line.partition(":")
            headers[k.strip()] = v.strip()
    return headers, rest


def _lookup(headers: dict[str, str], name: str) -> str:
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return ""


def _parse_http(part: bytes) -> BatchReply:
    _, inner = _headers_and_body(part)
    inner = inner.lstrip(b"\r\n")
    status_line, _, rest = inner.partition(b"\n")
    bits = status_line.decode("utf-8", "replace").strip().split(" ", 2)
    if len(bits) < 2 or not bits[1].isdigit():
        raise BatchFormatError(f"batch part without an HTTP status line: {status_line[:80]!r}")
    if rest.startswith(b"\r\n") or rest.startswith(b"\n"):
        headers, body = {}, rest.lstrip(b"\r\n")
    else:
        headers, body = _headers_and_body(rest)
    body = body.rstrip(b"\r\n")
    parsed: Any = None
    if body.strip():
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body.decode("utf-8", "replace")
    return BatchReply(int(bits[1]), headers, parsed)


def parse_multipart(content_type: str, body: bytes) -> list[list[BatchReply]]:
    """Top-level parts of a multipart batch response; a change set is a list of replies."""
    out: list[list[BatchReply]] = []
    for part in _split_parts(body, _boundary(content_type)):
        headers, rest = _headers_and_body(part)
        ctype = _lookup(headers, "Content-Type")
        if ctype.lower().startswith("multipart/mixed"):
            out.append([_parse_http(p) for p in _split_parts(rest, _boundary(ctype))])
        else:
            out.append([_parse_http(part)])
    return out


def align_multipart(items: Sequence[BatchItem], parts: list[list[BatchReply]]) -> list[BatchReply]:
    """One reply per item: a change set answered with a single error gives it to all items."""
    replies: list[BatchReply] = []
    groups: list[list[int]] = []
    i = 0
    while i < len(items):
        if items[i].group is None:
            groups.append([i])
            i += 1
            continue
        g = items[i].group
        start = i
        while i < len(items) and items[i].group == g:
            i += 1
        groups.append(list(range(start, i)))
    if len(parts) > len(groups):
        raise BatchFormatError(f"batch response has {len(parts)} parts for {len(groups)} "
                               "requests and change sets")
    for n, idx in enumerate(groups):
        if n >= len(parts):
            # the service stopped at an error (no continue-on-error): the rest was not run
            replies.extend(BatchReply(424, {}, {"error": {"message": "not run: an earlier "
                                                          "request of the batch failed"}})
                           for _ in idx)
            continue
        got = parts[n]
        if len(got) == len(idx):
            replies.extend(got)
        elif len(got) == 1:
            replies.extend(got[0] for _ in idx)
        else:
            raise BatchFormatError(f"change set of {len(idx)} requests answered with "
                                   f"{len(got)} responses")
    return replies


# --- JSON ----------------------------------------------------------------------------------
def build_json(items: Sequence[BatchItem], service_root: str) -> tuple[str, bytes]:
    """(Content-Type, body) of a JSON batch (OData 4.01); ids are the item positions, URLs
    relative to the service root, header names in lower case."""
    root = service_root.rstrip("/") + "/"
    reqs = []
    for n, item in enumerate(items):
        req: dict[str, Any] = {"id": str(n + 1), "method": item.method,
                               "url": relative_url(item.url, root)}
        # header names in lower case: they are case-insensitive, but some servers (SAP CAP)
        # look them up in a JSON batch only as Node.js spells them (``if-match``)
        headers = {k.lower(): v for k, v in item.headers.items()}
        if item.body is not None:
            headers.setdefault("content-type", "application/json")
            req["body"] = item.body
        if headers:
            req["headers"] = headers
        if item.group is not None:
            req["atomicityGroup"] = item.group
        reqs.append(req)
    return "application/json", json.dumps({"requests": reqs}, ensure_ascii=False).encode()


def parse_json(items: Sequence[BatchItem], data: Any) -> list[BatchReply]:
    """One reply per item from a JSON batch response (matched by id, any order)."""
    if not isinstance(data, dict) or not isinstance(data.get("responses"), list):
        raise BatchFormatError("JSON batch response without a 'responses' array")
    by_id: dict[str, BatchReply] = {}
    for r in data["responses"]:
        try:
            by_id[str(r["id"])] = BatchReply(int(r["status"]), dict(r.get("headers") or {}),
                                             r.get("body"))
        except (KeyError, TypeError, ValueError):
            raise BatchFormatError(f"JSON batch response item without id/status: {r!r}"
                                   ) from None
    missing = BatchReply(424, {}, {"error": {"message": "no response for this request"}})
    return [by_id.get(str(n + 1), missing) for n in range(len(items))]
