"""Helpers shared by the exchange provider tests (sandbox connection strings, providers)."""

from collections.abc import Iterator
from typing import Any

import pytest

from l2sync_dagster.providers.exchange import ExchangeProvider
from l2sync_dagster.providers.exchange.connection import parse_settings
from l2sync_dagster.providers.exchange.ews_backend import EwsBackend

PASSWORD_ENV = "EWS_TEST_PASSWORD"
MAILBOX = "sales@sandbox.test"


def connection_string(url: str, **extra: str) -> str:
    """``URL=<sandbox>/EWS/Exchange.asmx;User=sync@...;Password=env:...;Email=sales@...``."""
    keys = {"URL": f"{url}/EWS/Exchange.asmx", "User": "sync@sandbox.test",
            "Password": f"env:{PASSWORD_ENV}", "Email": MAILBOX, "Authentication": "Basic",
            "MaxRetryWait": "20"}
    keys.update(extra)
    return ";".join(f"{k}={v}" for k, v in keys.items() if v is not None)


def provider(url: str, *, retry_wait_s: float = 0.01, **extra: str) -> ExchangeProvider:
    """An EWS provider against the sandbox with fast back-off."""
    settings = parse_settings(connection_string(url, **extra))
    return ExchangeProvider(settings, EwsBackend(settings, retry_wait_s=retry_wait_s))


def items(sandbox: Any, folder: str, mailbox: str = MAILBOX) -> list[dict[str, Any]]:
    """The items of a sandbox folder as the control API shows them."""
    return sandbox.control("ews").call(
        "GET", f"items?mailbox={mailbox}&folder={folder}")["items"]


def ews_session(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Body of the ``ews`` fixture: the sandbox EWS URL, with demo data reset before and
    faults cleared after."""
    monkeypatch.setenv(PASSWORD_ENV, "sandbox")
    control = sandbox.control("ews")
    control.reset()
    yield sandbox.urls["ews"]
    control.clear_faults()
