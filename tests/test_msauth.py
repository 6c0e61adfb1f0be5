"""MicrosoftAuth with the real msal and requests against the sandbox token service."""

import shutil
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from msal_helpers import pem, self_signed_certificate
from sandbox_process import SandboxProcess

from l2sync_dagster.providers.base import ProviderError
from l2sync_dagster.providers.msauth import MicrosoftAuth, make_session, scope_for
from l2sync_dagster.spec.connection_string import ConnectionString, ConnectionStringError

SECRET_ENV = "MSAUTH_TEST_SECRET"


def _cs(sandbox: SandboxProcess, extra: str) -> ConnectionString:
    return ConnectionString(
        f"Authority={sandbox.urls['token']}/sandbox;CABundle={sandbox.ca_path};{extra}")


def _scope(sandbox: SandboxProcess) -> str:
    return scope_for(sandbox.urls["token"])


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(SECRET_ENV, "sandbox")
    return SECRET_ENV


def test_client_secret_token_is_cached_and_refreshed(sandbox: SandboxProcess,
                                                      secret_env: str) -> None:
    auth = MicrosoftAuth.from_connection_string(
        _cs(sandbox, f"ClientId=l2sync-sandbox;ClientSecret=env:{secret_env}"),
        scope=_scope(sandbox))
    assert auth.mode == "app"
    first = auth.token()
    assert first.startswith("sbx.")
    assert auth.token() == first  # msal's cache, no new request
    assert auth.refresh() != first


def test_wrong_secret_names_entra_code_never_the_secret(sandbox: SandboxProcess,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "not-the-secret-xyz")
    auth = MicrosoftAuth.from_connection_string(
        _cs(sandbox, f"ClientId=l2sync-sandbox;ClientSecret=env:{SECRET_ENV}"),
        scope=_scope(sandbox))
    with pytest.raises(ProviderError) as info:
        auth.token()
    text = str(info.value)
    assert "invalid_client" in text and "AADSTS7000215" in text
    assert "not-the-secret-xyz" not in text
    assert info.value.transient is False


def test_password_flow_microsoft_modern(sandbox: SandboxProcess,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSAUTH_TEST_PW", "sandbox")
    auth = MicrosoftAuth.from_connection_string(
        _cs(sandbox, "Authentication=Microsoft_Modern;ClientId=l2sync-sandbox;"
                     "User=sync@sandbox.test;Password=env:MSAUTH_TEST_PW"),
        scope=_scope(sandbox))
    assert auth.mode == "password"
    token = auth.token()
    assert token.startswith("sbx.")
    assert auth.token() == token
    # a forced refresh uses the refresh token msal cached
    assert auth.refresh() != token


def test_wrong_password_is_clear(sandbox: SandboxProcess,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSAUTH_TEST_PW", "wrong-pw-123")
    auth = MicrosoftAuth.from_connection_string(
        _cs(sandbox, "Authentication=microsoft_modern_crm;ClientId=l2sync-sandbox;"
                     "User=sync@sandbox.test;Password=env:MSAUTH_TEST_PW"),
        scope=_scope(sandbox))
    with pytest.raises(ProviderError) as info:
        auth.token()
    text = str(info.value)
    assert "invalid_grant" in text and "AADSTS50126" in text
    assert "wrong-pw-123" not in text


def _certificate(tmp_path: Path) -> tuple[Path, str, str]:
    cert, key = self_signed_certificate("l2sync test")
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    path = tmp_path / "app.pem"
    path.write_text(key_pem + pem(cert))
    return path, pem(cert), cert.fingerprint(hashes.SHA1()).hex()


def test_certificate_credential(sandbox: SandboxProcess, tmp_path: Path) -> None:
    path, cert_pem, sha1 = _certificate(tmp_path)
    control = sandbox.control("token")
    control.call("POST", "certificates", {"client_id": "l2sync-sandbox", "certificate": cert_pem})
    try:
        # relative CertificatePath resolves against base_dir; thumbprint computed
        auth = MicrosoftAuth.from_connection_string(
            _cs(sandbox, "ClientId=l2sync-sandbox;CertificatePath=app.pem"),
            scope=_scope(sandbox), base_dir=tmp_path)
        assert auth.token().startswith("sbx.")
        # an explicit SHA-1 thumbprint (as the portal shows it) works too
        auth = MicrosoftAuth.from_connection_string(
            _cs(sandbox, f"ClientId=l2sync-sandbox;CertificatePath={path};"
                         f"CertificateThumbprint={sha1.upper()}"), scope=_scope(sandbox))
        assert auth.token().startswith("sbx.")
        with pytest.raises(ConnectionStringError, match="CertificateThumbprint does not match"):
            MicrosoftAuth.from_connection_string(
                _cs(sandbox, f"ClientId=l2sync-sandbox;CertificatePath={path};"
                             "CertificateThumbprint=00ff"), scope=_scope(sandbox))
    finally:
        control.call("DELETE", "certificates")
    # no longer registered: Entra's error code for an unknown certificate
    auth = MicrosoftAuth.from_connection_string(
        _cs(sandbox, f"ClientId=l2sync-sandbox;CertificatePath={path}"), scope=_scope(sandbox))
    with pytest.raises(ProviderError, match="AADSTS700027"):
        auth.token()


def test_connection_string_errors_name_the_key(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X", "x")
    scope = "https://graph.microsoft.com/.default"
    with pytest.raises(ConnectionStringError, match="TenantId"):
        MicrosoftAuth.from_connection_string(
            ConnectionString("ClientId=a;ClientSecret=env:X"), scope=scope)
    with pytest.raises(ConnectionStringError, match="ClientSecret"):
        MicrosoftAuth.from_connection_string(ConnectionString("TenantId=t;ClientId=a"),
                                             scope=scope)
    with pytest.raises(ConnectionStringError, match="CABundle"):
        MicrosoftAuth.from_connection_string(
            ConnectionString(f"TenantId=t;ClientId=a;ClientSecret=env:X;"
                             f"CABundle={tmp_path / 'none.pem'}"), scope=scope)
    with pytest.raises(ConnectionStringError, match="Authentication"):
        MicrosoftAuth.from_connection_string(
            ConnectionString("TenantId=t;ClientId=a;Authentication=NTLM;User=u;Password=env:X"),
            scope=scope)
    with pytest.raises(ConnectionStringError, match="never the secret"):
        ConnectionString("TenantId=t;ClientId=a;ClientSecret=plain")
    auth = MicrosoftAuth.from_connection_string(
        ConnectionString("TenantId=contoso.onmicrosoft.com;ClientId=a;ClientSecret=env:X"),
        scope=scope)
    assert auth.authority == "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    assert auth._instance_discovery() is True  # a Microsoft host keeps instance discovery
    other = MicrosoftAuth.from_connection_string(
        ConnectionString("TenantId=t;Authority=https://127.0.0.1:9/;ClientId=a;"
                         "ClientSecret=env:X"), scope=scope)
    assert other.authority == "https://127.0.0.1:9/t"
    assert other._instance_discovery() is False


def test_ca_bundle_wins_over_requests_ca_bundle(sandbox: SandboxProcess, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                secret_env: str) -> None:
    # another valid PEM that does not contain the sandbox CA
    other = tmp_path / "other-ca.pem"
    _, cert_pem, _ = _certificate(tmp_path)
    other.write_text(cert_pem)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(other))
    url = f"{sandbox.urls['token']}/sandbox/v2.0/.well-known/openid-configuration"
    # plain requests: the variable overrides Session.verify (the trap this guards against)
    plain = requests.Session()
    plain.verify = str(sandbox.ca_path)
    with pytest.raises(requests.exceptions.SSLError):
        plain.get(url, timeout=10)
    # our session keeps CABundle
    assert make_session(str(sandbox.ca_path)).get(url, timeout=10).status_code == 200
    # and so does msal through it: a token comes back
    auth = MicrosoftAuth.from_connection_string(
        _cs(sandbox, f"ClientId=l2sync-sandbox;ClientSecret=env:{secret_env}"),
        scope=_scope(sandbox))
    assert auth.token().startswith("sbx.")
    assert auth.session().get(url, timeout=10).status_code == 200


def test_ca_bundle_is_checked_not_ignored(sandbox: SandboxProcess, tmp_path: Path,
                                          secret_env: str) -> None:
    other = tmp_path / "other-ca.pem"
    _, cert_pem, _ = _certificate(tmp_path)
    other.write_text(cert_pem)
    shutil.copy(other, tmp_path / "copy.pem")
    auth = MicrosoftAuth.from_connection_string(
        ConnectionString(f"Authority={sandbox.urls['token']}/sandbox;CABundle=copy.pem;"
                         f"ClientId=l2sync-sandbox;ClientSecret=env:{secret_env}"),
        scope=_scope(sandbox), base_dir=tmp_path)
    with pytest.raises(ProviderError) as info:
        auth.token()
    assert info.value.transient is True
    assert "SSLError" in str(info.value)
