"""The shared sandbox server: process protocol, control API, faults, TLS, loopback only."""

import json
import ssl
import urllib.request
from pathlib import Path

import pytest
from sandbox_process import SandboxProcess

from l2sync_dagster.sandbox.server import require_loopback, start_sandbox
from l2sync_dagster.sandbox.service import Request, Response, Service


class EchoService(Service):
    """A minimal service for testing the server: echoes the request, throttles on demand."""

    name = "echo"
    tls = True

    def handle(self, request: Request) -> Response:
        if self.faults.throttle():
            self.stats.add("throttled")
            return Response.json({"error": "busy"}, 429, operation="echo",
                                 headers={"Retry-After": "1"})
        return Response.json({"method": request.method, "path": request.path,
                              "query": request.raw_query, "body": request.body.decode()},
                             operation="echo")


def test_loopback_only() -> None:
    assert require_loopback("127.0.0.1") == "127.0.0.1"
    assert require_loopback("::1") == "::1"
    with pytest.raises(ValueError, match="loopback"):
        require_loopback("0.0.0.0")
    with pytest.raises(ValueError, match="loopback"):
        require_loopback("10.1.2.3")


def test_tls_service_control_api_and_faults(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setattr("l2sync_dagster.sandbox.server.available_services",
                        lambda: {"echo": EchoService})
    sbx = start_sandbox(state_dir=tmp_path)
    try:
        url = sbx.urls["echo"]
        assert url.startswith("https://127.0.0.1:")
        ctx = ssl.create_default_context(cafile=str(sbx.ca_path))

        def call(method: str, path: str, body: object = None) -> tuple[int, object]:
            data = json.dumps(body).encode() if body is not None else None
            req = urllib.request.Request(url + path, data=data, method=method)
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        assert call("GET", "/a%20b?x=1%202")[1]["query"] == "x=1%202"
        assert call("POST", "/x", {"k": 1})[1]["body"] == '{"k": 1}'
        assert call("GET", "/_sandbox/stats")[1]["requests"] == {"echo": 2}
        call("POST", "/_sandbox/faults", {"throttle_fraction": 1.0})
        assert call("GET", "/y")[0] == 429
        assert call("POST", "/_sandbox/faults", {"nope": 1})[0] == 400
        call("DELETE", "/_sandbox/faults")
        call("POST", "/_sandbox/faults", {"drop_after": 0, "drop_count": 1})
        with pytest.raises((ConnectionError, urllib.error.URLError, OSError)):
            call("GET", "/dropped")
        assert call("GET", "/after-drop")[0] == 200
        stats = call("GET", "/_sandbox/stats")[1]
        assert stats["dropped"] == 1 and stats["throttled"] == 1
    finally:
        sbx.stop()


def test_sandbox_command_prints_urls_ca_and_ready(tmp_path: Path) -> None:
    proc = SandboxProcess.start(tmp_path / "state")
    try:
        assert proc.ca_path.is_file()
        assert "token" in proc.urls or proc.urls == {} or proc.urls
        for name in proc.urls:
            assert proc.control(name).stats()["total"] == 0
    finally:
        assert proc.stop() == 0
