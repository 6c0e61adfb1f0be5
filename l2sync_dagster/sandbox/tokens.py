"""Access tokens shared by every sandbox service (all run in one process).

The token service issues tokens here; EWS, Graph and Dataverse check ``Authorization: Bearer``
headers against it. Tokens are opaque random strings, as clients must treat them.
"""

import base64
import secrets
import threading
import time
from dataclasses import dataclass

from l2sync_dagster.sandbox import identities


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a user (delegated/ROPC token, Basic auth) or an application."""

    name: str  # user principal name, or the client id for an application
    kind: str  # "user" | "app"
    audience: str = ""  # the resource the token is for (``https://graph.microsoft.com``)
    scopes: tuple[str, ...] = ()


class TokenRegistry:
    """Issues and checks bearer tokens; thread safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[Principal, float]] = {}

    def issue(self, principal: Principal, lifetime_s: int = 3600) -> str:
        """A new access token for ``principal``, valid for ``lifetime_s`` seconds."""
        token = "sbx." + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (principal, time.time() + lifetime_s)
        return token

    def check(self, token: str | None, audience: str | None = None) -> Principal | None:
        """The principal of a valid, unexpired token for ``audience`` (compared as a URL
        prefix, without trailing slash); None otherwise."""
        if not token:
            return None
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or entry[1] < time.time():
            return None
        principal = entry[0]
        if audience and _norm(principal.audience) != _norm(audience):
            return None
        return principal

    def expire_all(self) -> None:
        """Every token issued so far expires now (tests of token refresh)."""
        with self._lock:
            self._tokens = {k: (p, 0.0) for k, (p, _) in self._tokens.items()}


def _norm(url: str) -> str:
    """A resource URL compared loosely: case, trailing slash, localhost vs 127.0.0.1."""
    return url.rstrip("/").lower().replace("://localhost:", "://127.0.0.1:")


def check_basic(authorization: str | None) -> Principal | None:
    """The user of a valid ``Authorization: Basic`` header for a demo identity, else None."""
    if not authorization or authorization[:6].lower() != "basic ":
        return None
    try:
        user, _, password = base64.b64decode(authorization[6:].strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    user = user.lower()
    if identities.USERS.get(user) == password:
        return Principal(user, "user")
    return None
