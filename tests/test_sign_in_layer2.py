"""Layer2 connection strings as Layer2's documentation prints them (issue 12, item 4).

``Authentication=Microsoft_Modern`` (Exchange over Graph or EWS, SharePoint) and
``Authentication=microsoft_modern_crm`` (Dynamics) sign in as ``User`` with msal's password flow
through an app registration of the user's own (``ClientId``). Without a ClientId, Layer2 uses
its own multi-tenant app and an interactive consent pop-up, which an unattended sync cannot
do: the string is refused when it is parsed, naming ClientId and saying exactly what to
register for that API.
"""

import pytest

from l2sync_dagster.providers.base import Query
from l2sync_dagster.providers.dataverse import DataverseProvider
from l2sync_dagster.providers.exchange import ExchangeProvider
from l2sync_dagster.providers.sharepoint import SharePointProvider
from l2sync_dagster.spec.connection_string import ConnectionStringError

PASSWORD_ENV = "LAYER2_TEST_PASSWORD"
REGISTER = ("register an app in Entra ID", "Allow public client flows", "admin consent",
            "ClientId=<its Application (client) ID>", "TenantId=<its Directory (tenant) ID>")

LAYER2_STRINGS = {
    # provider: (connection string as Layer2 prints it, what the app needs)
    "dataverse": (DataverseProvider,
                  "URL=https://contoso.crm4.dynamics.com/api/data/v9.2/accounts;"
                  "Authentication=microsoft_modern_crm;User=svc@contoso.com;"
                  f"Password=env:{PASSWORD_ENV}",
                  "Dynamics CRM: user_impersonation"),
    "sharepoint": (SharePointProvider,
                   "URL=https://contoso.sharepoint.com/sites/sales/Lists/Customers/AllItems.aspx;"
                   f"Authentication=Microsoft_Modern;User=svc@contoso.com;"
                   f"Password=env:{PASSWORD_ENV}",
                   "Microsoft Graph: Sites.ReadWrite.All"),
    "exchange-graph": (ExchangeProvider,
                       "Backend=graph;Authentication=Microsoft_Modern;User=svc@contoso.com;"
                       f"Password=env:{PASSWORD_ENV};Email=sales@contoso.com",
                       "Microsoft Graph: Contacts.ReadWrite, Calendars.ReadWrite"),
    "exchange-ews": (ExchangeProvider,
                     "URL=https://outlook.office365.com/EWS/Exchange.asmx;"
                     "Authentication=Microsoft_Modern;User=svc@contoso.com;"
                     f"Password=env:{PASSWORD_ENV};Email=sales@contoso.com",
                     "Office 365 Exchange Online: EWS.AccessAsUser.All"),
}


@pytest.mark.parametrize("name", sorted(LAYER2_STRINGS))
def test_layer2_string_without_client_id_says_what_to_register(name, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "s3cr3t-value")
    cls, text, needs = LAYER2_STRINGS[name]
    with pytest.raises(ConnectionStringError) as info:
        cls.from_connection_string(text)  # refused when parsed, not at the first request
    message = str(info.value)
    assert "missing required key ClientId" in message
    for part in (*REGISTER, needs):
        assert part in message, message
    assert "s3cr3t-value" not in message


def test_app_only_string_without_client_id_names_application_permissions(monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "s3cr3t-value")
    with pytest.raises(ConnectionStringError) as info:
        SharePointProvider.from_connection_string(
            "URL=https://contoso.sharepoint.com/sites/sales/Lists/Customers;TenantId=t;"
            f"ClientSecret=env:{PASSWORD_ENV}")
    message = str(info.value)
    assert "missing required key ClientId" in message
    assert "application API permissions Microsoft Graph: Sites.ReadWrite.All" in message
    assert "client secret or certificate" in message


def test_missing_tenant_of_app_registration_says_where_to_find_it(monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "s3cr3t-value")
    with pytest.raises(ConnectionStringError) as info:
        DataverseProvider.from_connection_string(
            "URL=https://contoso.crm4.dynamics.com/api/data/v9.2/accounts;ClientId=abc;"
            f"ClientSecret=env:{PASSWORD_ENV}")
    assert "missing required key TenantId" in str(info.value)
    assert "Directory (tenant) ID" in str(info.value)


def test_graph_backend_refuses_ntlm_saying_what_to_use(monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "s3cr3t-value")
    with pytest.raises(ConnectionStringError, match="Authentication=Microsoft_Modern"):
        ExchangeProvider.from_connection_string(
            f"Backend=graph;Authentication=NTLM;User=a@contoso.com;Password=env:{PASSWORD_ENV}")


@pytest.fixture
def graph_mailbox(sandbox, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "sandbox")
    sandbox.control("graph").reset()
    return sandbox


@pytest.mark.parametrize("tenant", ["Authority={token}/sandbox", "Authority={token}"])
def test_exchange_graph_microsoft_modern_reads_the_users_mailbox(graph_mailbox, tenant):
    """Microsoft_Modern on the Graph backend: the user's delegated token opens the mailbox.
    Without TenantId (an Authority without tenant) the tenant is the domain of User."""
    sbx = graph_mailbox
    provider = ExchangeProvider.from_connection_string(
        f"Backend=graph;URL={sbx.urls['graph']}/v1.0;Authentication=Microsoft_Modern;"
        f"User=sales@sandbox.test;Password=env:{PASSWORD_ENV};ClientId=l2sync-sandbox;"
        + tenant.format(token=sbx.urls["token"])
        + f";CABundle={sbx.ca_path};Email=sales@sandbox.test")
    try:
        provider.verify(Query("SELECT * FROM Contacts"))
        frame = provider.read(Query("SELECT * FROM Contacts")).frame
        assert len(frame) > 0
        auth = provider.backend.client.auth  # type: ignore[attr-defined]
        assert auth.mode == "password"
        assert auth.authority.endswith("/sandbox" if "sandbox" in tenant else "/sandbox.test")
    finally:
        provider.close()


def test_cli_locates_the_missing_client_id_by_file_line_and_side(tmp_path, capsys,
                                                                 monkeypatch):
    from l2sync_dagster import cli

    monkeypatch.setenv(PASSWORD_ENV, "s3cr3t-value")
    (tmp_path / "connections").mkdir()
    (tmp_path / "connections" / "crm.yaml").write_text(
        "direction: left_to_right\n"
        "left:\n"
        "  provider: dataverse\n"
        '  connection_string: "URL=https://contoso.crm4.dynamics.com/api/data/v9.2/accounts;'
        f'Authentication=microsoft_modern_crm;User=svc@contoso.com;Password=env:{PASSWORD_ENV}"\n'
        "right:\n"
        "  provider: file\n"
        '  connection_string: "Path=accounts.csv"\n'
        "  key: accountid\n")
    monkeypatch.chdir(tmp_path)
    code = cli.main(["verify", "crm"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("l2sync verify: connections/crm.yaml line 4: left.connection_string"), \
        err
    assert "missing required key ClientId" in err and "Allow public client flows" in err
    assert "s3cr3t-value" not in err


@pytest.fixture
def ews(sandbox, monkeypatch):
    from exchange_helpers import ews_session

    yield from ews_session(sandbox, monkeypatch)


def test_exchange_ews_microsoft_modern_opens_a_delegated_mailbox(ews, sandbox):
    """Microsoft_Modern on EWS: the user's own token (delegate access to sales@)."""
    from exchange_helpers import provider

    p = provider(ews, Authentication="Microsoft_Modern", ClientId="l2sync-sandbox",
                 Authority=f"{sandbox.urls['token']}/sandbox", CABundle=str(sandbox.ca_path))
    try:
        assert "sales@sandbox.test" in p.verify(Query("SELECT * FROM Contacts"))
        assert len(p.read(Query("SELECT * FROM Contacts")).frame) > 0
    finally:
        p.close()
