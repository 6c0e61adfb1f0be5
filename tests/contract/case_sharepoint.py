"""Contract case for the ``sharepoint`` provider: a list of the Graph sandbox's sales site.

The list ``Contract People`` has ``Title`` (the name) and a text column ``City``; ``Modified``
is read-only (SharePoint sets it; it has no writable alternative). SharePoint makes item ids and
a list has no hidden column for a stamp, so ``stamps`` is False. The list has no WHERE or TOP in
the provider's query syntax (the query only names the list), so ``filtered_query`` and
``limited_query`` are None. The user is another application of the tenant: raw Graph requests
with its own client-credentials token (the items API a SharePoint form or a flow would use).
"""

from pathlib import Path

import pytest
import requests

try:
    from contract.harness import CaseFactory, SideCase
except ImportError:  # pragma: no cover - depends on how the suite is collected
    from harness import CaseFactory, SideCase  # type: ignore[no-redef]

from l2sync_dagster.sandbox import identities
from l2sync_dagster.sandbox.token_service import TENANT_ID

SECRET_ENV = "CONTRACT_SP_SECRET"
LIST = "Contract People"
SITE_URL = "https://sandbox.sharepoint.com/sites/sales"


class SharePointUser:
    """Another application editing the list's items through Graph (not our provider)."""

    def __init__(self, graph: str, token_url: str, ca_path: str) -> None:
        self.graph = f"{graph}/v1.0"
        self.http = requests.Session()
        self.http.verify = ca_path
        self.http.trust_env = False
        resp = self.http.post(f"{token_url}/{TENANT_ID}/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": identities.CLIENT_ID,
            "client_secret": identities.CLIENT_SECRET, "scope": f"{graph}/.default"},
            timeout=30)
        resp.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"
        site = self._get("/sites/sandbox.sharepoint.com:/sites/sales")
        lists = self._get(f"/sites/{site['id']}/lists")["value"]
        found = next(lst for lst in lists if lst["displayName"] == LIST)
        self.items = f"/sites/{site['id']}/lists/{found['id']}/items"

    def _get(self, path: str) -> dict:
        resp = self.http.get(f"{self.graph}{path}", timeout=30)
        resp.raise_for_status()
        return resp.json()

    def create(self, name: str, city: str) -> str:
        """POST an item; SharePoint makes its id."""
        resp = self.http.post(f"{self.graph}{self.items}",
                              json={"fields": {"Title": name, "City": city}}, timeout=30)
        resp.raise_for_status()
        return str(resp.json()["id"])

    def update(self, key: str, *, name: str | None = None, city: str | None = None) -> None:
        """PATCH the item's fields."""
        fields = {k: v for k, v in (("Title", name), ("City", city)) if v is not None}
        self.http.patch(f"{self.graph}{self.items}/{key}/fields", json=fields,
                        timeout=30).raise_for_status()

    def delete(self, key: str) -> None:
        """DELETE the item."""
        self.http.delete(f"{self.graph}{self.items}/{key}", timeout=30).raise_for_status()

    def records(self) -> dict[str, tuple[str | None, str | None]]:
        """Every item: id -> (Title, City)."""
        out: dict[str, tuple[str | None, str | None]] = {}
        link = f"{self.graph}{self.items}?$expand=fields($select=Title,City)"
        while link:
            resp = self.http.get(link, timeout=30)
            resp.raise_for_status()
            data = resp.json()
            for item in data["value"]:
                fields = item.get("fields") or {}
                out[str(item["id"])] = (fields.get("Title"), fields.get("City"))
            link = data.get("@odata.nextLink") or ""
        return out

    def clear(self) -> None:
        """Delete every item."""
        for key in self.records():
            self.delete(key)


def _sharepoint(request: pytest.FixtureRequest, tmp_path: Path) -> SideCase:
    sandbox = request.getfixturevalue("sandbox")
    control = sandbox.control("graph")
    try:  # the list survives between cases but not a reset of the Graph sandbox
        control.call("POST", "lists", {"displayName": LIST,
                                       "columns": [{"name": "City", "type": "text"}]})
    except Exception as exc:  # noqa: BLE001 - only "it exists already" is expected here
        if "exist" not in str(exc).lower():
            raise
    user = SharePointUser(sandbox.urls["graph"], sandbox.urls["token"], str(sandbox.ca_path))
    user.clear()
    cs = (f"URL={SITE_URL}/Lists/{LIST.replace(' ', '%20')}/AllItems.aspx;"
          f"GraphURL={sandbox.urls['graph']}/v1.0;Authority={sandbox.urls['token']}/{TENANT_ID};"
          f"ClientId={identities.CLIENT_ID};ClientSecret=env:{SECRET_ENV};"
          f"CABundle={sandbox.ca_path}")
    return SideCase(
        id="sharepoint", provider="sharepoint", connection_string=cs, query=None,
        filtered_query=None, limited_query=None, name_field="Title", city_field="City",
        user=user, env={SECRET_ENV: identities.CLIENT_SECRET}, read_only_field="Modified",
        writable_alternative=None, stamps=False)


CASES: dict[str, CaseFactory] = {"sharepoint": _sharepoint}
