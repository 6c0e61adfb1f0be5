"""Unreachable servers (issue 12, item 10): one line naming the URL and the key to check, fast.

Each provider is pointed at a loopback port that refuses connections (a socket bound, then
closed) and at one that accepts and never answers (listening, never read), with a short
``Timeout``. The message must name ``host:port`` and the connection-string key, carry no library
internals, and come within a bound (a refused connection must not be retried for a minute).
"""

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sandbox_process import SandboxProcess

from l2sync_dagster.providers.base import ProviderError, Query
from l2sync_dagster.providers.dataverse import DataverseProvider
from l2sync_dagster.providers.exchange import ExchangeProvider
from l2sync_dagster.providers.sharepoint import SharePointProvider

SECRET_ENV = "UNREACHABLE_TEST_SECRET"
PASSWORD_ENV = "UNREACHABLE_TEST_PASSWORD"
TIMEOUT_S = 1
#: a refused connection: no retry loop (Graph used to retry for ~95 s)
REFUSED_BOUND_S = 5.0
#: a silent server: a few Timeouts at most, never the default 120 s nor a hang
SILENT_BOUND_S = 8.0
INTERNALS = ("Reraised", "version headers", "HTTPSConnectionPool", "HTTPConnectionPool",
             "NewConnectionError", "Max retries")


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def run_bounded(fn: Callable[[], Any], limit_s: float) -> tuple[BaseException | None, float]:
    """Run ``fn`` in a thread; (what it raised, seconds taken); fail if it outlives the limit
    by far (a hang must fail the test, not the suite)."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["exc"] = exc

    start = time.monotonic()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit_s * 4 + 30)
    elapsed = time.monotonic() - start
    assert not thread.is_alive(), f"still waiting after {elapsed:.0f}s"
    return out.get("exc"), elapsed


def check(exc: BaseException | None, elapsed: float, bound: float, *, port: int, key: str,
          why: str) -> str:
    assert isinstance(exc, ProviderError), repr(exc)
    text = str(exc)
    assert f"127.0.0.1:{port}" in text, text
    assert f"check {key}=" in text, text
    assert why in text, text
    assert "\n" not in text
    for internal in INTERNALS:
        assert internal not in text, text
    assert exc.transient is True
    assert elapsed < bound, f"{elapsed:.1f}s: {text}"
    return text


def token_keys(sandbox: SandboxProcess) -> str:
    return (f"Authority={sandbox.urls['token']}/sandbox;ClientId=l2sync-sandbox;"
            f"ClientSecret=env:{SECRET_ENV};CABundle={sandbox.ca_path}")


def ews_verify(port: int) -> Callable[[], Any]:
    cs = (f"URL=https://127.0.0.1:{port}/EWS/Exchange.asmx;User=sync@sandbox.test;"
          f"Password=env:{PASSWORD_ENV};Timeout={TIMEOUT_S}")
    provider = ExchangeProvider.from_connection_string(cs)
    return lambda: provider.verify(Query("SELECT * FROM Contacts"))


def graph_exchange_verify(sandbox: SandboxProcess, port: int) -> Callable[[], Any]:
    cs = (f"Backend=graph;GraphURL=http://127.0.0.1:{port}/v1.0;{token_keys(sandbox)};"
          f"Email=sales@sandbox.test;Timeout={TIMEOUT_S}")
    provider = ExchangeProvider.from_connection_string(cs)
    return lambda: provider.verify(Query("SELECT * FROM Contacts"))


def sharepoint_verify(sandbox: SandboxProcess, port: int) -> Callable[[], Any]:
    cs = ("URL=https://sandbox.sharepoint.com/sites/sales/Lists/Customers/AllItems.aspx;"
          f"GraphURL=http://127.0.0.1:{port}/v1.0;{token_keys(sandbox)};Timeout={TIMEOUT_S}")
    provider = SharePointProvider.from_connection_string(cs)
    return lambda: provider.verify(Query())


def dataverse_verify(sandbox: SandboxProcess, port: int) -> Callable[[], Any]:
    cs = (f"URL=http://127.0.0.1:{port}/api/data/v9.2/accounts;{token_keys(sandbox)};"
          f"Timeout={TIMEOUT_S}")
    provider = DataverseProvider.from_connection_string(cs)
    return lambda: provider.verify(Query())


def token_verify(sandbox: SandboxProcess, port: int) -> Callable[[], Any]:
    """Dataverse reachable, its authority not: the token request fails."""
    cs = (f"URL={sandbox.urls['dataverse']}/api/data/v9.2/accounts;"
          f"Authority=https://127.0.0.1:{port}/sandbox;ClientId=l2sync-sandbox;"
          f"ClientSecret=env:{SECRET_ENV};CABundle={sandbox.ca_path};Timeout={TIMEOUT_S}")
    provider = DataverseProvider.from_connection_string(cs)
    return lambda: provider.verify(Query())


TARGETS: dict[str, tuple[Callable[..., Callable[[], Any]], str, str]] = {
    # name: (factory, key to check, label the message starts with)
    "ews": (lambda _sbx, port: ews_verify(port), "URL", "exchange: unreachable: https://"),
    "graph-exchange": (graph_exchange_verify, "GraphURL", "unreachable: http://"),
    "graph-sharepoint": (sharepoint_verify, "GraphURL", "unreachable: http://"),
    "dataverse": (dataverse_verify, "URL", "dataverse: unreachable: http://"),
    "token-endpoint": (token_verify, "Authority", "sign-in: unreachable: https://"),
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "sandbox")
    monkeypatch.setenv(PASSWORD_ENV, "sandbox")


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_connection_refused_fails_fast_naming_url_and_key(sandbox, env, target):
    factory, key, head = TARGETS[target]
    port = closed_port()
    exc, elapsed = run_bounded(factory(sandbox, port), REFUSED_BOUND_S)
    text = check(exc, elapsed, REFUSED_BOUND_S, port=port, key=key, why="connection refused")
    assert head in text, text


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_silent_server_times_out_naming_url_key_and_timeout(sandbox, env, target,
                                                            silent_port):
    factory, key, head = TARGETS[target]
    exc, elapsed = run_bounded(factory(sandbox, silent_port), SILENT_BOUND_S)
    text = check(exc, elapsed, SILENT_BOUND_S, port=silent_port, key=key,
                 why=f"no answer within {TIMEOUT_S}s")
    assert head in text, text
    assert "Timeout=" in text, text


def test_message_never_shows_url_credentials_or_query():
    from l2sync_dagster.providers.unreachable import REFUSED, unreachable_message

    text = unreachable_message("odata", "https://bob:hunter2@example.test/svc/$metadata?sig=abc",
                               "URL", REFUSED)
    assert text == ("odata: unreachable: https://example.test:443/svc/$metadata "
                    "(connection refused); check URL=")
