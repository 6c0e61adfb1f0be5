"""What tests need to run msal against the sandbox token service."""

import datetime as dt
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sandbox_process import SandboxProcess

from l2sync_dagster.sandbox import identities


class SandboxSession(requests.Session):
    """A requests session msal can use against the sandbox authority ``https://host:PORT/..``:

    - msal builds the user realm URL from the authority's host name WITHOUT its port
      (``msal/authority.py`` ``user_realm_discovery``), so a port-less URL on the authority host
      is sent to the authority's port;
    - ``trust_env`` off: requests lets REQUESTS_CA_BUNDLE override ``session.verify`` (so
      msal's own ``verify=`` is ignored wherever that variable is set).
    """

    def __init__(self, authority: str, ca_path: str) -> None:
        super().__init__()
        self.verify = ca_path
        self.trust_env = False
        self._authority = urlsplit(authority)

    def request(self, method: str | bytes, url: str | bytes,  # type: ignore[override]
                *args: Any, **kwargs: Any) -> requests.Response:
        parts = urlsplit(str(url))
        if parts.port is None and parts.hostname == self._authority.hostname:
            url = parts._replace(netloc=self._authority.netloc).geturl()
        return super().request(method, url, *args, **kwargs)


def authority(sbx: SandboxProcess) -> str:
    """The sandbox tenant's authority URL."""
    return f"{sbx.urls['token']}/{identities.TENANT}"


def sandbox_session(sbx: SandboxProcess) -> requests.Session:
    """A requests session msal can use against the sandbox token service."""
    return SandboxSession(authority(sbx), str(sbx.ca_path))


def self_signed_certificate(common_name: str = "l2sync-sandbox-test"
                            ) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A fresh self-signed certificate valid for a day, and its private key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert, key


def pem(cert: x509.Certificate) -> str:
    """The certificate as PEM text."""
    return cert.public_bytes(serialization.Encoding.PEM).decode()
