"""An Entra ID (Azure AD v2.0) style token service that msal accepts.

Shared by the Graph, Dataverse and EWS (OAuth) sandboxes: they check the tokens issued here
with ``ctx.tokens.check(token, audience)``.

How a client uses it (msal 1.39)::

    app = msal.ConfidentialClientApplication(
        "l2sync-sandbox", client_credential="sandbox",
        authority=f"{urls['token']}/sandbox", instance_discovery=False, verify=str(ca_path))
    app.acquire_token_for_client(["https://127.0.0.1:GRAPHPORT/.default"])

    pub = msal.PublicClientApplication("l2sync-sandbox", authority=..., instance_discovery=False,
                                       verify=str(ca_path))
    pub.acquire_token_by_username_password("sync@sandbox.test", "sandbox", [".../.default"])

Two things a client must do with msal against ``https://127.0.0.1:PORT`` (see
``tests/test_sandbox_token.py::SandboxSession``), passed as msal's ``http_client``:

- msal sends the ROPC user realm request to the authority's host WITHOUT its port
  (``https://127.0.0.1/common/userrealm/...``, ``msal/authority.py``); route port-less URLs on
  the authority host to the authority's port (harmless against real Entra, which has no port),
  or add the host to msal's ``Authority._domains_without_user_realm_discovery`` (what
  ``providers/msauth.py`` does) so msal skips user realm discovery;
- set ``session.verify = <ca path>`` and ``session.trust_env = False``: with
  ``REQUESTS_CA_BUNDLE`` set, requests ignores ``session.verify`` (and msal's ``verify=``).

Endpoints (``{tenant}`` is ``sandbox``, ``sandbox.test``, the tenant GUID :data:`TENANT_ID`,
``organizations`` or ``common``; any other tenant answers AADSTS90002):

- ``GET /{tenant}/v2.0/.well-known/openid-configuration`` (also ``/{tenant}/.well-known/...``):
  discovery; ``token_endpoint`` is ``{base}/{TENANT_ID}/oauth2/v2.0/token``.
- ``GET /common/userrealm/{username}?api-version=1.0``: ``account_type`` ``Managed`` for the
  demo users (so msal's ROPC goes straight to the token endpoint), ``Unknown`` otherwise.
- ``POST /{tenant}/oauth2/v2.0/token`` (form encoded):

  - ``grant_type=client_credentials`` with ``client_secret`` or a ``client_assertion`` JWT
    (RS256 with ``x5t`` or PS256 with ``x5t#S256``) signed by a certificate registered with
    the control API. ``scope`` must be exactly one ``<resource>/.default``.
  - ``grant_type=password`` (ROPC): ``username``/``password`` from ``identities.USERS``, public
    client ``l2sync-sandbox`` (a secret, if sent, must be right). Returns ``id_token``
    (well-formed JWT, ``alg: none``), ``client_info`` and a ``refresh_token``.
  - ``grant_type=refresh_token``: a refresh token from an earlier ROPC answer.

  Resources: any ``https://`` or ``http://`` URL on a loopback host (the sandbox services'
  base URLs), ``https://graph.microsoft.com``, ``https://outlook.office365.com``,
  ``https://outlook.office.com`` and ``https://*.dynamics.com``. The access token's audience is
  the resource without ``/.default`` (e.g. ``https://127.0.0.1:8443``).

  Errors have Entra's shape ``{"error", "error_description": "AADSTSnnn: ...",
  "error_codes": [n], "timestamp", "trace_id", "correlation_id", "error_uri"}``:
  ``invalid_client`` 401 (AADSTS7000215 wrong secret, AADSTS7000218 no credential,
  AADSTS700027 bad/unknown certificate signature, AADSTS700024 assertion expired),
  ``unauthorized_client`` 400 (AADSTS700016 unknown client id), ``invalid_grant`` 400
  (AADSTS50126 wrong password, AADSTS50034 unknown user, AADSTS9002313/AADSTS70000 bad refresh
  token), ``invalid_scope`` 400 (AADSTS1002012 client credentials without ``/.default``,
  AADSTS70011 invalid scope), ``invalid_resource`` 400 (AADSTS500011 unknown resource),
  ``unsupported_grant_type`` 400 (AADSTS70003).

Control API (``/_sandbox/token/...``):

- ``POST certificates`` ``{"client_id": "l2sync-sandbox", "certificate": "<PEM>"}``: register a
  public certificate for certificate credentials; answers its SHA-1/SHA-256 thumbprints.
- ``GET certificates``: the registered thumbprints. ``DELETE certificates``: forget them.
- ``POST expire``: every access token issued so far expires now (refresh tests).

Limits: access tokens live one hour (``expires_in`` 3599); refresh tokens until reset; no
authorization-code or device-code flow (the ``authorization_endpoint`` is advertised because
msal requires it, and answers 400).
"""

import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from l2sync_dagster.sandbox import identities
from l2sync_dagster.sandbox.service import Request, Response, Service
from l2sync_dagster.sandbox.tokens import Principal

#: the demo tenant's id, as a GUID like Entra's
TENANT_ID = str(uuid.uuid5(uuid.NAMESPACE_DNS, identities.DOMAIN))
TENANT_NAMES = frozenset({identities.TENANT, identities.DOMAIN, TENANT_ID, "organizations",
                          "common"})
#: scopes msal adds for OpenID Connect; they name no resource
OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
KNOWN_RESOURCE_HOSTS = ("graph.microsoft.com", "outlook.office365.com", "outlook.office.com")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def object_id(upn: str) -> str:
    """The stable object id (GUID) of a demo user or application."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox:{upn.lower()}"))


def b64url(data: bytes) -> str:
    """Base64url without padding, as JWTs use."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url` (padding optional)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenError(Exception):
    """An Entra error answer: ``error`` code, AADSTS number, message, HTTP status."""

    def __init__(self, error: str, code: int, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.error, self.code, self.message, self.status = error, code, message, status

    def response(self, operation: str) -> Response:
        """The error as Entra answers it."""
        now = datetime.now(UTC)
        trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        description = (f"AADSTS{self.code}: {self.message} Trace ID: {trace} "
                       f"Correlation ID: {corr} Timestamp: {stamp}")
        body = {
            "error": self.error,
            "error_description": description,
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }
        return Response.json(body, self.status, operation=operation)


class TokenService(Service):
    """Entra-style discovery, user realm and token endpoints (see the module docstring)."""

    name = "token"
    tls = True

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self._data_lock = threading.Lock()
        self._certs: dict[str, tuple[str, Any]] = {}  # thumbprint (hex) -> (client, public key)
        self._cert_pems: list[tuple[str, str]] = []
        self._refresh: dict[str, tuple[str, str]] = {}  # refresh token -> (user, client id)
        self._load()

    # ------------------------------------------------------------------ state
    def _load(self) -> None:
        path = self.state_file
        if path is None or not path.is_file():
            return
        data = json.loads(path.read_text())
        for client, pem in data.get("certificates", []):
            self._register(client, pem)

    def save(self) -> None:
        """Persist the registered certificates (tokens are not kept across restarts)."""
        path = self.state_file
        if path is None:
            return
        path.write_text(json.dumps({"certificates": self._cert_pems}))

    def reset(self) -> None:
        """Forget registered certificates and refresh tokens; clear faults and counters."""
        super().reset()
        with self._data_lock:
            self._certs.clear()
            self._cert_pems.clear()
            self._refresh.clear()

    def _register(self, client_id: str, pem: str) -> dict[str, str]:
        cert = x509.load_pem_x509_certificate(pem.encode())
        sha1 = cert.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - x5t is SHA-1 by spec
        sha256 = cert.fingerprint(hashes.SHA256()).hex()
        with self._data_lock:
            self._certs[sha1] = (client_id, cert.public_key())
            self._certs[sha256] = (client_id, cert.public_key())
            if (client_id, pem) not in self._cert_pems:
                self._cert_pems.append((client_id, pem))
        return {"client_id": client_id, "sha1": sha1, "sha256": sha256}

    # ------------------------------------------------------------------ control API
    def control(self, request: Request, subpath: str) -> Response:
        """``certificates`` (POST/GET/DELETE) and ``expire`` (POST)."""
        if subpath == "certificates":
            if request.method == "POST":
                body = request.json() or {}
                client = body.get("client_id", identities.CLIENT_ID)
                if client not in identities.CLIENTS:
                    return Response.json({"error": f"unknown client {client!r}"}, 400)
                try:
                    return Response.json(self._register(client, body["certificate"]))
                except ValueError as exc:
                    return Response.json({"error": f"not a PEM certificate: {exc}"}, 400)
            if request.method == "DELETE":
                with self._data_lock:
                    self._certs.clear()
                    self._cert_pems.clear()
            with self._data_lock:
                return Response.json({"thumbprints": sorted(self._certs)})
        if subpath == "expire" and request.method == "POST":
            self.ctx.tokens.expire_all()
            return Response.json({"expired": True})
        return super().control(request, subpath)

    # ------------------------------------------------------------------ protocol
    def handle(self, request: Request) -> Response:
        """Route discovery, user realm and token requests."""
        parts = [p for p in request.path.split("/") if p]
        base = request.base_url
        if len(parts) >= 3 and parts[0] == "common" and parts[1] == "userrealm":
            return self._user_realm(unquote(parts[2]))
        if parts and parts[-2:] == [".well-known", "openid-configuration"]:
            tenant = parts[0]
            if tenant not in TENANT_NAMES:
                return TokenError("invalid_tenant", 90002, f"Tenant '{tenant}' not found. "
                                  "Check to make sure you have the correct tenant ID and are "
                                  "signing into the correct cloud.").response("discovery")
            return Response.json(self._openid_configuration(base), operation="discovery")
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            if request.method != "POST":
                return TokenError("invalid_request", 900561, "The endpoint only accepts POST "
                                  "requests.").response("token")
            return self._token(parts[0], request)
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "authorize"]:
            return TokenError("unsupported_response_type", 70003, "The sandbox supports only "
                              "client credentials, password and refresh token grants."
                              ).response("authorize")
        return Response.json({"error": "not_found", "error_description": request.path}, 404,
                             operation="unknown")

    def _openid_configuration(self, base: str) -> dict[str, Any]:
        root = f"{base}/{TENANT_ID}"
        return {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/{TENANT_ID}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{root}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base}/oidc/userinfo",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce",
                                 "preferred_username", "name", "tid", "ver", "at_hash",
                                 "c_hash", "email"],
            "kerberos_endpoint": f"{root}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "sandbox.test",
            "cloud_graph_host_name": "graph.sandbox.test",
            "msgraph_host": "graph.sandbox.test",
            "rbac_url": "https://pas.windows.net",
        }

    def _user_realm(self, username: str) -> Response:
        known = username.lower() in identities.USERS
        domain = username.partition("@")[2]
        body = {
            "ver": "1.0",
            "account_type": "Managed" if known or domain == identities.DOMAIN else "Unknown",
            "domain_name": domain,
            "cloud_instance_name": "sandbox.test",
            "cloud_audience_urn": "urn:federation:MicrosoftOnline",
        }
        return Response.json(body, operation="userrealm")

    def _token(self, tenant: str, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode(errors="replace"),
                                              keep_blank_values=True).items()}
        grant = form.get("grant_type", "")
        operation = f"token.{grant or 'none'}"
        try:
            if tenant not in TENANT_NAMES:
                raise TokenError("invalid_request", 90002, f"Tenant '{tenant}' not found.")
            if grant == "client_credentials":
                body = self._client_credentials(form, request)
            elif grant == "password":
                body = self._password(form, request)
            elif grant == "refresh_token":
                body = self._refresh_grant(form, request)
            elif not grant:
                raise TokenError("invalid_request", 900144, "The request body must contain the "
                                 "following parameter: 'grant_type'.")
            else:
                raise TokenError("unsupported_grant_type", 70003, "The app requested an "
                                 f"unsupported grant type '{grant}'.")
        except TokenError as exc:
            return exc.response(operation)
        return Response.json(body, operation=operation,
                             headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    # ------------------------------------------------------------------ client authentication
    def _client_id(self, form: dict[str, str], request: Request) -> tuple[str, str | None]:
        """(client id, secret) from the form or an ``Authorization: Basic`` header."""
        client, secret = form.get("client_id", ""), form.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                user, _, pwd = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, pwd = "", ""
            client, secret = client or unquote(user), unquote(pwd)
        if not client:
            raise TokenError("invalid_request", 900144, "The request body must contain the "
                             "following parameter: 'client_id'.")
        if client not in identities.CLIENTS:
            raise TokenError("unauthorized_client", 700016, f"Application with identifier "
                             f"'{client}' was not found in the directory '{identities.TENANT}'. "
                             "This can happen if the application has not been installed by the "
                             "administrator of the tenant or consented to by any user in the "
                             "tenant. You may have sent your authentication request to the wrong "
                             "tenant.")
        return client, secret

    def _check_secret(self, client: str, secret: str) -> None:
        if not secrets.compare_digest(identities.CLIENTS[client], secret):
            raise TokenError("invalid_client", 7000215, "Invalid client secret provided. Ensure "
                             "the secret being sent in the request is the client secret value, "
                             "not the client secret ID, for a secret added to app "
                             f"'{client}'.", 401)

    def _check_assertion(self, client: str, form: dict[str, str], request: Request) -> None:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise TokenError("invalid_request", 700010, "Invalid client_assertion_type: "
                             f"'{form.get('client_assertion_type')}'; expected "
                             f"'{ASSERTION_TYPE}'.")
        assertion = form["client_assertion"]
        try:
            head_b64, claims_b64, sig_b64 = assertion.split(".")
            header = json.loads(b64url_decode(head_b64))
            claims = json.loads(b64url_decode(claims_b64))
            signature = b64url_decode(sig_b64)
        except (ValueError, TypeError) as exc:
            raise TokenError("invalid_client", 50027, "JWT token is invalid or malformed.",
                             401) from exc
        alg = header.get("alg")
        if header.get("x5t#S256"):
            thumb = b64url_decode(header["x5t#S256"]).hex()
        elif header.get("x5t"):
            thumb = b64url_decode(header["x5t"]).hex()
        else:
            raise TokenError("invalid_client", 700027, "Client assertion failed signature "
                             "validation: the header carries no x5t or x5t#S256 thumbprint.", 401)
        with self._data_lock:
            entry = self._certs.get(thumb)
        if entry is None or entry[0] != client:
            raise TokenError("invalid_client", 700027, "Client assertion contains an invalid "
                             f"signature. [Reason - The key was not found., Thumbprint of key "
                             f"used by client: '{thumb.upper()}']", 401)
        key = entry[1]
        signed = f"{head_b64}.{claims_b64}".encode()
        try:
            if not isinstance(key, rsa.RSAPublicKey):
                raise InvalidSignature("only RSA certificates are supported")
            if alg == "RS256":
                key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
            elif alg == "PS256":
                key.verify(signature, signed,
                           padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                       salt_length=padding.PSS.AUTO), hashes.SHA256())
            else:
                raise InvalidSignature(f"unsupported alg {alg!r}")
        except InvalidSignature as exc:
            raise TokenError("invalid_client", 700027, "Client assertion contains an invalid "
                             f"signature. [Reason - {exc or 'signature mismatch'}, Thumbprint "
                             f"of key used by client: '{thumb.upper()}']", 401) from exc
        now = time.time()
        if float(claims.get("exp", 0)) < now - 300 or float(claims.get("nbf", 0)) > now + 300:
            raise TokenError("invalid_client", 700024, "Client assertion is not within its "
                             "valid time range.", 401)
        if claims.get("iss") != client or claims.get("sub") != client:
            raise TokenError("invalid_client", 700021, "Client assertion application identifier "
                             "doesn't match 'client_id' parameter.", 401)
        aud = claims.get("aud")
        parsed = urlsplit(aud) if isinstance(aud, str) else None
        if (parsed is None or parsed.netloc != urlsplit(request.base_url).netloc
                or not parsed.path.endswith("/oauth2/v2.0/token")
                or parsed.path.strip("/").split("/")[0] not in TENANT_NAMES):
            raise TokenError("invalid_client", 700016, "Client assertion audience claim does "
                             f"not match the token endpoint: '{aud}'.", 401)

    def _authenticate_client(self, form: dict[str, str], request: Request, *,
                             required: bool) -> str:
        client, secret = self._client_id(form, request)
        if form.get("client_assertion"):
            self._check_assertion(client, form, request)
        elif secret is not None:
            self._check_secret(client, secret)
        elif required:
            raise TokenError("invalid_client", 7000218, "The request body must contain the "
                             "following parameter: 'client_assertion' or 'client_secret'.", 401)
        return client

    # ------------------------------------------------------------------ scopes
    def _resource(self, scope_param: str, *, default_only: bool) -> tuple[str, tuple[str, ...]]:
        """(resource, resource scopes) of a space-separated ``scope`` parameter."""
        scopes = [s for s in scope_param.split() if s]
        resource_scopes = [s for s in scopes if s.lower() not in OIDC_SCOPES]
        if not resource_scopes:
            if default_only:
                raise TokenError("invalid_scope", 1002012, "The provided value for scope "
                                 f"'{scope_param}' is not valid. Client credential flows must "
                                 "have a scope value with /.default suffixed to the resource "
                                 "identifier (application ID URI).")
            return "https://graph.microsoft.com", ("https://graph.microsoft.com/User.Read",)
        resources = set()
        for s in resource_scopes:
            if "://" not in s:
                raise TokenError("invalid_scope", 70011, f"The provided value for the input "
                                 f"parameter 'scope' is not valid. The scope '{s}' does not "
                                 "name a resource (use '<resource>/.default').")
            resource, _, perm = s.rpartition("/")
            if default_only and perm != ".default":
                raise TokenError("invalid_scope", 1002012, "The provided value for scope "
                                 f"{s} is not valid. Client credential flows must have a scope "
                                 "value with /.default suffixed to the resource identifier "
                                 "(application ID URI).")
            resources.add(resource.rstrip("/"))
        if len(resources) > 1:
            raise TokenError("invalid_scope", 28000, "Provided value for the input parameter "
                             "scope is not valid because it contains more than one resource. "
                             f"Scope {scope_param} is not valid.")
        resource = resources.pop()
        host = (urlsplit(resource).hostname or "").lower()
        known = (host in LOOPBACK_HOSTS or host in KNOWN_RESOURCE_HOSTS
                 or host.endswith(".dynamics.com"))
        if not known or urlsplit(resource).scheme not in ("https", "http"):
            raise TokenError("invalid_resource", 500011, f"The resource principal named "
                             f"{resource} was not found in the tenant named {identities.TENANT}. "
                             "This can happen if the application has not been installed by the "
                             "administrator of the tenant or consented to by any user in the "
                             "tenant. You might have sent your authentication request to the "
                             "wrong tenant.")
        return resource, tuple(resource_scopes)

    # ------------------------------------------------------------------ grants
    def _access(self, principal: Principal) -> dict[str, Any]:
        token = self.ctx.tokens.issue(principal, lifetime_s=3600)
        return {"token_type": "Bearer", "scope": " ".join(principal.scopes),
                "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}

    def _client_credentials(self, form: dict[str, str], request: Request) -> dict[str, Any]:
        client = self._authenticate_client(form, request, required=True)
        resource, scopes = self._resource(form.get("scope", ""), default_only=True)
        return self._access(Principal(client, "app", audience=resource, scopes=scopes))

    def _user_tokens(self, user: str, client: str, scope_param: str,
                     base: str) -> dict[str, Any]:
        resource, scopes = self._resource(scope_param, default_only=False)
        body = self._access(Principal(user, "user", audience=resource, scopes=scopes))
        body["id_token"] = self._id_token(user, client, base)
        body["client_info"] = b64url(json.dumps(
            {"uid": object_id(user), "utid": TENANT_ID}).encode())
        refresh = "sbx-rt." + secrets.token_urlsafe(32)
        with self._data_lock:
            self._refresh[refresh] = (user, client)
        body["refresh_token"] = refresh
        return body

    def _password(self, form: dict[str, str], request: Request) -> dict[str, Any]:
        client = self._authenticate_client(form, request, required=False)
        username = form.get("username", "").lower()
        if not username or "password" not in form:
            raise TokenError("invalid_request", 900144, "The request body must contain the "
                             "following parameter: 'username' and 'password'.")
        if username not in identities.USERS:
            raise TokenError("invalid_grant", 50034, "The user account {EUII Hidden} does not "
                             f"exist in the {identities.TENANT} directory. To sign into this "
                             "application, the account must be added to the directory.")
        if not secrets.compare_digest(identities.USERS[username], form["password"]):
            raise TokenError("invalid_grant", 50126, "Error validating credentials due to "
                             "invalid username or password.")
        return self._user_tokens(username, client, form.get("scope", ""), request.base_url)

    def _refresh_grant(self, form: dict[str, str], request: Request) -> dict[str, Any]:
        client = self._authenticate_client(form, request, required=False)
        with self._data_lock:
            entry = self._refresh.get(form.get("refresh_token", ""))
        if entry is None:
            raise TokenError("invalid_grant", 9002313, "Invalid request. Request is malformed "
                             "or invalid: the refresh token is unknown or was revoked.")
        if entry[1] != client:
            raise TokenError("invalid_grant", 70000, "Provided grant is invalid or malformed: "
                             "the refresh token was issued to another client.")
        return self._user_tokens(entry[0], client, form.get("scope", ""), request.base_url)

    def _id_token(self, user: str, client: str, base: str) -> str:
        """A well-formed, unsigned (``alg: none``) id_token: msal only decodes its claims."""
        now = int(time.time())
        claims = {
            "aud": client, "iss": f"{base}/{TENANT_ID}/v2.0", "iat": now, "nbf": now,
            "exp": now + 3600, "name": user.partition("@")[0].title(), "oid": object_id(user),
            "preferred_username": user, "sub": b64url(hashlib.sha256(user.encode()).digest()),
            "tid": TENANT_ID, "ver": "2.0",
        }
        header = {"typ": "JWT", "alg": "none"}
        return (f"{b64url(json.dumps(header).encode())}."
                f"{b64url(json.dumps(claims).encode())}.")
