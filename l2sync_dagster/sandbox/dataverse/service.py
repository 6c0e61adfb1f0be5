"""The Dataverse sandbox service: authentication, throttling, routing, control endpoints."""

import json
import math
from typing import Any

from l2sync_dagster.sandbox import identities
from l2sync_dagster.sandbox.dataverse.api import API, Reply, SubRequest, WebApi, error_reply
from l2sync_dagster.sandbox.dataverse.batch import run_batch
from l2sync_dagster.sandbox.dataverse.errors import DataverseError
from l2sync_dagster.sandbox.dataverse.metadata import TABLES
from l2sync_dagster.sandbox.dataverse.records import parse_body
from l2sync_dagster.sandbox.dataverse.store import Store
from l2sync_dagster.sandbox.service import Request, Response, SandboxContext, Service
from l2sync_dagster.sandbox.token_service import TENANT_ID
from l2sync_dagster.sandbox.tokens import Principal


class DataverseService(Service):
    """Dynamics 365 / Dataverse Web API v9.2 (see the package docstring)."""

    name = "dataverse"
    tls = True

    def __init__(self, ctx: SandboxContext) -> None:
        super().__init__(ctx)
        self._expired_applied = False
        self.store = self._load()
        self.api = WebApi(self.store, self._report)

    def _report(self, message: str) -> None:
        self.stats.invalid_response(message)

    def _load(self) -> Store:
        path = self.state_file
        if path is not None and path.is_file():
            return Store.from_json(json.loads(path.read_text()))
        return Store.demo()

    def reset(self) -> None:
        """Demo data back; counters and faults cleared."""
        super().reset()
        self._expired_applied = False
        # versions go on from the old store, so its delta tokens are expired in the new one
        self.store = Store.demo(first_version=self.store.version + 1)
        self.api = WebApi(self.store, self._report)

    def save(self) -> None:
        """Keep the data in ``dataverse.json`` of the state folder."""
        if self.state_file is not None:
            self.store.save(self.state_file)

    @property
    def base(self) -> str:
        """This service's base URL (the token audience)."""
        return self.ctx.urls.get(self.name, "")

    # -- the Web API ----------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Authenticate, throttle on demand, then answer the Web API request."""
        path = request.path
        if path != API and not path.startswith(API + "/"):
            self.stats.add("rejected_requests")
            err = DataverseError("ResourceNotFound", f"No Web API at '{path}'; use {API}/.")
            return self._response(error_reply(err, "unknown"))
        audience = self.base or request.base_url
        principal = self.ctx.tokens.check(request.bearer, audience)
        if principal is None:
            self.stats.add("rejected_requests")
            return self._unauthorized(request, audience)
        if self.faults.throttle():
            self.stats.add("throttled")
            return self._throttled()
        with self.lock:
            self._apply_expiry_fault()
            rel = path[len(API):].lstrip("/")
            if rel == "$batch":
                try:
                    reply = run_batch(self.api, request.method, request.headers, request.body,
                                      request.base_url, self.stats.count)
                except DataverseError as exc:
                    reply = error_reply(exc, "batch")
            else:
                reply = self.api.execute(SubRequest(request.method, rel, request.raw_query,
                                                    request.headers, request.body,
                                                    request.base_url))
        return self._response(reply)

    def _apply_expiry_fault(self) -> None:
        """``faults.expire_cursors``: expire every delta token handed out before it was set."""
        if self.faults.expire_cursors and not self._expired_applied:
            self.store.expire_tokens()
            self._expired_applied = True
        elif not self.faults.expire_cursors:
            self._expired_applied = False

    def _response(self, reply: Reply) -> Response:
        headers = {"OData-Version": "4.0", **reply.headers}
        return Response(reply.status, reply.payload(), headers, reply.operation)

    def _unauthorized(self, request: Request, audience: str) -> Response:
        token_url = self.ctx.urls.get("token", "https://login.microsoftonline.com")
        challenge = (f"Bearer authorization_uri={token_url}/{TENANT_ID}/oauth2/authorize, "
                     f"resource_id={audience}/")
        return Response(401, b"", {"WWW-Authenticate": challenge}, "unauthorized")

    def _throttled(self) -> Response:
        err = DataverseError("ThrottlingRequests", "Number of requests exceeded the limit of "
                             "6000 over time window of 300 seconds.")
        headers = {}
        if self.faults.throttle_hint:
            headers["Retry-After"] = str(max(1, math.ceil((self.faults.throttle_ms or 0) / 1000)))
        headers.update({"Content-Type": "application/json; charset=utf-8",
                        "OData-Version": "4.0"})
        return Response(429, json.dumps(err.body()).encode(), headers)

    # -- control endpoints ----------------------------------------------------------------

    def control(self, request: Request, subpath: str) -> Response:
        """``/_sandbox/dataverse/...``:

        - ``POST seed`` ``{"set": "accounts", "count": N}``: N generated rows (keys returned)
        - ``GET rows/<set>`` all rows as stored; ``GET rows/<set>/<id>`` one row
        - ``PATCH rows/<set>/<id>`` ``{column: value, ...}``: change a row behind the client's
          back (new version, shows up in delta); ``DELETE rows/<set>/<id>``: delete one
        - ``POST expire-delta-tokens``: every delta token handed out so far expires
        - ``POST token`` ``{"user": "sync@sandbox.test"}`` or ``{"app": "l2sync-sandbox"}``:
          an access token for this service, TEST CONVENIENCE ONLY (clients use the token
          service through msal)
        """
        parts = [p for p in subpath.split("/") if p]
        body = request.json() if request.body else {}
        with self.lock:
            if parts == ["seed"] and request.method == "POST":
                entity_set = body.get("set", "accounts")
                if entity_set not in TABLES:
                    raise ValueError(f"unknown entity set {entity_set!r}")
                keys = self.store.seed(entity_set, int(body["count"]))
                return Response.json({"set": entity_set, "created": len(keys), "keys": keys})
            if parts == ["expire-delta-tokens"] and request.method == "POST":
                self.store.expire_tokens()
                return Response.json({"token_floor": self.store.token_floor})
            if parts == ["token"] and request.method == "POST":
                return Response.json(self._issue(body))
            if parts and parts[0] == "rows" and len(parts) in (2, 3) and parts[1] in TABLES:
                return self._rows(request, parts, body)
        return Response.json({"error": f"no control endpoint {subpath!r}"}, 404)

    def _issue(self, body: dict[str, Any]) -> dict[str, Any]:
        if "app" in body:
            if body["app"] not in identities.CLIENTS:
                raise ValueError(f"unknown app {body['app']!r}")
            principal = Principal(body["app"], "app", audience=self.base)
        else:
            user = str(body.get("user", identities.SERVICE_USER)).lower()
            if user not in identities.USERS:
                raise ValueError(f"unknown user {user!r}")
            principal = Principal(user, "user", audience=self.base)
        lifetime = int(body.get("lifetime_s", 3600))
        return {"access_token": self.ctx.tokens.issue(principal, lifetime),
                "token_type": "Bearer", "expires_in": lifetime}

    def _rows(self, request: Request, parts: list[str], body: Any) -> Response:
        table = TABLES[parts[1]]
        if len(parts) == 2:
            return Response.json({"value": list(self.store.rows[table.entity_set].values())})
        key = parts[2].lower()
        row = self.store.get(table, key)
        if row is None:
            return Response.json({"error": f"no {table.logical} {key}"}, 404)
        if request.method == "GET":
            return Response.json(row)
        if request.method == "DELETE":
            self.store.delete(table, key)
            return Response.json({"deleted": key})
        if request.method in ("PATCH", "POST"):
            try:
                values = parse_body(table, body, creating=False, key=key,
                                    lookup=self.store.get)
            except DataverseError as exc:
                raise ValueError(exc.message) from None
            values.pop(table.key, None)
            return Response.json(self.store.update(table, key, values))
        return Response.json({"error": f"method {request.method} not allowed"}, 405)
