"""Contract cases of the exchange provider: contacts of the sales mailbox's Contacts folder in
the sandbox, through EWS (``exchange-ews``) and through Microsoft Graph (``exchange-graph``).

``name`` is ``GivenName`` and ``city`` is ``CompanyName``; users act as Outlook would, through
the EWS sandbox's own store or raw Graph requests (``tests/exchange_users.py``), never through
the provider. Each factory resets the sandbox service and empties the Contacts folder.
"""

from pathlib import Path

import pytest
from exchange_users import (
    EWS_PASSWORD_ENV,
    GRAPH_SECRET_ENV,
    EwsUser,
    GraphUser,
    ews_cs,
    graph_cs,
)

try:  # tests/ on sys.path (pytest's rootdir conftest), or tests/contract itself
    from contract.harness import CaseFactory, SideCase
except ImportError:  # pragma: no cover - depends on how the suite is collected
    from harness import CaseFactory, SideCase  # type: ignore[no-redef]

QUERY = "SELECT GivenName, CompanyName FROM Contacts"
FILTERED = "SELECT GivenName, CompanyName FROM Contacts WHERE CompanyName = 'in'"
LIMITED = "SELECT TOP 2 GivenName, CompanyName FROM Contacts"


def _case(case_id: str, connection_string: str, user: EwsUser | GraphUser,
          env: dict[str, str]) -> SideCase:
    user.empty()
    return SideCase(id=case_id, provider="exchange", connection_string=connection_string,
                    query=QUERY, filtered_query=FILTERED, limited_query=LIMITED,
                    name_field="GivenName", city_field="CompanyName", user=user, env=env,
                    read_only_field="CompleteName.FullName", writable_alternative="GivenName",
                    stamps=True)


def make_ews(request: pytest.FixtureRequest, tmp_path: Path) -> SideCase:
    """Contacts through EWS (exchangelib, Basic sign-in to the sandbox)."""
    sandbox = request.getfixturevalue("sandbox")
    sandbox.control("ews").reset()
    return _case("exchange-ews", ews_cs(sandbox), EwsUser(sandbox),
                 {EWS_PASSWORD_ENV: "sandbox"})


def make_graph(request: pytest.FixtureRequest, tmp_path: Path) -> SideCase:
    """Contacts through Microsoft Graph (msal client credentials against the sandbox)."""
    sandbox = request.getfixturevalue("sandbox")
    sandbox.control("graph").reset()
    return _case("exchange-graph", graph_cs(sandbox), GraphUser(sandbox),
                 {GRAPH_SECRET_ENV: "sandbox"})


CASES: dict[str, CaseFactory] = {"exchange-ews": make_ews, "exchange-graph": make_graph}
