"""The exchangelib connection of the EWS backend: account, authentication, request counting,
throttling back-off, and the translation of exchangelib errors into ProviderErrors.

Each backend gets its own exchangelib ``Protocol`` (not the process-wide cached one) so that
its request counter and throttling state are its own. Throttling: ``ErrorServerBusy`` with
``BackOffMilliseconds`` waits that long; without it exchangelib waits ``RetryWait`` seconds,
doubling on each retry (exponential); a single wait is capped at ``MaxRetryWait`` and the
client gives up (a transient ProviderError) once the waits of one call exceed it.
"""

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from exchangelib import DELEGATE, IMPERSONATION, Account, Configuration, Credentials
from exchangelib.errors import (
    ErrorAccessDenied,
    ErrorFolderNotFound,
    ErrorImpersonateUserDenied,
    ErrorInvalidServerVersion,
    ErrorMailboxMoveInProgress,
    ErrorMailboxStoreUnavailable,
    ErrorNonExistentMailbox,
    ErrorServerBusy,
    ErrorTimeoutExpired,
    RateLimitError,
    ResponseMessageError,
    TransportError,
    UnauthorizedError,
)
from exchangelib.ewsdatetime import UTC
from exchangelib.protocol import FaultTolerance, Protocol
from exchangelib.transport import BASIC, NOAUTH, NTLM
from exchangelib.version import EXCHANGE_O365, Build, Version

from l2sync_dagster.providers.base import ProviderError
from l2sync_dagster.providers.exchange.connection import ExchangeSettings
from l2sync_dagster.providers.unreachable import (
    READ_TIMEOUT,
    classify,
    fail_fast,
    unreachable_error,
)

log = logging.getLogger("l2sync.providers.exchange.ews")

#: first back-off (seconds) when ErrorServerBusy carries no BackOffMilliseconds
DEFAULT_RETRY_WAIT_S = 1.0

CONNECTION_ERRORS = (requests.ConnectionError, requests.Timeout, ErrorTimeoutExpired,
                     ConnectionError, TimeoutError)


@dataclass
class Counters:
    """What the backend's HTTP traffic cost."""

    requests: int = 0
    throttled: int = 0
    throttle_wait_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, response: Any, *args: Any, **kwargs: Any) -> None:
        """A requests response hook: counts, and makes exchangelib's ``iter_content()`` (no
        chunk size: requests then yields the body one byte at a time) read 64 KiB chunks."""
        with self.lock:
            self.requests += 1
        original = response.iter_content

        def iter_content(chunk_size: int | None = 65536, decode_unicode: bool = False) -> Any:
            return original(chunk_size, decode_unicode)

        response.iter_content = iter_content

    def as_dict(self) -> dict[str, Any]:
        """JSON-able counters."""
        return {"requests": self.requests, "throttled": self.throttled,
                "throttle_wait_s": round(self.throttle_wait_s, 3)}


class CountingBackOff(FaultTolerance):
    """exchangelib's FaultTolerance with a cap on one wait and a record of the waits.

    exchangelib passes the server's BackOffMilliseconds when present, otherwise its own
    exponentially growing wait (``Protocol.RETRY_WAIT`` doubled per retry).
    """

    def __init__(self, counters: Counters, max_wait: float) -> None:
        super().__init__(max_wait=max_wait)
        self.counters = counters

    def raise_response_errors(self, response: Any) -> None:
        """As exchangelib's, except that HTTP 401 is a login failure, not throttling (our
        credentials never change between retries, so retrying a 401 only wastes time)."""
        if response.status_code == 401:
            raise UnauthorizedError(f"Invalid credentials for {response.url}")
        super().raise_response_errors(response)

    def back_off(self, seconds: float | None) -> None:
        """Record and schedule the wait (RateLimitError once it exceeds ``max_wait``)."""
        wait = float(seconds) if seconds else DEFAULT_RETRY_WAIT_S
        with self.counters.lock:
            self.counters.throttled += 1
            self.counters.throttle_wait_s += min(wait, self.max_wait)
        super().back_off(wait)


class _Bearer(requests.auth.AuthBase):
    """Authorization: Bearer <token from msal> on every request (renewed by msal's cache)."""

    def __init__(self, auth: Any) -> None:
        self.auth = auth

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.auth.token()}"
        return r


class _OwnProtocol(Protocol):
    """A Protocol outside exchangelib's process-wide cache: counts requests, trusts
    ``CABundle``, and sends msal tokens for OAuth."""

    counters: Counters
    ca_bundle: str | None
    bearer: Any

    def create_session(self) -> requests.Session:
        """exchangelib's session plus our hook, CA bundle and bearer auth."""
        session = super().create_session()
        session.hooks["response"].append(self.counters.count)
        if self.ca_bundle:
            session.verify = self.ca_bundle
        if self.bearer is not None:
            session.auth = _Bearer(self.bearer)
        return session


def parse_version(text: str | None) -> Version | None:
    """A Version from ``"15.1.2507.6|Exchange2016"`` (as kept in cursors), or None."""
    if not text or "|" not in text:
        return None
    build_text, api = text.split("|", 1)
    try:
        parts = [int(p) for p in build_text.split(".")]
        return Version(build=Build(*parts[:4]), api_version=api)
    except (TypeError, ValueError):
        return None


def version_text(version: Version) -> str:
    """The inverse of :func:`parse_version`."""
    b = version.build
    return f"{b.major_version}.{b.minor_version}.{b.major_build}.{b.minor_build}|" \
           f"{version.api_version}"


class EwsConnection:
    """One mailbox opened through exchangelib (lazily; nothing is sent before first use)."""

    def __init__(self, settings: ExchangeSettings, *, retry_wait_s: float | None = None) -> None:
        self.settings = settings
        self.counters = Counters()
        self.retry_wait_s = DEFAULT_RETRY_WAIT_S if retry_wait_s is None else retry_wait_s
        self._account: Account | None = None
        self._version: Version | None = None
        self._lock = threading.Lock()

    def set_version(self, text: str | None) -> None:
        """Use a known server version (from a cursor) instead of asking the server."""
        version = parse_version(text)
        if version is not None and self._account is None:
            self._version = version

    def version_text(self) -> str:
        """The server version as kept in cursors."""
        return version_text(self.account.version)

    @property
    def account(self) -> Account:
        """The exchangelib Account (created on first use)."""
        with self._lock:
            if self._account is None:
                self._account = self._open()
            return self._account

    def _credentials(self) -> tuple[Any, str | None, Any]:
        s = self.settings
        if s.oauth:
            from l2sync_dagster.providers.msauth import MicrosoftAuth, scope_for

            url = s.url or "https://outlook.office365.com"
            scope = "https://outlook.office365.com/.default" if "office365.com" in url \
                else scope_for(url)
            auth = MicrosoftAuth.from_connection_string(s.cs, scope=scope, base_dir=s.base_dir)
            return None, NOAUTH, auth
        password = s.password.reveal() if s.password is not None else ""
        creds = Credentials(username=s.user or "", password=password)
        auth_type = {"basic": BASIC, "ntlm": NTLM}.get(s.authentication)
        return creds, auth_type, None

    def _open(self) -> Account:
        s = self.settings
        creds, auth_type, bearer = self._credentials()
        policy = CountingBackOff(self.counters, s.max_retry_wait_s)
        access = IMPERSONATION if s.impersonation else DELEGATE
        if s.autodiscover:
            try:
                return Account(primary_smtp_address=s.email, credentials=creds,
                               autodiscover=True, access_type=access, default_timezone=UTC,
                               config=Configuration(credentials=creds, auth_type=auth_type,
                                                    retry_policy=policy))
            except Exception as exc:  # noqa: BLE001 - autodiscover raises many kinds
                raise ProviderError(f"exchange: autodiscover for {s.email} failed: "
                                    f"{type(exc).__name__}: {exc}", transient=False) from None
        version = self._version
        if version is None and bearer is not None:
            # exchangelib asks the server its version with a request that carries no
            # ExchangeImpersonation header, which an app token may not send (Exchange Online
            # and the sandbox refuse it): use the Exchange Online build instead
            version = Version(build=EXCHANGE_O365)
        config = Configuration(service_endpoint=s.url, credentials=creds, auth_type=auth_type,
                               version=version, retry_policy=policy)
        protocol = _OwnProtocol.__new__(_OwnProtocol)
        protocol.counters = self.counters
        protocol.ca_bundle = s.ca_bundle
        protocol.bearer = bearer
        Protocol.__init__(protocol, config=config)
        protocol.TIMEOUT = s.timeout_s
        protocol.RETRY_WAIT = self.retry_wait_s
        account = Account(primary_smtp_address=s.email, config=config, autodiscover=False,
                          access_type=access, default_timezone=UTC)
        account.protocol = protocol
        return account

    def close(self) -> None:
        """Close the HTTP sessions."""
        if self._account is not None:
            try:
                self._account.protocol.close()
            except Exception:  # noqa: BLE001 - closing must not fail the caller
                log.debug("closing the EWS protocol failed", exc_info=True)


def describe_error(exc: BaseException, settings: ExchangeSettings, what: str) -> ProviderError:
    """A ProviderError that says precisely what failed (never a secret)."""
    s = settings
    where = s.url or "autodiscover"
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, UnauthorizedError):
        return ProviderError(f"exchange: unauthorized: {where} refused the credentials of "
                             f"{s.user or 'the app registration'} ({s.authentication}); check "
                             "User/Password or the app registration")
    if isinstance(exc, ErrorNonExistentMailbox):
        return ProviderError(f"exchange: mailbox not found: {s.email} has no mailbox on {where}")
    if isinstance(exc, ErrorImpersonateUserDenied):
        return ProviderError(f"exchange: impersonation denied: {s.user or 'the app'} may not "
                             f"impersonate {s.email} (needs the ApplicationImpersonation role)")
    if isinstance(exc, ErrorAccessDenied):
        mode = "impersonation" if s.impersonation else "delegate access"
        return ProviderError(f"exchange: access denied: {s.user or 'the app'} may not open "
                             f"mailbox {s.email} by {mode}")
    if isinstance(exc, ErrorFolderNotFound):
        return ProviderError(f"exchange: folder not found while {what}: {exc}")
    if isinstance(exc, ErrorInvalidServerVersion):
        return ProviderError(f"exchange: {where} does not accept the requested EWS version")
    if isinstance(exc, RateLimitError | ErrorServerBusy):
        return ProviderError(f"exchange: {where} kept throttling (ErrorServerBusy) while {what} "
                             f"beyond MaxRetryWait={s.max_retry_wait_s:g}s", transient=True)
    if isinstance(exc, ErrorMailboxStoreUnavailable | ErrorMailboxMoveInProgress):
        return ProviderError(f"exchange: mailbox {s.email} is temporarily unavailable: {exc}",
                             transient=True)
    if isinstance(exc, (*CONNECTION_ERRORS, TransportError)) and classify(exc) is not None:
        # exchangelib flattens the cause into text ("No valid version headers found ...
        # Reraised from ConnectionError(...)"): one line with the URL and the key instead
        return unreachable_error("exchange", s.url or "https://autodiscover",
                                 "URL" if s.url else "Email", exc, timeout_s=s.timeout_s,
                                 timeout_key="Timeout", what=what)
    if isinstance(exc, ResponseMessageError):
        return ProviderError(f"exchange: {what} failed: {type(exc).__name__}: {exc}")
    if isinstance(exc, TransportError):
        text = str(exc)
        if "401" in text or "nauthorized" in text:
            return ProviderError(f"exchange: unauthorized: {where} refused the credentials")
        return ProviderError(f"exchange: unreachable: {where}: {text}", transient=True)
    return ProviderError(f"exchange: {what} failed: {type(exc).__name__}: {exc}")


def retrying(fn: Any, settings: ExchangeSettings, what: str, *, attempts: int = 3,
             idempotent: bool = True) -> Any:
    """Call ``fn()``; retry dropped connections of idempotent calls with a short exponential
    back-off; translate failures into ProviderError."""
    delay = 0.2
    for attempt in range(attempts):
        try:
            return fn()
        except CONNECTION_ERRORS as exc:
            kind = classify(exc)
            if not idempotent or attempt == attempts - 1 or fail_fast(kind) \
                    or kind == READ_TIMEOUT:
                raise describe_error(exc, settings, what) from exc
            time.sleep(delay)
            delay *= 2
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated with a precise message
            raise describe_error(exc, settings, what) from exc
    raise AssertionError("unreachable")  # pragma: no cover

