"""Microsoft Entra ID (Azure AD) authentication through msal, shared by every Microsoft provider.

Connection-string keys (Layer2 style): ``TenantId``, ``ClientId`` with ``ClientSecret=env:VAR``
or ``CertificatePath`` (a PEM file holding the certificate and its private key; optional
``CertificateThumbprint``, otherwise computed), or ``User`` with ``Password=env:VAR`` for
``Authentication=Microsoft_Modern`` / ``microsoft_modern_crm`` (the resource-owner password
flow of a public client). ``Authority`` overrides ``https://login.microsoftonline.com/<TenantId>``
and ``CABundle`` names a PEM file of certificate authorities to trust; ``Timeout`` (seconds, when
the provider has that key) bounds every request to the token endpoint too.

Every mode needs an app registration of your own in Entra ID (``ClientId``): Layer2's
``Microsoft_Modern`` without a ClientId signs in through Layer2's multi-tenant app with an
interactive consent pop-up in its UI, which an unattended sync cannot do, and this tool has no app
of its own in your tenant. :func:`registration_hint` says exactly what to register. With
``User`` and no ``TenantId`` the tenant is the domain of the user's sign-in name (Entra ID
accepts a verified domain wherever a tenant id goes).

``CABundle`` is honoured even when ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` are set: requests
normally lets those variables replace ``Session.verify`` (``merge_environment_settings``), so the
session used here keeps its own ``verify`` whatever the environment says.
"""

import hashlib
import threading
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from l2sync_dagster.providers.base import ProviderError
from l2sync_dagster.providers.microsoft_options import (
    PASSWORD_AUTHENTICATIONS,
    MicrosoftSignIn,
    resolve_ca_bundle,
)
from l2sync_dagster.providers.unreachable import unreachable_error
from l2sync_dagster.spec.connection_string import ConnectionString, ConnectionStringError

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
TIMEOUT_S: float = MicrosoftSignIn.default("Timeout")
#: a token is used without asking msal until this long before it expires
HOLD_MARGIN_S = 300.0
#: what an app registration needs, by the host of the resource it signs in to:
#: (delegated permissions for User/Password, application permissions for the app itself)
_PERMISSIONS = (
    ("graph.microsoft.com", "Microsoft Graph",
     "Contacts.ReadWrite, Calendars.ReadWrite, Tasks.ReadWrite, Mail.ReadWrite",
     "Contacts.ReadWrite, Calendars.ReadWrite, Tasks.ReadWrite.All, Mail.ReadWrite"),
    ("outlook.office365.com", "Office 365 Exchange Online", "EWS.AccessAsUser.All",
     "full_access_as_app"),
    (".dynamics.com", "Dynamics CRM", "user_impersonation",
     "none (add the app as an application user with a security role in the Power Platform "
     "admin center)"),
)


def permissions_for(scope: str) -> tuple[str, str, str]:
    """(API name, delegated permissions, application permissions) for a token ``scope``."""
    host = (urlsplit(scope).hostname or "").lower()
    for suffix, api, delegated, application in _PERMISSIONS:
        if host == suffix or host.endswith(suffix if suffix.startswith(".") else "." + suffix):
            return api, delegated, application
    return f"the API of {host}", "the permissions that API defines", \
        "the permissions that API defines"


def registration_hint(*, password: bool, scope: str,
                      permissions: tuple[str, str, str] | None = None) -> str:
    """What to register in Entra ID so that this sign-in can work, in one sentence."""
    api, delegated, application = permissions or permissions_for(scope)
    if password:
        return ("register an app in Entra ID (App registrations > New registration, single "
                "tenant), turn on Authentication > Allow public client flows, add the "
                f"delegated API permissions {api}: {delegated} and grant admin consent, then set "
                "ClientId=<its Application (client) ID> and TenantId=<its Directory (tenant) "
                "ID>; the user must be able to sign in without MFA (Layer2's Microsoft_Modern "
                "without ClientId uses Layer2's own app and an interactive sign-in, which an "
                "unattended sync cannot do)")
    return ("register an app in Entra ID (App registrations > New registration), add the "
            f"application API permissions {api}: {application} and grant admin consent, "
            "add a client secret or certificate, then set ClientId=<its Application (client) "
            "ID>, TenantId=<its Directory (tenant) ID> and ClientSecret=env:VARIABLE or "
            "CertificatePath=<PEM file>")


class PinnedVerifySession(requests.Session):
    """A requests session whose ``verify`` the environment cannot override.

    requests' ``merge_environment_settings`` replaces a request's ``verify=None`` by
    ``REQUESTS_CA_BUNDLE`` before it merges the session's ``verify``, so a session-level CA
    bundle silently loses to the variable. Here a request without its own ``verify`` uses the
    session's. Proxies and netrc still come from the environment as usual.

    ``default_timeout`` applies to requests sent without a ``timeout``: msal ignores its own
    ``timeout=`` once it is given an ``http_client``, so without it a token endpoint that
    accepts the connection and never answers would hang the sync forever.
    """

    default_timeout: float | None = None

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """As in requests, with :attr:`default_timeout` when no ``timeout`` is given."""
        if kwargs.get("timeout") is None and len(args) < 7:  # 7th: timeout given positionally
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> dict[str, Any]:
        """As in requests, except that ``verify=None`` means the session's ``verify``; the
        environment's proxies and bundle are looked up once per host (requests scans the
        whole environment on every request: a tenth of a sync's CPU)."""
        if verify is None:
            verify = self.verify
        if proxies:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        key = (*urlsplit(str(url))[:2], stream, str(verify), str(cert))
        cache: dict[tuple[Any, ...], dict[str, Any]] = self.__dict__.setdefault(
            "_environment_settings", {})
        if key not in cache:
            cache[key] = super().merge_environment_settings(url, proxies, stream, verify, cert)
        return dict(cache[key])


def make_session(ca_bundle: str | None, timeout_s: float | None = None) -> requests.Session:
    """A session trusting ``ca_bundle`` (when given) regardless of ``REQUESTS_CA_BUNDLE``;
    ``timeout_s`` is the timeout of requests that give none."""
    session = PinnedVerifySession()
    session.default_timeout = timeout_s
    if ca_bundle:
        session.verify = ca_bundle
    return session


def _digest(secret: Any) -> str | None:
    """A secret (a SecretValue, a string, or a certificate credential's dict) as a SHA-256
    digest, to compare sign-ins without keeping the secret in a key."""
    if secret is None:
        return None
    if hasattr(secret, "reveal"):
        secret = secret.reveal()
    text = secret if isinstance(secret, str) else repr(sorted(dict(secret).items()))
    return hashlib.sha256(text.encode()).hexdigest()


def scope_for(url: str) -> str:
    """The ``.default`` scope of the resource at ``url`` (``scheme://host[:port]/.default``)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ConnectionStringError(f"not an absolute URL: {url!r}")
    return f"{parts.scheme}://{parts.netloc}/.default"


def _load_certificate(path: Path, thumbprint: str | None) -> dict[str, str]:
    """msal's client_credential for a PEM file holding the certificate and its private key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConnectionStringError(f"CertificatePath: cannot read {path}: {exc.strerror}") from exc
    try:
        cert = x509.load_pem_x509_certificate(data)
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConnectionStringError(
            f"CertificatePath: {path} must be a PEM file with the certificate and an unencrypted "
            f"private key ({exc})"
        ) from exc
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    credential = {"private_key": key_pem, "public_certificate": cert_pem}
    if thumbprint:
        # an explicit thumbprint is the SHA-1 one the portal shows; check it matches the file
        computed = cert.fingerprint(hashes.SHA1()).hex()
        if thumbprint.replace(":", "").lower() != computed:
            raise ConnectionStringError(
                f"CertificateThumbprint does not match the certificate in {path} "
                f"(its SHA-1 thumbprint is {computed.upper()})"
            )
        credential = {"private_key": key_pem, "thumbprint": computed.upper()}
    return credential


def _skip_user_realm_discovery(authority: str) -> None:
    """Let ROPC go straight to the token endpoint of a non-Microsoft authority.

    msal builds the user-realm URL from the authority's host name *without its port*
    (``https://{instance}/common/userrealm/...``), so for ``https://127.0.0.1:8443/tenant`` it
    would ask port 443. msal keeps a class-level set of hosts known to have no user-realm
    endpoint (it adds a host there after a 404); registering the host up front uses that
    mechanism. Federated (ADFS/WS-Trust) realms exist only behind Microsoft's hosts.
    """
    host = (urlsplit(authority).hostname or "").lower()
    if host:
        msal.authority.Authority._domains_without_user_realm_discovery.add(host)


class MicrosoftAuth:
    """Access tokens for one resource (``scope``) from Entra ID, cached and refreshed by msal."""

    KEYS: frozenset[str] = frozenset(MicrosoftSignIn.keys())

    def __init__(self, *, scope: str, authority: str, client_id: str,
                 client_credential: Any = None, user: str | None = None,
                 password: Any = None, ca_bundle: str | None = None,
                 timeout_s: float | None = None, authority_key: str = "Authority") -> None:
        self.scope = scope
        self.authority = authority
        self.client_id = client_id
        self.user = user
        self.ca_bundle = ca_bundle
        #: the connection's Timeout (seconds per HTTP request; Graph clients use it too), or None
        self.timeout_s = timeout_s
        #: the connection-string key that decides :attr:`authority` (for error messages)
        self.authority_key = authority_key
        self._credential = client_credential
        self._password = password  # a SecretValue
        self._lock = threading.Lock()
        self._held: tuple[str, float] | None = None
        self._app: msal.ClientApplication | None = None
        self._http = make_session(ca_bundle, timeout_s or TIMEOUT_S)

    def identity(self) -> tuple[Any, ...]:
        """Everything that decides this sign-in and its tokens (secrets as SHA-256 digests):
        two sign-ins with equal identities get the same tokens, so they may share one."""
        return (type(self), self.scope, self.authority, self.client_id, self.user,
                self.ca_bundle, self.timeout_s, self.authority_key,
                _digest(self._credential), _digest(self._password))

    @property
    def mode(self) -> str:
        """``"password"`` (a user signs in) or ``"app"`` (client credentials)."""
        return "password" if self.user else "app"

    @classmethod
    def from_connection_string(cls, cs: ConnectionString, *, scope: str,
                               base_dir: Path | None = None,
                               permissions: tuple[str, str, str] | None = None
                               ) -> "MicrosoftAuth":
        """Build from the keys in :attr:`KEYS` (other keys are the caller's business).

        ``permissions`` (API name, delegated, application) names what the app registration
        needs in messages; by default it follows from the ``scope``'s host.
        """
        opts: MicrosoftSignIn = MicrosoftSignIn.parse(cs, check_keys=False)
        authentication = opts.authentication or ""
        user, tenant, client_id, authority = opts.user, opts.tenant_id, opts.client_id, \
            opts.authority
        ca_bundle = resolve_ca_bundle(opts.ca_bundle, base_dir)
        if authentication == "oauth":
            authentication = ""  # the exchange provider's OAuth: decided by the keys given
        use_password = authentication in PASSWORD_AUTHENTICATIONS or (
            not authentication and user and "clientsecret" not in cs
            and "certificatepath" not in cs)
        hint = registration_hint(password=bool(use_password), scope=scope,
                                 permissions=permissions)
        if not client_id:
            raise ConnectionStringError(f"missing required key ClientId: {hint}")
        if not tenant and use_password and user and "@" in user:
            tenant = user.rsplit("@", 1)[1]  # a verified domain names its tenant
        timeout_s = opts.timeout
        authority_key = "Authority" if authority else "TenantId"
        if authority:
            parts = urlsplit(authority)
            if parts.scheme != "https" or not parts.netloc:
                raise ConnectionStringError(f"Authority must be an https URL, not {authority!r}")
            if parts.path.strip("/") == "":
                if not tenant:
                    raise ConnectionStringError(
                        "missing required key TenantId (Authority names no tenant): the "
                        "Directory (tenant) ID of your app registration")
                authority = f"{parts.scheme}://{parts.netloc}/{tenant}"
            authority = authority.rstrip("/")
        else:
            if not tenant:
                raise ConnectionStringError(
                    "missing required key TenantId: the Directory (tenant) ID of the app "
                    f"registration ClientId={client_id} (Entra ID > App registrations > "
                    "Overview)")
            authority = f"{DEFAULT_AUTHORITY_HOST}/{tenant}"
        if use_password:
            if not user:
                raise ConnectionStringError("missing required key User")
            password = opts.password
            if password is None:
                raise ConnectionStringError("missing required key Password (Password=env:VAR)")
            return cls(scope=scope, authority=authority, client_id=client_id, user=user,
                       password=password, ca_bundle=ca_bundle, timeout_s=timeout_s,
                       authority_key=authority_key)
        secret = opts.client_secret
        cert_path = opts.certificate_path
        if secret is not None and cert_path:
            raise ConnectionStringError("give either ClientSecret or CertificatePath, not both")
        if secret is not None:
            credential: Any = secret
        elif cert_path:
            path = Path(cert_path)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            credential = _load_certificate(path, opts.certificate_thumbprint)
        else:
            raise ConnectionStringError(
                "missing required key ClientSecret (ClientSecret=env:VAR) or CertificatePath "
                f"(a secret or certificate of the app registration ClientId={client_id}), or "
                "User and Password=env:VAR with Authentication=Microsoft_Modern"
            )
        return cls(scope=scope, authority=authority, client_id=client_id,
                   client_credential=credential, ca_bundle=ca_bundle, timeout_s=timeout_s,
                   authority_key=authority_key)

    # -- msal -------------------------------------------------------------------------------

    def _instance_discovery(self) -> bool:
        host = (urlsplit(self.authority).hostname or "").lower()
        return host in msal.authority.WELL_KNOWN_AUTHORITY_HOSTS

    def _application(self) -> msal.ClientApplication:
        if self._app is not None:
            return self._app
        common: dict[str, Any] = {
            "authority": self.authority,
            "http_client": self._http,
            "timeout": self.timeout_s or TIMEOUT_S,
            "instance_discovery": self._instance_discovery(),
        }
        try:
            if self.user:
                if not common["instance_discovery"]:
                    _skip_user_realm_discovery(self.authority)
                self._app = msal.PublicClientApplication(self.client_id, **common)
            else:
                credential = self._credential
                if hasattr(credential, "reveal"):
                    credential = credential.reveal()
                self._app = msal.ConfidentialClientApplication(
                    self.client_id, client_credential=credential, **common)
        except requests.RequestException as exc:
            raise self._unreachable(exc, "discovering the authority") from exc
        except ValueError as exc:
            raise ProviderError(f"authority {self.authority} refused: {exc}") from exc
        return self._app

    def token(self) -> str:
        """An access token for :attr:`scope`; msal's cache, renewed when it has expired."""
        with self._lock:
            if self._held is not None and time.monotonic() < self._held[1]:
                return self._held[0]
            return self._token(force_refresh=False)

    def refresh(self) -> str:
        """A new access token even if the cached one has not expired (after a 401)."""
        with self._lock:
            return self._token(force_refresh=True)

    def _token(self, force_refresh: bool) -> str:
        app = self._application()
        scopes = [self.scope]
        try:
            if self.user:
                result = None
                accounts = app.get_accounts(username=self.user)
                if accounts:
                    result = app.acquire_token_silent(scopes, account=accounts[0],
                                                      force_refresh=force_refresh)
                if not result or "access_token" not in result:
                    with warnings.catch_warnings():
                        # msal deprecates ROPC for public clients; Layer2's Microsoft_Modern is it
                        warnings.simplefilter("ignore", DeprecationWarning)
                        result = app.acquire_token_by_username_password(
                            self.user, self._password.reveal(), scopes)
            else:
                if force_refresh:
                    cache = app.token_cache
                    for at in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                        cache.remove_at(at)
                result = app.acquire_token_for_client(scopes)
        except requests.RequestException as exc:
            raise self._unreachable(exc, "requesting a token") from exc
        except ValueError as exc:
            raise ProviderError(f"token request to {self.authority} failed: "
                                f"{self._scrub(str(exc))}") from exc
        if not result or "access_token" not in result:
            raise ProviderError(self._describe_failure(result or {}))
        token = str(result["access_token"])
        # held without asking msal again (its cache look-up costs a millisecond per request)
        # until five minutes before it expires
        try:
            until = time.monotonic() + float(result.get("expires_in") or 0) - HOLD_MARGIN_S
        except (TypeError, ValueError):
            until = 0.0
        self._held = (token, until)
        return token

    def _unreachable(self, exc: BaseException, what: str) -> ProviderError:
        """One line naming the authority's host and port and the key that sets it."""
        return unreachable_error("sign-in", self.authority, self.authority_key, exc,
                                 timeout_s=self.timeout_s or TIMEOUT_S, timeout_key="Timeout",
                                 what=what)

    def _describe_failure(self, result: dict[str, Any]) -> str:
        error = result.get("error", "unknown_error")
        codes = result.get("error_codes") or []
        code_text = ", ".join(f"AADSTS{c}" for c in codes)
        description = (result.get("error_description") or "").strip()
        who = f"user {self.user}" if self.user else f"client {self.client_id}"
        head = f"sign-in of {who} at {self.authority} failed: {error}"
        if code_text and code_text not in description:
            head += f" ({code_text})"
        if description:
            head += f": {description.splitlines()[0]}"
        transient = error in {"temporarily_unavailable", "server_error"}
        if transient:
            head += " (temporary; retry later)"
        return self._scrub(head)

    def _scrub(self, text: str) -> str:
        """Never let a secret through, whatever the server or a library echoes."""
        for secret in (self._password, self._credential):
            value = secret.reveal() if hasattr(secret, "reveal") else None
            if value and len(value) >= 3:
                text = text.replace(value, "***")
        return text

    def session(self) -> requests.Session:
        """A requests session that trusts ``CABundle`` (not overridable by the environment)."""
        return make_session(self.ca_bundle)

    def __repr__(self) -> str:
        return (f"MicrosoftAuth(authority={self.authority!r}, client_id={self.client_id!r}, "
                f"mode={self.mode!r}, scope={self.scope!r})")
