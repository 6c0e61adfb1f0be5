"""Connection-string parsing of the ``exchange`` provider, shared by both backends.

Keys (Layer2-compatible, case-insensitive)::

    URL=https://mail.example.com/EWS/Exchange.asmx;User=svc@example.com;
    Password=env:EWS_PASSWORD;Email=sales@example.com;Impersonation=true

- ``URL``: the EWS endpoint (``.../EWS/Exchange.asmx``; a bare ``https://host`` gets that path
  appended). Or ``Autodiscover=true`` with ``Email`` (EWS backend only).
- ``Email``: the mailbox to open (another user's, a shared or a site mailbox); default ``User``.
- ``Impersonation=true``: ExchangeImpersonation (the ApplicationImpersonation role); otherwise
  delegate access.
- ``Authentication=NTLM|Basic|OAuth|Microsoft_Modern`` (default NTLM with User/Password, OAuth
  when ClientId is given; the Graph backend always signs in through Entra ID). OAuth uses
  ``TenantId``, ``ClientId`` and ``ClientSecret=env:VAR`` or ``CertificatePath`` (client
  credentials through msal, ``providers/msauth.py``; optional ``Authority``,
  ``CertificateThumbprint``). ``Microsoft_Modern`` (Layer2's name) signs in as ``User`` with
  ``Password=env:VAR`` through the app registration ``ClientId`` (a public client; ``TenantId``
  defaults to the domain of ``User``); a missing ClientId is refused with what to register.
- ``CABundle``: a PEM file of certificate authorities to trust (a private CA).
- ``Backend=ews|graph`` (default ews).
- ``NamingScheme=Exchange|SharePoint``: accepted for Layer2 compatibility. ``Exchange``
  (default) names fields by their dotted EWS names; ``SharePoint`` additionally accepts the
  column names of a SharePoint contacts / calendar / tasks list (``FirstName``, ``Title``,
  ``WorkPhone``, ``EventDate``...; ``fields.SHAREPOINT_NAMES``) in the select statement and
  names the RecordFrame columns that way, so auto-mapping pairs them with a SharePoint list.
- Tuning: ``Timeout`` (seconds per HTTP request, default 120), ``MaxRetryWait`` (seconds the
  client keeps retrying a throttled or dropped request, default 120), ``PageSize`` (items per
  FindItem / SyncFolderItems page, default and maximum 1000 / 512), ``BatchSize`` (items per
  CreateItem / UpdateItem / DeleteItem call, default 100), ``ReadBatchSize`` (items per GetItem
  call, default 250; lower it if a server refuses large GetItem requests).

Interface (stable): :func:`parse_settings` -> :class:`ExchangeSettings`.
"""

from dataclasses import dataclass
from pathlib import Path

from l2sync_dagster.spec.connection_string import (
    ConnectionString,
    ConnectionStringError,
    SecretValue,
)

LABEL = "exchange"
KEYS: tuple[str, ...] = (
    "URL", "Autodiscover", "User", "Password", "Email", "Impersonation", "Authentication",
    "TenantId", "ClientId", "ClientSecret", "CertificatePath", "CertificateThumbprint",
    "Authority", "CABundle", "GraphURL", "Backend", "NamingScheme", "Timeout", "MaxRetryWait",
    "PageSize", "BatchSize", "ReadBatchSize",
)
BACKENDS = ("ews", "graph")
AUTHENTICATIONS = ("ntlm", "basic", "oauth", "microsoft_modern")
NAMING_SCHEMES = ("exchange", "sharepoint")
DEFAULT_BATCH_SIZE = 100
DEFAULT_READ_BATCH_SIZE = 250
MAX_BATCH_SIZE = 1000
DEFAULT_PAGE_SIZE = 1000
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MAX_RETRY_WAIT_S = 120.0


@dataclass(frozen=True)
class ExchangeSettings:
    """A parsed, validated connection string (secrets stay wrapped)."""

    cs: ConnectionString
    backend: str
    url: str | None
    autodiscover: bool
    user: str | None
    password: SecretValue | None
    email: str
    impersonation: bool
    authentication: str
    naming_scheme: str
    ca_bundle: str | None
    timeout_s: float
    max_retry_wait_s: float
    page_size: int
    batch_size: int
    read_batch_size: int = DEFAULT_READ_BATCH_SIZE
    base_dir: Path | None = None

    @property
    def oauth(self) -> bool:
        """Whether tokens come from Entra ID (msal)."""
        return self.authentication == "oauth"


def _number(cs: ConnectionString, key: str, default: float, low: float, high: float) -> float:
    return float(cs.get_number(key, default, low, high, label=LABEL))  # type: ignore[arg-type]


def _check_sign_in(cs: ConnectionString, backend: str, url: str | None,
                   base_dir: Path | None) -> None:
    """Refuse incomplete Entra ID sign-in keys now, naming the key and what to register."""
    from l2sync_dagster.providers.msauth import MicrosoftAuth, scope_for

    if backend == "graph":
        graph = (cs.get("GraphURL") or url or "https://graph.microsoft.com/v1.0")
        scope = scope_for(graph)
    else:
        scope = "https://outlook.office365.com/.default" if not url or "office365.com" in url \
            else scope_for(url)
    try:
        MicrosoftAuth.from_connection_string(cs, scope=scope, base_dir=base_dir)
    except ConnectionStringError as exc:
        raise ConnectionStringError(f"{LABEL}: {exc}") from None


def parse_settings(text: str | ConnectionString, *, base_dir: Path | None = None
                   ) -> ExchangeSettings:
    """Parse and validate; ConnectionStringError naming the bad or missing key."""
    cs = text if isinstance(text, ConnectionString) else ConnectionString(text, label=LABEL)
    cs.check_keys(KEYS)
    backend = (cs.get("Backend") or "ews").strip().lower()
    if backend not in BACKENDS:
        raise ConnectionStringError(f"{LABEL}: Backend must be ews or graph, not "
                                    f"{cs.get('Backend')!r}")
    naming = (cs.get("NamingScheme") or "exchange").strip().lower()
    if naming not in NAMING_SCHEMES:
        raise ConnectionStringError(f"{LABEL}: NamingScheme must be Exchange or SharePoint, "
                                    f"not {cs.get('NamingScheme')!r}")
    autodiscover = cs.get_bool("Autodiscover", False)
    url = cs.get("URL") or None
    if url and autodiscover:
        raise ConnectionStringError(f"{LABEL}: give either URL or Autodiscover=true, not both")
    if url:
        low = url.lower()
        if not low.startswith(("https://", "http://")):
            raise ConnectionStringError(f"{LABEL}: URL must start with https:// (or http://), "
                                        f"not {url!r}")
        if backend == "ews" and not low.rstrip("/").endswith(".asmx"):
            url = url.rstrip("/") + "/EWS/Exchange.asmx"
    elif not autodiscover and backend == "ews":
        raise ConnectionStringError(f"{LABEL}: missing required key URL (or Autodiscover=true "
                                    "with Email)")
    user = cs.get("User") or None
    password = cs.secret("Password")
    client_id = cs.get("ClientId")
    auth_raw = cs.get("Authentication")
    authentication = (auth_raw or ("oauth" if client_id else "ntlm")).strip().lower()
    if authentication not in AUTHENTICATIONS:
        raise ConnectionStringError(f"{LABEL}: Authentication must be NTLM, Basic, OAuth or "
                                    f"Microsoft_Modern, not {auth_raw!r}")
    if backend == "graph":
        if authentication in ("ntlm", "basic") and auth_raw is not None:
            raise ConnectionStringError(
                f"{LABEL}: Authentication={auth_raw} is for Exchange Server (Backend=ews); "
                "Microsoft Graph signs in through Entra ID: use Authentication=Microsoft_Modern "
                "(User, Password=env:VAR, ClientId) or OAuth (ClientId with ClientSecret or "
                "CertificatePath)")
        authentication = "oauth"
    if authentication == "microsoft_modern":
        authentication = "oauth"  # a delegated token; MicrosoftAuth reads User and Password
    if authentication == "oauth":
        _check_sign_in(cs, backend, url, base_dir)
    else:
        if not user:
            raise ConnectionStringError(f"{LABEL}: missing required key User")
        if password is None:
            raise ConnectionStringError(f"{LABEL}: missing required key Password "
                                        "(Password=env:VAR)")
    email = cs.get("Email") or user
    if not email:
        raise ConnectionStringError(f"{LABEL}: missing required key Email (the mailbox to open)")
    if "@" not in email:
        raise ConnectionStringError(f"{LABEL}: Email must be an SMTP address, not {email!r}")
    ca_bundle = cs.get("CABundle") or None
    if ca_bundle:
        ca_path = Path(ca_bundle)
        if not ca_path.is_absolute() and base_dir is not None:
            ca_path = base_dir / ca_path
        if not ca_path.is_file():
            raise ConnectionStringError(f"{LABEL}: CABundle: no such file {ca_path}")
        ca_bundle = str(ca_path)
    return ExchangeSettings(
        cs=cs, backend=backend, url=url, autodiscover=autodiscover, user=user,
        password=password, email=email, impersonation=cs.get_bool("Impersonation", False),
        authentication=authentication, naming_scheme=naming, ca_bundle=ca_bundle,
        timeout_s=_number(cs, "Timeout", DEFAULT_TIMEOUT_S, 1, 3600),
        max_retry_wait_s=_number(cs, "MaxRetryWait", DEFAULT_MAX_RETRY_WAIT_S, 0, 86400),
        page_size=int(_number(cs, "PageSize", DEFAULT_PAGE_SIZE, 1, 1000)),
        batch_size=int(_number(cs, "BatchSize", DEFAULT_BATCH_SIZE, 1, MAX_BATCH_SIZE)),
        read_batch_size=int(_number(cs, "ReadBatchSize", DEFAULT_READ_BATCH_SIZE, 1,
                                    MAX_BATCH_SIZE)),
        base_dir=base_dir,
    )
