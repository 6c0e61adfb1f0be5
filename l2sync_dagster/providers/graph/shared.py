"""Sign-ins and HTTP connections shared by the runs of many values of one ``for_each``
connection in one process (``sync.each_value.run_each_value``).

Without sharing, each mailbox's run builds its own :class:`MicrosoftAuth`: its own msal
application (an authority discovery request), its own token request, and its own HTTPS
connections to the token endpoint and to Graph (a TLS handshake each, on both ends). The
identity is the same for every mailbox (the app registration, or one user), so inside
:func:`shared_sign_ins`, clients of the same identity get the same
:class:`MicrosoftAuth` (one token, renewed by msal as before; a 401 refreshes it for all) and
the same HTTP connection pool. Nothing else is shared: each run keeps its own client, its own
request counts, and the per-mailbox and per-app throttling budgets, which were per app
already (``throttle.app_budget``).

Two sign-ins are the same identity only when every input of the sign-in is equal (authority,
client id, user, secret or certificate, password, scope, CA bundle, timeout); anything else
gets its own. Outside :func:`shared_sign_ins` (a single run), nothing changes.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from l2sync_dagster.providers.graph.throttle import MAX_CONCURRENT_PER_APP
from l2sync_dagster.providers.msauth import MicrosoftAuth

#: connections kept per host in a shared pool: every request of the app in flight at once
#: (``MAX_CONCURRENT_PER_APP``) without one being discarded after use
POOL_SIZE = MAX_CONCURRENT_PER_APP


class SharedSignIns:
    """The sign-ins (and their HTTP connection pools) of one run over many values."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._auths: dict[tuple[Any, ...], MicrosoftAuth] = {}
        self._sessions: dict[int, requests.Session] = {}

    def auth(self, auth: MicrosoftAuth) -> MicrosoftAuth:
        """The shared sign-in of ``auth``'s identity: the first one seen with it."""
        key = auth.identity()
        with self._lock:
            return self._auths.setdefault(key, auth)

    def session(self, auth: MicrosoftAuth) -> requests.Session:
        """The HTTP session (connection pool) of a shared sign-in's clients, made on first
        use with ``auth.session()`` and room for every request of the app in flight."""
        with self._lock:
            session = self._sessions.get(id(auth))
            if session is None:
                session = auth.session()
                for prefix in ("https://", "http://"):
                    session.mount(prefix, HTTPAdapter(pool_maxsize=POOL_SIZE))
                self._sessions[id(auth)] = session
            return session

    def close(self) -> None:
        """Close the shared connections (the runs that used them have ended)."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
            self._auths.clear()
        for session in sessions:
            session.close()


#: the sharing of the run over many values this code runs in (its worker threads run in
#: copies of its context, see ``sync.each_value``); None: no sharing
_ACTIVE: ContextVar["SharedSignIns | None"] = ContextVar("l2sync_shared_sign_ins", default=None)


@contextmanager
def shared_sign_ins() -> Iterator[SharedSignIns]:
    """Share sign-ins of the same identity between the Graph clients made in this context
    (and in copies of it made inside the block, as worker threads get) until the block ends;
    closes the shared connections at the end."""
    shared = SharedSignIns()
    token = _ACTIVE.set(shared)
    try:
        yield shared
    finally:
        _ACTIVE.reset(token)
        shared.close()


def active_sign_ins() -> SharedSignIns | None:
    """The :func:`shared_sign_ins` block this code runs in (None: no sharing)."""
    return _ACTIVE.get()
