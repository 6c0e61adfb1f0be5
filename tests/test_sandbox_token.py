"""The Entra-style token service, driven by the real msal library over HTTPS."""

from collections.abc import Iterator
from urllib.parse import urlsplit

import msal
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from msal_helpers import authority, pem, sandbox_session, self_signed_certificate
from sandbox_process import SandboxProcess

from l2sync_dagster.sandbox import identities
from l2sync_dagster.sandbox.token_service import TENANT_ID


@pytest.fixture
def token(sandbox: SandboxProcess) -> Iterator[SandboxProcess]:
    """The sandbox with the token service reset before and after the test."""
    if "token" not in sandbox.urls:
        pytest.fail("the sandbox has no token service")
    sandbox.control("token").reset()
    yield sandbox
    sandbox.control("token").reset()


_authority = authority


def _scope(sbx: SandboxProcess) -> list[str]:
    return [f"{sbx.urls.get('graph', 'https://graph.microsoft.com')}/.default"]


def _confidential(sbx: SandboxProcess, credential: object,
                  client_id: str = identities.CLIENT_ID) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        client_id, client_credential=credential, authority=_authority(sbx),
        instance_discovery=False, http_client=sandbox_session(sbx))


def _public(sbx: SandboxProcess) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(identities.CLIENT_ID, authority=_authority(sbx),
                                        instance_discovery=False, http_client=sandbox_session(sbx))


def _certificate() -> tuple[str, str]:
    """A fresh self-signed certificate and its private key, both PEM."""
    cert, key = self_signed_certificate()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return pem(cert), key_pem


def test_discovery_document(token: SandboxProcess) -> None:
    url = f"{_authority(token)}/v2.0/.well-known/openid-configuration"
    doc = requests.get(url, verify=str(token.ca_path), timeout=10).json()
    assert doc["token_endpoint"] == f"{token.urls['token']}/{TENANT_ID}/oauth2/v2.0/token"
    assert doc["issuer"] == f"{token.urls['token']}/{TENANT_ID}/v2.0"
    bad = requests.get(f"{token.urls['token']}/nobody/v2.0/.well-known/openid-configuration",
                       verify=str(token.ca_path), timeout=10)
    assert bad.status_code == 400 and "AADSTS90002" in bad.json()["error_description"]


def test_client_credentials_token_is_accepted_by_registry(token: SandboxProcess) -> None:
    app = _confidential(token, identities.CLIENT_SECRET)
    result = app.acquire_token_for_client(_scope(token))
    assert result.get("token_type") == "Bearer", result
    assert result["access_token"].startswith("sbx.")
    assert result["expires_in"] > 3000
    stats = token.control("token").stats()
    assert stats["requests"]["token.client_credentials"] == 1
    assert stats["requests"]["discovery"] >= 1


def test_wrong_secret_gives_entra_error(token: SandboxProcess) -> None:
    result = _confidential(token, "wrong").acquire_token_for_client(_scope(token))
    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret")
    assert result["error_codes"] == [7000215]
    assert "wrong" not in result["error_description"]  # the secret is never echoed


def test_unknown_client_and_bad_scope(token: SandboxProcess) -> None:
    result = _confidential(token, "x", "nobody").acquire_token_for_client(_scope(token))
    assert result["error"] == "unauthorized_client" and result["error_codes"] == [700016]
    app = _confidential(token, identities.CLIENT_SECRET)
    result = app.acquire_token_for_client(["https://graph.microsoft.com/User.Read"])
    assert result["error"] == "invalid_scope" and result["error_codes"] == [1002012]
    result = app.acquire_token_for_client(["https://example.com/.default"])
    assert result["error"] == "invalid_resource" and result["error_codes"] == [500011]


def test_ropc_password_flow_and_refresh(token: SandboxProcess) -> None:
    # msal remembers, per process and per host name (ports ignored), a host that once answered
    # the user realm lookup with 404 (another test's server on 127.0.0.1 may have) and then
    # never asks again; forget it so this test sees the lookup.
    msal.authority.Authority._domains_without_user_realm_discovery.discard(
        urlsplit(token.urls["token"]).hostname)
    app = _public(token)
    result = app.acquire_token_by_username_password(
        identities.SERVICE_USER, identities.USERS[identities.SERVICE_USER], _scope(token))
    assert "access_token" in result, result
    claims = result["id_token_claims"]
    assert claims["preferred_username"] == identities.SERVICE_USER
    assert claims["tid"] == TENANT_ID and claims["aud"] == identities.CLIENT_ID
    accounts = app.get_accounts()
    assert [a["username"] for a in accounts] == [identities.SERVICE_USER]
    # the cached token is reused; after it expires server-side, msal refreshes
    silent = app.acquire_token_silent(_scope(token), account=accounts[0])
    assert silent["access_token"] == result["access_token"]
    refreshed = app.acquire_token_silent(_scope(token), account=accounts[0],
                                         force_refresh=True)
    assert refreshed["access_token"] != result["access_token"]
    stats = token.control("token").stats()["requests"]
    assert stats["userrealm"] == 1 and stats["token.password"] == 1
    assert stats["token.refresh_token"] == 1


def test_ropc_wrong_password(token: SandboxProcess) -> None:
    result = _public(token).acquire_token_by_username_password(
        identities.SERVICE_USER, "wrong", _scope(token))
    assert result["error"] == "invalid_grant" and result["error_codes"] == [50126]
    result = _public(token).acquire_token_by_username_password(
        "ghost@sandbox.test", "x", _scope(token))
    assert result["error"] == "invalid_grant" and result["error_codes"] == [50034]


def test_certificate_credential(token: SandboxProcess) -> None:
    cert_pem, key_pem = _certificate()
    credential = {"private_key": key_pem, "public_certificate": cert_pem}
    # not registered yet: Entra's "key was not found"
    result = _confidential(token, credential).acquire_token_for_client(_scope(token))
    assert result["error"] == "invalid_client" and result["error_codes"] == [700027]
    registered = token.control("token").call(
        "POST", "certificates", {"client_id": identities.CLIENT_ID, "certificate": cert_pem})
    result = _confidential(token, credential).acquire_token_for_client(_scope(token))
    assert "access_token" in result, result  # PS256 with x5t#S256
    legacy = {"private_key": key_pem, "thumbprint": registered["sha1"]}
    result = _confidential(token, legacy).acquire_token_for_client(_scope(token))
    assert "access_token" in result, result  # RS256 with x5t
    other_cert, other_key = _certificate()
    forged = {"private_key": other_key, "thumbprint": registered["sha1"]}
    result = _confidential(token, forged).acquire_token_for_client(_scope(token))
    assert result["error"] == "invalid_client" and result["error_codes"] == [700027]
