"""The EWS sandbox service: HTTP/auth/SOAP handling, validation, throttling, dispatch."""

import json
import logging
from collections.abc import Callable
from pathlib import Path

from lxml import etree

from l2sync_dagster.sandbox import identities
from l2sync_dagster.sandbox.ews import (
    demo,
    fields,
    ops_attachments,
    ops_directory,
    ops_folders,
    ops_items,
    ops_misc,
    ops_sync,
    soap,
)
from l2sync_dagster.sandbox.ews.call import Call, EwsFault
from l2sync_dagster.sandbox.ews.control import handle_control
from l2sync_dagster.sandbox.ews.schema import EwsSchema, load
from l2sync_dagster.sandbox.ews.store import Store
from l2sync_dagster.sandbox.ntlm import ntlm_step
from l2sync_dagster.sandbox.schemas import schema_dir_or_notice
from l2sync_dagster.sandbox.service import Request, Response, SandboxContext, Service
from l2sync_dagster.sandbox.tokens import Principal, check_basic

log = logging.getLogger("l2sync.sandbox.ews")

ENDPOINT = "/ews/exchange.asmx"
OUTLOOK = "https://outlook.office365.com"
DEFAULT_FIND_LIMIT = 1000  # EWSFindCountLimit of Exchange Online

Operation = Callable[[Call, etree._Element], etree._Element]
OPERATIONS: dict[str, Operation] = {
    "GetFolder": ops_folders.get_folder, "FindFolder": ops_folders.find_folder,
    "CreateFolder": ops_folders.create_folder, "DeleteFolder": ops_folders.delete_folder,
    "UpdateFolder": ops_folders.update_folder, "MoveFolder": ops_folders.move_folder,
    "EmptyFolder": ops_folders.empty_folder,
    "SyncFolderHierarchy": ops_folders.sync_folder_hierarchy,
    "GetItem": ops_items.get_item, "FindItem": ops_items.find_item,
    "CreateItem": ops_items.create_item, "UpdateItem": ops_items.update_item,
    "DeleteItem": ops_items.delete_item, "MoveItem": ops_items.move_item,
    "CopyItem": ops_items.copy_item,
    "SyncFolderItems": ops_sync.sync_folder_items,
    "CreateAttachment": ops_attachments.create_attachment,
    "GetAttachment": ops_attachments.get_attachment,
    "DeleteAttachment": ops_attachments.delete_attachment,
    "ConvertId": ops_misc.convert_id, "ResolveNames": ops_misc.resolve_names,
    "FindPeople": ops_directory.find_people,
}
XML = {"Content-Type": "text/xml; charset=utf-8"}


class EwsService(Service):
    """Exchange Web Services at ``http://127.0.0.1:PORT/EWS/Exchange.asmx`` (see the package
    docstring for auth, limits, faults and the control API)."""

    name = "ews"
    tls = False

    def __init__(self, ctx: SandboxContext) -> None:
        super().__init__(ctx)
        folder, self._notice = schema_dir_or_notice("ews")
        self.schema: EwsSchema | None = load(folder) if folder else None
        self.order = self.schema.order if self.schema else {}
        if self.schema:
            fields.BOOLEANS.update(self.schema.booleans)
        self.find_limit = DEFAULT_FIND_LIMIT
        self._expiry_applied = False
        self.store = Store()
        state = self.state_file
        if state is not None and state.is_file():
            self.store = Store.from_json(json.loads(state.read_text()))
        else:
            self.store = demo.build(self.order)

    # -- framework hooks ---------------------------------------------------------------------
    def notice(self) -> str | None:
        """Whether requests and responses are validated against Microsoft's schemas."""
        return self._notice

    def reset(self) -> None:
        """Demo data back, default find limit, faults and counters cleared (invalid responses
        are kept so that the test session still fails on them)."""
        problems = list(self.stats.invalid_responses)
        super().reset()
        self.stats.invalid_responses.extend(problems)
        self.store = demo.build(self.order)
        self.find_limit = DEFAULT_FIND_LIMIT
        self._expiry_applied = False

    def save(self) -> None:
        """Persist mailboxes to the state file."""
        path: Path | None = self.state_file
        if path is not None:
            self.store.save(path)

    def control(self, request: Request, subpath: str) -> Response:
        """``/_sandbox/ews/...`` (see the package docstring)."""
        with self.lock:
            return handle_control(self, request, subpath)

    # -- protocol ----------------------------------------------------------------------------
    def _principal(self, request: Request) -> tuple[Principal | None, str | None]:
        """Who sends the request, or ``(None, challenge)`` mid NTLM handshake."""
        auth = request.headers.get("authorization") or ""
        if auth[:5].lower() == "ntlm ":
            return ntlm_step(request.connection, auth)
        principal = check_basic(auth)
        if principal is None and request.bearer:
            for audience in (self.ctx.urls.get("ews"), request.base_url, OUTLOOK):
                if audience:
                    principal = self.ctx.tokens.check(request.bearer, audience)
                    if principal is not None:
                        break
        if principal is None and not auth:
            # like IIS: a connection signed in with NTLM stays signed in
            principal = request.connection.get("ntlm_principal")
        return principal, None

    def handle(self, request: Request) -> Response:
        """Answer one HTTP request to the EWS endpoint."""
        if request.path.lower().rstrip("/") != ENDPOINT:
            return Response(404, b"Not Found", {"Content-Type": "text/plain"})
        principal, challenge = self._principal(request)
        if principal is None:
            host = request.base_url.split("://", 1)[-1].split(":")[0]
            offer = challenge or f'NTLM, Bearer, Basic realm="{host}"'
            return Response(401, b"", {"WWW-Authenticate": offer,
                                       "Content-Type": "text/plain"}, "Unauthorized")
        if request.method != "POST":
            return Response(200, b"<html><body>EWS sandbox</body></html>",
                            {"Content-Type": "text/html"}, "Get")
        try:
            header, body = soap.parse_envelope(request.body)
        except ValueError as exc:
            self.stats.add("rejected_requests")
            return self._fault("ErrorSchemaValidation", None, ("1", "1", str(exc)))
        operation = etree.QName(body).localname
        version = header.find(soap.t("RequestServerVersion")) if header is not None else None
        if version is not None:
            if version.get("Version") not in soap.ACCEPTED_VERSIONS:
                return self._fault("ErrorInvalidServerVersion", operation)
            # the schemas fix the attribute to Exchange2016: validate older ones as that
            version.set("Version", soap.API_VERSION)
        violation = self._validate_request(header, body)
        if violation:
            self.stats.add("rejected_requests")
            return self._fault("ErrorSchemaValidation", operation, violation)
        if self.faults.throttle():
            self.stats.add("throttled")
            values = ({"BackOffMilliseconds": str(self.faults.throttle_ms)}
                      if self.faults.throttle_hint else None)
            return self._fault("ErrorServerBusy", operation, values=values)
        op = OPERATIONS.get(operation)
        if op is None:
            # not ErrorInvalidRequest: clients (exchangelib) take that for a wrong
            # RequestServerVersion and retry the request with every older version
            return self._fault("ErrorInvalidOperation", operation,
                               message=f"The sandbox does not implement {operation}.")
        try:
            with self.lock:
                call = Call(self, self.store, principal, order=self.order)
                call.impersonated = self._impersonation(principal, header)
                self._apply_expiry()
                result = op(call, body)
                data = soap.to_bytes(soap.envelope(result))
        except EwsFault as exc:
            return self._fault(exc.code, operation, message=exc.message)
        self._validate_response(operation, result)
        return Response(200, data, dict(XML), operation)

    def _impersonation(self, principal: Principal, header: etree._Element | None) -> str | None:
        imp = header.find(soap.t("ExchangeImpersonation")) if header is not None else None
        if imp is None:
            if principal.kind == "app":
                raise EwsFault("ErrorImpersonateUserDenied",
                               "An application token must impersonate a mailbox "
                               "(ExchangeImpersonation header).")
            return None
        sid = imp.find(soap.t("ConnectingSID"))
        target = "".join(sid.itertext()).strip().lower() if sid is not None else ""
        if not identities.may_open(principal.name, target, impersonation=True):
            raise EwsFault("ErrorImpersonateUserDenied")
        if target not in self.store.mailboxes():
            raise EwsFault("ErrorNonExistentMailbox")
        return target

    def _apply_expiry(self) -> None:
        if self.faults.expire_cursors and not self._expiry_applied:
            self.store.epoch += 1
            self._expiry_applied = True
        elif not self.faults.expire_cursors:
            self._expiry_applied = False

    def _fault(self, code: str, operation: str | None,
               violation: tuple[str, str, str] | None = None, *,
               values: dict[str, str] | None = None, message: str | None = None) -> Response:
        return Response(500, soap.fault(code, message, values=values, violation=violation),
                        dict(XML), operation or "Invalid")

    # -- validation --------------------------------------------------------------------------
    def _validate_request(self, header: etree._Element | None,
                          body: etree._Element) -> tuple[str, str, str] | None:
        if self.schema is None:
            return None
        for part in [*(header if header is not None else ()), body]:
            if not isinstance(part.tag, str):
                continue
            problem = self.schema.validate(part)
            if problem:
                line, col, text = problem.split("\t", 2)
                return line, col, text
        return None

    def _validate_response(self, operation: str, result: etree._Element) -> None:
        if self.schema is None:
            return
        problem = self.schema.validate(result)
        if problem:
            detail = problem.replace("\t", ":", 2)
            log.error("invalid %s response: %s", operation, detail)
            self.stats.invalid_response(f"ews {operation}Response: {detail}")
