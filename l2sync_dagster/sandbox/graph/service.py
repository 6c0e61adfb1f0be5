"""The Graph sandbox service: authentication, throttling, routing, strict checks, control API.

See the package docstring (:mod:`l2sync_dagster.sandbox.graph`) for the guide.
"""

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from l2sync_dagster.sandbox import identities
from l2sync_dagster.sandbox.graph import demo, directory, groups, sites, users
from l2sync_dagster.sandbox.graph.batch import run_batch
from l2sync_dagster.sandbox.graph.common import (
    Ctx,
    GraphError,
    Kind,
    error_body,
    parse_query,
    shape,
)
from l2sync_dagster.sandbox.graph.csdl import Csdl, load_csdl
from l2sync_dagster.sandbox.graph.query import QueryError
from l2sync_dagster.sandbox.graph.store import Store
from l2sync_dagster.sandbox.schemas import schema_dir_or_notice
from l2sync_dagster.sandbox.service import (
    CaseInsensitiveDict,
    Request,
    Response,
    SandboxContext,
    Service,
)
from l2sync_dagster.sandbox.tokens import Principal

GRAPH_RESOURCE = "https://graph.microsoft.com"
_EXPANDABLE = {"singleValueExtendedProperties", "fields", "exceptionOccurrences"}
_OPTIONS = {"$select", "$top", "$skip", "$filter", "$orderby", "$expand", "$skiptoken",
            "$deltatoken"}


class GraphService(Service):
    """Microsoft Graph v1.0 stand-in (users' Outlook data and SharePoint lists)."""

    name = "graph"
    tls = True

    def __init__(self, ctx: SandboxContext) -> None:
        super().__init__(ctx)
        folder, self._notice = schema_dir_or_notice("graph")
        self.csdl: Csdl | None = load_csdl(folder / "graph-v1.0-csdl.xml") if folder else None
        self.store = Store()
        self.groups = groups.demo_groups()
        #: application permissions by client id (``POST /_sandbox/graph/app-roles``)
        self.app_roles: dict[str, frozenset[str]] = dict(groups.DEFAULT_APP_ROLES)
        if self.state_file is not None and self.state_file.is_file():
            self.store.load_json(json.loads(self.state_file.read_text()))
        else:
            demo.load(self)

    def notice(self) -> str | None:
        """Whether responses and requests are checked against the CSDL."""
        return self._notice

    def reset(self) -> None:
        """Demo data back; counters and faults cleared."""
        super().reset()
        self.store = Store()
        self.groups = groups.demo_groups()
        self.app_roles = dict(groups.DEFAULT_APP_ROLES)
        demo.load(self)

    def save(self) -> None:
        """Write the data to ``graph.json`` in the state folder."""
        path: Path | None = self.state_file
        if path is not None:
            path.write_text(self.store.dumps())

    # ------------------------------------------------------------------ checks
    def error_json(self, code: str, message: str) -> dict[str, Any]:
        """Graph's error body."""
        return error_body(code, message)

    def check_out(self, type_name: str, obj: dict[str, Any], where: str) -> None:
        """Record a response entity that fails the CSDL check (a test failure)."""
        if self.csdl is None:
            return
        problems = self.csdl.check(type_name, obj)
        if problems:
            self.stats.invalid_response(f"graph {where}: {type_name} {problems[:5]}")

    def checked_body(self, ctx: Ctx, type_name: str) -> dict[str, Any]:
        """The request body, refused (400) unless it is a valid ``type_name`` object."""
        body = ctx.body
        if not isinstance(body, dict):
            self.stats.add("rejected_requests")
            raise GraphError(400, "invalidRequest", "The request body must be a JSON object.")
        if self.csdl is not None:
            problems = self.csdl.check(type_name, body)
            if problems:
                self.stats.add("rejected_requests")
                raise GraphError(400, "invalidRequest", "; ".join(problems[:5]))
        return body

    def navigation_or_400(self, type_name: str, prop: str) -> None:
        """Refuse (400, as Graph does) a path segment that is no navigation property of
        ``type_name`` in the CSDL."""
        if self.csdl is not None and self.csdl.navigation(type_name, prop) is None:
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{prop}'.")

    def check_fields_or_400(self, columns: dict[str, Any], fields: Any) -> None:
        """List item fields checked against the list's columns."""
        if not isinstance(fields, dict):
            self.stats.add("rejected_requests")
            raise GraphError(400, "invalidRequest", "fields must be a JSON object.")
        problems = sites.check_fields(columns, fields, writing=True)
        if problems:
            self.stats.add("rejected_requests")
            raise GraphError(400, "invalidRequest", "; ".join(problems[:5]))

    # ------------------------------------------------------------------ output
    def emitter(self, ctx: Ctx, kind: Kind) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """Entity -> response JSON ($select, Prefer, $expand), checked against the CSDL."""
        select = ctx.select()
        if select and self.csdl is not None:
            for name in select:
                if self.csdl.property_type(kind.type, name) is None:
                    raise GraphError(400, "BadRequest", f"Parsing OData Select and Expand "
                                     f"failed: Could not find a property named '{name}' on "
                                     f"type 'microsoft.graph.{kind.type}'.")

        expand = ctx.extra.get("expand_opts") or {}
        for name in expand:
            if name == "exceptionOccurrences":
                self.navigation_or_400(kind.type, name)

        def emit(entity: dict[str, Any]) -> dict[str, Any]:
            out = shape(ctx, entity, select=select,
                        all_day=bool(entity.get("isAllDay")))
            if "exceptionOccurrences" in expand:
                inner = expand["exceptionOccurrences"]
                out["exceptionOccurrences"] = [
                    shape(ctx, e, select=inner.select, all_day=bool(e.get("isAllDay")))
                    for e in users.exception_events(entity)]
            self.check_out(kind.type, out, ctx.raw_path)
            return out
        return emit

    def item_emitter(self, ctx: Ctx, columns: dict[str, Any]
                     ) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """A list item as returned: ``fields`` only when expanded (or after a write)."""
        select = ctx.select()
        expand = ctx.extra.get("expand_opts") or {}

        def emit(item: dict[str, Any]) -> dict[str, Any]:
            out = shape(ctx, item, select=select, hidden=("fields",))
            if "fields" in expand or ctx.extra.get("force_fields"):
                out["fields"] = self._fields(item, expand.get("fields"))
            self.check_out("listItem", out, ctx.raw_path)
            if "fields" in out:
                self._check_fields_out(columns, out["fields"], ctx.raw_path)
            return out
        return emit

    def fields_emitter(self, ctx: Ctx, columns: dict[str, Any]
                       ) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """``/items/{id}/fields``: the fieldValueSet alone."""
        select = ctx.select()

        def emit(item: dict[str, Any]) -> dict[str, Any]:
            fields = self._fields(item, None, select)
            self._check_fields_out(columns, fields, ctx.raw_path)
            return fields
        return emit

    @staticmethod
    def _fields(item: dict[str, Any], expand: Any, select: list[str] | None = None
                ) -> dict[str, Any]:
        chosen = select or (expand.select if expand is not None else None)
        out: dict[str, Any] = {"@odata.etag": item["eTag"]}
        for k, v in item["fields"].items():
            if chosen is None or k in chosen or (k.endswith("LookupId") and k[:-8] in chosen):
                out[k] = v
        if chosen is None or "id" in chosen:
            out["id"] = item["id"]
        return out

    def _check_fields_out(self, columns: dict[str, Any], fields: dict[str, Any],
                          where: str) -> None:
        problems = sites.check_fields(columns, {k: v for k, v in fields.items()
                                                if k not in ("ID",)}, writing=False)
        if problems:
            self.stats.invalid_response(f"graph {where}: fields {problems[:5]}")

    # ------------------------------------------------------------------ protocol
    def handle(self, request: Request) -> Response:
        """Authenticate, then answer (``$batch`` included)."""
        principal = self._authenticate(request)
        if isinstance(principal, Response):
            return principal
        if request.path.rstrip("/") == "/v1.0/$batch" and request.method == "POST":
            if self.faults.throttle():
                return self._throttled("batch")
            try:
                with self.lock:
                    return run_batch(self, request, principal)
            except GraphError as exc:
                return self._error(exc, "batch", request)
        return self.answer(request, principal)

    def answer(self, request: Request, principal: Principal, *,
               throttle: bool = True) -> Response:
        """One request (also an inner ``$batch`` request); ``throttle`` False for the control
        API's own reads."""
        path = request.path
        parts = [p for p in path.split("/") if p]
        op_guess = _operation_guess(parts, request.method)
        if throttle and self.faults.throttle():
            return self._throttled(op_guess)
        if not parts or parts[0] != "v1.0":
            return self._error(GraphError(400, "BadRequest", "Invalid version: use /v1.0."),
                               "unknown", request)
        try:
            body = request.json() if request.body else None
        except ValueError:
            self.stats.add("rejected_requests")
            return self._error(GraphError(400, "BadRequest", "Unable to read JSON request "
                                          "payload. Please ensure Content-Type header is set "
                                          "and payload is of valid JSON format."),
                               op_guess, request)
        ctx = Ctx(self, request.method, parts[1:], parse_query(request.raw_query),
                  dict(request.headers), body, principal, request.base_url,
                  urlsplit(request.target).path)
        try:
            unknown_options = sorted(k for k in ctx.query
                                     if k.startswith("$") and k.lower() not in _OPTIONS)
            if unknown_options:
                raise GraphError(400, "BadRequest", f"Query option '{unknown_options[0]}' is "
                                 "not supported by the sandbox.")
            try:
                expand = ctx.expand()
            except QueryError as exc:
                raise GraphError(400, "BadRequest", str(exc)) from exc
            unknown = set(expand) - _EXPANDABLE
            if unknown:
                raise GraphError(400, "BadRequest", f"Parsing OData Select and Expand failed: "
                                 f"Could not find a property named '{sorted(unknown)[0]}'.")
            ctx.extra["expand_opts"] = expand
            with self.lock:
                return self._route(ctx, path)
        except QueryError as exc:
            return self._error(GraphError(400, "BadRequest", str(exc)), op_guess, request)
        except GraphError as exc:
            return self._error(exc, op_guess, request)

    def _route(self, ctx: Ctx, path: str) -> Response:
        parts = ctx.path
        head = parts[0] if parts else ""
        if head == "me":
            if ctx.principal.kind != "user":
                raise GraphError(400, "BadRequest", "/me request is only valid with delegated "
                                 "authentication flow.")
            return users.route_user(ctx, ctx.principal.name, parts[1:])
        if head == "users":
            if len(parts) == 1:
                return directory.route_users(
                    ctx, lambda upn: self._may_open(ctx.principal, upn))
            if len(parts) == 2 and parts[1] in ("delta", "microsoft.graph.delta"):
                return directory.route_delta(ctx)
            if len(parts) == 2 and ctx.method == "GET":
                # the user itself: as the directory has it now (edits, deletes, no mailbox)
                entry = directory.find(self, parts[1])
                if entry is not None and self._may_open(ctx.principal,
                                                        entry["userPrincipalName"]):
                    return directory.route_get(ctx, entry)
            upn = users.find_user(parts[1])
            if upn is None:
                raise GraphError(404, "ErrorInvalidUser", f"The requested user '{parts[1]}' is "
                                 "invalid.")
            if not self._may_open(ctx.principal, upn):
                raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials "
                                 "and try again.")
            return users.route_user(ctx, upn, parts[2:])
        if head == "groups":
            return groups.route_groups(ctx, parts[1:])
        if head == "sites":
            rest = path.split("/sites", 1)[1].lstrip("/")
            return sites.route_sites(ctx, rest)
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{head}'.")

    @staticmethod
    def _may_open(principal: Principal, upn: str) -> bool:
        if principal.kind == "app":
            return True
        return identities.may_open(principal.name, upn, impersonation=False)

    def _authenticate(self, request: Request) -> Principal | Response:
        token = request.bearer
        if not token:
            return self._unauthorized("Access token is empty.", request)
        principal = None
        for audience in (self.ctx.urls.get("graph"), request.base_url, GRAPH_RESOURCE):
            if audience:
                principal = self.ctx.tokens.check(token, audience)
                if principal is not None:
                    break
        if principal is None:
            if self.ctx.tokens.check(token) is not None:
                return self._unauthorized("Access token validation failure. Invalid audience.",
                                          request)
            return self._unauthorized("Access token validation failure: the token is unknown "
                                      "or expired.", request)
        return principal

    def _unauthorized(self, message: str, request: Request) -> Response:
        resp = self._error(GraphError(401, "InvalidAuthenticationToken", message), "unauthorized",
                           request)
        resp.headers["WWW-Authenticate"] = 'Bearer realm="", authorization_uri=' \
            '"https://login.microsoftonline.com/common/oauth2/authorize"'
        return resp

    def _throttled(self, operation: str) -> Response:
        self.stats.add("throttled")
        headers = {}
        if self.faults.throttle_hint:
            headers["Retry-After"] = str(max(1, math.ceil((self.faults.throttle_ms or 0) / 1000)))
        body = error_body("TooManyRequests", "Too many requests. Please retry after the "
                          "interval given in the Retry-After header.")
        return Response.json(body, 429, operation=operation, headers=headers)

    def _error(self, exc: GraphError, operation: str, request: Request) -> Response:
        body = error_body(exc.code, exc.message, request.headers.get("client-request-id"))
        return Response.json(body, exc.status, operation=operation, headers=exc.headers)

    # ------------------------------------------------------------------ control API
    def control(self, request: Request, subpath: str) -> Response:
        """``/_sandbox/graph/...``: seed, sites, lists, inspect, expire-delta (see guide)."""
        body = request.json() if request.body else {}
        with self.lock:
            if subpath == "seed/contacts" and request.method == "POST":
                folder = demo.seed_contacts(self, body.get("user", identities.SERVICE_USER),
                                            body.get("folder"), int(body["count"]),
                                            body.get("prefix", "Seed"))
                return Response.json({"created": int(body["count"]), "folder": folder})
            if subpath == "seed/messages" and request.method == "POST":
                folder = demo.seed_messages(self, body.get("user", identities.SERVICE_USER),
                                            body.get("folder", "inbox"), int(body["count"]))
                return Response.json({"created": int(body["count"]), "folder": folder})
            if subpath == "seed/items" and request.method == "POST":
                lst = self._control_list(body)
                demo.seed_items(self, lst["id"], int(body["count"]))
                return Response.json({"created": int(body["count"]), "list": lst["id"]})
            if subpath == "sites" and request.method == "POST":
                site = sites.create_site(self, body["hostname"], body["path"],
                                         body.get("displayName") or body["path"].rsplit("/")[-1])
                return Response.json(site)
            if subpath == "lists" and request.method == "POST":
                site = self._control_site(body.get("site"))
                try:
                    lst = sites.create_list(self, site, body["displayName"],
                                            body.get("columns") or [])
                except GraphError as exc:
                    return Response.json({"error": exc.message}, exc.status)
                return Response.json(lst)
            if subpath == "inspect" and request.method == "POST":
                return Response.json(self._inspect(body["path"], request.base_url))
            if subpath == "app-roles" and request.method == "POST":
                self.app_roles[body.get("client", identities.CLIENT_ID)] = frozenset(
                    body.get("roles") or ())
                return Response.json({"roles": sorted(self.app_roles[
                    body.get("client", identities.CLIENT_ID)])})
            if subpath in ("directory/update", "directory/delete") and request.method == "POST":
                try:
                    if subpath == "directory/update":
                        user = directory.update_user(self, str(body["user"]),
                                                     dict(body.get("properties") or {}))
                    else:
                        user = directory.delete_user(self, str(body["user"]))
                except KeyError as exc:
                    return Response.json({"error": str(exc)}, 404)
                except ValueError as exc:
                    return Response.json({"error": str(exc)}, 400)
                return Response.json(user)
            if subpath == "expire-delta" and request.method == "POST":
                with self.store.lock:
                    self.store.epoch += 1
                return Response.json({"epoch": self.store.epoch})
        return super().control(request, subpath)

    def _control_site(self, ref: str | None) -> dict[str, Any]:
        coll = self.store.collection("sites", "sites")
        if not ref:
            ref = f"{demo.SALES_SITE[0]}:{demo.SALES_SITE[1]}"
        site_id = coll.meta.get("paths", {}).get(ref.lower().rstrip("/"), ref)
        if site_id not in coll.items:
            raise KeyError(f"no site {ref!r}")
        return coll.items[site_id]

    def _control_list(self, body: dict[str, Any]) -> dict[str, Any]:
        site = self._control_site(body.get("site"))
        lists = self.store.collection(f"lists|{site['id']}", "lists")
        name = body.get("list", "Customers")
        for lst in lists.items.values():
            if name in (lst["id"], lst["displayName"]):
                return lst
        raise KeyError(f"no list {name!r}")

    def _inspect(self, path: str, base_url: str) -> list[dict[str, Any]]:
        """Every entity a GET of ``path`` returns (all pages), as the app, uncounted."""
        app = Principal(identities.CLIENT_ID, "app", audience=GRAPH_RESOURCE)
        target = "/v1.0/" + path.lstrip("/").removeprefix("v1.0/")
        out: list[dict[str, Any]] = []
        for _ in range(10000):
            req = Request("GET", target, CaseInsensitiveDict(), b"", base_url)
            resp = self.answer(req, app, throttle=False)
            data = json.loads(resp.body)
            if resp.status != 200:
                raise ValueError(f"inspect {path}: {resp.status} {data}")
            if "value" not in data:
                return [data]
            out += data["value"]
            next_link = data.get("@odata.nextLink")
            if not next_link:
                break
            target = next_link[len(base_url):]
        return out


def _operation_guess(parts: list[str], method: str) -> str:
    """An operation name for answers given before routing (throttling, errors)."""
    names = [p for p in parts[1:] if p in {
        "contacts", "contactFolders", "events", "calendarView", "tasks", "lists", "mailFolders",
        "messages", "items", "columns", "users", "sites", "groups", "transitiveMembers"}]
    last = names[-1] if names else "unknown"
    last = {"tasks": "todoTasks", "items": "listItems",
            "transitiveMembers": "groupMembers"}.get(last, last)
    if last == "lists" and "todo" in parts:
        last = "todoLists"
    verb = {"GET": "list", "POST": "create", "PATCH": "update", "DELETE": "delete"}.get(
        method, method.lower())
    if parts and parts[-1] == "delta":
        verb = "delta"
    elif method == "GET" and names and parts[-1] not in names and parts[-1] != "fields":
        verb = "get"  # the last segment is an id
    return f"{last}.{verb}"
