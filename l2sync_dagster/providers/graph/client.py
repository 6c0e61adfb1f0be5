"""GraphClient: authenticated, throttling-aware HTTP calls to Microsoft Graph.

Connection-string keys every Graph-based provider shares (besides :attr:`MicrosoftAuth.KEYS`):
``GraphURL`` (default ``https://graph.microsoft.com/v1.0``), ``Authority`` and ``CABundle``.
The token scope is ``<scheme://host[:port] of GraphURL>/.default``.

Retries: 429/503/504 wait for ``Retry-After`` (exponential back-off when absent); a 401 gets
one fresh token; dropped connections are retried for idempotent methods only (a POST that may
have been executed is not repeated blindly). A server that refuses the connection, an unknown
host, a TLS failure or no answer within ``Timeout`` seconds (the connection's, default 120) is
not retried here: one transient error names the URL and the key to check (``GraphURL=``, or
``URL=`` for a SharePoint site). Errors carry Graph's error code and message.
"""

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from l2sync_dagster.providers.base import ProviderError
from l2sync_dagster.providers.graph.throttle import RETRY_STATUSES, RetryPolicy, app_budget
from l2sync_dagster.providers.microsoft_options import DEFAULT_GRAPH_URL, GraphSignIn
from l2sync_dagster.providers.msauth import MicrosoftAuth, scope_for
from l2sync_dagster.providers.unreachable import (
    READ_TIMEOUT,
    classify,
    fail_fast,
    unreachable_error,
)
from l2sync_dagster.spec.connection_string import ConnectionString, ConnectionStringError

if TYPE_CHECKING:
    from l2sync_dagster.providers.graph.batch import BatchRequest, BatchResult
    from l2sync_dagster.providers.graph.delta import DeltaResult

GRAPH_KEYS: frozenset[str] = frozenset(GraphSignIn.keys())
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"})
TIMEOUT_S: float = GraphSignIn.default("Timeout")


class GraphError(ProviderError):
    """A Graph call failed: HTTP ``status``, Graph's error ``code`` and ``message``."""

    def __init__(self, status: int, code: str, message: str, *, method: str = "",
                 url: str = "", transient: bool = False) -> None:
        where = f"{method} {url}: " if method else ""
        super().__init__(f"Graph {where}{status} {code}: {message}", transient=transient)
        self.status = status
        self.code = code
        self.graph_message = message


def error_of(status: int, body: Any) -> tuple[str, str]:
    """Graph's ``(code, message)`` from an error body (``{"error": {"code", "message"}}``)."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return str(err.get("code") or f"http{status}"), str(err.get("message") or "")
    if isinstance(body, str) and body:
        return f"http{status}", body[:300]
    return f"http{status}", ""


class GraphClient:
    """Calls to one Graph endpoint with one identity. Thread safe.

    ``stats()`` counts HTTP requests sent to Graph and seconds spent waiting on throttling.
    """

    def __init__(self, base_url: str, auth: MicrosoftAuth, *,
                 retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 timeout_s: float | None = None, url_key: str = "GraphURL") -> None:
        """Calls to ``base_url`` signed in with ``auth``. Inside ``shared.shared_sign_ins``
        (a run over many mailboxes) a sign-in of an identity seen before is replaced by that
        one, with its connection pool (one token and one set of connections for all)."""
        from l2sync_dagster.providers.graph.shared import active_sign_ins

        self.base_url = base_url.rstrip("/")
        shared = active_sign_ins() if isinstance(auth, MicrosoftAuth) else None
        if shared is not None:
            auth = shared.auth(auth)
        self.auth = auth
        #: seconds per request: given, else the connection's Timeout (kept by the auth)
        self.timeout_s = float(timeout_s or getattr(auth, "timeout_s", None) or TIMEOUT_S)
        #: the connection-string key that names :attr:`base_url` (for error messages)
        self.url_key = url_key
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        #: closed by :meth:`close` unless shared (then the sharing block closes it)
        self._own_session = shared is None
        self._session = auth.session() if shared is None else shared.session(auth)
        #: shared with every client of the same app registration in this process
        self.budget = app_budget(self.base_url, str(getattr(auth, "authority", "")),
                                 str(getattr(auth, "client_id", "")))
        self._lock = threading.Lock()
        self._requests = 0
        self._throttle_wait = 0.0
        self._throttled = 0

    @classmethod
    def from_connection_string(cls, cs: ConnectionString, *, base_dir: Path | None = None,
                               retry: RetryPolicy | None = None,
                               permissions: tuple[str, str, str] | None = None
                               ) -> "GraphClient":
        """A client for ``GraphURL`` authenticated with the msal keys of ``cs``.

        ``permissions`` (API, delegated, application) is what a missing app registration is
        told to grant (see :func:`l2sync_dagster.providers.msauth.registration_hint`).
        """
        url = (GraphSignIn.parse(cs, check_keys=False).graph_url or DEFAULT_GRAPH_URL).rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in {"https", "http"} or not parts.netloc:
            raise ConnectionStringError(f"GraphURL must be an absolute URL, not {url!r}")
        auth = MicrosoftAuth.from_connection_string(cs, scope=scope_for(url), base_dir=base_dir,
                                                    permissions=permissions)
        return cls(url, auth, retry=retry)

    def close(self) -> None:
        """Close the pooled HTTP connections (the client stays usable; it reconnects). A
        shared pool stays open for the other clients."""
        if self._own_session:
            self._session.close()

    # -- statistics --------------------------------------------------------------------------

    def stats(self) -> dict[str, float]:
        """``{"requests": n, "throttle_wait_s": x, "throttled": t}`` since creation/reset."""
        with self._lock:
            return {"requests": self._requests, "throttle_wait_s": round(self._throttle_wait, 3),
                    "throttled": self._throttled}

    def reset_stats(self) -> None:
        """Start counting from zero."""
        with self._lock:
            self._requests = 0
            self._throttle_wait = 0.0
            self._throttled = 0

    def count_request(self) -> None:
        """Count one HTTP request sent to Graph."""
        with self._lock:
            self._requests += 1

    def count_throttled(self) -> None:
        """Count one throttled answer (an outer or a ``$batch`` inner 429/503)."""
        with self._lock:
            self._throttled += 1

    def wait(self, seconds: float) -> None:
        """Sleep for throttling and count the time (used by batch retries too)."""
        if seconds > 0:
            with self._lock:
                self._throttle_wait += seconds
            self._sleep(seconds)

    # -- requests ----------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """An absolute URL for a path relative to GraphURL (absolute URLs pass through)."""
        if path.startswith(("https://", "http://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                body: Any = None, headers: dict[str, str] | None = None,
                mailbox: str | None = None, ok: tuple[int, ...] = (200, 201, 202, 204),
                idempotent: bool | None = None) -> requests.Response:
        """Send one request with retries; raise :class:`GraphError` unless the status is ``ok``.

        ``mailbox`` names the mailbox (or site) the call touches, for the concurrency limit.
        ``idempotent`` (default: by method) allows repeating it after a dropped connection.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT
        url = self.url(path)
        refreshed = False
        waited = False
        attempt = 0
        token = self.auth.token()
        while True:
            hdrs = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            if body is not None:
                hdrs["Content-Type"] = "application/json"
            hdrs.update(headers or {})
            data = None if body is None else json.dumps(body)
            if not waited:
                # another worker's throttled answer for this mailbox (or the app) holds it too
                self.wait(self.budget.wait_s(mailbox))
            waited = False
            try:
                with self.budget.slots.slot(mailbox), self.budget.app_slot():
                    self.count_request()
                    resp = self._session.request(method, url, params=params, data=data,
                                                 headers=hdrs, timeout=self.timeout_s)
            except requests.RequestException as exc:
                kind = classify(exc)
                # refused, unknown host, TLS, or a server that kept silent for timeout_s:
                # retrying within the run only multiplies the wait
                hopeless = fail_fast(kind) or kind == READ_TIMEOUT
                if idempotent and not hopeless and attempt < min(self.retry.max_retries, 3):
                    self._sleep(self.retry.delay(attempt, None))
                    attempt += 1
                    continue
                raise unreachable_error(
                    "Graph", url if kind else _short(url), self.url_key, exc,
                    timeout_s=self.timeout_s, timeout_key="Timeout",
                    what=f"sending {method}") from exc
            if resp.status_code in ok:
                return resp
            if resp.status_code == 401 and not refreshed:
                refreshed = True
                token = self.auth.refresh()
                continue
            retryable = resp.status_code in RETRY_STATUSES and (
                idempotent or resp.status_code != 504)  # a 504 may have been executed
            if retryable and attempt < self.retry.max_retries:
                delay = self.retry.delay(attempt, resp.headers.get("Retry-After"))
                self.count_throttled()
                self.budget.pause(mailbox, delay)
                self.wait(delay)
                waited = True  # this thread has sat out its own pause
                attempt += 1
                continue
            raise self.error(method, url, resp)

    def error(self, method: str, url: str, resp: requests.Response) -> GraphError:
        """The :class:`GraphError` for a failed response."""
        try:
            body: Any = resp.json()
        except ValueError:
            body = resp.text
        code, message = error_of(resp.status_code, body)
        transient = resp.status_code in RETRY_STATUSES or resp.status_code >= 500
        return GraphError(resp.status_code, code, message, method=method, url=_short(url),
                          transient=transient)

    def get(self, path: str, *, params: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None, mailbox: str | None = None) -> Any:
        """GET and return the parsed JSON body."""
        return self.request("GET", path, params=params, headers=headers, mailbox=mailbox).json()

    def pages(self, path: str, *, params: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None,
              mailbox: str | None = None) -> Iterator[dict[str, Any]]:
        """Every page of a collection, following ``@odata.nextLink`` (as returned: opaque)."""
        url: str | None = path
        first = True
        while url:
            page = self.get(url, params=params if first else None, headers=headers,
                            mailbox=mailbox)
            first = False
            yield page
            url = page.get("@odata.nextLink")

    def items(self, path: str, *, params: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None,
              mailbox: str | None = None) -> Iterator[dict[str, Any]]:
        """Every entity of a collection across its pages."""
        for page in self.pages(path, params=params, headers=headers, mailbox=mailbox):
            yield from page.get("value", [])

    def delta(self, path: str, *, params: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None, mailbox: str | None = None,
              delta_link: str | None = None) -> "DeltaResult":
        """Run a delta query (see :func:`l2sync_dagster.providers.graph.delta.run_delta`)."""
        from l2sync_dagster.providers.graph.delta import run_delta

        return run_delta(self, path, params=params, headers=headers, mailbox=mailbox,
                         delta_link=delta_link)

    def batch(self, requests_: list["BatchRequest"], *, mailbox: str | None = None,
              concurrency: int = 4) -> list["BatchResult"]:
        """Send requests through JSON ``$batch`` (see :mod:`.batch`); one result per request."""
        from l2sync_dagster.providers.graph.batch import run_batch

        return run_batch(self, requests_, mailbox=mailbox, concurrency=concurrency)


def _short(url: str) -> str:
    """A URL for messages: without the query (delta/skip tokens are long and opaque)."""
    return url.split("?", 1)[0]


