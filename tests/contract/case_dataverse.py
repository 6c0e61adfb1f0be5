"""Contract case for the ``dataverse`` provider: the ``accounts`` table of the Dataverse sandbox.

``name`` and ``address1_city`` are the two text columns; ``createdon`` is read-only (Dataverse
makes it; the sandbox's attribute metadata says neither create nor update may set it). The user
is another person of the tenant (``alice@sandbox.test``): creates go through the Web API with
her own token (raw HTTP, not our provider), edits and deletes through the sandbox's control API,
which changes the row behind every client's back as the Dynamics 365 web app would.
"""

from pathlib import Path

import pytest
import requests

try:
    from contract.harness import CaseFactory, SideCase
except ImportError:  # pragma: no cover - depends on how the suite is collected
    from harness import CaseFactory, SideCase  # type: ignore[no-redef]

from l2sync_dagster.sandbox.control import SandboxControl
from l2sync_dagster.sandbox.token_service import TENANT_ID

PASSWORD_ENV = "CONTRACT_DV_PASSWORD"
TABLE = "accounts"


class DataverseUser:
    """Another person editing accounts (the Web API with her token, or the control API)."""

    def __init__(self, base: str, ca_path: str, control: SandboxControl) -> None:
        self.api = f"{base}/api/data/v9.2"
        self.control = control
        self.http = requests.Session()
        self.http.verify = ca_path
        self.http.trust_env = False
        token = control.call("POST", "token", {"user": "alice@sandbox.test"})["access_token"]
        self.http.headers.update({"Authorization": f"Bearer {token}",
                                  "OData-Version": "4.0", "Accept": "application/json"})

    def create(self, name: str, city: str) -> str:
        """POST an account as Alice; Dataverse makes the GUID (OData-EntityId)."""
        resp = self.http.post(f"{self.api}/{TABLE}", json={"name": name, "address1_city": city},
                              timeout=30)
        resp.raise_for_status()
        entity_id = resp.headers["OData-EntityId"]
        return entity_id.rsplit("(", 1)[1].rstrip(")")

    def update(self, key: str, *, name: str | None = None, city: str | None = None) -> None:
        """Change fields behind the client's back (new version, in the delta feed)."""
        values = {k: v for k, v in (("name", name), ("address1_city", city)) if v is not None}
        self.control.call("PATCH", f"rows/{TABLE}/{key}", values)

    def delete(self, key: str) -> None:
        """Delete the account."""
        self.control.call("DELETE", f"rows/{TABLE}/{key}")

    def records(self) -> dict[str, tuple[str | None, str | None]]:
        """Every account as stored: key -> (name, city)."""
        rows = self.control.call("GET", f"rows/{TABLE}")["value"]
        return {str(r["accountid"]): (r.get("name"), r.get("address1_city")) for r in rows}

    def clear(self) -> None:
        """Delete every account."""
        for key in self.records():
            self.delete(key)


def _dataverse(request: pytest.FixtureRequest, tmp_path: Path) -> SideCase:
    sandbox = request.getfixturevalue("sandbox")
    control = sandbox.control("dataverse")
    control.reset()
    user = DataverseUser(sandbox.urls["dataverse"], str(sandbox.ca_path), control)
    user.clear()
    base = sandbox.urls["dataverse"]
    cs = (f"URL={base}/api/data/v9.2/{TABLE};Authentication=microsoft_modern_crm;"
          f"User=sync@sandbox.test;Password=env:{PASSWORD_ENV};ClientId=l2sync-sandbox;"
          f"TenantId={TENANT_ID};Authority={sandbox.urls['token']};CABundle={sandbox.ca_path}")
    return SideCase(
        id="dataverse", provider="dataverse", connection_string=cs,
        query=f"SELECT name, address1_city FROM {TABLE}",
        filtered_query=f"SELECT name, address1_city FROM {TABLE} WHERE address1_city = 'in'",
        limited_query=f"SELECT TOP 2 name, address1_city FROM {TABLE}",
        name_field="name", city_field="address1_city", user=user,
        env={PASSWORD_ENV: "sandbox"}, read_only_field="createdon",
        writable_alternative=None, stamps=False)


CASES: dict[str, CaseFactory] = {"dataverse": _dataverse}
