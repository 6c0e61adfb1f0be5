"""Connection-string parsing of the ``exchange`` provider, shared by both backends.

Example (Layer2-compatible keys, case-insensitive)::

    URL=https://mail.example.com/EWS/Exchange.asmx;User=svc@example.com;
    Password=env:EWS_PASSWORD;Email=sales@example.com;Impersonation=true

The keys are declared once in :class:`ExchangeOptions` (and the shared Microsoft sign-in keys);
the README's table is made from them. ``Authentication`` defaults to NTLM with User/Password and
to OAuth when ClientId is given; the Graph backend always signs in through Entra ID. OAuth uses
client credentials through msal (``providers/msauth.py``); ``Microsoft_Modern`` (Layer2's name)
signs in as ``User`` with ``Password=env:VAR`` through the app registration ``ClientId`` (a
public client; ``TenantId`` defaults to the domain of ``User``); a missing ClientId is refused
with what to register. ``NamingScheme=SharePoint`` additionally accepts the column names of a
SharePoint contacts / calendar / tasks list (``FirstName``, ``Title``, ``WorkPhone``,
``EventDate``...; ``fields.SHAREPOINT_NAMES``) in the select statement and names the
RecordFrame columns that way, so auto-mapping pairs them with a SharePoint list.

Interface (stable): :func:`parse_settings` -> :class:`ExchangeSettings`.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from l2sync_dagster.providers.exchange.fields import BACKENDS
from l2sync_dagster.providers.microsoft_options import GraphSignIn, resolve_ca_bundle
from l2sync_dagster.providers.options import option
from l2sync_dagster.spec.connection_string import (
    ConnectionString,
    ConnectionStringError,
    SecretValue,
)

LABEL = "exchange"


class ExchangeOptions(GraphSignIn):
    """The ``exchange`` provider's connection-string options (both backends)."""

    provider: ClassVar[str] = LABEL
    backend: str = option("Backend", "Exchange Server over EWS (exchangelib), or Exchange "
                          "Online over Microsoft Graph", "ews", choices=BACKENDS)
    url: str | None = option("URL", "the EWS endpoint (`.../EWS/Exchange.asmx`; a bare "
                             "`https://host` gets that path); with Backend=graph, the Graph "
                             "endpoint")
    autodiscover: bool = option("Autodiscover", "find the EWS endpoint from Email (EWS only)",
                                False)
    email: str | None = option("Email", "the mailbox to open (own, another user's, shared; "
                               "default User); may hold `{mailbox}` with for_each")
    impersonation: bool = option("Impersonation", "ExchangeImpersonation (the "
                                 "ApplicationImpersonation role) instead of delegate access",
                                 False)
    authentication: str | None = option(
        "Authentication", "how to sign in (default: NTLM with User, OAuth with ClientId)",
        choices=("NTLM", "Basic", "OAuth", "Microsoft_Modern"))
    naming_scheme: str = option("NamingScheme", "field names: the dotted EWS names, or also "
                                "the column names of a SharePoint list", "exchange",
                                choices=("Exchange", "SharePoint"))
    max_retry_wait: float = option("MaxRetryWait", "seconds a throttled or dropped request is "
                                   "retried", 120.0, low=0, high=86400, unit="seconds")
    page_size: int = option("PageSize", "items per FindItem page, per SyncFolderItems page (at "
                            "most 512), per FindPeople page and per Graph page", 1000, low=1,
                            high=1000)
    batch_size: int = option("BatchSize", "items per CreateItem / UpdateItem / DeleteItem call",
                             100, low=1, high=1000)
    read_batch_size: int = option("ReadBatchSize", "items per GetItem call (lower it if a "
                                  "server refuses large GetItem requests)", 250, low=1,
                                  high=1000)


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
    read_batch_size: int = ExchangeOptions.default("ReadBatchSize")
    base_dir: Path | None = None

    @property
    def oauth(self) -> bool:
        """Whether tokens come from Entra ID (msal)."""
        return self.authentication == "oauth"


def _check_sign_in(cs: ConnectionString, backend: str, url: str | None,
                   base_dir: Path | None) -> None:
    """Refuse incomplete Entra ID sign-in keys now, naming the key and what to register."""
    from l2sync_dagster.providers.msauth import MicrosoftAuth, scope_for

    if backend == "graph":
        graph = (cs.get("GraphURL") or url or ExchangeOptions.default("GraphURL"))
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
    opts: ExchangeOptions = ExchangeOptions.parse(cs)
    backend = opts.backend
    autodiscover = opts.autodiscover
    url = opts.url
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
    user = opts.user
    password = opts.password
    auth_raw = cs.get("Authentication")
    authentication = opts.authentication or ("oauth" if opts.client_id else "ntlm")
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
    email = opts.email or user
    if not email:
        raise ConnectionStringError(f"{LABEL}: missing required key Email (the mailbox to open)")
    if "@" not in email:
        raise ConnectionStringError(f"{LABEL}: Email must be an SMTP address, not {email!r}")
    try:
        ca_bundle = resolve_ca_bundle(opts.ca_bundle, base_dir)
    except ConnectionStringError as exc:
        raise ConnectionStringError(f"{LABEL}: {exc}") from None
    return ExchangeSettings(
        cs=cs, backend=backend, url=url, autodiscover=autodiscover, user=user,
        password=password, email=email, impersonation=opts.impersonation,
        authentication=authentication, naming_scheme=opts.naming_scheme, ca_bundle=ca_bundle,
        timeout_s=opts.timeout, max_retry_wait_s=opts.max_retry_wait, page_size=opts.page_size,
        batch_size=opts.batch_size, read_batch_size=opts.read_batch_size, base_dir=base_dir,
    )
