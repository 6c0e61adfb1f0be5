"""Serve the sandbox services over HTTP(S) on loopback ports.

Every service gets its own port (``port_base + i``, or free ports when ``port_base`` is 0) and
the same control API under ``/_sandbox/``:

- ``GET /_sandbox/stats``: requests per operation, throttled, dropped, invalid responses
- ``POST /_sandbox/stats/reset``: zero the counters
- ``GET|POST|DELETE /_sandbox/faults``: read, set (JSON object, see :class:`Faults`), clear
- ``POST /_sandbox/reset``: demo data back, counters and faults cleared
- ``/_sandbox/<service>/...``: the service's own control endpoints
"""

import importlib
import ipaddress
import logging
import socket
import ssl
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from l2sync_dagster.sandbox.service import (
    CaseInsensitiveDict,
    Request,
    Response,
    SandboxContext,
    Service,
)
from l2sync_dagster.sandbox.tls import ensure_certificates
from l2sync_dagster.sandbox.tokens import TokenRegistry

log = logging.getLogger("l2sync.sandbox")

#: every service, in start order: name -> "module:Class" (a module not written yet is skipped)
SERVICES: dict[str, str] = {
    "token": "l2sync_dagster.sandbox.token_service:TokenService",
    "ews": "l2sync_dagster.sandbox.ews:EwsService",
    "graph": "l2sync_dagster.sandbox.graph:GraphService",
    "dataverse": "l2sync_dagster.sandbox.dataverse:DataverseService",
}


def available_services() -> dict[str, type[Service]]:
    """The service classes that exist in this checkout."""
    found: dict[str, type[Service]] = {}
    for name, target in SERVICES.items():
        module_name, _, cls_name = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # not built yet
            raise
        found[name] = getattr(module, cls_name)
    return found


def require_loopback(host: str) -> str:
    """``host`` when it is a loopback address or ``localhost``; ValueError otherwise."""
    if host == "localhost":
        return host
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise ValueError(f"the sandbox listens on loopback addresses only, not {host!r}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without this every small response waits for the client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    server: "_ServiceServer"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        log.debug("%s %s", self.server.service.name, format % args)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        headers = {k.lower(): (k, v) for k, v in response.headers.items()}
        for _, (k, v) in headers.items():
            self.send_header(k, v)
        if "content-length" not in headers:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _handle(self) -> None:
        service = self.server.service
        body = self._body()
        if not hasattr(self, "connection_state"):
            self.connection_state: dict[str, object] = {}
        request = Request(self.command, self.path, CaseInsensitiveDict(self.headers.items()),
                          body, self.server.base_url, self.connection_state)
        if request.path.startswith("/_sandbox/"):
            self._send(self.server.control(request))
            return
        if service.faults.should_drop():
            service.stats.add("dropped")
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        delay = self.server.latency_ms + (service.faults.latency_ms or 0)
        if delay:
            time.sleep(delay / 1000)
        try:
            response = service.handle(request)
        except Exception as exc:  # a service bug: answer 500 and make the tests fail
            detail = "".join(traceback.format_exception(exc))
            service.stats.invalid_response(f"{service.name} crashed on {request.method} "
                                           f"{request.path}: {detail}")
            log.error("%s crashed: %s", service.name, detail)
            response = Response(500, b"sandbox service error", {"Content-Type": "text/plain"})
        if response.operation:
            service.stats.count(response.operation)
        self._send(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle  # noqa: N815


class _ServiceServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, service: Service, latency_ms: int,
                 tls: ssl.SSLContext | None) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)
        self.service = service
        self.latency_ms = latency_ms
        if tls is not None:
            # the handshake happens in the handler thread, so a slow client blocks nobody
            self.socket = tls.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)
        scheme = "https" if tls else "http"
        shown = f"[{host}]" if ":" in host else host
        self.base_url = f"{scheme}://{shown}:{self.server_address[1]}"

    def control(self, request: Request) -> Response:
        service = self.service
        parts = request.path.strip("/").split("/", 2)  # ["_sandbox", what, rest]
        what = parts[1] if len(parts) > 1 else ""
        try:
            if what == "stats" and request.method == "GET":
                return Response.json(service.stats.as_dict())
            if what == "stats" and request.method == "POST":
                service.stats.reset()
                return Response.json(service.stats.as_dict())
            if what == "faults":
                if request.method == "POST":
                    service.faults.configure(request.json() or {})
                elif request.method == "DELETE":
                    service.faults.clear()
                return Response.json(service.faults.as_dict())
            if what == "reset" and request.method == "POST":
                with service.lock:
                    service.reset()
                return Response.json({"reset": service.name})
            if what == service.name:
                return service.control(request, parts[2] if len(parts) > 2 else "")
        except (ValueError, KeyError, TypeError) as exc:
            return Response.json({"error": str(exc)}, 400)
        return Response.json({"error": f"unknown control endpoint {request.path}"}, 404)


@dataclass
class RunningSandbox:
    """Started services: ``urls`` maps service name to base URL; ``stop()`` shuts them down."""

    urls: dict[str, str]
    ca_path: Path
    services: dict[str, Service]
    _servers: list[_ServiceServer] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def stop(self) -> None:
        """Stop every server and save each service's data."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for service in self.services.values():
            with service.lock:
                service.save()


def start_sandbox(host: str = "127.0.0.1", port_base: int = 0, latency_ms: int = 0,
                  state_dir: Path | None = None,
                  only: Sequence[str] | None = None) -> RunningSandbox:
    """Start the services (all available ones, or ``only`` those) in background threads."""
    require_loopback(host)
    classes = available_services()
    if only:
        missing = [n for n in only if n not in classes]
        if missing:
            raise ValueError(f"no sandbox service {missing}; available: {list(classes)}")
        classes = {n: c for n, c in classes.items() if n in only}
    cert_dir = state_dir if state_dir is not None else Path(tempfile.mkdtemp(prefix="l2sync-sbx-"))
    ca, cert, key = ensure_certificates(cert_dir / "tls")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    ctx = SandboxContext(state_dir=state_dir, tokens=TokenRegistry(), ca_path=ca)
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
    running = RunningSandbox({}, ca, {})
    for name, cls in classes.items():
        service = cls(ctx)
        # a fixed offset per service, so demo URLs stay the same whichever services exist
        port = port_base + list(SERVICES).index(name) if port_base else 0
        server = _ServiceServer(host, port, service, latency_ms, tls if cls.tls else None)
        running.services[name] = service
        ctx.services[name] = service
        running.urls[name] = server.base_url
        running._servers.append(server)
    ctx.urls.update(running.urls)
    for server in running._servers:
        thread = threading.Thread(target=server.serve_forever, daemon=True,
                                  name=f"sandbox-{server.service.name}")
        thread.start()
        running._threads.append(thread)
    return running
