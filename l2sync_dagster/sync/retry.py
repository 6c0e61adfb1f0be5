"""Which errors a retry may cure, and how long to wait: one policy for the `l2sync` command
line and the Dagster assets (which hand the same numbers to ``dagster.RetryPolicy``)."""

from l2sync_dagster.contract import ProviderError

MAX_RETRIES = 3
RETRY_DELAY_S = 5.0


def is_transient(exc: BaseException) -> bool:
    """True when retrying the run may help (the system was unavailable, not misconfigured):
    ``ProviderError(transient=True)`` (a server that is down, throttling that outlasted the
    provider's own waits, a locked SQLite file) and Python's ``ConnectionError``/``TimeoutError``.
    """
    if isinstance(exc, ProviderError):
        return exc.transient
    return isinstance(exc, ConnectionError | TimeoutError)


def retry_delay(attempt: int, delay: float = RETRY_DELAY_S) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): exponential, ``(2**n - 1) * delay``
    (5, 15, 35 s), as Dagster's ``Backoff.EXPONENTIAL``."""
    return (2 ** attempt - 1) * delay
