"""One-line messages for a server that cannot be reached, shared by every HTTP provider.

Libraries wrap a refused connection several times (requests -> urllib3 -> socket, and
exchangelib re-raises it as text). :func:`classify` walks the exception chain to the cause, and
:func:`unreachable_error` says in one line which URL (scheme, host, port and path; never
userinfo nor query) failed, why, and which connection-string key to check. Failures that no
retry within the run can cure (refused, unknown host, TLS) are marked by :func:`fail_fast` so
that clients do not loop on them; the error stays ``transient`` so an orchestrator may retry
the run later.
"""

import socket
import ssl
from http.client import RemoteDisconnected
from urllib.parse import urlsplit

import requests
import urllib3

from l2sync_dagster.providers.base import ProviderError

REFUSED = "connection refused"
NO_HOST = "host name not found"
TLS = "TLS handshake failed"
CONNECT_TIMEOUT = "no answer to the connection attempt"
READ_TIMEOUT = "no answer"
DROPPED = "connection dropped"
#: kinds that retrying within seconds cannot cure
FAIL_FAST = frozenset({REFUSED, NO_HOST, TLS, CONNECT_TIMEOUT})

_TEXT_HINTS = (
    ("connection refused", REFUSED),
    ("name or service not known", NO_HOST),
    ("nodename nor servname", NO_HOST),
    ("temporary failure in name resolution", NO_HOST),
    ("getaddrinfo failed", NO_HOST),
    ("certificate verify failed", TLS),
    ("connecttimeout", CONNECT_TIMEOUT),
    ("connect timeout", CONNECT_TIMEOUT),
    ("read timed out", READ_TIMEOUT),
    ("readtimeout", READ_TIMEOUT),
    ("remotedisconnected", DROPPED),
    ("connection reset", DROPPED),
    ("connection aborted", DROPPED),
)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it was raised from or wraps (breadth first, no repeats)."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if any(e is s for s in seen):
            continue
        seen.append(e)
        nested = [e.__cause__, e.__context__, getattr(e, "reason", None),
                  *[a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]]
        todo.extend(n for n in nested if isinstance(n, BaseException))
    return seen


def _kinds(e: BaseException) -> set[str]:
    kinds = set()
    if isinstance(e, ConnectionRefusedError):
        kinds.add(REFUSED)
    if isinstance(e, socket.gaierror):
        kinds.add(NO_HOST)
    if isinstance(e, ssl.SSLError | requests.exceptions.SSLError):
        kinds.add(TLS)
    if isinstance(e, requests.exceptions.ConnectTimeout | urllib3.exceptions.ConnectTimeoutError):
        kinds.add(CONNECT_TIMEOUT)
    if isinstance(e, requests.exceptions.ReadTimeout | socket.timeout | TimeoutError):
        kinds.add(READ_TIMEOUT)
    if isinstance(e, ConnectionResetError | ConnectionAbortedError | RemoteDisconnected
                  | BrokenPipeError):
        kinds.add(DROPPED)
    return kinds


#: the most telling cause first (a connect timeout also carries a socket timeout)
_PRIORITY = (REFUSED, NO_HOST, TLS, CONNECT_TIMEOUT, READ_TIMEOUT, DROPPED)


def classify(exc: BaseException) -> str | None:
    """Why ``exc`` means "the server could not be reached", or None when it does not.

    The most telling cause anywhere in the chain wins (a refused socket inside a
    ``requests.ConnectionError`` is :data:`REFUSED`); when the chain was flattened into text
    (exchangelib), the text decides.
    """
    chain = _chain(exc)
    found = set().union(*(_kinds(e) for e in chain))
    text = " ".join(f"{type(e).__name__} {e}" for e in chain).lower()
    for hint, kind in _TEXT_HINTS:
        if hint in text:
            found.add(kind)
    for kind in _PRIORITY:
        if kind in found:
            return kind
    if any(isinstance(e, requests.ConnectionError | ConnectionError) for e in chain):
        return DROPPED
    return None


def fail_fast(kind: str | None) -> bool:
    """Whether a failure of this kind should not be retried within the run."""
    return kind in FAIL_FAST


def endpoint(url: str) -> str:
    """``scheme://host:port/path`` of ``url``: the port always shown, never userinfo/query."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port}{parts.path}"


def tls_detail(exc: BaseException) -> str:
    """``SSLError: <the verification failure>`` of the innermost TLS error in the chain."""
    for e in reversed(_chain(exc)):
        if isinstance(e, ssl.SSLError):
            reason = getattr(e, "verify_message", None) or getattr(e, "reason", None) or ""
            return f"SSLError: {reason}".rstrip(": ")
    return "SSLError"


def unreachable_message(label: str, url: str, key: str, kind: str, *,
                        timeout_s: float | None = None, timeout_key: str | None = None,
                        what: str | None = None, detail: str | None = None) -> str:
    """``<label>: unreachable: <url> (<why>); check <key>=`` in one line."""
    why = f"{kind}: {detail}" if detail else kind
    if kind in (READ_TIMEOUT, CONNECT_TIMEOUT) and timeout_s is not None:
        why = f"{kind} within {timeout_s:g}s"
    doing = f" while {what}" if what else ""
    hint = f"check {key}="
    if kind == TLS:
        hint += " and CABundle="
    elif kind == READ_TIMEOUT and timeout_key:
        hint += f" (or raise {timeout_key}= if the server is just slow)"
    return f"{label}: unreachable: {endpoint(url)}{doing} ({why}); {hint}"


def unreachable_error(label: str, url: str, key: str, exc: BaseException, *,
                      timeout_s: float | None = None, timeout_key: str | None = None,
                      what: str | None = None) -> ProviderError:
    """The transient ProviderError for ``exc`` (see :func:`unreachable_message`)."""
    kind = classify(exc) or DROPPED
    detail = tls_detail(exc) if kind == TLS else None
    return ProviderError(unreachable_message(label, url, key, kind, timeout_s=timeout_s,
                                             timeout_key=timeout_key, what=what, detail=detail),
                         transient=True)
