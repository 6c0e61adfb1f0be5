"""A small OData v4 server that differs from the Dataverse sandbox on purpose.

It is a test fixture for the ``odata`` provider: the provider must work against OData services
other than Dataverse. Differences from the sandbox:

- HTTP Basic authentication (user ``tester``, password :data:`PASSWORD`), no tokens;
- ``@odata.nextLink`` is *relative* to the service root and pages are small (at most 25 rows,
  whatever ``odata.maxpagesize`` asks);
- POST always answers 201 with the created record in the body (no ``OData-EntityId``); PATCH
  answers 204 with an ``ETag`` header; ETags are strong (``"3"``), If-Match mismatch is 412;
- no ``$count`` (400) and no ``/$count``; ``$batch`` is 404 unless the server was started with
  ``batch="json"`` (then JSON batches of OData 4.01 only; multipart is 415);
- JSON batch atomicity groups are all or nothing (others answer 424);
- a ``+`` in the query string is refused with 400 (spaces must be ``%20``);
- keys: ``People`` has server-made integer keys, ``Items`` GUID keys that a client may send.

``throttle(n, retry_after)`` makes the next ``n`` requests answer 429; ``log`` records every
request as (method, raw target); ``reset()`` restores the seed data.
"""

import base64
import copy
import datetime as dt
import json
import re
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

USER = "tester"
PASSWORD = "s3cret-test"
ROOT = "/svc/v1"
MAX_PAGE = 25

PROPS: dict[str, dict[str, str]] = {
    "People": {"Id": "Edm.Int32", "Name": "Edm.String", "Email": "Edm.String",
               "Age": "Edm.Int32", "Score": "Edm.Decimal", "Active": "Edm.Boolean",
               "Birthday": "Edm.Date", "LastModified": "Edm.DateTimeOffset"},
    "Items": {"ItemId": "Edm.Guid", "Title": "Edm.String", "Qty": "Edm.Int32",
              "LastModified": "Edm.DateTimeOffset"},
}
KEYS = {"People": "Id", "Items": "ItemId"}
COMPUTED = {"People": {"Id", "LastModified"}, "Items": {"LastModified"}}


def csdl() -> str:
    """The ``$metadata`` document (a different namespace and container than Dataverse)."""
    out = ['<?xml version="1.0" encoding="utf-8"?>',
           '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
           "<edmx:DataServices>",
           '<Schema Namespace="Test.Model" xmlns="http://docs.oasis-open.org/odata/ns/edm">']
    for name, props in PROPS.items():
        out.append(f'<EntityType Name="{name[:-1]}"><Key><PropertyRef Name="{KEYS[name]}"/>'
                   "</Key>")
        for p, t in props.items():
            nullable = ' Nullable="false"' if p == KEYS[name] else ""
            if p in COMPUTED[name]:
                out.append(f'<Property Name="{p}" Type="{t}"{nullable}><Annotation '
                           'Term="Org.OData.Core.V1.Computed" Bool="true"/></Property>')
            else:
                out.append(f'<Property Name="{p}" Type="{t}"{nullable}/>')
        out.append("</EntityType>")
    out.append('<EntityContainer Name="Container">')
    out += [f'<EntitySet Name="{n}" EntityType="Test.Model.{n[:-1]}"/>' for n in PROPS]
    out += ["</EntityContainer>", "</Schema>", "</edmx:DataServices>", "</edmx:Edmx>"]
    return "\n".join(out)


class BadRequest(Exception):
    """A 400 with an OData error body."""


# --- a small $filter evaluator ------------------------------------------------------------------
_TOK = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<dt>\d{4}-\d{2}-\d{2}T[0-9:.]+Z)"
                  r"|(?P<date>\d{4}-\d{2}-\d{2})|(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F-]{27})"
                  r"|(?P<num>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<p>[(),]))")


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOK.match(text, pos)
        if not m:
            raise BadRequest(f"syntax error in $filter at position {pos}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def compile_filter(text: str, props: dict[str, str]) -> Callable[[dict[str, Any]], bool]:
    """A predicate for an OData ``$filter`` (comparisons, and/or/not, string functions)."""
    toks = _tokens(text)
    i = 0

    def peek() -> tuple[str, str] | None:
        return toks[i] if i < len(toks) else None

    def take() -> tuple[str, str]:
        nonlocal i
        if i >= len(toks):
            raise BadRequest("unexpected end of $filter")
        i += 1
        return toks[i - 1]

    def value() -> Any:
        kind, t = take()
        if kind == "str":
            return t[1:-1].replace("''", "'")
        if kind == "num":
            return float(t) if "." in t else int(t)
        if kind in ("dt", "date", "guid"):
            return t.lower() if kind == "guid" else t
        if kind == "name" and t in ("true", "false"):
            return t == "true"
        if kind == "name" and t == "null":
            return None
        raise BadRequest(f"expected a literal, found {t!r}")

    def prop() -> str:
        kind, t = take()
        if kind != "name" or t not in props:
            raise BadRequest(f"Could not find a property named '{t}'")
        return t

    def primary() -> Callable[[dict[str, Any]], bool]:
        tok = peek()
        if tok == ("p", "("):
            take()
            inner = or_expr()
            if take() != ("p", ")"):
                raise BadRequest("missing )")
            return inner
        if tok and tok[0] == "name" and tok[1] == "not":
            take()
            inner = primary()
            return lambda r: not inner(r)
        if tok and tok[0] == "name" and tok[1] in ("startswith", "endswith", "contains"):
            fn = take()[1]
            if take() != ("p", "("):
                raise BadRequest("missing (")
            p = prop()
            if take() != ("p", ","):
                raise BadRequest("missing ,")
            v = value()
            if take() != ("p", ")"):
                raise BadRequest("missing )")
            op = {"startswith": str.startswith, "endswith": str.endswith,
                  "contains": str.__contains__}[fn]
            return lambda r: isinstance(r.get(p), str) and op(r[p], v)
        p = prop()
        kind, opname = take()
        if opname not in ("eq", "ne", "gt", "ge", "lt", "le"):
            raise BadRequest(f"unknown operator {opname!r}")
        v = value()

        def cmp(r: dict[str, Any]) -> bool:
            a = r.get(p)
            if opname == "eq":
                return a == v
            if opname == "ne":
                return a != v
            if a is None or v is None:
                return False
            return {"gt": a > v, "ge": a >= v, "lt": a < v, "le": a <= v}[opname]

        return cmp

    def and_expr() -> Callable[[dict[str, Any]], bool]:
        parts = [primary()]
        while peek() == ("name", "and"):
            take()
            parts.append(primary())
        return lambda r: all(p(r) for p in parts)

    def or_expr() -> Callable[[dict[str, Any]], bool]:
        parts = [and_expr()]
        while peek() == ("name", "or"):
            take()
            parts.append(and_expr())
        return lambda r: any(p(r) for p in parts)

    pred = or_expr()
    if i != len(toks):
        raise BadRequest(f"unexpected {toks[i][1]!r} in $filter")
    return pred


# --- the server ---------------------------------------------------------------------------------
class ODataTestServer:
    """The server, running on a loopback port in a thread. ``url(set)`` is a provider URL."""

    def __init__(self, batch: str | None = None) -> None:
        self.batch = batch
        self.lock = threading.RLock()
        self.log: list[tuple[str, str]] = []
        self._throttle = 0
        self._retry_after = "1"
        self.reset()
        handler = type("Handler", (_Handler,), {"app": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def root(self) -> str:
        """The service root URL."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{ROOT}"

    def url(self, entity_set: str) -> str:
        """``<service root>/<entity set>``."""
        return f"{self.root}/{entity_set}"

    def stop(self) -> None:
        """Shut down."""
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        """Seed data back, log and faults cleared."""
        with self.lock:
            self.version = 0
            self.clock = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
            self.rows: dict[str, dict[Any, dict[str, Any]]] = {"People": {}, "Items": {}}
            self.next_id = 1
            names = ["Ann Smith", "Bob O'Brien", "Cara + Co", "Dan & Sons", "Eve 50%"]
            for n in range(60):
                self._insert("People", {"Name": names[n % 5] if n < 5 else f"Person {n:03d}",
                                        "Email": f"p{n}@example.test", "Age": 20 + n % 40,
                                        "Score": n * 1.5, "Active": n % 3 != 0,
                                        "Birthday": f"19{50 + n % 50:02d}-0{1 + n % 9}-1{n % 10}"})
            for n in range(3):
                self._insert("Items", {"ItemId": str(uuid.UUID(int=n + 1)), "Title": f"Item {n}",
                                       "Qty": n})
            self.log = []
            self._throttle = 0

    def throttle(self, n: int, retry_after: str | None = "1") -> None:
        """The next ``n`` requests answer 429 (with ``Retry-After`` unless None)."""
        with self.lock:
            self._throttle = n
            self._retry_after = retry_after  # type: ignore[assignment]

    def touch(self, entity_set: str, key: Any, **values: Any) -> dict[str, Any]:
        """Change a record as another user would (new ETag and LastModified)."""
        with self.lock:
            row = self.rows[entity_set][key]
            row.update(values)
            self._stamp(row)
            return dict(row)

    def _stamp(self, row: dict[str, Any]) -> None:
        self.version += 1
        self.clock += dt.timedelta(seconds=1)
        row["LastModified"] = self.clock.strftime("%Y-%m-%dT%H:%M:%SZ")
        row["_v"] = self.version

    def _insert(self, entity_set: str, values: dict[str, Any]) -> dict[str, Any]:
        key_name = KEYS[entity_set]
        row = {p: None for p in PROPS[entity_set]}
        row.update(values)
        if entity_set == "People":
            row["Id"] = self.next_id
            self.next_id += 1
        else:
            row["ItemId"] = str(row.get("ItemId") or uuid.uuid4()).lower()
        if row[key_name] in self.rows[entity_set]:
            raise Conflict("a record with this key already exists")
        self._stamp(row)
        self.rows[entity_set][row[key_name]] = row
        return row


class Conflict(Exception):
    """A 409."""


def _etag(row: dict[str, Any]) -> str:
    return f'"{row["_v"]}"'


def _public(row: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    out = {"@odata.etag": _etag(row)}
    out.update({k: v for k, v in row.items() if k != "_v" and (not select or k in select)})
    return out


class _Handler(BaseHTTPRequestHandler):
    app: ODataTestServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        """Quiet."""

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", "application/json;odata.metadata=minimal")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("OData-Version", "4.0")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": {"code": str(status), "message": message}})

    def _handle(self) -> None:
        app = self.app
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with app.lock:
            app.log.append((self.command, self.path))
            if app._throttle > 0:
                app._throttle -= 1
                hdrs = {"Retry-After": app._retry_after} if app._retry_after else {}
                return self._send(429, {"error": {"code": "429", "message": "Too many "
                                                  "requests"}}, hdrs)
        auth = self.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if auth != expected:
            return self._send(401, {"error": {"code": "401", "message": "Unauthorized"}},
                              {"WWW-Authenticate": 'Basic realm="test"'})
        parts = urlsplit(self.path)
        if "+" in parts.query:
            return self._error(400, "'+' in the query string; encode spaces as %20")
        path = unquote(parts.path)
        if not path.startswith(ROOT):
            return self._error(404, "not found")
        rest = path[len(ROOT):].strip("/")
        try:
            with app.lock:
                self._route(rest, parts.query, body)
        except BadRequest as exc:
            self._error(400, str(exc))
        except Conflict as exc:
            self._error(409, str(exc))

    def _route(self, rest: str, query: str, body: bytes) -> None:
        app = self.app
        m = self.command
        if rest == "$metadata":
            data = csdl().encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if rest == "$batch":
            if app.batch != "json" or m != "POST":
                return self._error(404, "no $batch here")
            if "json" not in (self.headers.get("Content-Type") or ""):
                return self._error(415, "only JSON batches")
            return self._json_batch(json.loads(body))
        status, out, headers = self.execute(m, rest, query, body, dict(self.headers))
        self._send(status, out, headers)

    def _json_batch(self, data: dict[str, Any]) -> None:
        responses: list[dict[str, Any]] = []
        requests = data.get("requests", [])
        i = 0
        while i < len(requests):
            group = requests[i].get("atomicityGroup")
            j = i + 1
            while group is not None and j < len(requests) and \
                    requests[j].get("atomicityGroup") == group:
                j += 1
            app = self.app
            saved = (copy.deepcopy(app.rows), app.version, app.clock, app.next_id)
            done = self._json_items(requests[i:j])
            failed = [r for r in done if r["status"] >= 400]
            if group is not None and failed:
                # all or nothing: roll back, the others answer 424 Failed Dependency
                app.rows, app.version, app.clock, app.next_id = saved
                done = [r if r["status"] >= 400 else
                        {"id": r["id"], "status": 424, "headers": {}} for r in done]
            responses.extend(done)
            i = j
        self._send(200, {"responses": list(reversed(responses))})

    def _json_items(self, reqs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        responses = []
        for req in reqs:
            parts = urlsplit(req["url"])
            path = unquote(parts.path)
            rest = path[len(ROOT):].strip("/") if path.startswith(ROOT) else path.strip("/")
            payload = json.dumps(req.get("body")).encode() if "body" in req else b""
            try:
                status, out, headers = self.execute(req["method"], rest, parts.query, payload,
                                                    req.get("headers") or {})
            except BadRequest as exc:
                status, out, headers = 400, {"error": {"code": "400", "message": str(exc)}}, {}
            except Conflict as exc:
                status, out, headers = 409, {"error": {"code": "409", "message": str(exc)}}, {}
            item: dict[str, Any] = {"id": req["id"], "status": status, "headers": headers}
            if out is not None:
                item["body"] = out
            responses.append(item)
        return responses

    def execute(self, method: str, rest: str, query: str, body: bytes,
                headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        """One request (top level or inside a JSON batch): (status, body, headers)."""
        app = self.app
        hdr = {k.lower(): v for k, v in headers.items()}
        rec = re.fullmatch(r"([A-Za-z]+)(?:\((.*)\))?", rest)
        if not rec or rec.group(1) not in PROPS:
            return 404, {"error": {"code": "404", "message": f"no resource {rest!r}"}}, {}
        es, raw_key = rec.group(1), rec.group(2)
        rows = app.rows[es]
        if raw_key is None:
            if method == "GET":
                return self._list(es, query, hdr)
            if method == "POST":
                values = json.loads(body or b"{}")
                bad = [k for k in values if k not in PROPS[es] or k in COMPUTED[es]]
                if bad:
                    raise BadRequest(f"property {bad[0]!r} cannot be written")
                row = app._insert(es, values)
                return 201, _public(row, None), {"ETag": _etag(row)}
            return 405, {"error": {"code": "405", "message": "method not allowed"}}, {}
        key: Any = int(raw_key) if es == "People" and raw_key.isdigit() else raw_key.lower()
        row = rows.get(key)
        if row is None:
            return 404, {"error": {"code": "404", "message": f"{es}({raw_key}) not found"}}, {}
        if_match = hdr.get("if-match")
        if if_match and if_match != "*" and if_match != _etag(row):
            return 412, {"error": {"code": "412", "message": "ETag mismatch"}}, {}
        if method == "GET":
            return 200, _public(row, None), {"ETag": _etag(row)}
        if method == "PATCH":
            values = json.loads(body or b"{}")
            bad = [k for k in values if k not in PROPS[es] or k in COMPUTED[es]
                   or k == KEYS[es]]
            if bad:
                raise BadRequest(f"property {bad[0]!r} cannot be written")
            row.update(values)
            app._stamp(row)
            return 204, None, {"ETag": _etag(row)}
        if method == "DELETE":
            del rows[key]
            return 204, None, {}
        return 405, {"error": {"code": "405", "message": "method not allowed"}}, {}

    def _list(self, es: str, query: str, hdr: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        opts: dict[str, str] = {}
        for part in query.split("&") if query else []:
            k, _, v = part.partition("=")
            opts[unquote(k)] = unquote(v)
        unknown = set(opts) - {"$select", "$filter", "$orderby", "$top", "$skiptoken"}
        if unknown:
            raise BadRequest(f"query option {sorted(unknown)[0]} is not supported")
        rows = list(self.app.rows[es].values())
        if "$filter" in opts:
            pred = compile_filter(opts["$filter"], PROPS[es])
            rows = [r for r in rows if pred(r)]
        for item in reversed([x.strip() for x in opts.get("$orderby", "").split(",") if x]):
            name, _, direction = item.partition(" ")
            if name not in PROPS[es]:
                raise BadRequest(f"Could not find a property named '{name}'")
            rows.sort(key=lambda r, n=name: (r[n] is not None, r[n]), reverse=direction == "desc")
        if "$top" in opts:
            rows = rows[: int(opts["$top"])]
        select = [s for s in opts.get("$select", "").split(",") if s]
        for s in select:
            if s not in PROPS[es]:
                raise BadRequest(f"Could not find a property named '{s}'")
        m = re.search(r"odata\.maxpagesize=(\d+)", hdr.get("prefer", ""))
        size = min(int(m.group(1)) if m else MAX_PAGE, MAX_PAGE)
        start = int(opts.get("$skiptoken", "0"))
        page = rows[start:start + size]
        out: dict[str, Any] = {"@odata.context": f"$metadata#{es}",
                               "value": [_public(r, select) for r in page]}
        if start + size < len(rows):
            keep = [p for p in query.split("&") if p and not p.startswith("$skiptoken=")]
            out["@odata.nextLink"] = f"{es}?{'&'.join(keep + [f'$skiptoken={start + size}'])}"
        return 200, out, {}

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        """GET."""
        self._handle()

    do_POST = do_PATCH = do_DELETE = do_GET  # noqa: N815
