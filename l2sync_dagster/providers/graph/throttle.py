"""Retry timing for Graph: ``Retry-After`` honoured, exponential back-off otherwise, and the
per-mailbox concurrency limit (Outlook allows at most 4 concurrent requests per mailbox)."""

import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

#: HTTP statuses Graph uses for "slow down / try again"
RETRY_STATUSES = frozenset({429, 503, 504})
MAX_CONCURRENT_PER_MAILBOX = 4


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
