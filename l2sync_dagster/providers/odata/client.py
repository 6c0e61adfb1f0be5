"""A small OData v4 client over ``requests``: authentication, throttling, paging and batches.

Every request goes through :meth:`ODataClient.send`, which counts it, adds the credentials and
honours service protection limits: a 429 (or 503) with ``Retry-After`` waits that long (without
the header it backs off exponentially), and the wait is shared by every thread of the client so
that concurrent batches back off together. Read requests are also retried after a dropped
connection; a write whose answer was lost is not retried here (the caller cannot know whether it
was applied) but raised as a transient :class:`ProviderError`. A refused connection, an unknown
host or no answer within the timeout is not retried at all: one transient error names the URL
and the ``URL=`` key (see :mod:`l2sync_dagster.providers.unreachable`).
"""

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from l2sync_dagster.providers.base import ProviderError
from l2sync_dagster.providers.graph.throttle import parse_retry_after
from l2sync_dagster.providers.odata.batch import (
    BatchFormatError,
    BatchItem,
    BatchReply,
    align_multipart,
    build_json,
    build_multipart,
    parse_json,
    parse_multipart,
)
from l2sync_dagster.providers.unreachable import (
    READ_TIMEOUT,
    classify,
    fail_fast,
    unreachable_error,
)

log = logging.getLogger("l2sync.providers.odata")

RETRY_STATUSES = (429, 503)
MAX_RETRIES = 12
#: longest single wait we accept from a Retry-After header
MAX_RETRY_AFTER_S = 300.0
TIMEOUT_S = 120.0


@dataclass
class Page:
    """One page of a collection: its rows and the links the service gave."""

    rows: list[dict[str, Any]]
    next_link: str | None
    delta_link: str | None
    raw: dict[str, Any]


class ODataHTTPError(ProviderError):
    """The service answered with an error status; ``status`` and the OData ``code``."""

    def __init__(self, message: str, status: int, code: str | None = None,
                 transient: bool = False) -> None:
        super().__init__(message, transient=transient)
        self.status = status
        self.code = code


def error_text(body: Any) -> tuple[str | None, str]:
    """(code, message) of an OData error body (JSON or text), message cut to 300 chars."""
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError:
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            return None, text.strip()[:300]
    if isinstance(body, dict):
        err = body.get("error") if isinstance(body.get("error"), dict) else body
        code = err.get("code")
        msg = err.get("message")
        if isinstance(msg, dict):  # OData 2/3 style {"lang":..,"value":..}
            msg = msg.get("value")
        return (str(code) if code is not None else None), str(msg or body)[:300]
    return None, str(body)[:300]


class ODataClient:
    """HTTP to one OData service root. ``auth`` adds credentials to a request's headers."""

    def __init__(
        self,
        service_root: str,
        session: requests.Session,
        auth: Callable[[dict[str, str], bool], None] | None = None,
        *,
        max_retries: int = MAX_RETRIES,
        label: str = "odata",
        timeout_s: float | None = None,
    ) -> None:
        self.root = service_root.rstrip("/")
        self.timeout_s = float(timeout_s or TIMEOUT_S)
        self.session = session
        self.auth = auth
        self.max_retries = max_retries
        self.label = label
        self._lock = threading.Lock()
        self._pause_until = 0.0
        self.requests = 0
        self.throttle_wait_s = 0.0
        self.throttled = 0

    # --- bookkeeping -------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Requests sent, time spent waiting for throttling, throttled answers."""
        with self._lock:
            return {"requests": self.requests, "throttle_wait_s": round(self.throttle_wait_s, 3),
                    "throttled": self.throttled}

    def reset_stats(self) -> None:
        """Zero the counters."""
        with self._lock:
            self.requests = 0
            self.throttle_wait_s = 0.0
            self.throttled = 0

    def url(self, link: str) -> str:
        """An absolute URL for a link that may be relative to the service root."""
        if urlsplit(link).scheme:
            return link
        return urljoin(self.root + "/", link)

    def _wait_shared_pause(self) -> None:
        while True:
            with self._lock:
                delay = self._pause_until - time.monotonic()
            if delay <= 0:
                return
            time.sleep(delay)
            with self._lock:
                self.throttle_wait_s += delay

    def _pause(self, seconds: float) -> None:
        with self._lock:
            self._pause_until = max(self._pause_until, time.monotonic() + seconds)
            self.throttled += 1

    # --- one request -------------------------------------------------------------------------
    def send(
        self,
        method: str,
        link: str,
        *,
        headers: dict[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        retry_dropped: bool | None = None,
    ) -> requests.Response:
        """Send one request with throttling retries; returns the final response (any status).

        ``retry_dropped``: re-send after a lost connection (default: only for GET).
        """
        url = self.url(link)
        retry_dropped = method == "GET" if retry_dropped is None else retry_dropped
        body = data
        hdrs = {"Accept": "application/json", "OData-Version": "4.0",
                "OData-MaxVersion": "4.01"}
        hdrs.update(headers or {})
        if json_body is not None:
            body = json.dumps(json_body, ensure_ascii=False).encode()
            hdrs.setdefault("Content-Type", "application/json; charset=utf-8")
        backoff = 0.25
        refreshed = False
        dropped = 0
        for attempt in range(self.max_retries + 1):
            self._wait_shared_pause()
            if self.auth is not None:
                self.auth(hdrs, refreshed)
            with self._lock:
                self.requests += 1
            try:
                resp = self.session.request(method, url, headers=hdrs, data=body,
                                            timeout=self.timeout_s)
            except requests.exceptions.SSLError as exc:
                raise ProviderError(f"{self.label}: TLS error talking to "
                                    f"{urlsplit(url).netloc}: {exc}; check CABundle=") from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                kind = classify(exc)
                if fail_fast(kind) or kind == READ_TIMEOUT:
                    raise unreachable_error(self.label, url, "URL", exc,
                                            timeout_s=self.timeout_s, timeout_key="Timeout",
                                            what=f"sending {method}") from None
                if retry_dropped and dropped < 3:
                    dropped += 1
                    time.sleep(backoff)
                    backoff *= 2
                    continue
                raise ProviderError(f"{self.label}: {method} {_short(url)} failed: "
                                    f"{type(exc).__name__}; the connection was lost",
                                    transient=True) from None
            if resp.status_code == 401 and self.auth is not None and not refreshed:
                refreshed = True
                continue
            if resp.status_code in RETRY_STATUSES and attempt < self.max_retries:
                delay = parse_retry_after(resp.headers.get("Retry-After"))
                if delay is None:
                    delay = backoff * (1 + random.random() * 0.2)
                    backoff = min(backoff * 2, 30.0)
                self._pause(min(delay, MAX_RETRY_AFTER_S))
                continue
            return resp
        return resp

    def check(self, resp: requests.Response, what: str) -> requests.Response:
        """``resp`` when it succeeded, else an ODataHTTPError saying what failed."""
        if resp.status_code < 400:
            return resp
        code, msg = error_text(resp.content)
        transient = resp.status_code in (408, 429, 500, 502, 503, 504)
        hint = ""
        if resp.status_code == 401:
            hint = "; check the credentials (User/Password, ClientId/ClientSecret, Token)"
        elif resp.status_code == 403:
            hint = "; the account lacks permission for this entity"
        elif resp.status_code == 429:
            hint = "; still throttled after retries, try again later"
        raise ODataHTTPError(f"{self.label}: {what}: HTTP {resp.status_code}"
                             f"{f' {code}' if code else ''}: {msg}{hint}",
                             resp.status_code, code, transient)

    def get_json(self, link: str, what: str, headers: dict[str, str] | None = None) -> Any:
        """GET ``link`` and return its JSON body (errors raised)."""
        resp = self.check(self.send("GET", link, headers=headers), what)
        try:
            return resp.json()
        except ValueError:
            raise ProviderError(f"{self.label}: {what}: the answer is not JSON") from None

    # --- collections ---------------------------------------------------------------------------
    def pages(self, link: str, what: str, headers: dict[str, str] | None = None
              ) -> Iterator[Page]:
        """Every page of a collection, following ``@odata.nextLink`` (relative or absolute)."""
        seen: set[str] = set()
        while link:
            if link in seen:
                raise ProviderError(f"{self.label}: {what}: the service returned the same "
                                    "next link twice; stopping to avoid an endless loop")
            seen.add(link)
            data = self.get_json(link, what, headers)
            if not isinstance(data, dict) or not isinstance(data.get("value"), list):
                raise ProviderError(f"{self.label}: {what}: the answer has no 'value' array")
            nxt = data.get("@odata.nextLink") or data.get("odata.nextLink")
            delta = data.get("@odata.deltaLink")
            yield Page(data["value"], self.url(nxt) if nxt else None,
                       self.url(delta) if delta else None, data)
            link = self.url(nxt) if nxt else ""

    # --- batches -----------------------------------------------------------------------------
    def batch(self, items: Sequence[BatchItem], fmt: str, headers: dict[str, str] | None = None
              ) -> list[BatchReply]:
        """Send ``items`` as one ``$batch`` in ``fmt`` (``multipart`` or ``json``).

        Items answered 429 inside the batch are re-sent (after the announced wait) in a new
        batch. A lost connection raises (the outcome is unknown)."""
        pending = list(range(len(items)))
        replies: list[BatchReply | None] = [None] * len(items)
        for _ in range(self.max_retries + 1):
            part = [items[i] for i in pending]
            got = self._batch_once(part, fmt, headers)
            again: list[int] = []
            delay = 0.0
            for i, reply in zip(pending, got, strict=True):
                if reply.status == 429:
                    again.append(i)
                    delay = max(delay, parse_retry_after(reply.header("Retry-After")) or 1.0)
                else:
                    replies[i] = reply
            if not again:
                break
            self._pause(min(delay, MAX_RETRY_AFTER_S))
            pending = again
        return [r if r is not None else BatchReply(429, {}, {"error": {
            "message": "still throttled after retries"}}) for r in replies]

    def _batch_once(self, items: Sequence[BatchItem], fmt: str,
                    headers: dict[str, str] | None) -> list[BatchReply]:
        if fmt == "json":
            ctype, body = build_json(items, self.root)
        else:
            ctype, body = build_multipart(items, self.root)
        hdrs = {"Content-Type": ctype}
        if fmt == "json":
            hdrs["Accept"] = "application/json"
        else:
            hdrs["Accept"] = "multipart/mixed"
        hdrs.update(headers or {})
        resp = self.send("POST", "$batch", headers=hdrs, data=body, retry_dropped=False)
        self.check(resp, f"$batch of {len(items)} requests")
        try:
            if fmt == "json":
                return parse_json(items, resp.json())
            return align_multipart(items, parse_multipart(
                resp.headers.get("Content-Type", ""), resp.content))
        except (BatchFormatError, ValueError) as exc:
            raise ProviderError(f"{self.label}: cannot read the $batch answer: {exc}") from None


def _short(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
