"""The Microsoft sign-in options, declared once for every provider that signs in through
Entra ID (msal): ``exchange``, ``sharepoint``, ``dataverse`` and ``odata`` with OAuth.

Light on purpose (no msal import): loading a connection parses these without signing in.
"""

from pathlib import Path
from typing import ClassVar

from l2sync_dagster.providers.options import (
    ConnectionStringError,
    ProviderOptions,
    SecretValue,
    option,
)

#: Authentication values that mean "user name and password" (Layer2's names)
PASSWORD_AUTHENTICATIONS = frozenset({"microsoft_modern", "microsoft_modern_crm"})
DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0"


class MicrosoftSignIn(ProviderOptions):
    """Entra ID sign-in: an app registration's id and secret or certificate, or a user."""

    title: ClassVar[str] = ("Microsoft sign-in (`exchange`, `sharepoint`, `dataverse`, "
                            "`odata`)")
    tenant_id: str | None = option(
        "TenantId", "Directory (tenant) ID of your app registration (default: the domain of "
        "User)")
    client_id: str | None = option("ClientId", "Application (client) ID of your app "
                                   "registration")
    client_secret: SecretValue | None = option("ClientSecret", "a client secret of the app "
                                               "registration", secret=True)
    certificate_path: str | None = option(
        "CertificatePath", "PEM file with the app's certificate and private key, instead of "
        "ClientSecret (relative to the project)")
    certificate_thumbprint: str | None = option(
        "CertificateThumbprint", "SHA-1 thumbprint the certificate must have")
    user: str | None = option("User", "the user to sign in as, with Password (msal's "
                              "username/password flow)")
    password: SecretValue | None = option("Password", "the user's password", secret=True)
    authentication: str | None = option(
        "Authentication", "how to sign in (default: from the keys given)",
        choices=("Microsoft_Modern", "Microsoft_Modern_CRM", "ClientCredentials", "OAuth"))
    authority: str | None = option(
        "Authority", "https URL of the sign-in authority (default "
        "`https://login.microsoftonline.com/<TenantId>`)")
    ca_bundle: str | None = option("CABundle", "PEM file of the CA certificates to trust "
                                   "(relative to the project)")
    timeout: float = option("Timeout", "seconds per HTTP request, sign-in included", 120.0,
                            low=1, high=3600, unit="seconds")


class GraphSignIn(MicrosoftSignIn):
    """The sign-in of a provider that talks to Microsoft Graph."""

    title: ClassVar[str] = "Microsoft Graph (`exchange` with `Backend=graph`, `sharepoint`)"
    graph_url: str | None = option("GraphURL", "Graph endpoint", DEFAULT_GRAPH_URL)


def resolve_ca_bundle(value: str | None, base_dir: Path | None) -> str | None:
    """The ``CABundle`` path (a relative one from ``base_dir``); it must exist."""
    if not value:
        return None
    path = Path(value)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise ConnectionStringError(f"CABundle: no such file {path}")
    return str(path)
