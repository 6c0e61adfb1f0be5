"""Retry timing for Graph: ``Retry-After`` honoured, exponential back-off otherwise, and the
budgets Microsoft sets per app: at most 4 concurrent requests per mailbox (Outlook), and
throttling that holds for every request of the app in that mailbox (or, for a request that
names no mailbox, the whole tenant). :func:`app_budget` gives every client of one app
registration in a process (the workers of ``l2sync run --all --workers N``) the same budget."""

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

#: HTTP statuses Graph uses for "slow down / try again"
RETRY_STATUSES = frozenset({429, 503, 504})
MAX_CONCURRENT_PER_MAILBOX = 4
#: requests one app has in flight from one process, over all mailboxes: Graph throttles an
#: app that floods a tenant, and past this the two cores of a worker machine are the limit
MAX_CONCURRENT_PER_APP = 16


@dataclass
class RetryPolicy:
    """How often and how long to retry a throttled or failed request.

    ``base_s`` is the first back-off when the server gives no ``Retry-After``; it doubles on
    every retry up to ``cap_s`` (with +/-20 % jitter). ``max_retries`` bounds the attempts;
    ``max_retry_after_s`` bounds one announced wait (a broken server cannot stall a run).
    """

    max_retries: int = 8
    base_s: float = 0.5
    cap_s: float = 30.0
    max_retry_after_s: float = 120.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        announced = parse_retry_after(retry_after)
        if announced is not None:
            return min(announced, self.max_retry_after_s)
        backoff = min(self.base_s * (2 ** attempt), self.cap_s)
        return backoff * random.uniform(0.8, 1.2)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


@dataclass
class MailboxSlots:
    """One semaphore per mailbox (or site): at most ``limit`` requests in flight for it."""

    limit: int = MAX_CONCURRENT_PER_MAILBOX
    _slots: dict[str, threading.BoundedSemaphore] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def slot(self, mailbox: str | None) -> threading.BoundedSemaphore:
        """The semaphore guarding ``mailbox`` (None: the tenant-wide one)."""
        key = (mailbox or "").lower()
        with self._lock:
            sem = self._slots.get(key)
            if sem is None:
                sem = self._slots[key] = threading.BoundedSemaphore(self.limit)
            return sem


@dataclass
class AppBudget:
    """What every client of one app registration in this process shares: ``slots`` per
    mailbox, at most ``limit`` requests in flight in all, and the pauses a throttled answer
    announces (``Retry-After``), per mailbox, or for the whole app when the request named no
    mailbox, so that the other workers wait too instead of drawing more 429s."""

    limit: int = MAX_CONCURRENT_PER_APP
    slots: MailboxSlots = field(default_factory=MailboxSlots)
    _app: threading.BoundedSemaphore = field(init=False)
    _until: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._app = threading.BoundedSemaphore(self.limit)

    def app_slot(self) -> threading.BoundedSemaphore:
        """The semaphore of the app's requests in flight."""
        return self._app

    def pause(self, mailbox: str | None, seconds: float) -> None:
        """Hold the mailbox's requests (None: every request of the app) for ``seconds``."""
        until = time.monotonic() + seconds
        key = (mailbox or "").lower()
        with self._lock:
            self._until[key] = max(self._until.get(key, 0.0), until)

    def wait_s(self, mailbox: str | None) -> float:
        """Seconds a request for ``mailbox`` must still wait (0 when it may go now)."""
        now = time.monotonic()
        with self._lock:
            until = max(self._until.get("", 0.0), self._until.get((mailbox or "").lower(), 0.0))
        return max(until - now, 0.0)


_BUDGETS: dict[tuple[str, ...], AppBudget] = {}
_BUDGETS_LOCK = threading.Lock()


def app_budget(*key: str) -> AppBudget:
    """The budget of the app registration ``key`` (Graph URL, authority, client id) in this
    process, made on first use."""
    with _BUDGETS_LOCK:
        budget = _BUDGETS.get(key)
        if budget is None:
            budget = _BUDGETS[key] = AppBudget()
        return budget
