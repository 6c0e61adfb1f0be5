"""What every sandbox service implements, and the fault injection and counters they share.

A service is protocol code only: it gets a parsed :class:`Request` and returns a
:class:`Response`. The HTTP server (:mod:`l2sync_dagster.sandbox.server`) does the rest: TLS,
latency, dropped connections, the ``/_sandbox/`` control API, per-operation counters.

Throttling is protocol specific (EWS answers ``ErrorServerBusy`` in a SOAP fault, Graph and
Dataverse answer 429 with ``Retry-After``), so a service asks :meth:`Faults.throttle` and
builds the answer itself.
"""

import json
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from l2sync_dagster.sandbox.tokens import TokenRegistry


class CaseInsensitiveDict(dict[str, str]):
    """Header map with case-insensitive lookups (keys are stored lower-cased)."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__()
        for k, v in dict(items).items():
            self[k] = v

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass
class Request:
    """One HTTP request as a service sees it.

    ``path`` is the decoded path without the query; ``raw_query`` is the query string exactly
    as sent (``%20`` vs ``+`` matters to OData); ``base_url`` is ``scheme://host:port`` of the
    server that received it, for building absolute links.
    """

    method: str
    target: str
    headers: CaseInsensitiveDict
    body: bytes
    base_url: str
    #: state kept for the lifetime of the TCP connection (connection-based auth like NTLM)
    connection: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        from urllib.parse import unquote

        return unquote(urlsplit(self.target).path)

    @property
    def raw_query(self) -> str:
        return urlsplit(self.target).query

    @property
    def query(self) -> dict[str, list[str]]:
        """Query parameters decoded (``+`` as space, like a form)."""
        return parse_qs(self.raw_query, keep_blank_values=True)

    def json(self) -> Any:
        """The body parsed as JSON (``None`` when empty)."""
        return json.loads(self.body) if self.body else None

    @property
    def bearer(self) -> str | None:
        """The bearer token of the Authorization header, if any."""
        auth = self.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return None


@dataclass
class Response:
    """What a service answers. ``operation`` names the operation for the request counters."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    operation: str | None = None

    @classmethod
    def json(cls, data: Any, status: int = 200, *, operation: str | None = None,
             headers: dict[str, str] | None = None) -> "Response":
        """A JSON response."""
        h = {"Content-Type": "application/json; charset=utf-8"}
        h.update(headers or {})
        return cls(status, json.dumps(data).encode(), h, operation)


class Faults:
    """Faults injected on demand (through ``POST /_sandbox/faults``), shared by one service.

    - ``throttle_fraction`` (0..1): share of requests a service must answer with its throttling
      response; ``throttle_ms`` the back-off it announces (Retry-After / BackOffMilliseconds);
      ``throttle_hint`` False makes it leave the back-off out (clients must back off anyway).
    - ``latency_ms``: added to every request (on top of the server's ``--latency-ms``).
    - ``drop_after``: after this many requests, close the connection without answering;
      ``drop_count`` limits how many are dropped (None: all of them until faults are cleared).
    - ``expire_cursors`` True: change-feed tokens handed out so far are expired (EWS
      ErrorInvalidSyncStateData, Graph/Dataverse 410).
    """

    KEYS: ClassVar[tuple[str, ...]] = (
        "throttle_fraction", "throttle_ms", "throttle_hint", "latency_ms", "drop_after",
        "drop_count", "expire_cursors", "seed",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        """No faults."""
        with self._lock:
            self.throttle_fraction = 0.0
            self.throttle_ms = 50
            self.throttle_hint = True
            self.latency_ms = 0
            self.drop_after: int | None = None
            self.drop_count: int | None = None
            self.expire_cursors = False
            self._random = random.Random(0)
            self._seen = 0
            self._dropped = 0

    def configure(self, values: dict[str, Any]) -> None:
        """Set faults from a JSON object; unknown keys are an error."""
        unknown = set(values) - set(self.KEYS)
        if unknown:
            raise ValueError(f"unknown fault(s): {sorted(unknown)}; known: {list(self.KEYS)}")
        with self._lock:
            for k, v in values.items():
                if k == "seed":
                    self._random = random.Random(v)
                else:
                    setattr(self, k, v)
            if "drop_after" in values:
                self._seen = 0
                self._dropped = 0

    def as_dict(self) -> dict[str, Any]:
        """The current settings."""
        return {k: getattr(self, k) for k in self.KEYS if k != "seed"}

    def throttle(self) -> bool:
        """Whether the service must throttle this request (decided once per call)."""
        with self._lock:
            return self.throttle_fraction > 0 and self._random.random() < self.throttle_fraction

    def should_drop(self) -> bool:
        """Called by the server for every request: True means close without answering."""
        with self._lock:
            self._seen += 1
            if self.drop_after is None or self._seen <= self.drop_after:
                return False
            if self.drop_count is not None and self._dropped >= self.drop_count:
                return False
            self._dropped += 1
            return True


class Stats:
    """Request counters per operation, and problems a test must fail on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zero every counter (problems are kept until the service is reset)."""
        with self._lock:
            self.requests: Counter[str] = Counter()
            self.throttled = 0
            self.dropped = 0
            self.rejected_requests = 0
            if not hasattr(self, "invalid_responses"):
                self.invalid_responses: list[str] = []

    def count(self, operation: str) -> None:
        """One request of ``operation`` was answered."""
        with self._lock:
            self.requests[operation] += 1

    def add(self, name: str, n: int = 1) -> None:
        """Bump ``throttled``, ``dropped`` or ``rejected_requests``."""
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def invalid_response(self, message: str) -> None:
        """The service produced a response its own schema check refused: a test failure."""
        with self._lock:
            self.invalid_responses.append(message[:2000])

    def as_dict(self) -> dict[str, Any]:
        """JSON for ``GET /_sandbox/stats``."""
        with self._lock:
            return {
                "requests": dict(self.requests),
                "total": sum(self.requests.values()),
                "throttled": self.throttled,
                "dropped": self.dropped,
                "rejected_requests": self.rejected_requests,
                "invalid_responses": list(self.invalid_responses),
            }


@dataclass
class SandboxContext:
    """What the server gives every service: where to keep state, shared tokens, faults."""

    state_dir: Path | None
    tokens: TokenRegistry
    urls: dict[str, str] = field(default_factory=dict)  # filled once every server is bound
    ca_path: Path | None = None
    #: the services of this sandbox by name (EWS FindPeople reads Graph's directory)
    services: dict[str, "Service"] = field(default_factory=dict)


class Service:
    """Base class of a sandbox service. Subclasses set ``name`` and ``tls`` and implement
    :meth:`handle`; they may implement :meth:`control` for ``/_sandbox/<name>/...`` endpoints
    (bulk seeding, inspection), :meth:`reset` and :meth:`save`.

    :meth:`handle` may be called from several threads at once; ``self.lock`` is there for the
    service to guard its data.
    """

    name: ClassVar[str] = ""
    tls: ClassVar[bool] = False

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self.faults = Faults()
        self.stats = Stats()
        self.lock = threading.RLock()

    @property
    def state_file(self) -> Path | None:
        """Where :meth:`save` keeps this service's data (None: in memory only)."""
        if self.ctx.state_dir is None:
            return None
        return self.ctx.state_dir / f"{self.name}.json"

    def notice(self) -> str | None:
        """One line the sandbox prints at start (e.g. whether it validates against schemas)."""
        return None

    def handle(self, request: Request) -> Response:
        """Answer one request of the service's protocol."""
        raise NotImplementedError

    def control(self, request: Request, subpath: str) -> Response:
        """``/_sandbox/<name>/<subpath>``: service-specific control endpoints."""
        return Response.json({"error": f"no control endpoint {subpath!r}"}, 404)

    def reset(self) -> None:
        """Back to the demo data; counters and faults cleared.

        Invalid responses survive a reset: they are test failures the session must report.
        """
        problems = self.stats.invalid_responses
        self.faults.clear()
        self.stats = Stats()
        self.stats.invalid_responses = problems

    def save(self) -> None:
        """Persist the data to :attr:`state_file` (called on clean shutdown)."""
